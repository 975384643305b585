"""Where an import reads its mail from: files on the server, an upload, or an IMAP account.

    with open_source("/data/inbox.mbox") as source:
        print(source.total)                  # for a progress bar; None when not cheap to know
        for item in source:
            if isinstance(item, Skipped):    # one message that cannot be taken (too large, ...)
                failed.append((item.source_id, item.reason))
            else:                            # a RawMessage: raw bytes + where it came from
                ...

A source yields `RawMessage`s and, for single messages it will not hand over, `Skipped` with a
reason; the import counts those as failed and carries on. A whole source that cannot be read
safely (not mail at all, an upload over the limit, a zip that escapes its folder or expands too
far, an IMAP login that fails) raises `ImportRefused` with a sentence saying what to do. An IMAP
connection that breaks part-way raises `SourceInterrupted`.

Kinds, as `open_source` detects them: an mbox file (starts with "From "), a Maildir (a folder
with cur/ and new/, Maildir++ subfolders included), a folder of .eml files (searched
recursively), a single .eml file, a .zip of any of those, and ``imap://`` / ``imaps://`` URLs.

mbox files are read by a streaming splitter rather than `mailbox.mbox`: on the 8.6 MB,
2,500-message SpamAssassin mbox it takes 13 ms against 117 ms for ``mailbox.mbox`` +
``get_bytes`` (same bytes out), needs no table of contents built up front, keeps one message
in memory at a time, and works unchanged on uploads and on zip members. A new message starts
at a line beginning with "From " that opens the file or follows an empty line; ">From "
quoting is left as it is, as `mailbox.mbox` does.
"""

from __future__ import annotations

import base64
import bisect
import imaplib
import io
import ipaddress
import mmap
import os
import re
import socket
import ssl
import stat
import struct
import zipfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Literal, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from mail.types import ImportRefused, MailError, RawMessage

__all__ = [
    "EmlFileSource",
    "EmlFolderSource",
    "ImapRefused",
    "ImapSource",
    "Limits",
    "MaildirSource",
    "MboxSource",
    "Skipped",
    "Source",
    "SourceInterrupted",
    "SourceItem",
    "ZipSource",
    "error_detail",
    "open_source",
    "open_upload",
    "resolve_imap_host",
]

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


# --- mbox -------------------------------------------------------------------------------------

_SEPARATOR = re.compile(rb"\n\r?\nFrom ")
"""An empty line, then a line starting with "From ": where the next message begins."""
_BLOCK = 1 * MiB


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _read_mbox(stream: _Readable, label: str, limits: Limits) -> Iterator[SourceItem]:
    """Split an mbox stream into messages, reading 1 MiB blocks and finding separators in C.

    The stream is read as if it started with an empty line, so a "From " line that opens it
    (after any empty lines) begins the first message; text before it is ignored. At most one
    message (capped at the size limit; the rest of an oversized one is counted, not kept) plus
    one block is in memory.
    """
    limit = limits.max_message_bytes
    buf = b"\n\n"
    eof = False
    index = 0
    body_at: int | None = None  # where the current message's text starts in buf
    dropped = 0  # bytes of the current (oversized) message already thrown away
    search_at = 0

    def finish(end: int) -> SourceItem:
        assert body_at is not None
        source_id = f"{label} #{index}"
        size = dropped + end - body_at
        if size > limit:
            return Skipped(source_id, _too_large(size, limits))
        raw = buf[body_at:end]
        if not raw.strip():
            return Skipped(source_id, "the message is empty")
        return RawMessage(raw=raw, source_id=source_id)

    def refill() -> bool:
        """Drop what is done, keep a tail a separator may straddle, read the next block."""
        nonlocal buf, body_at, dropped, search_at, eof
        keep = max(len(buf) - 8, 0)
        if body_at is not None:
            if dropped + len(buf) - body_at > limit:  # oversized: keep only the tail
                dropped += max(keep - body_at, 0)
            else:
                keep = body_at
        buf = buf[keep:]
        search_at = max(search_at - keep, 0)
        if body_at is not None:
            body_at = max(body_at - keep, 0)
        block = stream.read(_BLOCK)
        if not block:
            eof = True
            return False
        buf += block
        return True

    while True:
        found = _SEPARATOR.search(buf, search_at)
        if found is None:
            search_at = max(len(buf) - 8, search_at)  # what was searched needs no second look
            if refill():
                continue
            break
        if body_at is not None:
            yield finish(found.start() + 1)
        body_at = None
        from_line = found.end() - 5
        while (newline := buf.find(b"\n", from_line)) == -1 and not eof:
            search_at = from_line
            refill()
            from_line = search_at
        index += 1
        dropped = 0
        body_at = len(buf) if newline == -1 else newline + 1
        search_at = body_at - 1  # the From line's own newline may open the next separator
    if body_at is not None:
        end = len(buf)
        for blank in (b"\n\n", b"\n\r\n"):  # the empty line that ends the file's last message
            if buf.endswith(blank) and end - len(blank) + 1 >= body_at:
                end -= len(blank) - 1
                break
        yield finish(end)


def _count_mbox(data: bytes | mmap.mmap) -> int:
    """How many messages `_read_mbox` finds in ``data``, without copying it."""
    head = data[:_PEEK]
    count = 1 if head.lstrip(b"\r\n").startswith(b"From ") else 0
    start = len(head) - len(head.lstrip(b"\r\n"))
    for separator in (b"\n\nFrom ", b"\n\r\nFrom "):
        at = data.find(separator, start)
        while at != -1:
            count += 1
            at = data.find(separator, at + 1)
    return count


def _count_mbox_stream(stream: _Readable) -> int:
    """How many messages `_read_mbox` finds in ``stream``, reading it block by block."""
    count = 0
    tail = b"\n\n"
    while block := stream.read(_BLOCK):
        data = tail + block
        # one wholly inside the tail was counted with the previous block
        count += sum(1 for found in _SEPARATOR.finditer(data) if found.end() > len(tail))
        tail = data[-8:]
    return count


class MboxSource(Source):
    """An mbox file on disk, or uploaded bytes, split as described in the module docstring.
    source_id: "inbox.mbox #12" (1-based)."""

    kind = "mbox"

    def __init__(self, path: str | os.PathLike[str] | None = None, *, data: bytes | None = None,
                 name: str | None = None, limits: Limits | None = None) -> None:
        if (path is None) == (data is None):
            raise ValueError("Give an mbox either a path or data, not both.")
        self.path = Path(path) if path is not None else None
        self._data = data
        self.name = name or (self.path.name if self.path else "upload.mbox")
        self.limits = limits or Limits()
        self._total: int | None = None

    @property
    def total(self) -> int:
        if self._total is None:
            if self._data is not None:
                self._total = _count_mbox(self._data)
            else:
                assert self.path is not None
                with open(self.path, "rb") as f:
                    if os.fstat(f.fileno()).st_size == 0:
                        self._total = 0
                    else:
                        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                            self._total = _count_mbox(mapped)
        return self._total

    def __iter__(self) -> Iterator[SourceItem]:
        if self._data is not None:
            yield from _read_mbox(io.BytesIO(self._data), self.name, self.limits)
            return
        assert self.path is not None
        with open(self.path, "rb") as f:
            yield from _read_mbox(f, self.name, self.limits)


# --- files and folders ------------------------------------------------------------------------


def _read_file(path: Path, source_id: str, limits: Limits) -> SourceItem:
    limit = limits.max_message_bytes
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                return Skipped(source_id, _too_large(size, limits))
            raw = f.read(size + 1)  # one byte more tells that it grew since fstat()
            if len(raw) > size:
                raw += f.read(limit + 1 - len(raw))
    except OSError as error:
        return Skipped(source_id, f"the file could not be read: {error.strerror or error}")
    if len(raw) > limit:
        return Skipped(source_id, _too_large(len(raw), limits))
    if not raw.strip():
        return Skipped(source_id, "the message is empty")
    return RawMessage(raw=raw, source_id=source_id)


def _is_maildir(folder: Path) -> bool:
    return (folder / "cur").is_dir() and (folder / "new").is_dir()


class MaildirSource(Source):
    """A Maildir: the messages in cur/ and new/, and those of Maildir++ subfolders (".Sent/cur").
    source_id: the file's path inside the Maildir, e.g. "cur/1234.host:2,S".

    Files are listed with os.scandir instead of `mailbox.Maildir` so that each file's size is
    checked before it is read (an oversized one is `Skipped` unread) and the source_id is the
    path; on the 560-message Enron Maildir it takes 9 ms against 12 ms for `mailbox.Maildir`."""

    kind = "maildir"

    def __init__(self, path: str | os.PathLike[str], *, limits: Limits | None = None) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.limits = limits or Limits()
        self._files: list[str] | None = None

    def _list(self) -> list[str]:
        if self._files is None:
            folders = [""]
            with os.scandir(self.path) as entries:
                folders += sorted(
                    entry.name + "/" for entry in entries
                    if entry.name.startswith(".") and entry.name not in (".", "..")
                    and entry.is_dir(follow_symlinks=False) and _is_maildir(Path(entry.path))
                )
            files = []
            for folder in folders:
                for sub in ("cur", "new"):
                    directory = self.path / folder / sub
                    try:
                        with os.scandir(directory) as entries:
                            names = sorted(entry.name for entry in entries
                                           if not entry.name.startswith(".")
                                           and entry.is_file(follow_symlinks=False))
                    except FileNotFoundError:
                        continue
                    files += [f"{folder}{sub}/{name}" for name in names]
            self._files = files
        return self._files

    @property
    def total(self) -> int:
        return len(self._list())

    def __iter__(self) -> Iterator[SourceItem]:
        for relative in self._list():
            yield _read_file(self.path / relative, relative, self.limits)


def _eml_files(root: Path) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.lower().endswith(".eml") and not name.startswith("."):
                found.append(os.path.relpath(os.path.join(folder, name), root))
    return found


class EmlFolderSource(Source):
    """Every .eml file under a folder, recursively (hidden folders and symlinked folders are not
    entered). source_id: the path inside the folder, e.g. "2019/receipt.eml"."""

    kind = "eml-folder"

    def __init__(self, path: str | os.PathLike[str], *, limits: Limits | None = None) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.limits = limits or Limits()
        self._files: list[str] | None = None

    def _list(self) -> list[str]:
        if self._files is None:
            self._files = _eml_files(self.path)
        return self._files

    @property
    def total(self) -> int:
        return len(self._list())

    def __iter__(self) -> Iterator[SourceItem]:
        for relative in self._list():
            yield _read_file(self.path / relative, relative, self.limits)


class EmlFileSource(Source):
    """One message: a .eml file, or uploaded bytes. source_id: the file name."""

    kind = "eml"

    def __init__(self, path: str | os.PathLike[str] | None = None, *, data: bytes | None = None,
                 name: str | None = None, limits: Limits | None = None) -> None:
        if (path is None) == (data is None):
            raise ValueError("Give an .eml either a path or data, not both.")
        self.path = Path(path) if path is not None else None
        self._data = data
        self.name = name or (self.path.name if self.path else "upload.eml")
        self.limits = limits or Limits()

    @property
    def total(self) -> int:
        return 1

    def __iter__(self) -> Iterator[SourceItem]:
        if self.path is not None:
            yield _read_file(self.path, self.name, self.limits)
            return
        assert self._data is not None
        if len(self._data) > self.limits.max_message_bytes:
            yield Skipped(self.name, _too_large(len(self._data), self.limits))
        elif not self._data.strip():
            yield Skipped(self.name, "the message is empty")
        else:
            yield RawMessage(raw=self._data, source_id=self.name)


# --- zip --------------------------------------------------------------------------------------

_RATIO_FLOOR = 1 * MiB
"""Below this expanded size a high compression ratio is harmless (a short run of spaces)."""
_IGNORED_PARTS = {"__MACOSX"}
_DAMAGED = (zipfile.BadZipFile, zlib.error, struct.error, OSError, EOFError, ValueError, RuntimeError,
            NotImplementedError)
"""What zipfile raises on an archive or a member it cannot read (damaged, or made to hurt)."""
_LOCAL_HEADER = struct.Struct("<4s22xHH")
"""A member's local header: signature, 22 bytes we do not need, name length, extra field length."""
_CHUNK = 1 * MiB
"""Members are decompressed this much at a time, and counted after each piece."""


def _drain(stream: _Readable, limit: int) -> None:
    """Read and drop up to ``limit`` bytes of ``stream``, piece by piece."""
    left = limit
    while left > 0 and (part := stream.read(min(_CHUNK, left))):
        left -= len(part)


def _read_up_to(stream: _Readable, limit: int) -> bytes:
    """At most ``limit`` bytes of ``stream``, read piece by piece (never all of it at once)."""
    parts: list[bytes] = []
    size = 0
    while size < limit:
        part = stream.read(min(_CHUNK, limit - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def _unsafe_name(name: str) -> bool:
    normal = name.replace("\\", "/")
    return (
        not normal
        or normal.startswith("/")
        or re.match(r"[A-Za-z]:", normal) is not None
        or "\x00" in normal
        or any(part == ".." for part in normal.split("/"))
    )


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


class _Counted:
    """Reads through to ``inner``, reporting every chunk's length to ``count`` (which raises to
    stop the read)."""

    def __init__(self, inner: _Readable, count: Callable[[int], None]) -> None:
        self._inner = inner
        self._count = count

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._count(len(data))
        return data


class ZipSource(Source):
    """A .zip (a file, or uploaded bytes) of .eml files, mbox files and Maildir trees, read in
    memory member by member: nothing is extracted to disk.

    Refused as a whole (`ImportRefused`) when opened, from its headers alone: more than
    ``max_zip_entries`` members, a member whose name escapes the folder (absolute, "..", a drive
    letter) or is a symlink, an encrypted member, a member that claims more compressed bytes
    than the archive holds before the next member (or shares its data with another: the tricks
    of zip bombs that lie about their sizes), a declared expanded size over
    ``max_zip_total_bytes``, or a bomb-like compression ratio (against the bytes really there).

    Headers can lie in ways no check at open sees, so the bytes actually decompressed are what
    counts: before the first message is handed over (on `total`, or when iteration starts),
    every member is decompressed once, piece by piece, and counted; past the limits (total
    expansion, the ratio against the archive's real size, per member against its real bytes)
    the zip is refused while nothing of it has been imported. Reading then counts again, so
    the limits hold even if the archive changed in between. A zip inside the zip is not opened
    (`Skipped`); other files that are not mail (.DS_Store, notes.txt, Dovecot index files) are
    ignored and listed in ``ignored``.

    source_id: the member's path ("Takeout/Mail/All.mbox #3" for mbox members).
    """

    kind = "zip"

    def __init__(self, path: str | os.PathLike[str] | None = None, *, data: bytes | None = None,
                 name: str | None = None, limits: Limits | None = None) -> None:
        if (path is None) == (data is None):
            raise ValueError("Give a zip either a path or data, not both.")
        self.path = Path(path) if path is not None else None
        self.name = name or (self.path.name if self.path else "upload.zip")
        self.limits = limits or Limits()
        self.ignored: list[str] = []
        """Members that are not mail and were left out."""
        self._expanded = 0
        """Bytes actually decompressed by the current pass (the check, or the reading)."""
        self._total: int | None = None
        try:
            self._zip = zipfile.ZipFile(self.path if self.path is not None else io.BytesIO(data))  # type: ignore[arg-type]
        except (*_DAMAGED, zipfile.LargeZipFile, KeyError, IndexError) as error:
            raise ImportRefused(
                f"{self.name} is not a readable zip archive ({error}); create it again and retry."
            ) from None
        try:
            self._plan = self._check_and_plan()
        except BaseException:
            self._zip.close()
            raise

    def close(self) -> None:
        self._zip.close()

    # -- checks at open

    def _check_and_plan(self) -> list[tuple[str, zipfile.ZipInfo]]:
        limits = self.limits
        infos = self._zip.infolist()
        if len(infos) > limits.max_zip_entries:
            raise ImportRefused(
                f"{self.name} holds {len(infos):,} entries, more than the {limits.max_zip_entries:,} "
                "allowed; split it into smaller zips or import the folder from the server."
            )
        self._rooms = self._measure_rooms(infos)
        declared = 0
        compressed = 0
        for info in infos:
            if _unsafe_name(info.filename):
                raise ImportRefused(
                    f"{self.name} contains the entry {info.filename!r}, whose path leads outside "
                    "the archive's folder; it was refused as unsafe. Zip the mail again from "
                    "inside its folder."
                )
            if _is_symlink(info):
                raise ImportRefused(
                    f"{self.name} contains the symbolic link {info.filename!r}; archives with "
                    "links are refused as unsafe. Zip the mail again without links."
                )
            if info.flag_bits & 0x1:
                raise ImportRefused(
                    f"{self.name} is password-protected ({info.filename!r} is encrypted); "
                    "zip the mail again without a password."
                )
            room = self._rooms[info.header_offset]
            if info.compress_size > room:
                raise ImportRefused(
                    f"{self.name} looks forged: {info.filename!r} claims {_size(info.compress_size)} "
                    f"of compressed data, but the archive holds only {_size(room)} for it (a zip "
                    "bomb's way of hiding how far it expands); it was refused and nothing was "
                    "imported. Zip the mail again."
                )
            declared += info.file_size
            compressed += info.compress_size
            if (info.file_size >= _RATIO_FLOOR
                    and info.file_size > limits.max_compression_ratio * max(info.compress_size, 1)):
                raise ImportRefused(self._bomb(info.filename, info.file_size / max(info.compress_size, 1)))
        if declared > limits.max_zip_total_bytes:
            raise ImportRefused(
                f"{self.name} expands to {_size(declared)}, over the "
                f"{_size(limits.max_zip_total_bytes)} limit; nothing was imported. Split it into "
                "smaller zips."
            )
        if declared >= _RATIO_FLOOR and declared > limits.max_compression_ratio * max(compressed, 1):
            raise ImportRefused(self._bomb(None, declared / max(compressed, 1)))

        self._maildirs = {
            "/".join(parts[:-2])
            for parts in (info.filename.replace("\\", "/").split("/") for info in infos)
            if len(parts) >= 2 and parts[-2] in ("cur", "new")
        }
        plan: list[tuple[str, zipfile.ZipInfo]] = []
        for info in infos:
            if info.is_dir():
                continue
            kind = self._classify(info)
            if kind == "ignore":
                self.ignored.append(info.filename)
            else:
                plan.append((kind, info))
        if not any(kind != "zip" for kind, _ in plan):
            hint = (" It only holds other zips: unpack them and import those instead."
                    if plan else "")
            raise ImportRefused(f"{self.name} contains no mail: it {NOT_MAIL}.{hint}")
        return plan

    def _measure_rooms(self, infos: list[zipfile.ZipInfo]) -> dict[int, int]:
        """header offset → the bytes the archive really has for that member's compressed data:
        from the end of its local header to the next member's header (or the central
        directory). Headers may claim anything; this is what is there. Also the archive's size."""
        fp = self._zip.fp
        assert fp is not None
        fp.seek(0, os.SEEK_END)
        self._archive_bytes = fp.tell()
        named = sorted((info.header_offset, info.filename) for info in infos)
        for (at, first), (other_at, second) in zip(named, named[1:]):
            if at == other_at:
                raise ImportRefused(
                    f"{self.name} looks forged: the entries {first!r} and {second!r} share the same "
                    "data (a zip bomb's trick); it was refused and nothing was imported. Zip the "
                    "mail again."
                )
        starts = [at for at, _ in named]
        central = self._zip.start_dir
        rooms: dict[int, int] = {}
        for index, at in enumerate(starts):
            end = starts[index + 1] if index + 1 < len(starts) else self._archive_bytes
            if at < central:
                end = min(end, central)
            data_at = at + _LOCAL_HEADER.size
            header = b""
            if 0 <= at < self._archive_bytes:
                fp.seek(at)
                header = fp.read(_LOCAL_HEADER.size)
            if len(header) == _LOCAL_HEADER.size and header[:4] == b"PK\x03\x04":
                _, name_length, extra_length = _LOCAL_HEADER.unpack(header)
                data_at += name_length + extra_length
            # else: a damaged header; reading that member fails later, on its own
            rooms[at] = max(end - data_at, 0)
        return rooms

    def _bomb(self, member: str | None, ratio: float) -> str:
        what = f"{member!r} expands" if member is not None else "it expands"
        return (f"{self.name} looks like a zip bomb: {what} {ratio:,.0f} times (more than "
                f"{self.limits.max_compression_ratio:,.0f}); nothing was imported. Zip the mail "
                "again normally, or import the folder from the server.")

    def _classify(self, info: zipfile.ZipInfo) -> str:
        parts = info.filename.replace("\\", "/").split("/")
        base = parts[-1]
        if base.startswith(".") or any(p in _IGNORED_PARTS for p in parts[:-1]):
            return "ignore"
        if len(parts) >= 2 and parts[-2] == "tmp" and "/".join(parts[:-2]) in self._maildirs:
            return "ignore"  # a Maildir's deliveries in progress
        if base.lower().endswith(".zip"):
            return "zip"
        if len(parts) >= 2 and parts[-2] in ("cur", "new"):
            return "message"
        if base.lower().endswith(".eml"):
            return "message"
        head = self._peek(info)
        if _is_zip(head):
            return "zip"
        if _is_mbox(head):
            return "mbox"
        if _looks_like_message(head):
            return "message"
        return "ignore"

    def _peek(self, info: zipfile.ZipInfo) -> bytes:
        try:
            with self._zip.open(info) as member:
                return member.read(min(_PEEK, info.file_size))
        except _DAMAGED:
            return b""

    # -- counting what is really decompressed

    def _meter(self, info: zipfile.ZipInfo, *, checking: bool) -> Callable[[int], None]:
        """What a member's reader reports each decompressed piece to: the zip's running total
        and this member's, held to the limits against the bytes the archive really holds."""
        limits = self.limits
        room = max(self._rooms.get(info.header_offset, 0), 1)
        whole = max(self._archive_bytes, 1)
        member = 0

        def count(n: int) -> None:
            nonlocal member
            member += n
            self._expanded += n
            if self._expanded > limits.max_zip_total_bytes:
                raise ImportRefused(self._expands_too_far(checking))
            if member >= _RATIO_FLOOR and member > limits.max_compression_ratio * room:
                raise ImportRefused(self._bomb(info.filename, member / room))
            if self._expanded >= _RATIO_FLOOR and self._expanded > limits.max_compression_ratio * whole:
                raise ImportRefused(self._bomb(None, self._expanded / whole))

        return count

    def _expands_too_far(self, checking: bool) -> str:
        limit = _size(self.limits.max_zip_total_bytes)
        if checking:
            return (f"{self.name} expands to more than {limit} when decompressed, whatever its "
                    "headers say; nothing was imported. Split it into smaller zips.")
        return (f"{self.name} changed while it was being imported and now expands to more than "
                f"{limit}; the rest of it was refused. Split it into smaller zips.")

    def _check_expansion(self) -> int:
        """Decompress every member once, piece by piece, counting the real bytes (see the class
        docstring), and count the items iteration will yield. Runs once, before any message is
        handed over; refuses with `ImportRefused` while nothing of the zip has been imported."""
        if self._total is not None:
            return self._total
        self._expanded = 0
        count = 0
        for kind, info in self._plan:
            if kind != "mbox":
                count += 1
            if kind == "zip":
                continue  # not opened: yielded as Skipped
            try:
                with self._zip.open(info) as member:
                    counted = _Counted(member, self._meter(info, checking=True))
                    if kind == "mbox":
                        count += _count_mbox_stream(counted)
                    else:
                        _drain(counted, self.limits.max_message_bytes + 1)
            except _DAMAGED:
                if kind == "mbox":
                    count += 1  # yielded as one Skipped
        self._total = count
        return count

    @property
    def expanded(self) -> int:
        """Bytes actually decompressed so far by the check or the reading."""
        return self._expanded

    # -- reading

    @property
    def total(self) -> int:
        """The items iteration yields: .eml and Maildir members, each message of mbox members.
        Asking decompresses the whole zip once (see `_check_expansion`), which may refuse it."""
        return self._check_expansion()

    def __iter__(self) -> Iterator[SourceItem]:
        self._check_expansion()
        self._expanded = 0
        limit = self.limits.max_message_bytes
        for kind, info in self._plan:
            source_id = info.filename
            if kind == "zip":
                yield Skipped(source_id, "a zip inside the zip is not opened; unpack it and "
                                         "import it separately")
                continue
            try:
                if kind == "mbox":
                    with self._zip.open(info) as member:
                        counted = _Counted(member, self._meter(info, checking=False))
                        yield from _read_mbox(counted, source_id, self.limits)
                    continue
                if info.file_size > limit:
                    yield Skipped(source_id, _too_large(info.file_size, self.limits))
                    continue
                with self._zip.open(info) as member:
                    raw = _read_up_to(_Counted(member, self._meter(info, checking=False)), limit + 1)
            except _DAMAGED as error:
                yield Skipped(source_id, f"the zip member is damaged and could not be read: {error}")
                continue
            if len(raw) > limit:
                yield Skipped(source_id, _too_large(len(raw), self.limits))
            elif not raw.strip():
                yield Skipped(source_id, "the message is empty")
            else:
                yield RawMessage(raw=raw, source_id=source_id)


# --- IMAP -------------------------------------------------------------------------------------

_FETCH_UID = re.compile(rb"UID (\d+)")
_FETCH_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


def imap_utf7(name: str) -> str:
    """A folder name in IMAP's modified UTF-7 (RFC 3501, 5.1.3): "Entwürfe" → "Entw&APw-rfe"."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).rstrip(b"=")
            out.append("&" + encoded.replace(b"/", b",").decode("ascii") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def _quote_mailbox(name: str) -> str:
    encoded = imap_utf7(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _uid_set(uids: Sequence[int]) -> str:
    """"1:3,7,9:10" for [1, 2, 3, 7, 9, 10] (sorted input)."""
    ranges: list[str] = []
    start = prev = uids[0]
    for uid in uids[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        ranges.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = uid
    ranges.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(ranges)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _server_text(data: Iterable[object]) -> str:
    """What the server said, for an error's ``detail`` only (never its message)."""
    texts = [item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
             for item in data if item is not None]
    return (" ".join(texts).strip() or "no reason given")[:300]


def _said(error: BaseException) -> str:
    """An imaplib or socket error as text for a ``detail``, short."""
    return (str(error).strip() or type(error).__name__)[:300]


_IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
    "169.254.170.2",    # AWS ECS task credentials
    "fd00:ec2::254",    # AWS over IPv6
    "100.100.100.200",  # Alibaba Cloud
    "192.0.0.192",      # Oracle Cloud
))
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (::ffff:a.b.c.d, 6to4, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _forbidden(address: _IpAddress, *, allow_private: bool) -> str | None:
    """Why an IMAP import may not connect to ``address``, or None when it may. Cloud metadata,
    multicast, unspecified and reserved addresses never; loopback, private, link-local and
    carrier-grade NAT addresses only with ``allow_private``."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return _forbidden(embedded, allow_private=allow_private)
        address = ipaddress.IPv6Address(int(address))  # without a %scope
    if address in _METADATA_ADDRESSES:
        return "a cloud metadata service"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_loopback:
        kind = "this machine itself (loopback)"
    elif address.is_reserved:
        return "a reserved address"
    elif address.is_link_local:
        kind = "a link-local address"
    elif isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        kind = "a carrier-grade NAT address"
    elif address.is_private or not address.is_global or (
            isinstance(address, ipaddress.IPv6Address) and address.is_site_local):
        kind = "a private network address"
    else:
        return None
    return None if allow_private else kind


_Address = tuple[int, int, int, tuple]
"""(family, type, proto, sockaddr), as ``socket.getaddrinfo`` gives them."""


def resolve_imap_host(host: str, port: int, *, allow_private_hosts: bool = False) -> list[_Address]:
    """Resolve ``host`` once and check every address it has; the addresses to connect to (and
    only to those: a name resolved again could answer differently). Raises `ImapRefused` when
    the name does not resolve or any of its addresses is one an import may not reach."""
    name = host.strip().removeprefix("[").removesuffix("]")
    where = f"{host}:{port}"
    try:
        found = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError, ValueError) as error:
        raise ImapRefused(f"Could not reach an IMAP server at {where}; check the host name.",
                          f"The IMAP server name {host!r} does not resolve ({_said(error)}).") from None
    addresses: list[_Address] = []
    for family, socket_type, proto, _, sockaddr in found:
        try:
            address = ipaddress.ip_address(sockaddr[0])
        except ValueError:
            continue
        why = _forbidden(address, allow_private=allow_private_hosts)
        if why is not None:
            never = _forbidden(address, allow_private=True) is not None
            raise ImapRefused(
                f"{where} is not an IMAP server this app may connect to: imports reach only "
                "servers on the internet, not this machine or its private network.",
                f"{host} resolves to {address}, {why}; imports may not connect there"
                + ("." if never else " unless IMAP_ALLOW_PRIVATE_HOSTS is set (for an IMAP "
                   "server on this machine or a trusted private network).")) from None
        addresses.append((family, socket_type, proto, sockaddr))
    if not addresses:
        raise ImapRefused(f"Could not reach an IMAP server at {where}; check the host name.",
                          f"The IMAP server name {host!r} has no IP address.")
    return addresses


def _open_socket(addresses: Sequence[_Address], timeout: float | None) -> socket.socket:
    """A TCP connection to the first of ``addresses`` that answers."""
    last: OSError | None = None
    for family, kind, proto, sockaddr in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            return sock
        except OSError as error:
            sock.close()
            last = error
    assert last is not None
    raise last


class _PinnedIMAP4(imaplib.IMAP4):
    """imaplib's client, connected to addresses checked beforehand rather than to the name."""

    def __init__(self, host: str, port: int, addresses: Sequence[_Address], timeout: float) -> None:
        self._addresses = addresses
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return _open_socket(self._addresses, timeout)


class _PinnedIMAP4_SSL(imaplib.IMAP4_SSL):
    """The same with TLS from the start; the certificate is checked against the host name."""

    def __init__(self, host: str, port: int, addresses: Sequence[_Address], ssl_context: ssl.SSLContext,
                 timeout: float) -> None:
        self._addresses = addresses
        super().__init__(host, port, ssl_context=ssl_context, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return self.ssl_context.wrap_socket(_open_socket(self._addresses, timeout),
                                            server_hostname=self.host)


@dataclass
class _FolderPlan:
    folder: str
    uidvalidity: int
    uids: list[int] = field(default_factory=list)


class ImapSource(Source):
    """One IMAP account's folders, read without changing them.

    Connects and logs in when constructed (so a wrong password or host is an `ImportRefused`
    straight away), then, per folder: EXAMINE (read-only), ``UID SEARCH UID n:*`` for the UIDs
    above the previous import's last one, ``UID FETCH (RFC822.SIZE)`` to skip oversized
    messages unread, and ``UID FETCH (BODY.PEEK[])`` in batches, so nothing is marked \\Seen.

    ``security``: "ssl" (implicit TLS, imaps, port 993), "starttls" (port 143, upgraded before
    login) or "plain" (unencrypted; refused for hosts other than loopback unless
    ``allow_plaintext``). ``ssl_context`` defaults to the system's trusted certificates.

    The host is resolved once and every address checked (`resolve_imap_host`): loopback,
    private, link-local and carrier-grade NAT addresses only with ``allow_private_hosts``,
    cloud metadata, multicast and reserved ones never. The connection goes to a checked
    address, not to the name resolved again; TLS still verifies the certificate against the
    name. Errors are `ImapRefused` / `SourceInterrupted` whose message repeats nothing the
    server sent (its words are in their ``detail``).

    Incremental imports: pass the ``state`` saved from last time (folder → (uidvalidity,
    last_uid)); only newer UIDs are fetched. A folder whose UIDVALIDITY changed since is
    fetched again in full and listed in ``uidvalidity_changed``. Each yielded item carries
    folder, uid and uidvalidity; ``new_state()`` is the state to save once everything yielded
    so far is stored.

    The password is used for the login and not kept: not on the object, not in imaplib's
    command log, not in any error text.
    """

    kind = "imap"

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        user: str,
        password: str,
        security: Literal["ssl", "starttls", "plain"] = "ssl",
        folders: Sequence[str] = ("INBOX",),
        state: Mapping[str, tuple[int, int]] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
        allow_plaintext: bool = False,
        allow_private_hosts: bool = False,
        batch_size: int = 100,
        batch_bytes: int = 32 * MiB,
        limits: Limits | None = None,
    ) -> None:
        if security not in ("ssl", "starttls", "plain"):
            raise ValueError(f"security must be 'ssl', 'starttls' or 'plain', not {security!r}.")
        if not folders:
            raise ValueError("Give at least one IMAP folder to import.")
        if batch_size < 1 or batch_bytes < 1:
            raise ValueError("batch_size and batch_bytes must be at least 1.")
        self.host = host
        self.port = port or (993 if security == "ssl" else 143)
        self.user = user
        self.security = security
        self.folders = list(dict.fromkeys(folders))
        self.timeout = timeout
        self.allow_private_hosts = allow_private_hosts
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.limits = limits or Limits()
        scheme = "imaps" if security == "ssl" else "imap"
        self.name = f"{scheme}://{user}@{host}:{self.port}" + (
            "?starttls=1" if security == "starttls" else "")
        self.uidvalidity_changed: list[str] = []
        """Folders whose UIDVALIDITY differs from ``state``: everything there is fetched again."""
        self._previous = dict(state or {})
        self._state: dict[str, tuple[int, int]] = {}
        self._conn: imaplib.IMAP4 | None = None
        self._plans: list[_FolderPlan] = []

        if security == "plain" and not allow_plaintext and not _is_loopback(host):
            raise ImportRefused(
                f"Refusing to send the password for {user} unencrypted to {host}; use imaps:// "
                "(port 993) or imap:// with ?starttls=1."
            )
        self._conn = self._connect(ssl_context)
        try:
            self._login(password)
            del password
            for folder in self.folders:
                self._plans.append(self._plan(folder))
        except BaseException:
            self.close()
            raise

    # -- connection

    def _connect(self, context: ssl.SSLContext | None) -> imaplib.IMAP4:
        where = f"{self.host}:{self.port}"
        unreachable = (f"Could not reach an IMAP server at {where}; check the host, the port and "
                       "the security setting (SSL/TLS, usually port 993, or STARTTLS, port 143).")
        addresses = resolve_imap_host(self.host, self.port, allow_private_hosts=self.allow_private_hosts)
        name = self.host.strip().removeprefix("[").removesuffix("]")
        if self.security != "plain" and context is None:
            context = ssl.create_default_context()
        try:
            if self.security == "ssl":
                assert context is not None
                return _PinnedIMAP4_SSL(name, self.port, addresses, context, self.timeout)
            conn = _PinnedIMAP4(name, self.port, addresses, self.timeout)
        except ssl.SSLCertVerificationError as error:
            raise ImapRefused(
                f"The IMAP server {where} presented a certificate that is not trusted; check the "
                "host name, or give the server's certificate authority.",
                f"The IMAP server {where} presented a certificate that is not trusted "
                f"({error.verify_message})."
            ) from None
        except ssl.SSLError as error:
            raise ImapRefused(unreachable, f"TLS with the IMAP server {where} failed "
                                           f"({error.reason or _said(error)}).") from None
        except (OSError, imaplib.IMAP4.error) as error:
            raise ImapRefused(unreachable, f"Could not connect to the IMAP server {where} "
                                           f"({_said(error)}).") from None
        if self.security == "starttls":
            try:
                conn.starttls(context)
            except ssl.SSLCertVerificationError as error:
                self._drop(conn)
                raise ImapRefused(
                    f"The IMAP server {where} presented a certificate that is not trusted; check "
                    "the host name, or give the server's certificate authority.",
                    f"The IMAP server {where} presented a certificate that is not trusted "
                    f"({error.verify_message})."
                ) from None
            except (OSError, imaplib.IMAP4.error) as error:
                self._drop(conn)
                raise ImapRefused(
                    f"The IMAP server {where} did not start TLS; use SSL/TLS (imaps://) if it "
                    "expects TLS from the start.",
                    f"The IMAP server {where} did not start TLS ({_said(error)})."
                ) from None
        return conn

    @staticmethod
    def _drop(conn: imaplib.IMAP4) -> None:
        try:
            conn.shutdown()
        except OSError:
            pass

    def _login(self, password: str) -> None:
        conn = self._conn
        assert conn is not None
        try:
            if (self.user + password).isascii() or "AUTH=PLAIN" not in conn.capabilities:
                conn.login(self.user, password)
            else:  # LOGIN cannot carry non-ASCII; SASL PLAIN is UTF-8
                credentials = f"\0{self.user}\0{password}".encode()
                conn.authenticate("PLAIN", lambda _challenge: credentials)
        except (imaplib.IMAP4.error, UnicodeError) as error:
            reason = str(error)
            if reason.startswith(("b'", 'b"')):  # imaplib passes the server's reply as bytes
                reason = reason[2:-1]
            reason = reason.replace(password, "***") if password else reason
            if isinstance(error, UnicodeError):
                reason = "the user name or password has characters this server cannot accept"
            advice = ("check the user name and password (some providers, like Gmail, want an app "
                      "password).")
            raise ImapRefused(
                f"The IMAP server {self.host} refused the login for {self.user!r}; {advice}",
                f"The IMAP server {self.host} refused the login for {self.user!r} ({reason}); {advice}"
            ) from None
        except OSError as error:
            raise ImapRefused(
                f"The IMAP server {self.host} dropped the connection during login; try again later.",
                f"The IMAP server {self.host} dropped the connection during login ({_said(error)})."
            ) from None
        finally:
            # imaplib keeps the last lines it sent, LOGIN "password" included, for debugging.
            log = getattr(conn, "_cmd_log", None)
            if isinstance(log, dict):
                log.clear()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.logout()
        except (OSError, imaplib.IMAP4.error):
            self._drop(conn)

    # -- planning

    def _folder_names(self) -> list[str]:
        assert self._conn is not None
        try:
            typ, data = self._conn.list()
        except (OSError, imaplib.IMAP4.error):
            return []
        names = []
        for line in data if typ == "OK" else []:
            if isinstance(line, bytes):
                match = re.search(rb'\) (?:"(?:[^"\\]|\\.)*"|NIL) (.*)$', line)
                if match:
                    names.append(match.group(1).decode("utf-8", "replace").strip('"'))
        return names

    def _examine(self, folder: str) -> int:
        """Select ``folder`` read-only; its UIDVALIDITY."""
        conn = self._conn
        assert conn is not None
        typ, data = conn.select(_quote_mailbox(folder), readonly=True)
        if typ != "OK":
            known = self._folder_names()
            listing = f" Folders there: {', '.join(known[:30])}." if known else ""
            missing = (f"The IMAP account {self.user}@{self.host} has no folder {folder!r} that "
                       "can be opened")
            raise ImapRefused(f"{missing}.{listing}", f"{missing} ({_server_text(data)}).{listing}")
        _, values = conn.response("UIDVALIDITY")
        if not values or values[0] is None:
            raise ImportRefused(
                f"The IMAP server {self.host} did not report a UIDVALIDITY for {folder!r}, so it "
                "cannot be imported reliably."
            )
        return int(values[0])

    def _search(self, since: int) -> list[int]:
        assert self._conn is not None
        typ, data = self._conn.uid("SEARCH", f"UID {since + 1}:*")
        if typ != "OK":
            raise SourceInterrupted(f"The IMAP server {self.host} refused to list the messages; "
                                    "try again later.",
                                    f"The IMAP server {self.host} refused UID SEARCH "
                                    f"({_server_text(data)}).")
        # "n:*" always matches the highest UID, even when it is below n.
        return sorted(uid for uid in {int(x) for x in (data[0] or b"").split()} if uid > since)

    def _plan(self, folder: str) -> _FolderPlan:
        try:
            uidvalidity = self._examine(folder)
            since = 0
            previous = self._previous.get(folder)
            if previous is not None:
                if int(previous[0]) == uidvalidity:
                    since = int(previous[1])
                else:
                    self.uidvalidity_changed.append(folder)
            self._state[folder] = (uidvalidity, since)
            return _FolderPlan(folder, uidvalidity, self._search(since))
        except (OSError, imaplib.IMAP4.error) as error:
            raise ImapRefused(
                f"The IMAP server {self.host} failed while listing {folder!r}; try again later.",
                f"The IMAP server {self.host} failed while listing {folder!r} ({_said(error)})."
            ) from None

    @property
    def total(self) -> int:
        return sum(len(plan.uids) for plan in self._plans)

    def new_state(self) -> dict[str, tuple[int, int]]:
        """folder → (uidvalidity, highest UID yielded so far): save it once those are stored."""
        return dict(self._state)

    # -- fetching

    def _fetch(self, command: str, uids: Sequence[int]) -> list[object]:
        assert self._conn is not None
        typ, data = self._conn.uid("FETCH", _uid_set(uids), command)
        if typ != "OK":
            raise imaplib.IMAP4.error(_server_text(data))
        return list(data)

    def _sizes(self, uids: Sequence[int]) -> dict[int, int]:
        sizes: dict[int, int] = {}
        for line in self._fetch("(UID RFC822.SIZE)", uids):
            meta = line[0] if isinstance(line, tuple) else line
            if isinstance(meta, bytes):
                uid, size = _FETCH_UID.search(meta), _FETCH_SIZE.search(meta)
                if uid and size:
                    sizes[int(uid.group(1))] = int(size.group(1))
        return sizes

    def _bodies(self, uids: Sequence[int]) -> dict[int, bytes]:
        """UID → raw message; the UID may come before or after the literal in the answer."""
        wanted = set(uids)
        bodies: dict[int, bytes] = {}
        waiting: bytes | None = None
        for part in self._fetch("(UID BODY.PEEK[])", uids):
            if isinstance(part, tuple) and len(part) == 2 and isinstance(part[1], bytes):
                match = _FETCH_UID.search(part[0])
                if match:
                    uid = int(match.group(1))
                    if uid in wanted:
                        bodies[uid] = part[1]
                    waiting = None
                else:
                    waiting = part[1]
            elif isinstance(part, bytes) and waiting is not None:
                match = _FETCH_UID.search(part)
                if match and int(match.group(1)) in wanted:
                    bodies[int(match.group(1))] = waiting
                waiting = None
        return bodies

    def _batches(self, uids: list[int], sizes: dict[int, int]) -> Iterator[list[int]]:
        batch: list[int] = []
        weight = 0
        for uid in uids:
            size = sizes[uid] if sizes[uid] <= self.limits.max_message_bytes else 0
            if batch and (len(batch) >= self.batch_size or weight + size > self.batch_bytes):
                yield batch
                batch, weight = [], 0
            batch.append(uid)
            weight += size
        if batch:
            yield batch

    def __iter__(self) -> Iterator[SourceItem]:
        if self._conn is None:
            raise SourceInterrupted(f"The IMAP connection to {self.host} is closed; open the "
                                    "source again.")
        limit = self.limits.max_message_bytes
        for plan in self._plans:
            if not plan.uids:
                continue
            folder, uidvalidity = plan.folder, plan.uidvalidity
            try:
                if self._examine(folder) != uidvalidity:
                    raise SourceInterrupted(
                        f"The folder {folder!r} on {self.host} was recreated during the import; "
                        "run the import again."
                    )
                step = self.batch_size * 10
                for start in range(0, len(plan.uids), step):
                    sizes = self._sizes(plan.uids[start:start + step])
                    present = [uid for uid in plan.uids[start:start + step] if uid in sizes]
                    for batch in self._batches(present, sizes):
                        small = [uid for uid in batch if sizes[uid] <= limit]
                        bodies = self._bodies(small) if small else {}
                        for uid in batch:
                            source_id = f"{folder} UID {uid}"
                            item: SourceItem
                            if sizes[uid] > limit:
                                item = Skipped(source_id, _too_large(sizes[uid], self.limits),
                                               folder, uid, uidvalidity)
                            elif uid in bodies:
                                item = RawMessage(raw=bodies.pop(uid), source_id=source_id,
                                                  folder=folder, uid=uid, uidvalidity=uidvalidity)
                            else:
                                continue  # expunged between the two fetches
                            self._state[folder] = (uidvalidity, uid)
                            yield item
            except (OSError, imaplib.IMAP4.error, imaplib.IMAP4.abort) as error:
                again = "run the import again: it continues after the last message stored."
                raise SourceInterrupted(
                    f"The IMAP connection to {self.host} broke while reading {folder!r}; {again}",
                    f"The IMAP connection to {self.host} broke while reading {folder!r} "
                    f"({_said(error)}); {again}"
                ) from None


# --- opening ----------------------------------------------------------------------------------


def _limits(**values: int | float | None) -> Limits:
    return Limits(**{name: value for name, value in values.items() if value is not None})


def open_imap_url(
    url: str,
    *,
    user: str | None = None,
    password: str | None = None,
    folders: Sequence[str] | None = None,
    state: Mapping[str, tuple[int, int]] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 30.0,
    allow_plaintext: bool = False,
    allow_private_hosts: bool = False,
    limits: Limits | None = None,
) -> ImapSource:
    """``imaps://user:password@host:port/Folder`` (implicit TLS) or ``imap://...?starttls=1``;
    a plain ``imap://`` URL without STARTTLS is for loopback only unless ``allow_plaintext``,
    and a server on this machine or a private network needs ``allow_private_hosts``.
    User and password given as arguments win over those in the URL; ``folders`` wins over the
    URL's path; the default folder is INBOX."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    shown = f"{scheme}://{parts.hostname or ''}"
    if scheme not in ("imap", "imaps") or not parts.hostname:
        raise ImportRefused(f"{shown} is not an IMAP address; write imaps://user@host/INBOX.")
    query = {key.lower(): values[-1] for key, values in parse_qs(parts.query).items()}
    starttls = query.pop("starttls", "0").lower() in ("1", "true", "yes", "on")
    if query:
        raise ImportRefused(f"The IMAP address {shown} has options this app does not know "
                            f"({', '.join(sorted(query))}); only ?starttls=1 is understood.")
    if scheme == "imaps" and starttls:
        raise ImportRefused("Use either imaps:// (TLS from the start) or imap:// with "
                            "?starttls=1, not both.")
    try:
        port = parts.port
    except ValueError:
        raise ImportRefused(f"The port in the IMAP address {shown} is not a number.") from None
    user = user or (unquote(parts.username) if parts.username else None)
    password = password if password is not None else (
        unquote(parts.password) if parts.password is not None else None)
    if not user or password is None:
        raise ImportRefused(f"Give a user name and password for {shown}.")
    path = unquote(parts.path.lstrip("/"))
    chosen = list(folders) if folders else [path] if path else ["INBOX"]
    security: Literal["ssl", "starttls", "plain"] = (
        "ssl" if scheme == "imaps" else "starttls" if starttls else "plain")
    return ImapSource(parts.hostname, port, user=user, password=password, security=security,
                      folders=chosen, state=state, ssl_context=ssl_context, timeout=timeout,
                      allow_plaintext=allow_plaintext, allow_private_hosts=allow_private_hosts,
                      limits=limits)


def open_source(
    path_or_url: str | os.PathLike[str],
    *,
    user: str | None = None,
    password: str | None = None,
    folders: Sequence[str] | None = None,
    state: Mapping[str, tuple[int, int]] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 30.0,
    allow_plaintext: bool = False,
    allow_private_hosts: bool = False,
    max_message_bytes: int | None = None,
    max_upload_bytes: int | None = None,
    max_zip_entries: int | None = None,
    max_zip_total_bytes: int | None = None,
    max_compression_ratio: float | None = None,
) -> Source:
    """The source at a path on this machine, or an ``imap://`` / ``imaps://`` URL (see
    `open_imap_url`; the IMAP-only arguments are ignored for paths). Unset limits keep the
    `Limits` defaults. Raises `ImportRefused` when it is none of the kinds this module reads."""
    limits = _limits(max_message_bytes=max_message_bytes, max_upload_bytes=max_upload_bytes,
                     max_zip_entries=max_zip_entries, max_zip_total_bytes=max_zip_total_bytes,
                     max_compression_ratio=max_compression_ratio)
    text = os.fspath(path_or_url)
    if isinstance(text, str) and re.match(r"(?i)imaps?://", text):
        return open_imap_url(text, user=user, password=password, folders=folders, state=state,
                             ssl_context=ssl_context, timeout=timeout,
                             allow_plaintext=allow_plaintext,
                             allow_private_hosts=allow_private_hosts, limits=limits)
    if isinstance(text, str) and re.match(r"(?i)[a-z][a-z0-9+.-]*://", text):
        raise ImportRefused(f"{text.split('://')[0]}:// addresses cannot be imported; give an "
                            "imaps:// address or a path on the server.")
    path = Path(text)
    if path.is_dir():
        if _is_maildir(path):
            return MaildirSource(path, limits=limits)
        source = EmlFolderSource(path, limits=limits)
        if source.total == 0:
            raise ImportRefused(f"The folder {path} {NOT_MAIL} (no .eml files, no cur/ and new/).")
        return source
    try:
        with open(path, "rb") as f:
            head = f.read(_PEEK)
    except FileNotFoundError:
        raise ImportRefused(f"{path} does not exist; check the path.") from None
    except OSError as error:
        raise ImportRefused(f"{path} cannot be read ({error.strerror or error}).") from None
    if not head:
        raise ImportRefused(f"{path} is empty.")
    if _is_zip(head):
        return ZipSource(path, limits=limits)
    if _is_mbox(head):
        return MboxSource(path, limits=limits)
    if path.suffix.lower() == ".eml" or _looks_like_message(head):
        return EmlFileSource(path, limits=limits)
    raise ImportRefused(f"{path} {NOT_MAIL}.")


def open_upload(
    name: str,
    data: bytes,
    *,
    max_message_bytes: int | None = None,
    max_upload_bytes: int | None = None,
    max_zip_entries: int | None = None,
    max_zip_total_bytes: int | None = None,
    max_compression_ratio: float | None = None,
) -> Source:
    """A source for bytes uploaded through the browser: an mbox file, one .eml or a .zip, told
    apart by content (the name is only used in messages and source_ids)."""
    limits = _limits(max_message_bytes=max_message_bytes, max_upload_bytes=max_upload_bytes,
                     max_zip_entries=max_zip_entries, max_zip_total_bytes=max_zip_total_bytes,
                     max_compression_ratio=max_compression_ratio)
    label = os.path.basename(name.replace("\\", "/")) or "upload"
    if len(data) > limits.max_upload_bytes:
        raise ImportRefused(
            f"The upload {label} is {_size(len(data))}, over the {_size(limits.max_upload_bytes)} "
            "limit for uploads; split it, or put it on the server and import it from its path."
        )
    if not data.strip():
        raise ImportRefused(f"The upload {label} is empty.")
    head = data[:_PEEK]
    if _is_zip(head):
        return ZipSource(data=data, name=label, limits=limits)
    if _is_mbox(head):
        return MboxSource(data=data, name=label, limits=limits)
    if label.lower().endswith(".eml") or _looks_like_message(head):
        return EmlFileSource(data=data, name=label, limits=limits)
    raise ImportRefused(f"The upload {label} {NOT_MAIL}.")
