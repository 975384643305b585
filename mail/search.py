"""Search one owner's mail: operators become SQL filters; the free text is searched two ways at
once, full-text (GIN, `websearch_to_tsquery`) and semantic (HNSW over message embeddings), and
the two rankings are fused with reciprocal rank fusion. The statement is built in
`mail.sql.search_rows`; here the topic is embedded and the rows become hits with safe snippets.
Opening a message or its thread (`message`, `thread`) is here too."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from sqlalchemy import Engine

from mail import sql
from mail.query import Query, parse_query
from mail.sql import MARK_END, MARK_START
from mail.store import mail_space
from mail.types import SearchHit
from markup import html_text


@dataclass(frozen=True)
class SearchResults:
    query: Query
    topic: str
    """The free-text part of the query: what the image cache is asked about."""
    hits: list[SearchHit]
    total: int
    """How many messages matched in all (conversations, with ``threads``): every one of them can
    be paged to."""
    word_matches: int = 0
    """How many messages contain the query's words; the rest matched by meaning only."""
    sort: str = "relevance"
    threads: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def meaning_only(self) -> bool:
        """Whether no message contains the words and every result is only close in meaning."""
        return bool(self.query.fts_query.strip()) and self.total > 0 and self.word_matches == 0


def _escaped(text: str) -> str:
    """Mail is not markup: the same text in HTML, and no image, link, bare link, icon, emphasis or
    math when a page renders the snippet through Markdown (see `markup`)."""
    return html_text(text)


def _snippet(raw: str | None) -> str:
    """ts_headline's fragment as safe HTML: everything escaped, matches wrapped in <mark>."""
    if not raw:
        return ""
    return _escaped(raw).replace(MARK_START, "<mark>").replace(MARK_END, "</mark>")


def search(engine: Engine, owner: str, query: str | Query, *, embedder=None, limit: int = 20, offset: int = 0,
           query_vector: np.ndarray | None = None, sort: str = "relevance", threads: bool = False) -> SearchResults:
    """Rank ``owner``'s messages for ``query``: mail query syntax (see `mail.query`), or a
    `Query` already parsed. ``sort`` is one of `mail.sql.SORTS`; ``threads`` groups the results
    by conversation, one hit per thread.

    With an ``embedder`` the topic is also searched by meaning; ``query_vector``, the topic's
    vector from that embedder, saves embedding it again. Only ``owner``'s messages are ever read.
    """
    started = time.perf_counter()
    if not isinstance(query, Query):
        query = parse_query(query)
    timings: dict[str, float] = {}
    vector = query_vector
    if vector is None and embedder is not None and query.topic:
        t = time.perf_counter()
        vector = np.asarray(embedder.embed([query.topic]), dtype=np.float32)[0]
        timings["embed_ms"] = (time.perf_counter() - t) * 1000
    semantic = vector is not None and bool(query.topic) and embedder is not None
    with sql.storage_errors("searching your mail"):
        space = mail_space(engine, embedder) if semantic else None
        t = time.perf_counter()
        with engine.connect() as conn:
            rows = sql.search_rows(conn, owner, query, limit=limit, offset=offset, space=space,
                                   vector=vector if semantic else None, sort=sort, threads=threads)
        timings["sql_ms"] = (time.perf_counter() - t) * 1000
    hits = []
    for row in rows:
        snippet = _snippet(row.headline) if row.headline and MARK_START in row.headline else \
            _escaped(row.opening or "")
        sender = f"{row.from_name} <{row.from_addr}>" if row.from_name and row.from_addr else (
            row.from_name or row.from_addr)
        hits.append(SearchHit(
            id=row.id, message_id=row.message_id, thread_id=row.thread_id, subject=row.subject, sender=sender,
            date=row.sent_at, snippet=snippet, score=float(row.score), text_rank=row.text_rank,
            semantic_rank=row.semantic_rank, semantic_distance=row.semantic_distance,
            has_attachments=row.has_attachments, thread_size=int(row.thread_size),
            thread_matches=int(row.thread_matches)))
    timings["total_ms"] = (time.perf_counter() - started) * 1000
    return SearchResults(query=query, topic=query.topic, hits=hits, total=rows[0].total if rows else 0,
                         word_matches=rows[0].word_matches if rows else 0, sort=sort, threads=threads,
                         timings=timings)


@dataclass(frozen=True)
class MessageView:
    id: int
    message_id: str | None
    thread_id: str
    subject: str
    sender: str
    to: list[str]
    cc: list[str]
    date: datetime | None
    body: str
    """Plain text (HTML mail was turned into text on import): show it as text, never as HTML."""
    attachments: list[dict]
    signed: bool


def message(engine: Engine, owner: str, message_pk: int) -> MessageView | None:
    """One of ``owner``'s messages, or None (also when it belongs to someone else)."""
    with sql.storage_errors("reading your mail"), engine.connect() as conn:
        row = sql.message_row(conn, owner, message_pk)
    return None if row is None else _view(row)


def thread(engine: Engine, owner: str, thread_id: str) -> list[MessageView]:
    """The messages of one of ``owner``'s threads, oldest first."""
    with sql.storage_errors("reading your mail"), engine.connect() as conn:
        rows = sql.thread_rows(conn, owner, thread_id)
    return [_view(row) for row in rows]


def _view(row) -> MessageView:
    sender = f"{row.from_name} <{row.from_addr}>" if row.from_name and row.from_addr else (
        row.from_name or row.from_addr)
    return MessageView(id=row.id, message_id=row.message_id, thread_id=row.thread_id, subject=row.subject,
                       sender=sender, to=list(row.to_addrs), cc=list(row.cc_addrs), date=row.sent_at,
                       body=row.body, attachments=list(row.attachments), signed=row.signed)
