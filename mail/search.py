"""Search one owner's mail: operators become SQL filters; the free text is searched two ways at
once, full-text (GIN, `websearch_to_tsquery`) and semantic (HNSW over message embeddings), and
the two rankings are fused with reciprocal rank fusion."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime, time as dtime, timezone

import numpy as np
from sqlalchemy import Engine, text

from mail.query import Query, parse_query
from mail.store import mail_space
from mail.types import SearchHit
from markup import html_text
from semcache.cache import vector_literal

RRF_K = 60
"""The constant of reciprocal rank fusion: score = sum of 1 / (RRF_K + rank) over the rankings."""
CANDIDATES = 100
"""How many messages each ranking contributes before fusion."""
MAX_SEMANTIC_DISTANCE = 0.8
"""Messages farther than this cosine distance from the topic are not semantic matches at all."""

_MARK_START, _MARK_END = "\ue000", "\ue001"


@dataclass(frozen=True)
class SearchResults:
    query: Query
    topic: str
    """The free-text part of the query: what the image cache is asked about."""
    hits: list[SearchHit]
    total: int
    """How many messages matched in all (capped by what the rankings return)."""
    timings: dict[str, float] = field(default_factory=dict)


def _filters(query: Query, params: dict) -> str:
    """SQL conditions on `m` (mail_messages) for the query's operators; values go in ``params``."""
    clauses = []
    for i, value in enumerate(query.senders):
        params[f"from_{i}"] = f"%{_like(value)}%"
        clauses.append(f"(m.from_addr ILIKE :from_{i} OR m.from_name ILIKE :from_{i})")
    for i, value in enumerate(query.recipients):
        params[f"to_{i}"] = f"%{_like(value)}%"
        clauses.append(f"(array_to_string(m.to_addrs, ' ') ILIKE :to_{i} "
                       f"OR array_to_string(m.cc_addrs, ' ') ILIKE :to_{i})")
    for i, value in enumerate(query.subjects):
        params[f"subject_{i}"] = f"%{_like(value)}%"
        clauses.append(f"m.subject ILIKE :subject_{i}")
    if query.after is not None:
        params["after"] = datetime.combine(query.after, dtime.min, tzinfo=timezone.utc)
        clauses.append("m.sent_at >= :after")
    if query.before is not None:
        params["before"] = datetime.combine(query.before, dtime.min, tzinfo=timezone.utc)
        clauses.append("m.sent_at < :before")
    if query.has_attachment:
        clauses.append("m.has_attachments")
    if query.phrases or query.excluded:
        # Quoted phrases and exclusions are hard requirements on both rankings.
        params["required"] = " ".join([f'"{_plain(p)}"' for p in query.phrases] +
                                      [_excluded(_plain(x)) for x in query.excluded if _plain(x)])
        clauses.append("m.tsv @@ websearch_to_tsquery('english', :required)")
    return "".join(f" AND {c}" for c in clauses)


def _plain(term: str) -> str:
    """A term as words only, so websearch syntax ("or", quotes, a leading -) cannot leak in."""
    words = [w for w in re.findall(r"[\w'@.]+", term) if w.lower() not in ("or", "and")]
    return " ".join(words)


def _excluded(term: str) -> str:
    return f'-"{term}"' if " " in term else f"-{term}"


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _escaped(text: str) -> str:
    """Mail is not markup: the same text in HTML, and no image, link, bare link, icon, emphasis or
    math when a page renders the snippet through Markdown (see `markup`)."""
    return html_text(text)


def _snippet(raw: str | None) -> str:
    """ts_headline's fragment as safe HTML: everything escaped, matches wrapped in <mark>."""
    if not raw:
        return ""
    return _escaped(raw).replace(_MARK_START, "<mark>").replace(_MARK_END, "</mark>")


def search(engine: Engine, owner: str, query: str | Query, *, embedder=None, limit: int = 20, offset: int = 0,
           query_vector: np.ndarray | None = None) -> SearchResults:
    """Rank ``owner``'s messages for ``query``: mail query syntax (see `mail.query`), or a
    `Query` already parsed.

    With an ``embedder`` the topic is also searched by meaning; ``query_vector``, the topic's
    vector from that embedder, saves embedding it again. Only ``owner``'s messages are ever read.
    """
    started = time.perf_counter()
    if not isinstance(query, Query):
        query = parse_query(query)
    timings: dict[str, float] = {}
    params: dict = {"owner": owner, "k": CANDIDATES, "limit": limit, "offset": offset,
                    "rrf": RRF_K, "max_distance": MAX_SEMANTIC_DISTANCE}
    where = _filters(query, params)
    arms = []
    if query.fts_query.strip():
        params["fts"] = query.fts_query
        arms.append(f"""
            text_ranked AS (
                SELECT m.id, row_number() OVER (ORDER BY ts_rank_cd(m.tsv, q.tsq, 32) DESC, m.sent_at DESC NULLS LAST,
                                                m.id DESC) AS rank
                FROM mail_messages m, (SELECT websearch_to_tsquery('english', :fts) AS tsq) q
                WHERE m.owner = :owner AND m.tsv @@ q.tsq {where}
                ORDER BY rank LIMIT :k
            )""")
    vector = query_vector
    if vector is None and embedder is not None and query.topic:
        t = time.perf_counter()
        vector = np.asarray(embedder.embed([query.topic]), dtype=np.float32)[0]
        timings["embed_ms"] = (time.perf_counter() - t) * 1000
    semantic = vector is not None and bool(query.topic) and embedder is not None
    if semantic:
        space = mail_space(engine, embedder)
        params["vec"] = vector_literal(vector)
        arms.append(f"""
            nearest AS MATERIALIZED (
                SELECT e.message_pk AS id, e.embedding::{space.cast} <=> CAST(:vec AS {space.cast}) AS distance
                FROM mail_embeddings e JOIN mail_messages m ON m.id = e.message_pk
                WHERE e.{space.predicate.replace(' AND ', ' AND e.')} AND e.owner = :owner {where}
                ORDER BY distance LIMIT :k
            ),
            semantic_ranked AS (
                SELECT id, distance, row_number() OVER (ORDER BY distance, id) AS rank
                FROM nearest WHERE distance <= :max_distance
            )""")
    if not arms:
        # Only operators: newest first.
        fused = f"""
            fused AS (
                SELECT m.id, 0.0::float8 AS score, NULL::bigint AS text_rank, NULL::bigint AS semantic_rank,
                       NULL::float8 AS semantic_distance, m.sent_at
                FROM mail_messages m WHERE m.owner = :owner {where}
            )"""
        order = "f.sent_at DESC NULLS LAST, f.id DESC"
    else:
        parts = []
        if query.fts_query.strip():
            parts.append("SELECT id, rank AS text_rank, NULL::bigint AS semantic_rank, NULL::float8 AS distance "
                         "FROM text_ranked")
        if semantic:
            parts.append("SELECT id, NULL::bigint AS text_rank, rank AS semantic_rank, distance FROM semantic_ranked")
        fused = f"""
            fused AS (
                SELECT id, sum(1.0 / (:rrf + coalesce(text_rank, semantic_rank)))::float8 AS score,
                       min(text_rank) AS text_rank, min(semantic_rank) AS semantic_rank,
                       min(distance) AS semantic_distance, NULL::timestamptz AS sent_at
                FROM ({' UNION ALL '.join(parts)}) AS both_rankings
                GROUP BY id
            )"""
        order = "f.score DESC, f.text_rank ASC NULLS LAST, f.id DESC"
    headline_query = ("websearch_to_tsquery('english', :fts)" if query.fts_query.strip()
                      else "websearch_to_tsquery('english', :headline_words)")
    params["headline_words"] = query.topic or ""
    sql = f"""
        {'SET LOCAL hnsw.ef_search = 100; SET LOCAL hnsw.iterative_scan = relaxed_order;' if semantic else ''}
        WITH {','.join(arms + [fused])},
        page AS (
            SELECT f.*, count(*) OVER () AS total FROM fused f ORDER BY {order} LIMIT :limit OFFSET :offset
        )
        SELECT p.id, p.score, p.text_rank, p.semantic_rank, p.semantic_distance, p.total,
               m.message_id, m.thread_id, m.subject, m.from_name, m.from_addr, m.sent_at, m.has_attachments,
               ts_headline('english', left(m.body, 20000), {headline_query},
                           'StartSel={_MARK_START}, StopSel={_MARK_END}, MaxWords=28, MinWords=12, '
                           'MaxFragments=2, FragmentDelimiter=" … "') AS headline,
               left(m.body, 240) AS opening
        FROM page p JOIN mail_messages m ON m.id = p.id AND m.owner = :owner
        ORDER BY {order.replace('f.', 'p.')}
    """
    t = time.perf_counter()
    with engine.connect() as conn:
        rows = conn.execute(text(sql), params).all()
    timings["sql_ms"] = (time.perf_counter() - t) * 1000
    hits = []
    for row in rows:
        snippet = _snippet(row.headline) if row.headline and _MARK_START in row.headline else \
            _escaped(row.opening or "")
        sender = f"{row.from_name} <{row.from_addr}>" if row.from_name and row.from_addr else (
            row.from_name or row.from_addr)
        hits.append(SearchHit(
            id=row.id, message_id=row.message_id, thread_id=row.thread_id, subject=row.subject, sender=sender,
            date=row.sent_at, snippet=snippet, score=float(row.score), text_rank=row.text_rank,
            semantic_rank=row.semantic_rank, semantic_distance=row.semantic_distance,
            has_attachments=row.has_attachments))
    timings["total_ms"] = (time.perf_counter() - started) * 1000
    return SearchResults(query=query, topic=query.topic, hits=hits, total=rows[0].total if rows else 0,
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
    with engine.connect() as conn:
        row = conn.execute(text("""
            SELECT id, message_id, thread_id, subject, from_name, from_addr, to_addrs, cc_addrs, sent_at, body,
                   attachments, signed
            FROM mail_messages WHERE id = :id AND owner = :owner"""), {"id": message_pk, "owner": owner}).one_or_none()
    return None if row is None else _view(row)


def thread(engine: Engine, owner: str, thread_id: str) -> list[MessageView]:
    """The messages of one of ``owner``'s threads, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(text("""
            SELECT id, message_id, thread_id, subject, from_name, from_addr, to_addrs, cc_addrs, sent_at, body,
                   attachments, signed
            FROM mail_messages WHERE owner = :owner AND (thread_id = :thread OR message_id = :thread)
            ORDER BY sent_at NULLS FIRST, id"""), {"owner": owner, "thread": thread_id}).all()
    return [_view(row) for row in rows]


def _view(row) -> MessageView:
    sender = f"{row.from_name} <{row.from_addr}>" if row.from_name and row.from_addr else (
        row.from_name or row.from_addr)
    return MessageView(id=row.id, message_id=row.message_id, thread_id=row.thread_id, subject=row.subject,
                       sender=sender, to=list(row.to_addrs), cc=list(row.cc_addrs), date=row.sent_at,
                       body=row.body, attachments=list(row.attachments), signed=row.signed)
