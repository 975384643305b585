"""The shapes that pass between mail's parts: sources yield `RawMessage`, the parser turns one into
a `ParsedMessage`, the store files it per owner, and search answers with `SearchHit`s."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import InterfaceError, OperationalError


class MailError(Exception):
    """Base of mail's own errors; each message is a sentence a person can act on."""


class ImportRefused(MailError):
    """A whole source is refused before anything is imported: too large, a zip that escapes its
    folder or expands too far, not mail at all, an IMAP login that failed."""


class ParseError(MailError):
    """One message cannot be read; the import counts it with this reason and carries on."""


class QueryError(MailError, ValueError):
    """A search query that cannot be understood (e.g. a date that is not a date)."""


class StorageError(MailError):
    """Mail's database did not answer, or refused a statement, while reading or changing mail or
    imports. The database's own error is the ``__cause__``."""

    @property
    def unavailable(self) -> bool:
        """The database could not be reached (rather than refusing the statement)."""
        return isinstance(self.__cause__, (OperationalError, InterfaceError))


@dataclass(frozen=True)
class RawMessage:
    """One message as a source found it."""

    raw: bytes
    source_id: str
    """Where it came from, for error reports: "inbox.mbox #12", "cur/1234.host:2,S", "INBOX UID 42"."""
    folder: str | None = None
    uid: int | None = None
    """IMAP only: the message's UID in ``folder``, valid under ``uidvalidity``."""
    uidvalidity: int | None = None


@dataclass(frozen=True)
class Attachment:
    filename: str | None
    content_type: str
    size: int


@dataclass(frozen=True)
class ParsedMessage:
    message_id: str | None
    """The Message-ID without angle brackets, or None when the message has none (or a broken one)."""
    content_hash: str
    """sha256 hex of the raw bytes: the identity of a message without a Message-ID."""
    subject: str
    from_name: str
    from_addr: str
    to: list[str]
    """Recipients as "Name <addr>" or "addr"."""
    cc: list[str]
    date: datetime | None
    """Timezone-aware (UTC when the header had no zone); None when missing or unreadable."""
    in_reply_to: str | None
    references: list[str]
    """Message-IDs from References then In-Reply-To, oldest first, without angle brackets."""
    body: str
    """The readable text: the text/plain part, or the HTML part turned into clean text."""
    excerpt: str
    """Subject plus the start of the body with quoted replies and signatures trimmed: what is embedded."""
    attachments: list[Attachment] = field(default_factory=list)
    is_html: bool = False
    """The body came from HTML."""
    signed: bool = False
    """The message carries a PGP/MIME or inline PGP signature."""
    size: int = 0
    warnings: list[str] = field(default_factory=list)
    """What was repaired while reading it (undeclared charset, unreadable date, ...)."""


@dataclass(frozen=True)
class ImportProgress:
    done: int
    total: int | None
    rate: float
    """Messages per second so far."""
    eta_seconds: float | None


@dataclass(frozen=True)
class ImportSummary:
    imported: int
    duplicates: int
    failed: int
    failures: list[tuple[str, str]]
    """(source_id, reason) of each message that failed, in order."""
    seconds: float
    embedded: bool = True
    cancelled: bool = False
    """The import was asked to stop and did so between two batches; what came before is kept."""


@dataclass(frozen=True)
class SearchHit:
    id: int
    message_id: str | None
    thread_id: str
    subject: str
    sender: str
    date: datetime | None
    snippet: str
    """Highlighted with <mark>…</mark> around matched words; everything else is escaped text, Markdown's
    punctuation included (as character references), so it shows as written through HTML or Markdown."""
    score: float
    text_rank: int | None
    """Position in the full-text ranking (1 = best), None when full-text did not find it."""
    semantic_rank: int | None
    semantic_distance: float | None
    has_attachments: bool = False
    thread_size: int = 1
    """Messages in its conversation, when results are grouped by conversation (else 1)."""
    thread_matches: int = 1
    """Of those, how many the search matched (the hit is the best of them)."""
