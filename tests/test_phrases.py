"""Multi-word topics word by word (`semcache.phrases`), synonyms through the senses people mean
first, and kinds one step apart (`semcache.lexicon`), as the cache's `Matcher` decides with them.
Real parts: Debian's WordNet files; the local model where a distance is needed."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from semcache.eval import read_pairs, score_pairs
from semcache.lexicon import Relation, WordNet
from semcache.matching import DEFAULT_THRESHOLD, Matcher, Weights
from semcache.normalize import topic_key
from semcache.phrases import align, content_words, judge, misspelt

from benchmarks.threshold import TOPICS, wilson

DEFAULT = DEFAULT_THRESHOLD
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def matcher(wordnet) -> Matcher:
    return Matcher(wordnet=wordnet)


def distance(embedder, a: str, b: str) -> float:
    va, vb = np.asarray(embedder.embed([a, b]), dtype=np.float64)
    return 1.0 - float(va @ vb)


# ---------------------------------------------------------------------- sense sanity

@pytest.mark.parametrize("a, b, relation", [
    ("mother", "father", Relation.ANTONYM),       # nouns first; as verbs both "beget"
    ("boyfriend", "girlfriend", Relation.ANTONYM),  # a man and a woman: opposite kinds
    ("car", "automobile", Relation.SYNONYM),
    ("movie", "film", Relation.SYNONYM),
    ("happy", "glad", Relation.SYNONYM),
    ("arrive", "come", Relation.SYNONYM),
    ("steal", "buy", Relation.KIND),              # no longer synonyms through "a bargain"
    ("villa", "house", Relation.DIRECT_KIND),
    ("puppy", "dog", Relation.DIRECT_KIND),
    ("dog", "animal", Relation.KIND),
    ("hot", "cold", Relation.ANTONYM),
])
def test_synonyms_only_through_the_senses_people_mean(wordnet, a, b, relation):
    assert wordnet.relation(a, b) is relation


def test_the_old_reading_is_one_switch_away(wordnet):
    every_sense = WordNet(wordnet.path, main_senses=False)
    assert every_sense.relation("mother", "father") is Relation.SYNONYM
    assert every_sense.relation("boyfriend", "girlfriend") is Relation.SIBLING
    assert every_sense.relation("villa", "house") is Relation.KIND


def test_main_parts_of_speech_come_from_the_sense_counts(wordnet):
    assert wordnet.main_pos("mother") == {"n"}
    assert wordnet.main_pos("arrive") == {"v"}
    assert wordnet.main_pos("happy") == {"a"}
    assert wordnet.used("house") and not wordnet.used("hostel") and not wordnet.used("qwzx")


def test_members_of_one_kind(wordnet):
    assert wordnet.one_kind("summer", "winter")       # seasons
    assert wordnet.one_kind("paris", "london")        # two capitals
    assert wordnet.one_kind("breakfast", "dinner")    # meals
    assert wordnet.one_kind("tennis", "golf")         # sports
    assert wordnet.one_kind("bus", "train")           # vehicles
    assert not wordnet.one_kind("party", "celebration")
    assert not wordnet.one_kind("puppy", "dog")       # a kind of the other, not a sibling
    assert not wordnet.one_kind("happy", "sad")       # not nouns


# ---------------------------------------------------------------------- alignment

def test_content_words_and_alignment(wordnet):
    assert content_words("trip to paris") == ["trip", "paris"]
    assert content_words("daughter's graduation") == ["daughter", "graduation"]
    found = align(["paris", "trip"], ["trip", "paris"], wordnet)
    assert set(found.aligned) == {("paris", "paris"), ("trip", "trip")} and not found.only_a and not found.only_b
    found = align(["car", "insurance"], ["auto", "insurance"], wordnet)
    assert ("car", "auto") in found.aligned  # synonyms align
    found = align(["birthday", "party"], ["birthday", "celebration"], wordnet)
    assert found.only_a == ("party",) and found.only_b == ("celebration",)


def test_misspellings(wordnet):
    assert misspelt(wordnet, "vacaton", "vacation")
    assert misspelt(wordnet, "pary", "party")
    assert misspelt(wordnet, "sumer", "summer")      # a word WordNet knows, nobody is counted using
    assert not misspelt(wordnet, "hostel", "hotel")  # two words: one a kind of the other
    assert not misspelt(wordnet, "cat", "car")       # too short to tell


@pytest.mark.parametrize("query, entry, relation", [
    ("winter vacation", "summer vacation", Relation.CONTRAST),
    ("trip to london", "trip to paris", Relation.CONTRAST),
    ("dinner meeting", "breakfast meeting", Relation.CONTRAST),
    ("cold weather", "hot weather", Relation.CONTRAST),     # WordNet's own phrases, two siblings
    ("dog food", "cat food", Relation.CONTRAST),
    ("blue dress", "red dress", Relation.CONTRAST),         # one cluster of adjectives
    ("son's birthday", "daughter's birthday", Relation.CONTRAST),
    ("birthday celebration", "birthday party", Relation.PARTIAL),  # another head: the distance, counted further
    ("flight booking", "hotel booking", Relation.PARTIAL),
    ("paris airport", "paris hotel", Relation.PARTIAL),
    ("trip to paris", "paris trip", Relation.ALIGNED),
    ("auto insurance", "car insurance", Relation.ALIGNED),
    ("sumer vacation", "summer vacation", Relation.ALIGNED),
    ("vacaton", "vacation", Relation.ALIGNED),
    ("invoice", "invoice reminder", Relation.UNKNOWN),      # a word more on one side
])
def test_phrases_judged_word_by_word(matcher, query, entry, relation):
    assert matcher.relation(query, entry) is relation


def test_judge_says_nothing_without_words_in_common(wordnet):
    assert judge("tax return", "team lunch", wordnet) is None
    assert judge("dog", "cat", wordnet) is None


def test_phrases_is_a_switch(wordnet):
    off = Matcher(wordnet=wordnet, phrases=False)
    assert off.relation("winter vacation", "summer vacation") is Relation.UNKNOWN
    assert off.match("winter vacation", "summer vacation", 0.26).serves(DEFAULT)
    on = Matcher(wordnet=wordnet)
    assert on.match("winter vacation", "summer vacation", 0.26).score == math.inf
    assert Weights().score(Relation.CONTRAST, 0.01) == math.inf
    assert Weights().score(Relation.ALIGNED, 0.4) == pytest.approx(0.12)
    assert Weights().score(Relation.DIRECT_KIND, 0.6) == pytest.approx(0.282)
    assert Weights().score(Relation.PARTIAL, 0.3) == pytest.approx(0.48)
    assert Weights().score(Relation.UNKNOWN, 0.3) == pytest.approx(0.3)


def test_differing_in_part_is_a_weight(matcher):
    """Phrases that share words and differ in others: switched off by a weight of 1."""
    assert matcher.match("flight booking", "hotel booking", 0.3).score == pytest.approx(0.48)
    plain = Matcher(wordnet=matcher.wordnet, weights=Weights(partial=1.0))
    assert plain.match("flight booking", "hotel booking", 0.3).score == pytest.approx(0.3)
    assert Weights(partial=0.25).stretch == pytest.approx(4.0), "the smallest weight sets the reach"


# ---------------------------------------------------------------------- at the default, with the real model

@pytest.mark.parametrize("cached, lookup, served", [
    ("summer vacation", "winter vacation", False),
    ("birthday party", "birthday celebration", True),
    ("mother", "father", False),
    ("boyfriend", "girlfriend", False),
    ("house", "villa", True),
    ("house", "spaceship", False),
    ("car", "automobile", True),
    ("hotel booking", "flight booking", False),
    ("car keys", "house keys", False),
    ("hotel reservation", "hotel booking", True),
    ("trip to paris", "paris vacation", True),
])
def test_the_examples_of_real_topics_at_the_default(matcher, local_embedder, cached, lookup, served):
    match = matcher.match(topic_key(lookup, 200), topic_key(cached, 200), distance(local_embedder, cached, lookup))
    assert match.serves(DEFAULT) is served, match


def test_the_default_decision_on_the_dev_set(matcher, local_embedder):
    """The shipped default was chosen on the topic pairs for at most 3% wrong pictures with room to
    spare; at the default before (0.35, without counting partial differences) 12% were wrong."""
    scored = score_pairs(read_pairs(TOPICS), local_embedder, matcher)
    rates = scored.rates(DEFAULT)
    assert rates["hit_rate"] >= 0.75 and rates["false_hit_rate"] <= 0.025, rates


def test_the_dev_set_is_what_its_readme_says():
    pairs = read_pairs(TOPICS)
    assert len(pairs) >= 300
    share = sum(p.label for p in pairs) / len(pairs)
    assert 0.35 <= share <= 0.5
    kinds = {line.split("\t")[3] for line in TOPICS.read_text().splitlines() if line and not line.startswith("#")}
    assert {"synonym", "inflection", "typo", "order", "headmod", "contrast", "cohyponym", "rare sense",
            "unrelated"} <= kinds


def test_a_phrase_decision_costs_little(wordnet):
    """What a lookup adds for its candidates: median per call over the dev set's pairs, first
    seen (the relation memo cold, WordNet's synsets read on demand) and again (memo warm)."""
    matcher = Matcher(wordnet=wordnet)
    keys = [(topic_key(p.lookup, 200), topic_key(p.cached, 200)) for p in read_pairs(TOPICS)]
    cold, warm = [], []
    for samples in (cold, warm):
        for query, entry in keys:
            started = time.perf_counter()
            matcher.match(query, entry, 0.3)
            samples.append((time.perf_counter() - started) * 1000)
    print(f"match median: cold {np.median(cold):.3f} ms, warm {np.median(warm):.4f} ms")
    judged = {(q, e) for q, e in keys if matcher.canonical(q) != matcher.canonical(e)}
    assert set(matcher._relations) == judged  # the second round read the memo


def test_the_wilson_interval_of_a_false_hit_rate():
    assert wilson(0, 0) is None
    assert wilson(0, 174) == [0.0, 0.0216]      # none seen: still up to 2% at 95%
    assert wilson(3, 174) == [0.0059, 0.0495]
    low, high = wilson(50, 100)
    assert low < 0.5 < high and high - low == pytest.approx(0.19, abs=0.01)


def test_the_library_command_line_serves_house_for_villa_offline(db, pg_url, tmp_path, emoji_cache_dir, wordnet):
    """`python -m semcache` decides with WordNet's second look: villa after house is served, a
    spaceship is not."""
    flags = ["--database-url", pg_url, "--blob-dir", str(tmp_path / "blobs"), "--emoji-index", str(emoji_cache_dir)]

    def get(topic: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "semcache", *flags, "get", topic, "--json"], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    assert get("house")["kind"] == "generated"
    villa = get("villa")
    assert (villa["kind"], villa["served_key"], villa["threshold"]) == ("semantic", "house", DEFAULT)
    assert get("spaceship")["kind"] == "generated"
