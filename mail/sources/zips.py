"""A .zip of mail, read in memory member by member, with the checks that refuse unsafe archives
and zip bombs."""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from mail.sources.base import (
    _PEEK,
    NOT_MAIL,
    Limits,
    MiB,
    Skipped,
    Source,
    SourceItem,
    _is_mbox,
    _is_zip,
    _looks_like_message,
    _size,
    _too_large,
)
from mail.sources.mbox import _count_mbox_stream, _read_mbox, _Readable
from mail.types import ImportRefused, RawMessage

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

