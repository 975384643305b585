"""The cache's decision beyond the distance (WordNet: dictionary forms and a second look), and the
threshold evaluation that reports it: `semcache.lexicon`, `semcache.matching`, `semcache.eval`,
`python -m benchmarks.threshold`, and the Settings page's Evidence tab. Real parts: Debian's WordNet files, the local model, the
embedded PostgreSQL."""

from __future__ import annotations

import json
import math

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from benchmarks import threshold as threshold_command
from semcache import CacheAdmin, SemanticCache
from semcache import eval as evaluation
from semcache.blobstores import LocalBlobStore
from semcache.lexicon import Relation, WordNet
from semcache.matching import DEFAULT_THRESHOLD, EXACT, Match, Matcher, Weights

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def matcher(wordnet) -> Matcher:
    return Matcher(wordnet=wordnet)


class CountingEmbedder:
    def __init__(self, inner) -> None:
        self.inner = inner
        self.model, self.dimensions = inner.model, inner.dimensions
        self.calls: list[list[str]] = []

    def embed(self, texts):
        self.calls.append(list(texts))
        return self.inner.embed(texts)


# ---------------------------------------------------------------------- WordNet


@pytest.mark.parametrize("a, b, relation", [
    ("dogs", "dog", Relation.SAME),
    ("mice", "mouse", Relation.SAME),
    ("car", "automobile", Relation.SYNONYM),
    ("invoice", "bill", Relation.SYNONYM),
    ("puppy", "dog", Relation.DIRECT_KIND),
    ("dog", "puppy", Relation.DIRECT_KIND),
    ("villa", "house", Relation.DIRECT_KIND),
    ("dog", "animal", Relation.KIND),
    ("hot", "cold", Relation.ANTONYM),
    ("wife", "husband", Relation.ANTONYM),
    ("dog", "cat", Relation.DISTINCT),
    ("hot dog", "sausage", Relation.DIRECT_KIND),
    ("trip to paris", "vacation", Relation.UNKNOWN),
    ("qwzx", "dog", Relation.UNKNOWN),
])
def test_wordnet_relations(wordnet, a, b, relation):
    assert wordnet.relation(a, b) is relation


def test_dictionary_forms(wordnet, matcher):
    assert wordnet.base_forms("mice") == {"n": ["mouse"]}
    assert "good" in wordnet.base_forms("better")["a"]
    assert matcher.canonical("invoices") == "invoice"
    assert matcher.canonical("trips to paris") == "trip to paris"
    # Words WordNet lists as they are stay: "glasses" are not one glass; short words are left alone.
    assert matcher.canonical("glasses") == "glasses"
    assert matcher.canonical("news") == "news"
    assert matcher.canonical("was") == "was"
    assert Matcher(wordnet=wordnet, lemmas=False).canonical("invoices") == "invoices"


def test_a_missing_wordnet_falls_back_to_the_distance(tmp_path):
    matcher = Matcher(wordnet=WordNet(tmp_path))
    assert matcher.describe()["missing_wordnet"] == str(tmp_path)
    assert not matcher.uses_lexicon and not matcher.uses_lemmas
    assert matcher.match("hot", "cold", 0.3) == Match("unknown", 0.3, 0.3)
    assert WordNet(tmp_path).relation("hot", "cold") is Relation.UNKNOWN


# ---------------------------------------------------------------------- the decision


def test_weights_scale_the_distance_by_relation():
    w = Weights()
    assert w.score(Relation.SYNONYM, 0.4) == pytest.approx(0.2)
    assert w.score(Relation.KIND, 0.4) == pytest.approx(0.28)
    assert w.score(Relation.DISTINCT, 0.3) == pytest.approx(0.35)
    assert w.score(Relation.UNKNOWN, 0.3) == pytest.approx(0.3)
    assert w.score(Relation.ANTONYM, 0.01) == math.inf
    assert w.score(Relation.SAME, 0.9) == 0.0
    assert w.score(Relation.PARTIAL, 0.3) == pytest.approx(0.48)
    assert w.stretch == pytest.approx(1 / 0.3)


def test_match_and_serves(matcher):
    assert matcher.match("dog", "dog", None) == Match(EXACT, 0.0, 0.0)
    assert matcher.match("dogs", "dog", None).relation == EXACT
    assert matcher.match("cold", "hot", 0.1).score == math.inf
    assert not matcher.match("cold", "hot", 0.1).serves(2.0)
    synonym = matcher.match("automobile", "car", 0.5)
    assert synonym.relation == "synonym" and synonym.score == pytest.approx(0.25)
    assert synonym.serves(0.3) and not synonym.serves(0.2)
    assert not synonym.serves(0.0)  # at 0 only the exact path serves
    assert Match(EXACT, 0.0, 0.0).serves(0.0)
    plain = Matcher.plain()
    assert plain.match("automobile", "car", 0.5).score == 0.5
    assert plain.match("dogs", "dog", 0.17).relation == "unknown"


# ---------------------------------------------------------------------- in the cache


@pytest.fixture
def smart_cache(db, local_embedder, emoji_generator, tmp_path, matcher) -> SemanticCache:
    return SemanticCache(db, CountingEmbedder(local_embedder), emoji_generator, LocalBlobStore(tmp_path / "blobs"),
                         default_threshold=0.35, matcher=matcher)


def test_another_form_of_a_word_is_an_exact_hit_without_embedding(smart_cache):
    made = smart_cache.get("invoice")
    smart_cache.embedder.calls.clear()
    found = smart_cache.get("Invoices")
    assert found.kind == "exact" and found.served_key == "invoice" and found.entry_id == made.entry_id
    assert found.relation == EXACT and not found.embedded and smart_cache.embedder.calls == []
    assert smart_cache.get("invoices", threshold=0.0).kind == "exact"  # the exact path, even at 0


def test_opposites_are_never_served_though_near(smart_cache, db, local_embedder, emoji_generator, tmp_path):
    smart_cache.get("husband")
    plain = SemanticCache(db, local_embedder, emoji_generator, LocalBlobStore(tmp_path / "blobs"))
    assert plain.get("wife", threshold=0.5).kind == "semantic"  # distance alone: 0.13 away
    CacheAdmin(plain).delete("wife")
    result = smart_cache.get("wife", threshold=0.5)
    assert result.kind == "generated"
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM semcache_entries WHERE key = 'wife'")).scalar() == 1


def test_a_synonym_further_than_the_threshold_is_served_and_recorded(smart_cache, db):
    smart_cache.get("invoice")
    found = smart_cache.get("bill", threshold=0.3)
    assert found.kind == "semantic" and found.served_key == "invoice"
    assert found.distance > 0.3 and found.relation == "synonym" and found.score == pytest.approx(found.distance / 2)
    with db.connect() as conn:
        row = conn.execute(text("SELECT relation, score, distance FROM semcache_events "
                                "WHERE key = 'bill' ORDER BY id DESC LIMIT 1")).one()
    assert row.relation == "synonym" and row.score == pytest.approx(row.distance / 2)
    neighbours = smart_cache.neighbours("bill", threshold=0.3)
    served = [n for n in neighbours if n.would_serve]
    assert [n.key for n in served] == ["invoice"] and served[0].relation == "synonym"


def test_the_evaluation_predicts_what_get_does(smart_cache, local_embedder, matcher):
    """`semcache.eval` and the cache decide alike: the first phrase cached, the second looked up."""
    pairs = [("dog", "puppy"), ("car", "automobile"), ("hot", "cold"), ("invoice", "bills"), ("dog", "cat"),
             ("house", "villa"), ("trip to paris", "vacation in france"), ("guitar", "violin")]
    scored = evaluation.score_pairs([evaluation.Pair(a, b, 1) for a, b in pairs], local_embedder, matcher)
    for threshold in (0.0, 0.2, 0.35, 0.5):
        predicted = scored.served(threshold)
        for (cached, lookup), expect in zip(pairs, predicted):
            smart_cache.get(cached)
            got = smart_cache.get(lookup, threshold=threshold)
            assert got.hit == bool(expect), (cached, lookup, threshold, got.kind, got.distance)
            for phrase in (cached, lookup):
                CacheAdmin(smart_cache).delete(phrase)


# ---------------------------------------------------------------------- the evaluation


def test_reading_pairs(tmp_path):
    labelled = tmp_path / "labels.tsv"
    labelled.write_text("# cached\tsearched\tlabel\ndog\tpuppy\t1\n\nhot\tcold\t0\n")
    assert evaluation.read_pairs(labelled) == [evaluation.Pair("dog", "puppy", 1), evaluation.Pair("hot", "cold", 0)]
    scores = tmp_path / "scores.txt"
    scores.write_text("a\tb\t9.1\nc\td\t5\ne\tf\t1.2\n")
    assert [p.label for p in evaluation.read_pairs(scores)] == [1, 0]
    relatedness = tmp_path / "men.txt"
    relatedness.write_text("sun\tsunlight\t50\ncup\tcoffee\t40\nbird\tdesk\t5\n")
    assert [p.label for p in evaluation.read_pairs(relatedness)] == [1, 1, 0]
    assert [p.label for p in evaluation.read_pairs(relatedness, negatives_only=True)] == [0]
    broken = tmp_path / "broken.txt"
    broken.write_text("dog\tpuppy\n")
    with pytest.raises(ValueError, match="line 1"):
        evaluation.read_pairs(broken)


def test_recommend_keeps_false_hits_within_the_limit():
    pairs = [evaluation.Pair("a", "b", label) for label in (1, 1, 1, 0, 0, 0, 0)]
    scored = evaluation.Scored(pairs=pairs, scores=np.array([0.1, 0.3, 0.6, 0.25, 0.5, math.inf, 0.7]),
                               exact=np.zeros(7, bool), labels=np.array([1, 1, 1, 0, 0, 0, 0]), relations=[""] * 7,
                               skipped=0)
    assert scored.recommend(0.0) == 0.249
    assert scored.rates(0.249) == {"threshold": 0.249, "hit_rate": round(1 / 3, 4), "false_hit_rate": 0.0,
                                   "precision": 1.0}
    assert scored.recommend(0.25) == 0.499  # one of four negatives allowed
    assert scored.recommend(0.5) == 0.699
    assert scored.recommend(1.0) == 1.0
    assert scored.rates(1.0)["false_hit_rate"] == 0.75  # the opposites (inf) never
    no_negatives = evaluation.Scored(pairs=pairs[:3], scores=np.array([0.1, 0.3, 0.6]), exact=np.zeros(3, bool),
                                     labels=np.array([1, 1, 1]), relations=[""] * 3, skipped=0)
    assert no_negatives.recommend(0.01) is None


def test_eval_command_writes_the_report_and_the_curve(app_env, tmp_path, wordnet):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("# a small judged set\ncar\tautomobile\t1\ndog\tpuppy\t1\nhouse\tvilla\t1\n"
                     "hot\tcold\t0\nwife\thusband\t0\ndog\ttelescope\t0\npizza\tinvoice\t0\n\tempty\t1\n")
    out, png = tmp_path / "r.json", tmp_path / "curve.png"
    assert threshold_command.main(["--pairs", str(pairs), "--model", "local", "--out", str(out), "--plot", str(png)]) == 0
    result = json.loads(out.read_text())
    assert result["model"] == "all-MiniLM-L6-v2 (384 dims)"
    assert (result["pairs"], result["positives"], result["negatives"], result["skipped"]) == (7, 3, 4, 1)
    assert result["default_threshold"] == DEFAULT_THRESHOLD
    assert set(result["at_default"]) == {"hit_rate", "false_hit_rate", "precision", "hit_interval",
                                         "false_hit_interval"}
    assert result["recommended"]["max_false_hit_rate"] == 0.01
    assert result["recommended"]["threshold"] is not None and result["recommended"]["hit_rate"] > 0
    assert result["relations"]["antonym"] == {"negatives": 2}
    assert len(result["curve"]) == 101 and result["curve"][0] == {
        "threshold": 0.0, "hit_rate": 0.0, "false_hit_rate": 0.0, "precision": None}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The same pairs with the second look off: the opposites are served at a wide threshold.
    assert threshold_command.main(["--pairs", str(pairs), "--model", "local", "--no-lexicon", "--out", str(out)]) == 0
    plain = json.loads(out.read_text())
    assert plain["curve"][60]["false_hit_rate"] > result["curve"][60]["false_hit_rate"]


def test_eval_from_feedback(app_env, smart_cache, tmp_path):
    admin = CacheAdmin(smart_cache)
    admin.mark_right("puppy", "dog")
    admin.mark_right("automobile", "car")
    admin.mark_wrong("cold", "hot")
    smart_cache.set_threshold(0.3)
    out = tmp_path / "feedback.json"
    assert threshold_command.main(["--from-feedback", "--model", "local", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["pairs"], result["positives"], result["negatives"]) == (3, 2, 1)
    assert result["default_threshold"] == 0.3  # the stored threshold, the one in use
    assert result["at_default"]["hit_rate"] == 1.0 and result["at_default"]["false_hit_rate"] == 0.0


def test_the_evidence_tab(app_env, smart_cache):
    admin = CacheAdmin(smart_cache)
    admin.mark_right("puppy", "dog")
    admin.mark_wrong("cold", "hot")
    admin.mark_wrong("cat", "dog")
    app = AppTest.from_file(str(ROOT / "pages" / "cache_settings.py"), default_timeout=120).run()
    assert not app.exception, app.exception
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Pairs"] == "3"
    assert metrics[f"Served at {DEFAULT_THRESHOLD:.2f} (now)"] == "100%"
    recommended = next(label for label in metrics if label.startswith("Recommended"))
    value = float(metrics[recommended])
    assert 0.2 < value < 0.5
    use = next(b for b in app.button if b.label == f"Use {value:.3f}")
    assert use.disabled  # three verdicts are thin evidence: it asks first
    app.checkbox(key="accept_thin").check().run()
    next(b for b in app.button if b.label == f"Use {value:.3f}").click().run()
    assert not app.exception
    assert smart_cache.threshold == pytest.approx(value)
