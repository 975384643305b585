"""A threshold per embedding space, recommendations that say how much they know, and the Settings
page showing what is stored: the Wilson interval on known values, the migration that adopts the
one threshold of before, lookups reading their space's value in their one round trip, re-embedding
that proposes a threshold from verdicts or a pairs file, and the page (AppTest) with the real
database, model and generator."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event, text
from streamlit.testing.v1 import AppTest

from semcache import CacheAdmin, SemanticCache
from semcache import eval as evaluation
from semcache.blobstores import LocalBlobStore
from semcache.matching import DEFAULT_THRESHOLD

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
SETTINGS_PAGE = str(ROOT / "pages" / "cache_settings.py")
TIMEOUT = 120


# ---------------------------------------------------------------------- the Wilson interval


@pytest.mark.parametrize("successes, trials, low, high", [
    (0, 30, 0.0, 0.1135),       # nothing seen in 30: the rate may still be 11%
    (3, 100, 0.0103, 0.0845),
    (50, 100, 0.4038, 0.5962),
    (30, 30, 0.8865, 1.0),
    (1, 1, 0.2065, 1.0),
    (0, 1000, 0.0, 0.0038),
])
def test_wilson_interval_on_known_values(successes, trials, low, high):
    got = evaluation.wilson(successes, trials)
    assert got == pytest.approx((low, high), abs=6e-5)


def test_wilson_interval_edges():
    assert evaluation.wilson(0, 0) is None
    with pytest.raises(ValueError):
        evaluation.wilson(5, 3)
    narrow, wide = evaluation.wilson(1, 100), evaluation.wilson(1, 10)
    assert wide[1] - wide[0] > narrow[1] - narrow[0]
    assert evaluation.wilson(3, 100, z=2.576)[1] > evaluation.wilson(3, 100)[1]  # 99% is wider


def scored(n_pos: int, n_neg: int) -> evaluation.Scored:
    """Positives at distances 0.1.., negatives at 0.5.. (a clean split)."""
    pos = np.linspace(0.10, 0.30, n_pos)
    neg = np.linspace(0.50, 0.90, n_neg)
    pairs = [evaluation.Pair(f"a{i}", f"b{i}", 1) for i in range(n_pos)] + \
            [evaluation.Pair(f"c{i}", f"d{i}", 0) for i in range(n_neg)]
    return evaluation.Scored(pairs=pairs, scores=np.concatenate([pos, neg]), exact=np.zeros(n_pos + n_neg, bool),
                             labels=np.array([1] * n_pos + [0] * n_neg, dtype=np.int8),
                             relations=["unknown"] * (n_pos + n_neg), skipped=0)


def test_a_recommendation_carries_its_sample_and_intervals():
    rec = evaluation.recommendation(scored(40, 100), 0.03)
    assert rec.threshold == pytest.approx(0.512, abs=1e-3)  # three of the 100 negatives allowed: just below the fourth
    assert (rec.positives, rec.negatives, rec.hits, rec.false_hits) == (40, 100, 40, 3)
    assert rec.false_hit_interval == pytest.approx(evaluation.wilson(3, 100))
    assert rec.hit_interval == pytest.approx(evaluation.wilson(40, 40))
    assert not rec.thin
    thin = evaluation.recommendation(scored(40, 29), 0.05)
    assert thin.thin and thin.negatives == 29 and thin.false_hit_interval[1] > 0.1
    assert not evaluation.recommendation(scored(40, 30), 0.05).thin
    assert evaluation.recommendation(scored(5, 0), 0.05) is None
    report = evaluation.report(scored(40, 10), model="m", default_threshold=0.35, max_false_hit_rate=0.1)
    assert report["recommended"]["thin"] is True and report["recommended"]["negatives"] == 10
    assert report["recommended"]["false_hit_interval"][1] == pytest.approx(evaluation.wilson(1, 10)[1], abs=1e-4)
    assert report["at_default"]["false_hit_interval"] == [0.0, pytest.approx(evaluation.wilson(0, 10)[1], abs=1e-4)]


# ---------------------------------------------------------------------- per space, in the lookup


class Renamed:
    """The same model under another name: another space whose distances are the same ones."""

    def __init__(self, inner, model: str) -> None:
        self.inner, self.model, self.dimensions = inner, model, inner.dimensions

    def embed(self, texts):
        return self.inner.embed(texts)


def test_each_space_has_its_own_threshold_and_lookups_use_it(db, local_embedder, emoji_generator, tmp_path):
    blobs = LocalBlobStore(tmp_path)
    one = SemanticCache(db, local_embedder, emoji_generator, blobs, default_threshold=0.35)
    other = SemanticCache(db, Renamed(local_embedder, "renamed-minilm"), emoji_generator, blobs,
                          default_threshold=0.35)
    one.get("dog", fetch_image=False)
    CacheAdmin(other).reembed(other.embedder)
    one.set_threshold(0.0, actor="owner")
    assert one.threshold == 0.0 and other.threshold == pytest.approx(0.35), "the other space keeps its own"
    assert one.get("puppy", fetch_image=False).kind == "generated"
    found = other.get("doggy", fetch_image=False)
    assert found.kind == "semantic" and found.threshold == pytest.approx(0.35)
    other.set_threshold(0.05, actor="owner")
    assert other.get("pup", fetch_image=False).threshold == pytest.approx(0.05)
    with db.connect() as conn:
        recorded = conn.execute(text("SELECT key, threshold FROM semcache_events ORDER BY id")).all()
        stored = dict(conn.execute(text("SELECT model, threshold FROM semcache_spaces")).all())
    assert recorded[-3:] == [("puppy", 0.0), ("doggy", pytest.approx(0.35)), ("pup", pytest.approx(0.05))]
    assert stored == {"all-MiniLM-L6-v2": 0.0, "renamed-minilm": 0.05}


def test_the_space_threshold_adds_no_round_trip_to_a_lookup(db, local_embedder, emoji_generator, tmp_path):
    cache = SemanticCache(db, local_embedder, emoji_generator, LocalBlobStore(tmp_path), default_threshold=0.35)
    cache.get("dog", fetch_image=False)
    cache.set_threshold(0.3)
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db, "before_cursor_execute", seen)
    try:
        assert cache.get("dog", fetch_image=False).kind == "exact"
    finally:
        event.remove(db, "before_cursor_execute", seen)
    lookups = [s for s in statements if "semcache_entries" in s and "stored_threshold" in s]
    assert len(lookups) == 1 and "semcache_spaces" in lookups[0], "read inside the lookup's statement"
    assert not [s for s in statements if "semcache_spaces" in s and s not in lookups]
    assert not [s for s in statements if "semcache_settings" in s and s not in lookups]


# ---------------------------------------------------------------------- re-embedding proposes one


def test_reembed_proposes_a_threshold_from_the_verdicts_and_applies_it_only_when_asked(
        db, local_embedder, emoji_generator, tmp_path):
    cache = SemanticCache(db, local_embedder, emoji_generator, LocalBlobStore(tmp_path), default_threshold=0.35)
    admin = CacheAdmin(cache)
    for entry in ("dog", "car", "house", "summer vacation"):
        cache.get(entry, fetch_image=False)
    for query, entry in [("puppy", "dog"), ("automobile", "car"), ("villa", "house")]:
        admin.mark_right(query, entry)
    for query, entry in [("cat", "dog"), ("bicycle", "car"), ("winter vacation", "summer vacation"),
                         ("spaceship", "house")]:
        admin.mark_wrong(query, entry)
    new = Renamed(local_embedder, "renamed-minilm")
    done = admin.reembed(new, max_false_hit_rate=0.0)
    assert done.embedded == 4
    proposal = done.proposal
    rec = proposal.recommendation
    assert proposal.source == "recorded verdicts" and proposal.pairs == 7 and not proposal.applied
    assert (rec.positives, rec.negatives, rec.false_hits) == (3, 4, 0)
    assert rec.thin and rec.false_hit_interval == pytest.approx(evaluation.wilson(0, 4))
    newer = SemanticCache(db, new, emoji_generator, LocalBlobStore(tmp_path), default_threshold=0.35)
    assert newer.threshold == pytest.approx(0.35), "proposed, not applied"
    assert not admin.apply_proposal(proposal, new).applied, "thin evidence needs its confirmation"
    assert newer.threshold == pytest.approx(0.35)
    assert admin.apply_proposal(proposal, new, accept_thin=True).applied
    assert newer.threshold == pytest.approx(rec.threshold) and cache.threshold == pytest.approx(0.35)
    text_ = "\n".join(proposal.lines())
    assert "renamed-minilm (384 dims)" in text_ and "3 positives and 4 negatives" in text_ and "thin" in text_


def test_the_reembed_command_proposes_from_a_pairs_file(db, local_embedder, emoji_generator, tmp_path, capsys):
    from semcache import cli

    cache = SemanticCache(db, local_embedder, emoji_generator, LocalBlobStore(tmp_path), default_threshold=0.35)
    cache.get("dog", fetch_image=False)
    new = Renamed(local_embedder, "renamed-minilm")
    pairs = ROOT / "benchmarks" / "data" / "topics-dev.tsv"
    argv = ["reembed", "--model", "renamed", "--pairs", str(pairs), "--max-false-hits", "0.03", "--json"]
    assert cli.main(argv, lambda: cache, lambda name: new) == 0
    out = json.loads(capsys.readouterr().out)
    rec = out["proposal"]["recommendation"]
    assert out["embedded"] == 1 and out["proposal"]["source"] == "pairs file" and not out["proposal"]["applied"]
    assert rec["negatives"] >= 30 and not rec["thin"] and rec["false_hit_rate"] <= 0.03
    assert rec["false_hit_interval"][0] <= rec["false_hit_rate"] <= rec["false_hit_interval"][1]
    fresh = SemanticCache(db, new, emoji_generator, LocalBlobStore(tmp_path), default_threshold=0.35)
    assert fresh.threshold == pytest.approx(0.35)
    assert cli.main([*argv, "--apply"], lambda: cache, lambda name: new) == 0
    applied = json.loads(capsys.readouterr().out)["proposal"]
    assert applied["applied"] and fresh.threshold == pytest.approx(applied["recommendation"]["threshold"])
    assert cache.threshold == pytest.approx(0.35), "the space in use keeps its own"
    bad = tmp_path / "bad.tsv"
    bad.write_text("dog\tpuppy\tmaybe\n")
    assert cli.main(["reembed", "--model", "x", "--pairs", str(bad)], lambda: cache, lambda name: new) == 2
    assert "line 1" in capsys.readouterr().err


# ---------------------------------------------------------------------- the Settings page


def page(path: str = SETTINGS_PAGE) -> AppTest:
    app = AppTest.from_file(path, default_timeout=TIMEOUT).run()
    assert not app.exception, app.exception
    return app


def texts(elements) -> str:
    return "\n".join(str(element.value) for element in elements)


def test_the_slider_shows_the_stored_value_every_time_the_page_opens(app_env, db, local_embedder, emoji_generator):
    import app_state

    app = page(APP)
    app.switch_page("pages/cache_settings.py").run()
    assert not app.exception, app.exception
    assert app.slider(key="threshold").value == pytest.approx(DEFAULT_THRESHOLD)
    app.slider(key="threshold").set_value(0.5).run()
    assert app_state.cache().threshold == pytest.approx(0.5)

    app.switch_page("pages/search.py").run()  # away and back: the slider is not left at its default
    app.switch_page("pages/cache_settings.py").run()
    assert app.slider(key="threshold").value == pytest.approx(0.5)

    app_state.cache().set_threshold(0.333, actor="cli")  # set elsewhere between two runs
    app.run()
    assert app.slider(key="threshold").value == pytest.approx(0.333)
    app.text_input(key="preview_topic").input("puppy").run()
    assert "within 0.333" in texts(app.info) + texts(app.success), "the preview uses the stored value"


def test_the_page_names_the_space_whose_threshold_it_shows(app_env, db):
    app = page()
    shown = texts(app.caption)
    assert "all-MiniLM-L6-v2" in shown and "384 dimensions" in shown


def threshold_marks(app: AppTest) -> tuple[list[str], list[tuple[str, float]]]:
    """The evidence chart's threshold lines (their colours) and labels (colour, row)."""
    spec = json.loads(app.get("vega_lite_chart")[0].proto.spec)
    rules, labels = [], []
    for layer in spec.get("layer", []):
        mark = layer.get("mark", {})
        if isinstance(mark, dict) and mark.get("type") == "rule":
            rules.append(mark["color"])
        elif isinstance(mark, dict) and mark.get("type") == "text":
            labels.append((mark["color"], layer["encoding"]["y"]["value"]))
    return rules, labels


def verdicts(app_env, db, local_embedder, emoji_generator, negatives: int) -> None:
    cache = SemanticCache(db, local_embedder, emoji_generator, LocalBlobStore(app_env / "blobs"))
    admin = CacheAdmin(cache)
    words = ["dog", "car", "house", "tree", "river", "piano", "bread", "cloud", "train", "shoe"]
    admin.mark_right("puppy", "dog")
    admin.mark_right("automobile", "car")
    for i in range(negatives):
        admin.mark_wrong(f"{words[i % 10]} {i}", words[(i + 3) % 10])


def test_thin_evidence_says_so_and_use_this_needs_a_confirmation(app_env, db, local_embedder, emoji_generator):
    import app_state

    verdicts(app_env, db, local_embedder, emoji_generator, negatives=5)
    app = page()
    warning = texts(app.warning)
    assert "thin" in warning and "5 pairs" in warning and "30" in warning
    assert "95%" in texts(app.caption)
    use = next(b for b in app.button if b.key == "use_recommended")
    assert use.disabled, "a browser user cannot click it before confirming"
    assert app_state.cache().threshold == pytest.approx(DEFAULT_THRESHOLD)
    rules, labels = threshold_marks(app)
    assert len(rules) == 2 and len(set(rules)) == 2, "now and recommended each have a colour"
    assert not set(rules) & {"#2b7bba", "#d1495b"}, "neither is a curve's colour"
    assert len(labels) == 2 and len({y for _, y in labels}) == 2, "their labels are on rows of their own"
    assert {colour for colour, _ in labels} == set(rules), "each label in its line's colour"
    app.checkbox(key="accept_thin").check().run()
    use = next(b for b in app.button if b.key == "use_recommended")
    assert not use.disabled
    value = float(use.label.split()[-1])
    use.click().run()
    assert not app.exception
    assert app_state.cache().threshold == pytest.approx(value)
    assert app.slider(key="threshold").value == pytest.approx(value)


def test_enough_evidence_applies_with_one_click(app_env, db, local_embedder, emoji_generator):
    import app_state

    verdicts(app_env, db, local_embedder, emoji_generator, negatives=30)
    app = page()
    assert "thin" not in texts(app.warning)
    assert not [c for c in app.checkbox if c.key == "accept_thin"]
    use = next(b for b in app.button if b.key == "use_recommended")
    value = float(use.label.split()[-1])
    use.click().run()
    assert app_state.cache().threshold == pytest.approx(value)
    assert math.isfinite(value)
