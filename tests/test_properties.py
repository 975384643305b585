"""Property-based tests (Hypothesis) of what strangers control: the bytes of a message and the
text typed in the search box.

- A message, valid or mangled (headers, boundaries, charsets, base64 and quoted-printable
  bodies, random bytes), is either parsed into clean text or refused with `ParseError`; through
  `import_messages` into the real database it is either imported or counted as failed with a
  reason, and never stops the import.
- A query either parses into sane, bounded filters or raises `QueryError` with a sentence; the
  real search runs whatever parses.

Examples are derandomized and no example database is kept, so every run (and CI) tries the same
inputs.
"""

from __future__ import annotations

import base64
import hashlib
import quopri
import re
import uuid
from datetime import date

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st
from sqlalchemy import text

from mail.parse import EXCERPT_CHARS, parse_message
from mail.query import MAX_FTS_CHARS, MAX_QUERY_CHARS, MAX_TOPIC_CHARS, MAX_VALUE_CHARS, Query, parse_query
from mail.search import message as message_view, search
from mail.store import import_messages
from mail.types import ParsedMessage, ParseError, QueryError, RawMessage


def fixed(max_examples: int):
    """Same inputs on every run; no deadline (the machine is shared, timings vary)."""
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------------------- messages

SEEDS = [
    b"From: \"Doe, Jane\" <jane@example.com>\r\nTo: Bob <bob@example.org>, carol@example.org\r\n"
    b"Subject: =?utf-8?B?UXVhcnRlcmx5IG51bWJlcnMg8J+Tig==?=\r\nDate: Thu, 22 Aug 2002 10:13:00 +0200\r\n"
    b"Message-ID: <abc.123@example.com>\r\nIn-Reply-To: <parent@example.com>\r\n"
    b"References: <root@example.com> <parent@example.com>\r\n\r\nThe numbers are in.\r\n",

    b"From: a@b.c\nSubject: nested\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"MIX\"\n\n"
    b"--MIX\nContent-Type: multipart/alternative; boundary=\"ALT\"\n\n"
    b"--ALT\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n"
    b"Caf=E9 cr=E8me, see the report=\n attached.\n"
    b"--ALT\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
    + base64.encodebytes("<p>Café <b>crème</b><script>alert(1)</script></p>".encode()) +
    b"--ALT--\n--MIX\nContent-Type: application/pdf; name=\"=?utf-8?B?w6l0w6kucGRm?=\"\n"
    b"Content-Disposition: attachment; filename*=UTF-8''R%C3%A9sum%C3%A9.pdf\n"
    b"Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n--MIX--\n",

    b"From: fwd@example.com\nSubject: Fwd: the plan\nMIME-Version: 1.0\n"
    b"Content-Type: multipart/mixed; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\nFYI.\n"
    b"--B\nContent-Type: message/rfc822\n\nFrom: Original <orig@example.com>\nSubject: the plan\n"
    b"Content-Type: text/plain; charset=koi8-r\nContent-Transfer-Encoding: 8bit\n\n\xf0\xd2\xc9\xd7\xc5\xd4\n--B--\n",

    b"From: a@b.c\nSubject: signed\nMIME-Version: 1.0\nContent-Type: multipart/signed; "
    b"protocol=\"application/pgp-signature\"; boundary=\"S\"\n\n--S\nContent-Type: text/plain\n\n"
    b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nThe signed text.\n-----BEGIN PGP SIGNATURE-----\n"
    b"iD8DBQE9\n-----END PGP SIGNATURE-----\n--S\nContent-Type: application/pgp-signature\n\nxx\n--S--\n",

    b"From: \xe9mile <e@example.fr>\nTo: undisclosed-recipients:;\nSubject: r\xe9sum\xe9 \xf0\x9f\x90\xb6\n"
    b"Date: not a date\nMessage-ID: <>\nContent-Type: text/plain; charset=\"utf-8\"; format=flowed; delsp=yes\n\n"
    b"A soft \nbroken line.\n> quoted\n-- \nsignature\n",
]

JUNK = [b"\x00", b"\xff", b"\xe9", b"\r", b"\n", b"\r\n\r\n", b"\n ", b":", b";", b"\"", b"<", b">", b"=",
        b"=?", b"?=", b"=?utf-8?B?", b"=?x-bogus?Q?=E9=?", b"=?utf-8?B?####?=", b"--", b"--MIX", b"--ALT--",
        b"boundary=", b"boundary=\"\"", b"charset=", b"charset=utf-16", b"charset=\"rot13\"", b"*0*=",
        b"filename*=x''%FF%", b"Content-Type: multipart/mixed; boundary=X\n", b"Content-Type: message/rfc822\n",
        b"Content-Transfer-Encoding: base64\n", b"Content-Transfer-Encoding: quoted-printable\n",
        b"=\n", b"=ZZ", b"====", b"\xf0\x9f", b"\xed\xa0\x80", b"\\", b"(", b")", b"@", b",",
        b"-----BEGIN PGP MESSAGE-----\n", b"<html><body onload=x()><script>", b"</", b"<!--"]

HEADER_NAMES = ["From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "Sender",
                "Reply-To", "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition",
                "X-Mailer", "Received"]
HEADER_VALUES = ["", " ", "<>", "<a@b>", "a@b", "<<a@b>>", "\"Doe, Jane\" <jane@example.com>", "undisclosed:;",
                 "a@b, , c@d", "(comment) x@y", "=?utf-8?B?w6k=?=", "=?iso-8859-1?Q?=E9t=E9?=", "=?bogus?B?x?=",
                 "=?utf-8?Q?broken", "Thu, 22 Aug 2002 10:13:00 +0200", "31 Feb 2024 25:61:61 +9999", "0",
                 "Mon, 01 Jan 1900 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 -1200", "1.0",
                 "multipart/mixed; boundary=", "text/plain; charset=\"\"", "text/html; charset=utf-7",
                 "multipart/alternative; boundary=\"a\"; boundary=\"b\"", "base64", "x-uuencode",
                 "attachment; filename*0*=utf-8''%E2%82; filename*1=\"x\"", "text/\x00html", "a\x00b@example.com",
                 "\x00/"]
CHARSETS = ["utf-8", "us-ascii", "iso-8859-1", "windows-1252", "koi8-r", "shift_jis", "gb2312", "big5",
            "euc-kr", "utf-16", "utf-16-le", "utf-32", "utf-7", "iso-2022-jp", "cp037", "idna", "rot13",
            "base64", "punycode", "unicode_escape", "raw_unicode_escape", "uu", "zlib", "x-unknown", "",
            "\"utf-8", "utf-8'en'", "unknown-8bit", "x-user-defined"]
ENCODINGS = ["7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "BASE64 ", "bogus", ""]
LEAF_TYPES = ["text/plain", "text/html", "text/enriched", "text/calendar", "application/pdf", "image/png",
              "application/octet-stream", "message/delivery-status", "application/pgp-encrypted", "text", "/",
              "text/plain/extra"]
HOSTILE_TEXTS = ["<p onclick=x()>Hi<script>alert(1)</script><img src=http://x/y>", "<div>" * 300 + "deep",
                 "Caf\u00e9 \U0001f436 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 ![x](http://x/y.png)"]
MULTI_TYPES = ["multipart/mixed", "multipart/alternative", "multipart/related", "multipart/signed",
               "multipart/encrypted", "multipart/report", "multipart/digest", "multipart/"]

text_values = st.one_of(st.sampled_from(HEADER_VALUES), st.text(max_size=60))
boundaries = st.one_of(st.sampled_from(["MIX", "=_Part_0_1", "a b", "\"", "", "--", "x" * 80]),
                       st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
                       st.text(max_size=10))


def _header(name: str, value: str, encoding: str = "utf-8") -> bytes:
    return name.encode() + b": " + value.encode(encoding, "surrogatepass") + b"\n"


def _encode_body(text: str, charset: str, cte: str, corrupt: int) -> bytes:
    try:
        data = text.encode(charset)
    except (LookupError, UnicodeError, TypeError, ValueError):
        data = text.encode("utf-8", "surrogatepass")
    if cte.strip().lower() == "base64":
        data = base64.encodebytes(data)
        if corrupt and data:  # a damaged line: cut, padding lost, or a stray character
            at = corrupt % len(data)
            data = data[:at] + (b"!", b"*", b"=")[corrupt % 3] + data[at + 1:]
    elif cte == "quoted-printable":
        data = quopri.encodestring(data)
        if corrupt:
            data += b"=" if corrupt % 2 else b"=G1"
    return data


@st.composite
def leaf_parts(draw) -> bytes:
    ctype = draw(st.sampled_from(LEAF_TYPES))
    charset = draw(st.sampled_from(CHARSETS))
    cte = draw(st.sampled_from(ENCODINGS))
    body = draw(st.one_of(st.text(max_size=200), st.sampled_from(HOSTILE_TEXTS)))
    corrupt = draw(st.integers(min_value=0, max_value=50))
    head = f"Content-Type: {ctype}; charset=\"{charset}\"\n".encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        head += f"Content-Transfer-Encoding: {cte}\n".encode()
    if draw(st.booleans()):
        name = draw(st.text(max_size=20))
        head += _header("Content-Disposition",
                        draw(st.sampled_from(["attachment", "inline", "bogus", ""])) + f"; filename=\"{name}\"")
    if draw(st.integers(0, 9)) == 0:
        return head + b"\n" + draw(st.binary(max_size=120))
    return head + b"\n" + _encode_body(body, charset, cte, corrupt)


def multipart(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    @st.composite
    def build(draw) -> bytes:
        ctype = draw(st.sampled_from(MULTI_TYPES + ["message/rfc822"]))
        if ctype == "message/rfc822":
            return b"Content-Type: message/rfc822\n\nFrom: inner@example.com\nSubject: inner\n" + draw(children)
        declared = draw(boundaries)
        used = declared if draw(st.integers(0, 4)) else draw(boundaries)  # sometimes a boundary that is not declared
        parts = draw(st.lists(children, max_size=4))
        out = f"Content-Type: {ctype}; boundary=\"{declared}\"\n\n".encode("utf-8", "surrogatepass")
        if draw(st.booleans()):
            out += b"This is a multi-part message in MIME format.\n"
        sep = used.encode("utf-8", "surrogatepass")
        for part in parts:
            out += b"--" + sep + b"\n" + part + b"\n"
        if draw(st.booleans()):  # the closing boundary is often missing in the wild
            out += b"--" + sep + b"--\n"
        return out
    return build()


mime_bodies = st.recursive(leaf_parts(), multipart, max_leaves=8)


@st.composite
def generated_messages(draw) -> bytes:
    headers = b""
    if draw(st.integers(0, 9)):  # nearly always a From, so that it is mail
        headers += _header("From", draw(text_values))
    for name in draw(st.lists(st.sampled_from(HEADER_NAMES), max_size=10)):
        value = draw(text_values)
        headers += _header(name, value, draw(st.sampled_from(["utf-8", "latin-1"])) if value.isascii() else "utf-8")
    headers += b"MIME-Version: 1.0\n"
    eol = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    return (headers + draw(mime_bodies)).replace(b"\n", eol)


@st.composite
def mutated_messages(draw, seeds: st.SearchStrategy[bytes] | None = None) -> bytes:
    data = bytearray(draw(seeds) if seeds is not None else draw(st.sampled_from(SEEDS)))
    for op, at, n, byte, junk in draw(st.lists(st.tuples(
            st.integers(0, 4), st.integers(0, 10**6), st.integers(1, 80), st.integers(0, 255),
            st.sampled_from(JUNK)), min_size=1, max_size=8)):
        at %= len(data) + 1
        if op == 0 and data:
            data[min(at, len(data) - 1)] = byte
        elif op == 1:
            del data[at:at + n]
        elif op == 2:
            data[at:at] = junk
        elif op == 3:
            start = (at * 7919) % (len(data) + 1)
            data[at:at] = data[start:start + n]
        else:
            del data[at:]  # truncated
    return bytes(data)


random_bytes = st.one_of(
    st.binary(max_size=3000),
    st.binary(max_size=1000).map(lambda b: b"From: x@y\n" + b),
    st.binary(max_size=1000).map(lambda b: b"Subject: " + b + b"\n\nbody"),
    st.binary(max_size=1000).map(lambda b: b"Content-Type: multipart/mixed; boundary=b\n\n--b\n" + b),
)

any_message = st.one_of(mutated_messages(), generated_messages(), mutated_messages(generated_messages()),
                        random_bytes)


def _clean_text(value: str) -> bool:
    """Valid UTF-8: no surrogates left from raw bytes."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_parsed(raw: bytes, parsed: ParsedMessage) -> None:
    assert parsed.content_hash == hashlib.sha256(raw).hexdigest() and parsed.size == len(raw)
    texts = [parsed.subject, parsed.from_name, parsed.from_addr, parsed.body, parsed.excerpt,
             *parsed.to, *parsed.cc, *parsed.references, *parsed.warnings,
             *(a.filename or "" for a in parsed.attachments), *(a.content_type for a in parsed.attachments)]
    assert all(isinstance(t, str) and _clean_text(t) and "\x00" not in t for t in texts), texts
    assert parsed.message_id is None or re.fullmatch(r"\S+@\S+", parsed.message_id)
    assert parsed.date is None or parsed.date.tzinfo is not None
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", parsed.body)
    assert len(parsed.excerpt) <= len(parsed.subject) + 1 + EXCERPT_CHARS + 2
    assert all(a.size >= 0 for a in parsed.attachments)


def check_refusal(error: ParseError) -> None:
    reason = str(error)
    assert reason and reason.endswith("."), reason
    assert "internal error" not in reason, reason  # the parser's safety net caught a bug


@fixed(800)
@given(any_message)
@example(b"From: a@b.c\r\nSubject: =?utf-8?B?\xffUXVhcnRlcmx5?=\r\n\r\nbody\r\n")  # found: a raw byte in a word
def test_any_message_parses_or_is_refused_with_a_reason(raw):
    try:
        parsed = parse_message(raw)
    except ParseError as error:
        check_refusal(error)
    else:
        check_parsed(raw, parsed)


@fixed(200)
@given(st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_random_text_parses_or_is_refused_with_a_reason(raw):
    try:
        parse_message(raw)
    except ParseError as error:
        check_refusal(error)


@pytest.fixture(scope="module")
def fuzz_owners(engine):
    """Owners made up per example; their mail is removed when the module is done."""
    yield lambda: f"fuzz-{uuid.uuid4().hex}"
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM mail_messages WHERE owner LIKE 'fuzz-%'"))


@fixed(200)
@given(batch=st.lists(any_message, min_size=1, max_size=6))
@example(batch=[SEEDS[0], b":\nContenT-type:\x00/"])  # found: a NUL in a content type failed the whole batch
def test_import_never_stops_every_message_is_imported_or_failed_with_a_reason(engine, fuzz_owners, batch):
    owner = fuzz_owners()
    items = [RawMessage(raw=raw, source_id=f"fuzz #{n}") for n, raw in enumerate(batch)]
    summary = import_messages(engine, owner, items, batch_size=4)
    assert summary.imported + summary.duplicates + summary.failed == len(items)
    assert summary.failed == len(summary.failures)
    for source_id, reason in summary.failures:
        assert source_id.startswith("fuzz #")
        assert reason and not reason.startswith("unexpected") and "internal error" not in reason, reason
    with engine.connect() as conn:
        ids = conn.execute(text("SELECT id FROM mail_messages WHERE owner = :o"), {"o": owner}).scalars().all()
    assert len(ids) == summary.imported
    for pk in ids:  # what the message dialog shows reads back as text
        view = message_view(engine, owner, pk)
        assert view is not None and isinstance(view.body, str) and isinstance(view.subject, str)


@fixed(20)
@given(batch=st.lists(any_message, min_size=1, max_size=6))
def test_import_with_embeddings_never_stops(engine, fuzz_owners, local_embedder, batch):
    owner = fuzz_owners()
    summary = import_messages(engine, owner, [RawMessage(raw=raw, source_id="fuzz") for raw in batch],
                              embedder=local_embedder)
    assert summary.imported + summary.duplicates + summary.failed == len(batch)
    with engine.connect() as conn:
        embedded = conn.execute(text("SELECT count(*) FROM mail_embeddings WHERE owner = :o"), {"o": owner}).scalar()
    assert embedded == summary.imported


# ---------------------------------------------------------------------------- queries

TODAY = date(2025, 6, 15)
QUERY_TOKENS = [
    "from:", "to:", "subject:", "after:", "before:", "newer_than:", "older_than:", "has:", "FROM:", "Has:",
    "-from:", "-has:", "x:", ":", "::", "from::", "subject:\"", "attachment", "attachments", "has:attachment",
    "2024", "2024-01", "2024-01-31", "2024/1/1", "2024.12.31", "2024-13-01", "2024-02-30", "0000-01-01",
    "0001-01-01", "9999-12-31", "10000-01-01", "7d", "2m", "1y", "0d", "9999y", "9999d", "12 m",
    "\"", "\"\"", "-\"", "-", "--", "\u201c", "\u201d", "\u00ab", "OR", "or", "AND", "&", "|", "!", "(", ")",
    "<->", ":*", "\\", "'", "%", "_", "<alice@example.com>", "alice", "dog", "invoice", "paris", "<script>",
    "'; DROP TABLE mail_messages; --", "\x00", "\x1b[31m", "\u202e", "\ud800", "\U0001f436", "\u200b",
    "\u0645\u0631\u062d\u0628\u0627", "\u0928\u092e\u0938\u094d\u0924\u0947", "\u65e5\u672c",
]
SEPARATORS = ["", " ", " ", " ", "\t", "\n", "\u3000", "\xa0"]

queries = st.one_of(
    st.lists(st.tuples(st.sampled_from(SEPARATORS), st.one_of(st.sampled_from(QUERY_TOKENS), st.text(max_size=12))),
             max_size=14).map(lambda parts: "".join(sep + token for sep, token in parts)),
    st.text(max_size=120),
    st.text(max_size=40).map(lambda t: t * 120),  # past MAX_QUERY_CHARS
)


def _visible(value: str) -> bool:
    return not any(ord(ch) < 32 or ord(ch) == 127 or 0xD800 <= ord(ch) <= 0xDFFF or ch == "\u202e"
                   for ch in value)


def check_query(query: Query) -> None:
    values = [query.text, query.topic, query.fts_query, *query.words, *query.phrases, *query.excluded,
              *query.senders, *query.recipients, *query.subjects]
    assert all(isinstance(v, str) and _visible(v) for v in values), values
    assert len(query.text) <= MAX_QUERY_CHARS
    assert len(query.topic) <= MAX_TOPIC_CHARS and query.topic == query.topic.strip()
    assert len(query.fts_query) <= MAX_FTS_CHARS and query.fts_query.count('"') % 2 == 0
    assert all(v and len(v) <= MAX_VALUE_CHARS for v in query.words + query.senders + query.recipients
               + query.subjects), values
    assert all(p.strip() for p in query.phrases + query.excluded)
    for day in (query.after, query.before):
        assert day is None or isinstance(day, date)
    if query.after and query.before:
        assert query.after < query.before
    assert isinstance(query.has_attachment, bool)
    assert query.describe().strip()
    assert parse_query(query.text, today=TODAY) == query  # the text as understood reads the same again


@fixed(1000)
@given(queries)
def test_any_query_parses_into_sane_filters_or_is_a_query_error(typed):
    try:
        query = parse_query(typed, today=TODAY)
    except QueryError as error:
        assert str(error).endswith(".") and len(str(error)) < 400, str(error)
    else:
        check_query(query)


@pytest.fixture(scope="module")
def searchable(engine, local_embedder):
    """An owner with a few messages, one of them hostile, to run random queries against."""
    from email.message import EmailMessage

    owner = f"fuzz-search-{uuid.uuid4().hex}"
    raws = []
    for n, (subject, body) in enumerate([
            ("Dog walking rota", "Who walks the dog on Sunday? alice@example.com"),
            ("Invoice 2291", "Your invoice for Paris. 50% paid_in_full"),
            ("<script>alert(1)</script>", "<img src=x onerror=alert(1)> dog & cat \"quoted\" 'single'"),
            ("\u65e5\u672c trip", "\u0645\u0631\u062d\u0628\u0627 \u0928\u092e\u0938\u094d\u0924\u0947 \U0001f436")]):
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = f"Alice <alice{n}@example.com>", "bob@example.org", subject
        msg["Date"], msg["Message-ID"] = "Tue, 02 Jan 2024 10:00:00 +0000", f"<fuzz-{n}@example.com>"
        msg.set_content(body)
        raws.append(RawMessage(raw=msg.as_bytes(), source_id=str(n)))
    assert import_messages(engine, owner, raws, embedder=local_embedder).imported == 4
    yield owner
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM mail_messages WHERE owner = :o"), {"o": owner})


SOME_VECTOR = np.full(384, 384 ** -0.5, dtype=np.float32)


@fixed(400)
@given(queries)
@example("\U0001f436 \U0001f389")  # found: a topic with no words for full-text search failed in SQL
@example("OR")
def test_the_real_search_runs_any_query_that_parses(engine, local_embedder, searchable, typed):
    # Both rankings, full-text and by meaning; one vector stands in for every topic's (embedding
    # each random topic would only test the model, slowly).
    try:
        results = search(engine, searchable, typed, embedder=local_embedder, query_vector=SOME_VECTOR, limit=5)
    except QueryError:
        return
    assert 0 <= len(results.hits) <= 5 and results.total >= len(results.hits)
    for hit in results.hits:  # escaped text: no markup of HTML or Markdown but the highlights
        assert not re.search(r"[<>\[\]()!`*_~|$#{}:.\\]", re.sub(r"&#\d+;|</?mark>", "", hit.snippet)), hit.snippet
