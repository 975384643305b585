"""The decisions that need no service: the matcher's verdicts, which cached candidate the cache
serves, the query parser, and the SQL the mail search builds from a query."""

from __future__ import annotations

import math
from datetime import date, datetime, timezone
from types import SimpleNamespace

import pytest

from mail.query import MAX_FTS_CHARS, _fts, _fts_term, parse_query
from mail.sql import _FOLDER, _excluded, _filters, _like, _plain
from semcache.cache import SemanticCache
from semcache.matching import EXACT, Match, Matcher, Relation, Weights


class Lexicon:
    """A WordNet that knows only the relations it is given; every other pair is UNKNOWN."""

    available = True
    path = "in memory"

    def __init__(self, relations: dict[tuple[str, str], Relation], forms: dict[str, str] | None = None) -> None:
        self.relations = relations
        self.forms = forms or {}
        self.asked: list[tuple[str, str]] = []

    def relation(self, a: str, b: str) -> Relation:
        self.asked.append((a, b))
        return self.relations.get((a, b), Relation.UNKNOWN)

    def base_forms(self, word: str) -> dict[str, list[str]]:
        return {"n": [self.forms[word]]} if word in self.forms else {}


# ---------------------------------------------------------------------------- the matcher

@pytest.mark.parametrize("relation, distance, score", [
    (Relation.SAME, 0.4, 0.0),
    (Relation.SYNONYM, 0.4, 0.2),
    (Relation.KIND, 0.5, 0.35),
    (Relation.RELATED, 0.5, 0.35),
    (Relation.SIBLING, 0.3, 0.3),
    (Relation.DISTINCT, 0.3, 0.35),
    (Relation.UNKNOWN, 0.3, 0.3),
    (Relation.ANTONYM, 0.01, math.inf),
])
def test_each_relation_scales_the_distance(relation, distance, score):
    assert Weights().score(relation, distance) == pytest.approx(score)


def test_the_stretch_is_the_smallest_factor_inverted():
    assert Weights().stretch == pytest.approx(1 / 0.3)  # the same words in another order
    assert Weights(synonym=0.25).stretch == pytest.approx(4.0)
    assert Weights(synonym=1.0, kind=1.0, direct_kind=1.0, related=1.0, aligned=1.0).stretch == 1.0
    assert Weights(direct_kind=0.25).stretch == pytest.approx(4.0)
    assert Weights(partial=0.2).stretch == pytest.approx(5.0)
    assert Weights(synonym=2.0, kind=2.0, direct_kind=2.0, related=2.0, sibling=2.0, aligned=2.0,
                   partial=2.0).stretch == 1.0  # never below 1


@pytest.mark.parametrize("match, threshold, served", [
    (Match(EXACT, 0.0, 0.0), 0.0, True),  # the exact path serves even at 0
    (Match("unknown", 0.0, 0.0), 0.0, False),
    (Match("unknown", 0.3, 0.3), 0.3, True),  # at the threshold is within it
    (Match("unknown", 0.3, 0.30001), 0.3, False),
    (Match("antonym", 0.01, math.inf), 2.0, False),
])
def test_serves_holds_the_score_to_the_threshold(match, threshold, served):
    assert match.serves(threshold) is served


def test_without_a_lexicon_the_distance_alone_decides():
    plain = Matcher.plain()
    assert plain.stretch == 1.0 and not plain.uses_lexicon and not plain.uses_lemmas
    assert plain.match("dog", "dog", 0.9) == Match(EXACT, 0.0, 0.0)
    assert plain.match("puppy", "dog", 0.25) == Match("unknown", 0.25, 0.25)
    assert plain.match("puppy", "dog", None) == Match("unknown", math.inf, math.inf)
    assert plain.canonical("invoices") == "invoices"


def test_the_lexicon_scales_by_its_relation_and_remembers_it():
    lexicon = Lexicon({("puppy", "dog"): Relation.KIND, ("hot", "cold"): Relation.ANTONYM})
    matcher = Matcher(wordnet=lexicon, lemmas=False)
    assert matcher.stretch == pytest.approx(1 / 0.3)
    assert matcher.match("puppy", "dog", 0.5) == Match("kind", 0.5, pytest.approx(0.35))
    assert matcher.match("puppy", "dog", 0.4).score == pytest.approx(0.28)
    assert lexicon.asked == [("puppy", "dog")]  # the second verdict read the remembered relation
    assert matcher.match("hot", "cold", 0.05).serves(2.0) is False
    assert matcher.match("trip to paris", "holiday", 0.3) == Match("unknown", 0.3, 0.3)


def test_the_remembered_relations_are_bounded():
    lexicon = Lexicon({})
    matcher = Matcher(wordnet=lexicon, lemmas=False, cache_size=2)
    for entry in ("a", "b", "c", "a"):
        matcher.relation("q", entry)
    assert lexicon.asked == [("q", "a"), ("q", "b"), ("q", "c"), ("q", "a")]  # "a" was dropped for "c"


def test_dictionary_forms_make_another_form_an_exact_match():
    matcher = Matcher(wordnet=Lexicon({}, forms={"invoices": "invoice", "trips": "trip"}), lexicon=False)
    assert matcher.canonical("trips to paris") == "trip to paris"
    assert matcher.match("invoices", "invoice", 0.2) == Match(EXACT, 0.0, 0.0)
    assert matcher.match("invoices", "receipt", 0.2) == Match("unknown", 0.2, 0.2)


def test_a_missing_wordnet_is_said_and_ignored():
    missing = SimpleNamespace(available=False, path="/nowhere/wordnet")
    matcher = Matcher(wordnet=missing)
    assert matcher.describe() == {"lemmas": False, "lexicon": False, "missing_wordnet": "/nowhere/wordnet",
                                  "weights": None}
    assert matcher.match("puppy", "dog", 0.3) == Match("unknown", 0.3, 0.3)


# ---------------------------------------------------------------------------- the served candidate

def candidate(entry_id: int, key: str, distance: float, *, banned: bool = False):
    return SimpleNamespace(entry_id=entry_id, key=key, distance=distance, banned=banned)


def choose(matcher: Matcher, rows: list, key: str, threshold: float):
    """The cache's choice among ``rows`` (nearest first): only its matcher takes part in it (the
    entries' own thresholds are off)."""
    return SemanticCache._choose(SimpleNamespace(matcher=matcher, entry_thresholds=False,
                                                 default_entry_error_bound=0.05), rows, key, threshold)


def test_the_nearest_candidate_within_the_threshold_is_served():
    best, scored = choose(Matcher.plain(), [candidate(1, "dog", 0.2), candidate(2, "hound", 0.25)], "puppy", 0.3)
    assert best[0].entry_id == 1 and best[1].score == pytest.approx(0.2)
    assert list(scored) == [1]  # the second could not beat the first: never scored


def test_nothing_further_than_the_threshold_is_served():
    assert choose(Matcher.plain(), [candidate(1, "dog", 0.31)], "puppy", 0.3) == (None, {})


def test_a_threshold_of_zero_serves_no_candidate():
    assert choose(Matcher.plain(), [candidate(1, "dog", 0.0)], "puppy", 0.0) == (None, {})


def test_banned_candidates_and_the_topic_itself_are_passed_over():
    rows = [candidate(1, "dog", 0.1, banned=True), candidate(2, "puppy", 0.12), candidate(3, "hound", 0.2)]
    best, scored = choose(Matcher.plain(), rows, "puppy", 0.3)
    assert best[0].entry_id == 3 and list(scored) == [3]


def test_a_closer_relation_beats_a_nearer_candidate():
    lexicon = Lexicon({("puppy", "cat"): Relation.DISTINCT, ("puppy", "dog"): Relation.KIND})
    rows = [candidate(1, "cat", 0.2), candidate(2, "dog", 0.34)]
    best, scored = choose(Matcher(wordnet=lexicon, lemmas=False), rows, "puppy", 0.3)
    assert best[0].key == "dog" and best[1].score == pytest.approx(0.238)
    assert scored[1].score == pytest.approx(0.25) and scored[1].relation == "distinct"


def test_the_lexicon_reaches_past_the_threshold_only_as_far_as_its_stretch():
    lexicon = Lexicon({("puppy", "dog"): Relation.SYNONYM, ("puppy", "hound"): Relation.SYNONYM})
    matcher = Matcher(wordnet=lexicon, lemmas=False, weights=Weights(aligned=0.5, direct_kind=0.5))  # a stretch of 2
    rows = [candidate(1, "dog", 0.59), candidate(2, "hound", 0.61)]
    best, scored = choose(matcher, rows, "puppy", 0.3)
    assert best[0].key == "dog" and best[1].score == pytest.approx(0.295)
    assert choose(matcher, rows[1:], "puppy", 0.3) == (None, {})  # 0.61 > 0.3 × 2: not even looked up


def test_two_single_words_reach_only_as_far_as_the_word_weights():
    """Only phrases (or a misspelling) can be aligned, so two words never get the phrase stretch:
    a far single word is passed over without asking WordNet, a phrase as far is still judged."""
    lexicon = Lexicon({("trip to paris", "paris trip"): Relation.ALIGNED})
    matcher = Matcher(wordnet=lexicon, lemmas=False)
    assert matcher.stretch == pytest.approx(1 / 0.3)
    assert matcher.stretch_for("puppy", "hound") == pytest.approx(1 / 0.47)
    assert matcher.stretch_for("vacaton", "vacation") == pytest.approx(1 / 0.3)  # a misspelling may align
    assert matcher.stretch_for("paris trip", "trip to paris") == pytest.approx(1 / 0.3)
    assert matcher.stretch_for("paris trip", "trip to paris in may") == pytest.approx(1 / 0.47), "a word more"
    assert Matcher(wordnet=lexicon, lemmas=False, phrases=False).stretch == pytest.approx(1 / 0.47)
    rows = [candidate(1, "hound", 0.8), candidate(2, "trip to paris", 0.9)]
    best, scored = choose(matcher, rows, "paris trip", 0.3)
    assert best[0].key == "trip to paris" and best[1].score == pytest.approx(0.27)
    assert list(scored) == [2] and lexicon.asked == [("paris trip", "trip to paris")], "hound: passed over"
    best, scored = choose(matcher, rows[:1], "puppy", 0.3)
    assert best is None and scored == {} and ("puppy", "hound") not in lexicon.asked


def test_an_opposite_is_never_served_however_near():
    lexicon = Lexicon({("hot", "cold"): Relation.ANTONYM})
    best, scored = choose(Matcher(wordnet=lexicon, lemmas=False), [candidate(1, "cold", 0.01)], "hot", 2.0)
    assert best is None and scored[1].score == math.inf


# ---------------------------------------------------------------------------- the query parser

def test_the_parser_separates_topic_operators_and_text_search():
    query = parse_query('invoices "roof repair" -spam from:alice to:<bob@example.com> subject:March '
                        'after:2024-01 before:2025 has:attachment', today=date(2025, 6, 1))
    assert query.topic == "invoices roof repair"
    assert (query.senders, query.recipients, query.subjects) == (["alice"], ["bob@example.com"], ["March"])
    assert (query.after, query.before, query.has_attachment) == (date(2024, 1, 1), date(2025, 1, 1), True)
    assert query.phrases == ["roof repair"] and query.excluded == ["spam"]


def test_relative_ages_count_back_from_today():
    query = parse_query("newer_than:2m older_than:7d", today=date(2025, 3, 31))
    assert (query.after, query.before) == (date(2025, 1, 31), date(2025, 3, 24))


@pytest.mark.parametrize("kind, text, term", [
    ("word", "dog", "dog"),
    ("word", "-dog", "dog"),
    ("word", "OR", ""),
    ("word", "!!", ""),
    ("phrase", 'roof "repair', '"roof  repair"'),
    ("-word", "spam", "-spam"),
    ("-phrase", "big sale", '-"big sale"'),
])
def test_each_text_term_in_websearch_syntax(kind, text, term):
    assert _fts_term(kind, text) == term


def test_the_text_search_is_bounded_by_whole_terms():
    long = "x" * (MAX_FTS_CHARS - 3)  # one character too many after "dog "
    assert _fts([("word", "dog"), ("word", long), ("word", "cat")]) == "dog cat"
    assert len(_fts([("word", "w")] * MAX_FTS_CHARS)) <= MAX_FTS_CHARS


# ---------------------------------------------------------------------------- the SQL of a search

def test_no_operator_is_no_condition():
    params: dict = {}
    assert _filters(parse_query("dog"), params) == "" and params == {}


def test_every_operator_is_a_condition_with_its_value_bound():
    params: dict = {}
    sql = _filters(parse_query('from:alice from:bob to:carol subject:50%_off after:2024-01-02 before:2024-02 '
                               'has:attachment "roof repair" -spam'), params)
    assert sql == (" AND (m.from_addr ILIKE :from_0 OR m.from_name ILIKE :from_0)"
                   " AND (m.from_addr ILIKE :from_1 OR m.from_name ILIKE :from_1)"
                   " AND (array_to_string(m.to_addrs, ' ') ILIKE :to_0 OR array_to_string(m.cc_addrs, ' ') ILIKE :to_0)"
                   " AND m.subject ILIKE :subject_0"
                   " AND m.sent_at >= :after AND m.sent_at < :before AND m.has_attachments"
                   " AND m.tsv @@ websearch_to_tsquery('english', :required)")
    assert params == {"from_0": "%alice%", "from_1": "%bob%", "to_0": "%carol%", "subject_0": "%50\\%\\_off%",
                      "after": datetime(2024, 1, 2, tzinfo=timezone.utc),
                      "before": datetime(2024, 2, 1, tzinfo=timezone.utc),
                      "required": '"roof repair" -spam'}


def test_no_value_reaches_the_sql_text():
    hostile = "x' OR 1=1; DROP TABLE messages; --"
    params: dict = {}
    sql = _filters(parse_query(f'from:"{hostile}" subject:"{hostile}" "{hostile}"'), params)
    assert "DROP" not in sql and "1=1" not in sql
    assert hostile in params["from_0"] and "DROP" in params["required"]


@pytest.mark.parametrize("value, pattern", [("50%", "50\\%"), ("a_b", "a\\_b"), ("back\\slash", "back\\\\slash")])
def test_like_patterns_match_their_value_literally(value, pattern):
    assert _like(value) == pattern


def test_required_terms_carry_no_websearch_syntax():
    assert _plain('"quoted" or -minus and more') == "quoted minus more"
    assert _excluded("one") == "-one" and _excluded("two words") == '-"two words"'


def test_the_new_operators_are_conditions_with_their_values_bound():
    params: dict = {}
    sql = _filters(parse_query("cc:carol filename:pdf in:INBOX label:Work larger:10k smaller:2M"), params)
    assert sql == (" AND array_to_string(m.cc_addrs, ' ') ILIKE :cc_0"
                   " AND EXISTS (SELECT 1 FROM jsonb_array_elements(m.attachments) AS a"
                   " WHERE a ->> 'filename' ILIKE :filename_0)"
                   f" AND (lower(m.folder) = :folder_0 OR {_FOLDER} = :folder_0)"
                   " AND EXISTS (SELECT 1 FROM mail_labels l WHERE l.owner = m.owner AND l.message_pk = m.id"
                   " AND l.label = :label_0)"
                   " AND m.size_bytes > :larger AND m.size_bytes < :smaller")
    assert params == {"cc_0": "%carol%", "filename_0": "%pdf%", "folder_0": "inbox", "label_0": "work",
                      "larger": 10240, "smaller": 2 * 1024**2}
