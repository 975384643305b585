"""The search box parser: operators, quoting, exclusions, dates, and input meant to break it."""

from __future__ import annotations

import re
from datetime import date

import pytest

from mail.query import MAX_FTS_CHARS, MAX_QUERY_CHARS, MAX_TOPIC_CHARS, Query, parse_query
from mail.types import MailError, QueryError

TODAY = date(2025, 3, 31)


def q(text: str) -> Query:
    return parse_query(text, today=TODAY)


# --- free text ---------------------------------------------------------------------------------------

def test_words_become_topic_and_fts_query():
    query = q("  trip   to Paris ")
    assert query.words == ["trip", "to", "Paris"]
    assert query.topic == "trip to Paris"
    assert query.fts_query == "trip to Paris"
    assert not query.is_empty


def test_quoted_phrases_keep_order_in_topic_without_quotes():
    query = q('invoice "tax   return" 2024 "bank statement"')
    assert query.phrases == ["tax return", "bank statement"]
    assert query.words == ["invoice", "2024"]
    assert query.topic == "invoice tax return 2024 bank statement"
    assert query.fts_query == 'invoice "tax return" 2024 "bank statement"'


def test_exclusions_of_words_and_phrases():
    query = q('dog -cat -"vet bill" walk')
    assert query.excluded == ["cat", "vet bill"]
    assert query.topic == "dog walk"
    assert query.fts_query == 'dog -cat -"vet bill" walk'


def test_query_of_only_exclusions_has_no_topic_but_is_not_empty():
    query = q("-newsletter")
    assert query.topic == ""
    assert query.fts_query == "-newsletter"
    assert not query.is_empty


def test_lone_and_doubled_dashes():
    query = q("- dog -- --cat")
    assert query.words == ["dog"]
    assert query.excluded == ["cat"]
    assert query.fts_query == "dog -cat"


def test_smart_quotes_are_quotes():
    assert q("\u201cpizza night\u201d").phrases == ["pizza night"]


def test_quote_inside_a_word_starts_a_phrase():
    query = q('abc"def ghi"')
    assert query.words == ["abc"]
    assert query.phrases == ["def ghi"]


def test_unbalanced_quote_is_dropped_and_the_rest_read_as_words():
    query = q('budget "q3 plan')
    assert query.phrases == []
    assert query.words == ["budget", "q3", "plan"]
    assert query.fts_query == "budget q3 plan"


def test_unbalanced_excluded_phrase_is_not_an_exclusion():
    query = q('dog -"cat food')
    assert query.excluded == []
    assert query.words == ["dog", "cat", "food"]


def test_empty_quotes_are_nothing():
    query = q('"" " " dog')
    assert query.phrases == []
    assert query.topic == "dog"


def test_or_is_kept_in_topic_but_not_sent_as_an_operator():
    # websearch_to_tsquery reads "or" as OR; here it is a (stop) word, so it is left out
    query = q("dog OR cat or bird")
    assert query.topic == "dog OR cat or bird"
    assert query.fts_query == "dog cat bird"
    assert q('"black or white"').fts_query == '"black or white"'


# --- operators ---------------------------------------------------------------------------------------

def test_from_to_subject():
    query = q("from:alice to:bob@example.com subject:budget")
    assert query.senders == ["alice"]
    assert query.recipients == ["bob@example.com"]
    assert query.subjects == ["budget"]
    assert query.topic == "" and query.fts_query == ""
    assert not query.is_empty


def test_operators_repeat_with_and_semantics():
    query = q("from:alice from:example.org to:bob to:carol subject:q3 subject:plan")
    assert query.senders == ["alice", "example.org"]
    assert query.recipients == ["bob", "carol"]
    assert query.subjects == ["q3", "plan"]


def test_quoted_operator_values():
    query = q('subject:"launch plan" from:"Alice Smith" to:\u201cBob  Jones\u201d')
    assert query.subjects == ["launch plan"]
    assert query.senders == ["Alice Smith"]
    assert query.recipients == ["Bob Jones"]
    assert query.topic == ""


def test_value_after_a_space_following_the_colon():
    query = q('from: alice subject: "two words" dog')
    assert query.senders == ["alice"]
    assert query.subjects == ["two words"]
    assert query.words == ["dog"]


def test_operator_with_nothing_after_it_does_not_swallow_the_next_operator():
    query = q("from: to:bob")
    assert query.senders == []
    assert query.recipients == ["bob"]
    assert q("dogs subject:").subjects == []


def test_angle_brackets_around_an_address_are_dropped():
    assert q("from:<alice@example.com>").senders == ["alice@example.com"]


def test_operators_are_case_insensitive_values_keep_case():
    query = q("FROM:Alice To:BOB Subject:Budget HAS:Attachment AFTER:2024-01-31")
    assert query.senders == ["Alice"]
    assert query.recipients == ["BOB"]
    assert query.subjects == ["Budget"]
    assert query.has_attachment
    assert query.after == date(2024, 1, 31)


def test_has_attachment():
    assert q("has:attachment").has_attachment
    assert q("has:attachments").has_attachment
    assert not q("attachment").has_attachment
    with pytest.raises(QueryError, match="has:attachment"):
        q("has:star")


def test_unknown_operators_and_colons_are_plain_words():
    query = q("re: meeting at 10:30 foo:bar http://example.com tag:work")
    assert query.words == ["re:", "meeting", "at", "10:30", "foo:bar", "http://example.com", "tag:work"]
    assert query.senders == [] and query.after is None
    assert query.topic == "re: meeting at 10:30 foo:bar http://example.com tag:work"
    assert query.unknown == ["foo:bar", "tag:work"]  # a link and a bare "re:" are no operator typed wrong


# --- cc, attachment names, folders, labels, sizes ----------------------------------------------------

def test_cc_filename_in_and_label():
    query = q('report cc:carol filename:pdf in:INBOX label:"To  Do" label:Work')
    assert (query.cc, query.filenames, query.folders) == (["carol"], ["pdf"], ["INBOX"])
    assert query.labels == ["to-do", "work"]
    assert query.recipients == [] and query.topic == "report"
    assert not q("label:x").is_empty and not q("in:sent").is_empty and not q("cc:x").is_empty


def test_a_label_is_matched_the_way_it_is_stored():
    from mail.query import MAX_LABEL_CHARS, normal_label

    assert normal_label("  Receipts 2024 ") == "receipts-2024"
    assert normal_label("\x00\u202e") == ""
    assert len(normal_label("x" * 500)) == MAX_LABEL_CHARS
    assert q('label:""').labels == [] and q("label:").labels == []


@pytest.mark.parametrize("value, size", [
    ("500000", 500_000), ("10k", 10 * 1024), ("10K", 10 * 1024), ("2M", 2 * 1024**2), ("2mb", 2 * 1024**2),
    ("1.5M", 1536 * 1024), ("1g", 1024**3), ("3KiB", 3 * 1024), ("999999999999g", 2**40),
])
def test_sizes(value, size):
    assert q(f"larger:{value}").larger == size
    assert q(f"smaller:{value}").smaller == size


def test_repeated_sizes_narrow_the_range_and_an_empty_range_is_refused():
    query = q("larger:1k larger:5k smaller:1M smaller:200k")
    assert (query.larger, query.smaller) == (5 * 1024, 200 * 1024)
    with pytest.raises(QueryError, match="larger than 2 MB"):
        q("larger:2M smaller:1M")


@pytest.mark.parametrize("text", ["larger:big", "smaller:", "larger:-5", "larger:1.2.3", "smaller:10x", "larger:1e9",
                                  "larger:" + "9" * 5000])
def test_bad_sizes_say_what_is_expected(text):
    with pytest.raises(QueryError, match="needs a size like 10k"):
        q(text)


@pytest.mark.parametrize("text", ["-label:work", "-in:spam", "-cc:bob", "-filename:exe", "-larger:1M"])
def test_excluding_the_new_operators_is_refused_too(text):
    with pytest.raises(QueryError, match="remove"):
        q(text)


def test_analysis_says_what_each_part_became():
    assert q("invoices from:alice after:2024-01-31 has:attachment").analysis() == [
        "words: invoices", "from: alice", "on or after 31 Jan 2024", "has attachment"]
    assert q('"tax return" -draft to:bob cc:carol subject:q3 filename:pdf in:INBOX label:Work larger:10k '
             'smaller:2M before:2025 foo:bar').analysis() == [
        "words: foo:bar", "phrase: \u201ctax return\u201d", "without: draft", "to or cc: bob", "cc: carol",
        "subject: q3", "attachment named: pdf", "in folder: INBOX", "label: work",
        "larger than 10 KB (10,240 bytes)", "smaller than 2 MB (2,097,152 bytes)", "before 1 Jan 2025",
        "not operators, searched as words: foo:bar"]
    assert q("").analysis() == ["every message"]
    assert q("newer_than:7d").analysis() == ["on or after 24 Mar 2025"]


def test_excluding_an_operator_is_refused_with_a_way_out():
    with pytest.raises(QueryError, match="remove"):
        q("-from:alice")


def test_example_from_the_brief():
    query = q("invoices from:alice after:2024-01-31")
    assert query.topic == "invoices"
    assert query.senders == ["alice"]
    assert query.after == date(2024, 1, 31)
    assert query.describe() == "invoices \u00b7 from alice \u00b7 after 31 Jan 2024"


def test_everything_together():
    query = q('Paris "hotel booking" -spam from:airline to:sam subject:"your trip" '
              'after:2024/01/01 before:2024-07 has:attachment')
    assert query.topic == "Paris hotel booking"
    assert query.fts_query == 'Paris "hotel booking" -spam'
    assert query.excluded == ["spam"]
    assert (query.after, query.before) == (date(2024, 1, 1), date(2024, 7, 1))
    assert query.describe() == ("Paris hotel booking \u00b7 without spam \u00b7 from airline \u00b7 to sam \u00b7 "
                                "subject \u201cyour trip\u201d \u00b7 with attachments \u00b7 after 1 Jan 2024 \u00b7 "
                                "before 1 Jul 2024")


# --- dates -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("2024-01-31", date(2024, 1, 31)), ("2024/01/31", date(2024, 1, 31)), ("2024/1/5", date(2024, 1, 5)),
    ("2024.02.29", date(2024, 2, 29)), ("2024-01", date(2024, 1, 1)), ("2024", date(2024, 1, 1)),
])
def test_date_formats(value, expected):
    assert q(f"after:{value}").after == expected
    assert q(f"before:{value}").before == expected


def test_repeated_dates_narrow_the_range():
    query = q("after:2023 after:2024-02 before:2025 before:2024-06")
    assert (query.after, query.before) == (date(2024, 2, 1), date(2024, 6, 1))


@pytest.mark.parametrize("text, message", [
    ("after:yesterdayish", "after: needs a date like 2024-01-31"),
    ("before:2024-13-45", "before: needs a date like 2024-01-31"),
    ("before:2023-02-29", "before: needs a date"),
    ("after:24-01-01", "after: needs a date"),
    ("after:", "after: needs a date"),
    ("newer_than:soon", "newer_than: needs an age like 7d"),
    ("older_than:", "older_than: needs an age"),
])
def test_bad_dates_say_what_is_expected(text, message):
    with pytest.raises(QueryError, match=message):
        q(text)


def test_query_error_is_the_projects_error():
    with pytest.raises(MailError):
        q("after:tomorrow")


def test_after_must_be_before_before():
    with pytest.raises(QueryError, match="earlier than the before"):
        q("after:2024-03-01 before:2024-02-01")
    with pytest.raises(QueryError):
        q("after:2024-03-01 before:2024-03-01")
    assert q("after:2024-03-01 before:2024-03-02").after == date(2024, 3, 1)


def test_relative_ages():
    assert q("newer_than:7d").after == date(2025, 3, 24)
    assert q("newer_than:2m").after == date(2025, 1, 31)
    assert q("older_than:1y").before == date(2024, 3, 31)
    assert q("NEWER_THAN:1M").after == date(2025, 2, 28)  # 31 Mar minus a month, clamped
    assert parse_query("newer_than:1d", today=date(2024, 3, 1)).after == date(2024, 2, 29)


def test_absurd_age_is_refused():
    with pytest.raises(QueryError, match="smaller age"):
        q("older_than:9999y")


def test_relative_ages_default_to_today():
    assert parse_query("newer_than:0d").after == date.today()


# --- summary and emptiness ---------------------------------------------------------------------------

def test_empty_queries():
    for text in ["", "   ", "\t\n", '""', "-", '"', "from:", "subject: "]:
        query = q(text)
        assert query.is_empty, text
        assert query.topic == "" and query.fts_query == ""
        assert query.describe() == "all messages"


def test_describe_lists_repeated_values():
    assert q("from:alice from:bob -spam -ads").describe() == "without spam, ads \u00b7 from alice and bob"


def test_query_is_frozen():
    with pytest.raises(AttributeError):
        q("dog").topic = "cat"  # type: ignore[misc]


# --- hostile input -----------------------------------------------------------------------------------

HOSTILE = [
    "", "-", "--", '"', '"""', '-"', '-""', "OR", "or or OR", "-OR", "!!!", "&|!()<->:*", "dog & !cat | (bird)",
    "'; DROP TABLE messages; --", "\\", "'", "a'b", "%_%", "\x00\x01\x1b[31mred\x7f", "\ud800 lone surrogate",
    "\u202eevil\u202c", "🐶🐱 puppy 🎉", "👨‍👩‍👧 family", "x" * 10_000, "word " * 3000, '"' * 5001,
    "-" * 9999 + "x", "naïve café Zoë", "日本語 テスト", "emoji:🐶 subject:🐱", "a:b:c:d", ":", "::", "from::",
    "label:" + "\u202e" * 300, "in:\x00 cc:\n filename:\r", "x:" * 3000, "label:" * 2000,
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_input_parses_into_clean_bounded_strings(text):
    query = q(text)
    for value in (query.topic, query.fts_query, query.text, *query.words, *query.phrases, *query.excluded,
                  *query.senders, *query.recipients, *query.subjects, *query.cc, *query.filenames,
                  *query.folders, *query.labels, *query.unknown, *query.analysis()):
        assert not any(ord(ch) < 32 or ord(ch) == 127 or 0xD800 <= ord(ch) <= 0xDFFF for ch in value)
        assert "\u202e" not in value
    assert len(query.fts_query) <= MAX_FTS_CHARS
    assert len(query.topic) <= MAX_TOPIC_CHARS
    assert len(query.text) <= MAX_QUERY_CHARS
    assert query.fts_query.count('"') % 2 == 0
    outside_phrases = re.sub(r'"[^"]*"', " ", query.fts_query).lower().split()
    assert "or" not in [t.lstrip("-") for t in outside_phrases]
    query.describe()


def test_long_input_is_cut_on_a_word_boundary():
    query = q("invoice " * 500)
    assert len(query.topic) <= MAX_TOPIC_CHARS and query.topic.endswith("invoice")
    assert query.fts_query.split() == ["invoice"] * len(query.fts_query.split())


def test_emoji_stay_in_the_topic_but_not_in_fts():
    query = q("🐶 puppy")
    assert query.topic == "🐶 puppy"
    assert query.fts_query == "puppy"


def test_websearch_to_tsquery_accepts_every_fts_query(pg_url):
    """The real PostgreSQL parses each fts_query without an error (notices about stop words are fine)."""
    from sqlalchemy import text

    from db.engine import create_db_engine

    engine = create_db_engine(pg_url)
    samples = HOSTILE + ['Paris "hotel booking" -spam -"vet bill"', "re: 10:30 foo:bar", "dog OR cat", "invoice " * 500]
    try:
        with engine.connect() as conn:
            for sample in samples:
                fts = q(sample).fts_query
                conn.execute(text("SELECT websearch_to_tsquery('english', :q)"), {"q": fts}).scalar()
            result = conn.execute(text("SELECT websearch_to_tsquery('english', :q)::text"),
                                  {"q": q('Paris "hotel booking" -spam from:x').fts_query}).scalar()
    finally:
        engine.dispose()
    assert result == "'pari' & 'hotel' <-> 'book' & !'spam'"
