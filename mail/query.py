"""What a person types in the search box, understood the way Gmail users expect.

    invoices "tax return" -draft from:alice to:bob subject:"q3 budget" after:2024-01 has:attachment
    cc:carol filename:pdf larger:100k smaller:2M in:INBOX label:receipts

becomes a `Query`: the free text (`topic`, also the phrase the image cache is asked for), a
`fts_query` that is safe for ``websearch_to_tsquery('english', ...)``, and the filters the search
module turns into SQL. Anything that is not a known operator is a plain word, so "re:", "10:30"
and "http://x" search as text. Only a date that is not a date (or a range that cannot match) is
refused, with `QueryError`.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta

from mail.types import QueryError

__all__ = ["Query", "parse_query", "normal_label", "MAX_QUERY_CHARS", "MAX_FTS_CHARS", "MAX_TOPIC_CHARS",
           "MAX_LABEL_CHARS"]

MAX_QUERY_CHARS = 2000
"""Input beyond this is ignored: nobody types more, and everything derived stays bounded."""
MAX_FTS_CHARS = 500
MAX_TOPIC_CHARS = 500
MAX_VALUE_CHARS = 200
"""Longest operator value or single word kept."""
_MAX_RAW_QUERY_CHARS = MAX_QUERY_CHARS + 100
"""What is cleaned of a longer input, before it is cut to `MAX_QUERY_CHARS`: a pasted book costs
no more than a long query. Cleaning never shortens the text, so the cut keeps its meaning."""

MAX_LABEL_CHARS = 64
MAX_SIZE_BYTES = 2**40
"""Sizes beyond this (1 TiB) are read as this: no message is that large."""

_TEXT_OPERATORS = {"from": "senders", "to": "recipients", "cc": "cc", "subject": "subjects",
                   "filename": "filenames", "in": "folders", "label": "labels"}
_DATE_OPERATORS = {"after", "before"}
_AGE_OPERATORS = {"newer_than", "older_than"}
_SIZE_OPERATORS = {"larger", "smaller"}
_OPERATORS = set(_TEXT_OPERATORS) | _DATE_OPERATORS | _AGE_OPERATORS | _SIZE_OPERATORS | {"has"}

_OPERATOR_TOKEN = re.compile(r"([A-Za-z_]+):(.*)", re.DOTALL)
_DATE = re.compile(r"(\d{4})(?:[-/.](\d{1,2})(?:[-/.](\d{1,2}))?)?")
_AGE = re.compile(r"(\d{1,4})\s*([dmy])", re.IGNORECASE)
_SIZE = re.compile(r"(\d{1,12})(?:\.(\d{1,3}))?\s*([kmg]?)(?:i?b)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"'})
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Query:
    """A parsed search. Text values keep the case they were typed in; match them case-insensitively."""

    text: str = ""
    """The query as understood: control characters removed, at most `MAX_QUERY_CHARS` long."""
    words: list[str] = field(default_factory=list)
    phrases: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    """Words and phrases (without quotes) a message must not contain."""
    senders: list[str] = field(default_factory=list)
    """``from:`` values; every one must match the sender's name or address."""
    recipients: list[str] = field(default_factory=list)
    """``to:`` values; every one must match some To or Cc name or address."""
    cc: list[str] = field(default_factory=list)
    """``cc:`` values; every one must match some Cc name or address."""
    subjects: list[str] = field(default_factory=list)
    """``subject:`` values; every one must occur in the subject."""
    filenames: list[str] = field(default_factory=list)
    """``filename:`` values; every one must occur in the name of some attachment."""
    folders: list[str] = field(default_factory=list)
    """``in:`` values: the folder (or mailbox file) the message was imported from."""
    labels: list[str] = field(default_factory=list)
    """``label:`` values, as `normal_label` makes them; the message must carry every one."""
    larger: int | None = None
    """Messages of more than this many bytes (the whole message as imported)."""
    smaller: int | None = None
    """Messages of fewer than this many bytes."""
    after: date | None = None
    """Messages on or after this day (inclusive). ``after:2024-01`` is 1 Jan 2024."""
    before: date | None = None
    """Messages before this day (exclusive). ``before:2024`` is 1 Jan 2024."""
    has_attachment: bool = False
    unknown: list[str] = field(default_factory=list)
    """Terms typed like an operator (``foo:bar``) that are none: searched as plain words."""
    topic: str = ""
    """Words and phrases in the order typed, quotes removed: what full-text and semantic search
    look for, and the topic the image cache draws. Empty when the query is only filters."""
    fts_query: str = ""
    """For ``websearch_to_tsquery('english', ...)``: the words, "phrases" and -exclusions; at most
    `MAX_FTS_CHARS` long. Empty when there is nothing to match as text."""

    @property
    def is_empty(self) -> bool:
        """True when the query asks for nothing: no text, no exclusions, no filters."""
        return not (self.topic or self.excluded or self.senders or self.recipients or self.cc or self.subjects
                    or self.filenames or self.folders or self.labels or self.larger is not None
                    or self.smaller is not None or self.after or self.before or self.has_attachment)

    def describe(self) -> str:
        """A short summary for the UI, e.g. "invoices · from alice · after 31 Jan 2024"."""
        parts = [self.topic] if self.topic else []
        if self.excluded:
            parts.append("without " + ", ".join(self.excluded))
        if self.senders:
            parts.append("from " + " and ".join(self.senders))
        if self.recipients:
            parts.append("to " + " and ".join(self.recipients))
        if self.cc:
            parts.append("cc " + " and ".join(self.cc))
        if self.subjects:
            parts.append("subject " + " and ".join(f"\u201c{s}\u201d" for s in self.subjects))
        if self.has_attachment:
            parts.append("with attachments")
        if self.filenames:
            parts.append("attachment named " + " and ".join(f"\u201c{f}\u201d" for f in self.filenames))
        if self.folders:
            parts.append("in " + " and ".join(self.folders))
        if self.labels:
            parts.append("labelled " + " and ".join(self.labels))
        if self.larger is not None:
            parts.append("larger than " + _size(self.larger))
        if self.smaller is not None:
            parts.append("smaller than " + _size(self.smaller))
        if self.after:
            parts.append("after " + _day(self.after))
        if self.before:
            parts.append("before " + _day(self.before))
        return " \u00b7 ".join(parts) if parts else "all messages"

    def analysis(self) -> list[str]:
        """What each part of the query became, in the words of the search page's "read as"
        line: ``["words: invoices", "from: alice", "on or after 31 Jan 2024", "has attachment"]``.
        Terms that look like an operator but are none are listed as the words they are."""
        parts = []
        if self.words:
            parts.append("words: " + ", ".join(self.words))
        if self.phrases:
            parts.append(("phrase: " if len(self.phrases) == 1 else "phrases: ")
                         + ", ".join(f"\u201c{p}\u201d" for p in self.phrases))
        if self.excluded:
            parts.append("without: " + ", ".join(self.excluded))
        for name, values in (("from", self.senders), ("to or cc", self.recipients), ("cc", self.cc),
                             ("subject", self.subjects), ("attachment named", self.filenames),
                             ("in folder", self.folders), ("label", self.labels)):
            if values:
                parts.append(f"{name}: " + " and ".join(values))
        if self.larger is not None:
            parts.append(f"larger than {_size(self.larger)}")
        if self.smaller is not None:
            parts.append(f"smaller than {_size(self.smaller)}")
        if self.after:
            parts.append("on or after " + _day(self.after))
        if self.before:
            parts.append("before " + _day(self.before))
        if self.has_attachment:
            parts.append("has attachment")
        if self.unknown:
            parts.append("not operators, searched as words: " + ", ".join(self.unknown))
        return parts or ["every message"]


def parse_query(text: str, *, today: date | None = None) -> Query:
    """Parse what was typed in the search box. ``today`` anchors ``newer_than:``/``older_than:``.

    Raises `QueryError` for a date operator whose value is not a date or an age, a size operator
    whose value is not a size, for ``has:``
    with anything but ``attachment``, for an excluded operator (``-from:x``), and when the dates
    leave no day that could match.
    """
    today = today or date.today()
    text = _clean(str(text)[:_MAX_RAW_QUERY_CHARS])[:MAX_QUERY_CHARS]
    terms: list[tuple[str, str]] = []  # ("word" | "phrase" | "-word" | "-phrase", text), in order
    values: dict[str, list[str]] = {name: [] for name in _TEXT_OPERATORS.values()}
    afters: list[date] = []
    befores: list[date] = []
    has_attachment = False
    largers: list[int] = []
    smallers: list[int] = []
    unknown: list[str] = []

    tokens = _Tokens(text)
    while (token := tokens.next()) is not None:
        kind, raw = token
        if kind == "phrase":
            terms.append(("phrase", raw))
            continue
        if kind == "-phrase":
            terms.append(("-phrase", raw))
            continue
        negated = raw.startswith("-")
        body = raw.lstrip("-")
        match = _OPERATOR_TOKEN.fullmatch(body)
        name = match.group(1).lower() if match else ""
        if name not in _OPERATORS:
            if body:
                terms.append(("-word" if negated else "word", body[:MAX_VALUE_CHARS]))
                if match and match.group(2) and not match.group(2).startswith("/") and len(unknown) < 10:
                    unknown.append(body[:MAX_VALUE_CHARS])
            continue
        if negated:
            raise QueryError(f"Excluding with an operator ({raw}) is not supported: remove the \u201c-\u201d, "
                             f"or exclude a word instead, like -newsletter.")
        value = match.group(2) or tokens.operator_value()
        value = " ".join(value.split())[:MAX_VALUE_CHARS]
        if name == "label":
            if normal_label(value):
                values["labels"].append(normal_label(value))
        elif name in _TEXT_OPERATORS:
            if value:
                values[_TEXT_OPERATORS[name]].append(value.strip("<>") or value)
        elif name in _SIZE_OPERATORS:
            (largers if name == "larger" else smallers).append(_parse_size(name, value))
        elif name in _DATE_OPERATORS:
            (afters if name == "after" else befores).append(_parse_date(name, value))
        elif name in _AGE_OPERATORS:
            day = _parse_age(name, value, today)
            (afters if name == "newer_than" else befores).append(day)
        elif value.lower() in ("attachment", "attachments"):
            has_attachment = True
        else:
            raise QueryError(f"has: only understands has:attachment (got \u201chas:{value}\u201d).")

    after = max(afters) if afters else None
    before = min(befores) if befores else None
    if after and before and after >= before:
        raise QueryError(f"No message can be after {_day(after)} and before {_day(before)}: "
                         f"make the after: date earlier than the before: date.")
    larger = max(largers) if largers else None
    smaller = min(smallers) if smallers else None
    if larger is not None and smaller is not None and smaller - larger <= 1:
        raise QueryError(f"No message can be larger than {_size(larger)} and smaller than {_size(smaller)}: "
                         f"make the larger: size smaller than the smaller: size.")

    positive = [t for kind, t in terms if kind in ("word", "phrase")]
    return Query(
        text=text,
        words=[t for kind, t in terms if kind == "word"],
        phrases=[t for kind, t in terms if kind == "phrase"],
        excluded=[t for kind, t in terms if kind in ("-word", "-phrase")],
        after=after,
        before=before,
        has_attachment=has_attachment,
        larger=larger,
        smaller=smaller,
        unknown=unknown,
        topic=_bounded(" ".join(" ".join(positive).split()), MAX_TOPIC_CHARS),
        fts_query=_fts(terms),
        **values,
    )


class _Tokens:
    """Splits on whitespace; a double quote opens a phrase that runs to the next one. A quote
    that is never closed is dropped and the text after it reads as plain words."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _quoted(self) -> str | None:
        """The phrase starting at the quote under pos, or None (and the quote skipped) if unclosed."""
        end = self.text.find('"', self.pos + 1)
        if end < 0:
            self.pos += 1
            return None
        phrase = " ".join(self.text[self.pos + 1:end].split())
        self.pos = end + 1
        return phrase

    def _bare(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and not self.text[self.pos].isspace() and self.text[self.pos] != '"':
            self.pos += 1
        return self.text[start:self.pos]

    def next(self) -> tuple[str, str] | None:
        while True:
            self._skip_space()
            if self.pos >= len(self.text):
                return None
            if self.text[self.pos] == '"':
                phrase = self._quoted()
                if phrase:
                    return "phrase", phrase
                continue
            if self.text.startswith('-"', self.pos) and self.text.find('"', self.pos + 2) >= 0:
                self.pos += 1
                phrase = self._quoted()
                if phrase:
                    return "-phrase", phrase
                continue
            word = self._bare()
            if word.strip("-"):
                return "word", word

    def operator_value(self) -> str:
        """The value of an operator typed with nothing after its colon: ``subject:"a b"`` or
        ``from: alice``. Empty when nothing usable follows."""
        if self.pos < len(self.text) and self.text[self.pos] == '"':
            return self._quoted() or ""
        if self.pos < len(self.text) and not self.text[self.pos].isspace():
            return ""
        saved = self.pos
        self._skip_space()
        if self.pos < len(self.text) and self.text[self.pos] == '"':
            return self._quoted() or ""
        word = self._bare()
        match = _OPERATOR_TOKEN.fullmatch(word)
        if not word or word.startswith("-") or (match and match.group(1).lower() in _OPERATORS):
            self.pos = saved
            return ""
        return word


def _clean(text: str) -> str:
    """Control, surrogate and bidi-override characters become spaces (PostgreSQL refuses NUL and
    lone surrogates; the others only hide things); typographic quotes become plain ones."""
    out = []
    for ch in str(text).translate(_QUOTES):
        category = unicodedata.category(ch)
        out.append(" " if category in ("Cc", "Cs", "Co") or ch in _BIDI_CONTROLS else ch)
    return "".join(out)


def _parse_date(name: str, value: str) -> date:
    match = _DATE.fullmatch(value)
    if match:
        year, month, day = int(match.group(1)), int(match.group(2) or 1), int(match.group(3) or 1)
        try:
            return date(year, month, day)
        except ValueError:
            pass
    shown = f" (got \u201c{value}\u201d)" if value else ""
    raise QueryError(f"{name}: needs a date like 2024-01-31, 2024-01 or 2024{shown}.")


def _parse_age(name: str, value: str, today: date) -> date:
    match = _AGE.fullmatch(value)
    if not match:
        shown = f" (got \u201c{value}\u201d)" if value else ""
        raise QueryError(f"{name}: needs an age like 7d, 2m or 1y{shown}.")
    amount, unit = int(match.group(1)), match.group(2).lower()
    try:
        if unit == "d":
            return today - timedelta(days=amount)
        months = amount * (12 if unit == "y" else 1)
        year, month = divmod(today.year * 12 + today.month - 1 - months, 12)
        return date(year, month + 1, min(today.day, calendar.monthrange(year, month + 1)[1]))
    except (ValueError, OverflowError):
        raise QueryError(f"{name}:{value} reaches back before the year 1; use a smaller age.") from None


def normal_label(text: str) -> str:
    """A label as it is stored and matched: case-folded, runs of spaces as one "-", at most
    `MAX_LABEL_CHARS` long; "" when nothing is left. ``label:"To do"`` finds "to-do"."""
    return "-".join(_clean(str(text)[:4 * MAX_LABEL_CHARS]).casefold().split())[:MAX_LABEL_CHARS].strip("-")


def _parse_size(name: str, value: str) -> int:
    match = _SIZE.fullmatch(value)
    if not match:
        shown = f" (got \u201c{value}\u201d)" if value else ""
        raise QueryError(f"{name}: needs a size like 10k, 2M or 500000 (bytes){shown}.")
    unit = _SIZE_UNITS[match.group(3).lower()]
    fraction = int((match.group(2) or "").ljust(3, "0"))
    return min(MAX_SIZE_BYTES, int(match.group(1)) * unit + fraction * unit // 1000)


def _size(size: int) -> str:
    for unit, name in ((1024**3, "GB"), (1024**2, "MB"), (1024, "KB")):
        if size >= unit:
            amount = size / unit
            shown = f"{amount:.0f}" if amount == int(amount) else f"{amount:.1f}"
            return f"{shown} {name} ({size:,} bytes)"
    return f"{size:,} bytes"


def _fts_term(kind: str, text: str) -> str:
    """One term in websearch syntax, or "" when it holds nothing a text search can match."""
    if not any(ch.isalnum() for ch in text):
        return ""
    if kind.endswith("phrase"):
        term = '"' + text.replace('"', " ") + '"'
    else:
        text = text.lstrip("-")
        if text.lower() == "or":  # websearch_to_tsquery would read it as OR; as a word it is a stop word
            return ""
        term = text
    return ("-" + term) if kind.startswith("-") else term


def _fts(terms: list[tuple[str, str]]) -> str:
    out: list[str] = []
    length = 0
    for kind, text in terms:
        term = _fts_term(kind, text)
        if term and length + len(term) + bool(out) <= MAX_FTS_CHARS:
            out.append(term)
            length += len(term) + (len(out) > 1)
    return " ".join(out)


def _bounded(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    return cut.rsplit(" ", 1)[0] if " " in cut else cut


def _day(day: date) -> str:
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"
