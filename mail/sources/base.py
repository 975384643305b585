"""What every source shares: the errors, `Skipped`, `Limits`, the size texts, recognising mail
from its first bytes, and the `Source` base class."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar

from mail.types import ImportRefused, MailError, RawMessage

MiB = 1024 * 1024

NOT_MAIL = "is not an mbox file, a Maildir, .eml files or a .zip of them"


class SourceInterrupted(MailError):
    """A source that was readable stopped part-way (an IMAP connection dropped or timed out).
    What was yielded before it is good; running the import again continues from there.

    Like `ImapRefused`, the message repeats nothing the server sent; ``detail`` adds that."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail or message


class ImapRefused(ImportRefused):
    """An IMAP account that cannot be imported. The message is for anyone: it names the host
    and port and repeats nothing the server sent, so the import cannot be used to read what
    other services on a network answer. ``detail`` is the whole story (the server's reply, the
    TLS or socket error, the address a name resolved to), for admins and the log."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail or message


def error_detail(error: BaseException) -> str:
    """What an admin may read about ``error``: its ``detail`` when it has one, else its message."""
    return getattr(error, "detail", None) or str(error)


@dataclass(frozen=True)
class Skipped:
    """One message a source will not hand over, with the reason; the import counts it as failed."""

    source_id: str
    reason: str
    folder: str | None = None
    uid: int | None = None
    """IMAP only, like `RawMessage`: so that the import's saved state moves past it."""
    uidvalidity: int | None = None


SourceItem = RawMessage | Skipped


@dataclass(frozen=True)
class Limits:
    """How much a source may read. Sizes are in bytes."""

    max_message_bytes: int = 25 * MiB
    """One message over this is `Skipped`, not read."""
    max_upload_bytes: int = 200 * MiB
    """An upload over this is refused as a whole."""
    max_zip_entries: int = 50_000
    max_zip_total_bytes: int = 1024 * MiB
    """A zip whose members expand beyond this is refused: by what their headers declare when it
    is opened, and by the bytes actually decompressed when it is read."""
    max_compression_ratio: float = 100.0
    """Expanded size / compressed size above which a member (of at least 1 MiB expanded) or the
    whole zip counts as a zip bomb; compressed sizes are the bytes the archive really holds, not
    what its headers claim. Mail compresses about 3-10x."""

    def __post_init__(self) -> None:
        for name in ("max_message_bytes", "max_upload_bytes", "max_zip_entries",
                     "max_zip_total_bytes", "max_compression_ratio"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be greater than 0, got {value!r}.")


def _size(n: int | float) -> str:
    if n < 1024:
        return f"{int(n)} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}".replace(".0 ", " ")
    raise AssertionError("unreachable")


def _too_large(size: int, limits: Limits) -> str:
    return (f"the message is {_size(size)}, over the {_size(limits.max_message_bytes)} limit "
            "for one message")


# --- recognising mail ------------------------------------------------------------------------

_HEADER_LINE = re.compile(rb"[!-9;-~]+:")
_KNOWN_HEADERS = re.compile(
    rb"(?im)^(from|to|subject|date|message-id|received|return-path|delivered-to|mime-version"
    rb"|sender|reply-to|cc|in-reply-to|references|x-mailer|x-original-to|content-type):"
)
_PEEK = 8192


def _is_mbox(head: bytes) -> bool:
    return head.lstrip(b"\r\n").startswith(b"From ")


def _is_zip(head: bytes) -> bool:
    return head.startswith((b"PK\x03\x04", b"PK\x05\x06"))


def _looks_like_message(head: bytes) -> bool:
    """Starts like RFC 5322 headers and carries at least one header that mail has."""
    text = head.lstrip(b"\r\n")
    if not _HEADER_LINE.match(text):
        return False
    headers = re.split(rb"\r?\n\r?\n", text, maxsplit=1)[0]
    return _KNOWN_HEADERS.search(headers) is not None


# --- the base ---------------------------------------------------------------------------------


class Source(ABC):
    """Something to import mail from. Iterate it for `SourceItem`s; close it when done (or use
    it as a context manager)."""

    kind: ClassVar[str]
    name: str
    """What to call it in messages and the UI (never contains a password)."""
    limits: Limits

    @property
    def total(self) -> int | None:
        """How many items iteration will yield, when known without reading the mail itself."""
        return None

    @abstractmethod
    def __iter__(self) -> Iterator[SourceItem]: ...

    def close(self) -> None:
        """Release files or connections; safe to call twice."""

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

