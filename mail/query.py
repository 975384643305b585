"""What a person types in the search box, understood the way Gmail users expect.

    invoices "tax return" -draft from:alice to:bob subject:"q3 budget" after:2024-01 has:attachment

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

__all__ = ["Query", "parse_query", "MAX_QUERY_CHARS", "MAX_FTS_CHARS", "MAX_TOPIC_CHARS"]

MAX_QUERY_CHARS = 2000
"""Input beyond this is ignored: nobody types more, and everything derived stays bounded."""
MAX_FTS_CHARS = 500
MAX_TOPIC_CHARS = 500
MAX_VALUE_CHARS = 200
"""Longest operator value or single word kept."""
_MAX_RAW_QUERY_CHARS = MAX_QUERY_CHARS + 100
"""What is cleaned of a longer input, before it is cut to `MAX_QUERY_CHARS`: a pasted book costs
no more than a long query. Cleaning never shortens the text, so the cut keeps its meaning."""

_TEXT_OPERATORS = {"from": "senders", "to": "recipients", "subject": "subjects"}
_DATE_OPERATORS = {"after", "before"}
_AGE_OPERATORS = {"newer_than", "older_than"}
_OPERATORS = set(_TEXT_OPERATORS) | _DATE_OPERATORS | _AGE_OPERATORS | {"has"}

_OPERATOR_TOKEN = re.compile(r"([A-Za-z_]+):(.*)", re.DOTALL)
_DATE = re.compile(r"(\d{4})(?:[-/.](\d{1,2})(?:[-/.](\d{1,2}))?)?")
_AGE = re.compile(r"(\d{1,4})\s*([dmy])", re.IGNORECASE)
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
    subjects: list[str] = field(default_factory=list)
    """``subject:`` values; every one must occur in the subject."""
    after: date | None = None
    """Messages on or after this day (inclusive). ``after:2024-01`` is 1 Jan 2024."""
    before: date | None = None
    """Messages before this day (exclusive). ``before:2024`` is 1 Jan 2024."""
    has_attachment: bool = False
    topic: str = ""
    """Words and phrases in the order typed, quotes removed: what full-text and semantic search
    look for, and the topic the image cache draws. Empty when the query is only filters."""
    fts_query: str = ""
    """For ``websearch_to_tsquery('english', ...)``: the words, "phrases" and -exclusions; at most
    `MAX_FTS_CHARS` long. Empty when there is nothing to match as text."""

    @property
    def is_empty(self) -> bool:
        """True when the query asks for nothing: no text, no exclusions, no filters."""
        return not (self.topic or self.excluded or self.senders or self.recipients or self.subjects
                    or self.after or self.before or self.has_attachment)

    def describe(self) -> str:
        """A short summary for the UI, e.g. "invoices · from alice · after 31 Jan 2024"."""
        parts = [self.topic] if self.topic else []
        if self.excluded:
            parts.append("without " + ", ".join(self.excluded))
        if self.senders:
            parts.append("from " + " and ".join(self.senders))
        if self.recipients:
            parts.append("to " + " and ".join(self.recipients))
        if self.subjects:
            parts.append("subject " + " and ".join(f"\u201c{s}\u201d" for s in self.subjects))
        if self.has_attachment:
            parts.append("with attachments")
        if self.after:
            parts.append("after " + _day(self.after))
        if self.before:
            parts.append("before " + _day(self.before))
        return " \u00b7 ".join(parts) if parts else "all messages"


def parse_query(text: str, *, today: date | None = None) -> Query:
    """Parse what was typed in the search box. ``today`` anchors ``newer_than:``/``older_than:``.

    Raises `QueryError` for a date operator whose value is not a date or an age, for ``has:``
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
            continue
        if negated:
            raise QueryError(f"Excluding with an operator ({raw}) is not supported: remove the \u201c-\u201d, "
                             f"or exclude a word instead, like -newsletter.")
        value = match.group(2) or tokens.operator_value()
        value = " ".join(value.split())[:MAX_VALUE_CHARS]
        if name in _TEXT_OPERATORS:
            if value:
                values[_TEXT_OPERATORS[name]].append(value.strip("<>") or value)
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

    positive = [t for kind, t in terms if kind in ("word", "phrase")]
    return Query(
        text=text,
        words=[t for kind, t in terms if kind == "word"],
        phrases=[t for kind, t in terms if kind == "phrase"],
        excluded=[t for kind, t in terms if kind in ("-word", "-phrase")],
        after=after,
        before=before,
        has_attachment=has_attachment,
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
