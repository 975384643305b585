"""Importing: parse messages in batches, embed them in batches, and file them per owner (the
statements are in `mail.sql`).

Re-importing a mailbox adds nothing: messages are identified by (owner, Message-ID), or by a
hash of their bytes when they have none. A message that cannot be read is counted with its
reason and the import carries on.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import queue
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence
from urllib.parse import unquote, urlsplit

import numpy as np
from sqlalchemy import Connection, Engine

from mail import sql
from mail.parse import parse_message
from mail.sql import MailSpace
from mail.types import ImportProgress, ImportSummary, ParsedMessage, ParseError, RawMessage

ProgressCallback = Callable[[ImportProgress], None]


@dataclass(frozen=True)
class BatchReport:
    """Where an import stands after one batch: its progress and the counts so far."""

    progress: ImportProgress
    imported: int
    duplicates: int
    failed: int
    new_failures: list[tuple[str, str]]
    """(source_id, reason) of the messages of this batch that failed."""


BatchCallback = Callable[[Connection, BatchReport], bool]

BATCH_SIZE = 200
BATCH_BYTES = 32 * 2**20
"""A batch also closes before its raw mail would pass this many bytes (a larger message goes
alone), so a few huge messages never make a batch that memory or the database cannot take."""
PARAM_BYTES = 32 * 2**20
"""The rows of one INSERT are sent as JSON of at most about this size (one larger row alone);
PostgreSQL refuses any single value of 1 GB or more."""
_MODEL_NAME = re.compile(r"^[A-Za-z0-9._:/@+-]{1,200}$")


_spaces_ready: set[tuple[int, MailSpace]] = set()
_spaces_lock = threading.Lock()


def mail_space(engine: Engine, embedder) -> MailSpace:
    """The embedder's space, with its HNSW index created on first use."""
    if not _MODEL_NAME.match(embedder.model):
        raise ValueError(f"Embedding model name {embedder.model!r} has characters not allowed in a name.")
    space = MailSpace(embedder.model, int(embedder.dimensions))
    token = (id(engine), space)
    if token in _spaces_ready:
        return space
    with _spaces_lock, engine.begin() as conn:
        sql.create_space_index(conn, space)
        _spaces_ready.add(token)
    return space


def thread_id(message: ParsedMessage) -> str:
    """The thread a message belongs to: the first message its References name (the thread's
    root), else its parent, else itself."""
    if message.references:
        return message.references[0]
    return message.in_reply_to or message.message_id or message.content_hash


def _clean(value: str) -> str:
    """Text PostgreSQL accepts: no NUL characters, no lone surrogates."""
    return value.replace("\x00", " ").encode("utf-8", "replace").decode("utf-8")


def _row(n: int, message: ParsedMessage, raw: RawMessage) -> dict:
    return {
        "n": n, "message_id": message.message_id and _clean(message.message_id), "content_hash": message.content_hash,
        "thread_id": _clean(thread_id(message)), "in_reply_to": message.in_reply_to and _clean(message.in_reply_to),
        "subject": _clean(message.subject), "from_name": _clean(message.from_name),
        "from_addr": _clean(message.from_addr), "to_addrs": [_clean(a) for a in message.to],
        "cc_addrs": [_clean(a) for a in message.cc], "sent_at": message.date.isoformat() if message.date else None,
        "body": _clean(message.body), "excerpt": _clean(message.excerpt),
        "attachments": [{"filename": a.filename and _clean(a.filename), "content_type": _clean(a.content_type),
                         "size": a.size} for a in message.attachments],
        "is_html": message.is_html, "signed": message.signed, "size_bytes": message.size,
        "folder": raw.folder and _clean(raw.folder), "source": _clean(raw.source_id),
    }




def _batches(items: Iterable, size: int, max_bytes: int = BATCH_BYTES) -> Iterator[list]:
    """Batches of at most ``size`` items and, but for a single larger message, ``max_bytes``
    of raw mail."""
    batch: list = []
    weight = 0
    for item in items:
        raw = len(item.raw) if isinstance(item, RawMessage) else 0
        if batch and weight + raw > max_bytes:
            yield batch
            batch, weight = [], 0
        batch.append(item)
        weight += raw
        if len(batch) >= size:
            yield batch
            batch, weight = [], 0
    if batch:
        yield batch


def _insert_rows(conn: Connection, owner: str, rows: Sequence[dict]) -> list:
    """Insert ``rows`` in order, in statements whose JSON parameter stays within `PARAM_BYTES`
    (a single larger row goes alone); the rows actually inserted (id, message_id,
    content_hash), in order."""
    max_bytes = PARAM_BYTES
    inserted: list = []
    chunk: list[str] = []
    weight = 0

    def flush() -> None:
        if chunk:
            inserted.extend(sql.insert_messages(conn, owner, "[" + ",".join(chunk) + "]"))

    for row in rows:
        encoded = json.dumps(row)
        if chunk and weight + len(encoded) > max_bytes:
            flush()
            chunk, weight = [], 0
        chunk.append(encoded)
        weight += len(encoded) + 1
    flush()
    return inserted


@dataclass
class _Batch:
    """One batch on its way through the import: parsed, then checked and embedded, then stored."""

    size: int
    parsed: list[tuple[ParsedMessage, RawMessage]]
    failures: list[tuple[str, str]]
    imap_marks: dict[str, tuple[int, int]]
    fresh: list[tuple[ParsedMessage, RawMessage]] | None = None
    repeated: int = 0
    vectors: np.ndarray | None = None


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_END = object()
AHEAD = 2
"""Batches parsed (or being parsed and embedded) ahead of the one being stored."""


def _parse_batch(batch: list) -> _Batch:
    parsed: list[tuple[ParsedMessage, RawMessage]] = []
    failures: list[tuple[str, str]] = []
    imap_marks: dict[str, tuple[int, int]] = {}
    for item in batch:
        if not isinstance(item, RawMessage):
            failures.append((item.source_id, item.reason))
            continue
        if item.uid is not None and item.folder is not None and item.uidvalidity is not None:
            previous = imap_marks.get(item.folder, (item.uidvalidity, 0))
            imap_marks[item.folder] = (item.uidvalidity, max(previous[1], item.uid))
        try:
            # the raw bytes are not kept once parsed: a batch holds its mail only once
            parsed.append((parse_message(item.raw), dataclasses.replace(item, raw=b"")))
        except ParseError as exc:
            failures.append((item.source_id, str(exc)))
        except Exception as exc:  # a parser bug must not stop the import; it is reported
            failures.append((item.source_id, f"unexpected {type(exc).__name__}: {exc}"))
    return _Batch(size=len(batch), parsed=parsed, failures=failures, imap_marks=imap_marks)


class _Pipeline:
    """Reading and parsing (one thread), the check for new messages and their embedding (a
    second thread) and storing (the caller's thread) overlap, batch by batch and in order.

    Only the reading thread touches the source. At most `AHEAD` batches are in the first two
    stages at a time. A stage's exception travels down the line in its batch's place and is
    raised in the caller's thread after the batches before it are stored; `close` stops both
    threads and waits for them.
    """

    def __init__(self, items: Iterable, batch_size: int, batch_bytes: int, engine: Engine, owner: str,
                 embedder) -> None:
        self._items, self._batch_size, self._batch_bytes = items, batch_size, batch_bytes
        self._engine, self._owner, self._embedder = engine, owner, embedder
        self._slots = threading.Semaphore(AHEAD)
        self._stop = threading.Event()
        self._parsed: queue.SimpleQueue = queue.SimpleQueue()
        self._ready: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._read, name="mail-import-parse", daemon=True),
                         threading.Thread(target=self._prepare, name="mail-import-embed", daemon=True)]
        for thread in self._threads:
            thread.start()

    def __iter__(self) -> Iterator[_Batch]:
        while True:
            item = self._ready.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            self._slots.release()  # the batch being stored no longer counts as ahead
            yield item

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _wait_for_slot(self) -> bool:
        while not self._stop.is_set():
            if self._slots.acquire(timeout=0.1):
                return True
        return False

    def _read(self) -> None:
        try:
            batches = _batches(self._items, self._batch_size, self._batch_bytes)
            while self._wait_for_slot():
                batch = next(batches, None)
                if batch is None:
                    break
                self._parsed.put(_parse_batch(batch))
            self._parsed.put(_END)
        except BaseException as exc:  # raised in the caller's thread, after the batches before it
            self._parsed.put(_Failed(exc))

    def _prepare(self) -> None:
        try:
            while not self._stop.is_set():
                item = self._parsed.get()
                if item is _END or isinstance(item, _Failed):
                    self._ready.put(item)
                    return
                with self._engine.connect() as conn:
                    item.fresh, item.repeated = _new_only(conn, self._owner, item.parsed)
                if self._embedder is not None and item.fresh and not self._stop.is_set():
                    item.vectors = np.asarray(self._embedder.embed(
                        [m.excerpt or m.subject or " " for m, _ in item.fresh]), dtype=np.float32)
                self._ready.put(item)
        except BaseException as exc:
            self._ready.put(_Failed(exc))


def import_messages(
    engine: Engine,
    owner: str,
    source: Iterable,
    *,
    embedder=None,
    total: int | None = None,
    progress: ProgressCallback | None = None,
    account: str | None = None,
    batch_size: int = BATCH_SIZE,
    batch_bytes: int = BATCH_BYTES,
    skip: int = 0,
    on_batch: BatchCallback | None = None,
) -> ImportSummary:
    """Parse, embed (when ``embedder`` is given) and store every message ``source`` yields for
    ``owner``. ``source`` yields `RawMessage`s, or objects with ``source_id`` and ``reason``
    for messages the source itself had to skip (too large, unreadable file). IMAP messages
    (with ``uid``) advance the stored state of ``account`` after each batch is committed.

    A batch is ``batch_size`` messages or ``batch_bytes`` of raw mail, whichever comes first
    (a single larger message makes a batch of its own). ``total`` (else ``source.total``) is
    read before anything is stored, so a source that checks itself there (a zip counting what
    it really expands to) refuses with nothing of it imported.

    The three stages overlap: while one batch is stored, the next is embedded (with no database
    connection held) and the one after it is read and parsed, on two threads of their own that
    end before this returns or raises. Each batch is stored in one transaction, in order.

    ``skip``: the first items of ``source`` were handled by an earlier, interrupted run; they
    are passed over unread and count as done. ``on_batch`` runs inside each batch's transaction
    (so what it records commits with the messages, or not at all); when it returns False the
    import stops after that batch and the summary says ``cancelled``.
    """
    if not owner or not owner.strip():
        raise ValueError("An import needs an owner.")
    space = mail_space(engine, embedder) if embedder is not None else None
    started = time.perf_counter()
    total = total if total is not None else getattr(source, "total", None)
    imported = duplicates = 0
    done = skip = max(0, skip)
    failures: list[tuple[str, str]] = []
    cancelled = False
    items = itertools.islice(source, done, None) if done else source

    pipeline = _Pipeline(items, batch_size, batch_bytes, engine, owner, embedder if space is not None else None)
    try:
        for batch in pipeline:
            batch_failures = len(failures)
            failures.extend(batch.failures)
            fresh = batch.fresh
            duplicates += batch.repeated
            with engine.begin() as conn:
                rows = [_row(n, m, raw) for n, (m, raw) in enumerate(fresh)]
                inserted = _insert_rows(conn, owner, rows)
                duplicates += len(fresh) - len(inserted)
                imported += len(inserted)
                if batch.vectors is not None and inserted:
                    _insert_vectors(conn, owner, space, fresh, batch.vectors, inserted)
                if account:
                    for folder, (uidvalidity, last_uid) in batch.imap_marks.items():
                        sql.save_imap_mark(conn, owner, account, folder, uidvalidity, last_uid)

                done += batch.size
                elapsed = time.perf_counter() - started
                rate = (done - skip) / elapsed if elapsed > 0 else 0.0
                eta = (total - done) / rate if total and rate > 0 and total >= done else None
                report = ImportProgress(done=done, total=total, rate=rate, eta_seconds=eta)
                if on_batch is not None:
                    cancelled = not on_batch(conn, BatchReport(
                        progress=report, imported=imported, duplicates=duplicates, failed=len(failures),
                        new_failures=failures[batch_failures:]))
            if progress is not None:
                progress(report)
            if cancelled:
                break
    finally:
        pipeline.close()

    return ImportSummary(imported=imported, duplicates=duplicates, failed=len(failures), failures=failures,
                         seconds=time.perf_counter() - started, embedded=space is not None, cancelled=cancelled)


def _insert_vectors(conn: Connection, owner: str, space: MailSpace,
                    fresh: Sequence[tuple[ParsedMessage, RawMessage]], vectors: np.ndarray, inserted) -> None:
    """The vectors of the messages this batch actually inserted (not those another import got in first)."""
    position = {(m.message_id, m.content_hash if m.message_id is None else None): i
                for i, (m, _) in enumerate(fresh)}
    sql.insert_vectors(conn, owner, space, [row.id for row in inserted],
                       [vectors[position[(row.message_id, row.content_hash if row.message_id is None else None)]]
                        for row in inserted])


def _new_only(conn: Connection, owner: str, parsed: Sequence[tuple[ParsedMessage, RawMessage]]):
    """Drop messages this owner already has (so they are not embedded again) and repeats within
    the batch; returns the rest and how many were dropped."""
    seen: set[tuple[str, str]] = set()
    unique = []
    for message, raw in parsed:
        identity = ("id", message.message_id) if message.message_id else ("hash", message.content_hash)
        if identity not in seen:
            seen.add(identity)
            unique.append((message, raw))
    ids = [m.message_id for m, _ in unique if m.message_id]
    hashes = [m.content_hash for m, _ in unique if not m.message_id]
    known_set = sql.known_messages(conn, owner, ids, hashes)
    fresh = [(m, raw) for m, raw in unique
             if (("id", m.message_id) if m.message_id else ("hash", m.content_hash)) not in known_set]
    return fresh, len(parsed) - len(fresh)


def imap_state(engine: Engine, owner: str, account: str) -> dict[str, tuple[int, int]]:
    """folder → (uidvalidity, last_uid) from the previous imports of ``account`` by ``owner``.
    Part of an import: a database error leaves it as SQLAlchemy raised it, as from `import_messages`."""
    with engine.connect() as conn:
        return sql.imap_state(conn, owner, account)


def message_count(engine: Engine, owner: str) -> int:
    """How many messages ``owner`` has; `StorageError` when the database fails."""
    with sql.storage_errors("counting your messages"), engine.connect() as conn:
        return sql.message_count(conn, owner)


def imap_account(url: str, user: str | None = None) -> str | None:
    """The account an IMAP URL names, as "user@host:port" (no password): the key of its saved
    import state. None for anything that is not an IMAP URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("imap", "imaps"):
        return None
    port = parts.port or (993 if parts.scheme.lower() == "imaps" else 143)
    return f"{user or unquote(parts.username or '')}@{(parts.hostname or '').lower()}:{port}"


def import_from(engine: Engine, owner: str, target: str | os.PathLike[str], *, embedder=None,
                user: str | None = None, password: str | None = None, progress: ProgressCallback | None = None,
                **source_options) -> ImportSummary:
    """Import a path (mbox, Maildir, .eml files, a .zip of them) or an IMAP URL for ``owner``.
    An IMAP account continues from where its previous import stopped."""
    from mail.sources import open_source

    account = imap_account(os.fspath(target), user)
    state = imap_state(engine, owner, account) if account else None
    with open_source(target, user=user, password=password, state=state, **source_options) as source:
        return import_messages(engine, owner, source, embedder=embedder, progress=progress, account=account)
