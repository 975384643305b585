"""Every SQL statement on mail's tables (`mail_messages`, `mail_embeddings`, `mail_imap_state`,
`mail_imports`), as small functions on a `Connection`: the caller chooses the transaction.

- messages: insert a batch, their vectors, which of a batch are already here, counts, one
  message, one thread;
- IMAP: the last UID imported per folder;
- the search: one statement per query, built from its operators and rankings (`search_rows`);
- imports: the rows the app enqueues, lists and cancels, and the worker claims and advances;
- embedding spaces: the partial HNSW index of each model's vectors.

The tables themselves are declared in `mail.schema` (and made by the migrations). Database
errors leave these functions as SQLAlchemy raises them; the public functions of `mail.search`,
`mail.store` and `mail.jobs` turn them into `StorageError`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, time as dtime, timezone

import numpy as np
from sqlalchemy import Connection, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import SQLAlchemyError

from mail.query import Query
from mail.types import StorageError
from semcache import vectors


@contextmanager
def storage_errors(doing: str) -> Iterator[None]:
    """Around a public function's use of these: a database error leaves it as `StorageError`,
    ``doing`` ("reading your mail") saying what failed, the database's error as its cause."""
    try:
        yield
    except SQLAlchemyError as error:
        raise StorageError(f"The mail database failed while {doing}. Try again in a moment.") from error


# -- embedding spaces -------------------------------------------------------------------------


@dataclass(frozen=True)
class MailSpace(vectors.IndexedSpace):
    """Where one embedding model's message vectors are indexed (`cast`, `opclass`: the rule of
    `semcache.vectors`, as for the cache's spaces)."""

    model: str
    dimensions: int

    @property
    def index_name(self) -> str:
        digest = hashlib.sha256(f"{self.model}@{self.dimensions}".encode()).hexdigest()[:12]
        return f"mail_embeddings_hnsw_{digest}"

    @property
    def predicate(self) -> str:
        # Literals, so the planner can match the partial index; the name is checked on creation.
        return f"model = '{self.model}' AND dimensions = {self.dimensions}"


SPACE_LOCK = 727274003
"""The advisory lock that serialises creating a space's index across processes."""


def create_space_index(conn: Connection, space: MailSpace) -> None:
    """The space's partial HNSW index, made if it is not there yet (in the caller's transaction)."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": SPACE_LOCK})
    conn.execute(text(f"CREATE INDEX IF NOT EXISTS {space.index_name} ON mail_embeddings "
                      f"USING hnsw ((embedding::{space.cast}) {space.opclass}) WHERE {space.predicate}"))


# -- messages ---------------------------------------------------------------------------------

_INSERT_MESSAGES = text("""
    INSERT INTO mail_messages (owner, message_id, content_hash, thread_id, in_reply_to, subject, from_name,
                               from_addr, to_addrs, cc_addrs, sent_at, body, excerpt, attachments, is_html,
                               signed, size_bytes, folder, source)
    SELECT :owner, m.message_id, m.content_hash, m.thread_id, m.in_reply_to, m.subject, m.from_name,
           m.from_addr, ARRAY(SELECT jsonb_array_elements_text(m.to_addrs)),
           ARRAY(SELECT jsonb_array_elements_text(m.cc_addrs)), m.sent_at, m.body, m.excerpt, m.attachments,
           m.is_html, m.signed, m.size_bytes, m.folder, m.source
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS m(
        n int, message_id text, content_hash text, thread_id text, in_reply_to text, subject text,
        from_name text, from_addr text, to_addrs jsonb, cc_addrs jsonb, sent_at timestamptz, body text,
        excerpt text, attachments jsonb, is_html boolean, signed boolean, size_bytes int, folder text,
        source text)
    ORDER BY m.n
    ON CONFLICT DO NOTHING
    RETURNING id, message_id, content_hash
""")


def insert_messages(conn: Connection, owner: str, rows_json: str) -> list:
    """Insert the messages of ``rows_json`` (a JSON array of rows numbered by ``n``) in order;
    the rows actually inserted (id, message_id, content_hash), in order. A message the owner
    already has is left as it is."""
    return conn.execute(_INSERT_MESSAGES, {"owner": owner, "rows": rows_json}).all()


_INSERT_VECTORS = text("""
    INSERT INTO mail_embeddings (message_pk, owner, model, dimensions, embedding)
    SELECT pk, :owner, :model, :dims, vec
    FROM unnest(CAST(:pks AS bigint[]), CAST(:vecs AS vector[])) AS t(pk, vec)
    ON CONFLICT DO NOTHING""").bindparams(bindparam("vecs", type_=ARRAY(vectors.Float32Vector())))


def insert_vectors(conn: Connection, owner: str, space: MailSpace, pks: Sequence[int],
                   embeddings: Sequence[np.ndarray]) -> None:
    """The vectors of the messages ``pks``, one each, in ``space``."""
    conn.execute(_INSERT_VECTORS, {"owner": owner, "model": space.model, "dims": space.dimensions,
                                   "pks": list(pks), "vecs": list(embeddings)})


def known_messages(conn: Connection, owner: str, message_ids: Sequence[str],
                   content_hashes: Sequence[str]) -> set[tuple[str, str]]:
    """Which of these the owner already has: ("id", Message-ID) and ("hash", content hash) of
    messages without a Message-ID."""
    rows = conn.execute(text("""
        SELECT 'id' AS kind, message_id AS value FROM mail_messages
        WHERE owner = :owner AND message_id = ANY(CAST(:ids AS text[]))
        UNION ALL
        SELECT 'hash', content_hash FROM mail_messages
        WHERE owner = :owner AND message_id IS NULL AND content_hash = ANY(CAST(:hashes AS text[]))
    """), {"owner": owner, "ids": list(message_ids), "hashes": list(content_hashes)}).all()
    return {(row.kind, row.value) for row in rows}


def message_count(conn: Connection, owner: str) -> int:
    return conn.execute(text("SELECT count(*) FROM mail_messages WHERE owner = :owner"),
                        {"owner": owner}).scalar_one()


_MESSAGE_COLUMNS = ("id, message_id, thread_id, subject, from_name, from_addr, to_addrs, cc_addrs, sent_at, "
                    "body, attachments, signed")


def message_row(conn: Connection, owner: str, message_pk: int):
    """One of ``owner``'s messages, or None."""
    return conn.execute(text(f"SELECT {_MESSAGE_COLUMNS} FROM mail_messages WHERE id = :id AND owner = :owner"),
                        {"id": message_pk, "owner": owner}).one_or_none()


def thread_rows(conn: Connection, owner: str, thread_id: str) -> list:
    """The messages of one of ``owner``'s threads, oldest first."""
    return conn.execute(text(f"""
        SELECT {_MESSAGE_COLUMNS}
        FROM mail_messages WHERE owner = :owner AND (thread_id = :thread OR message_id = :thread)
        ORDER BY sent_at NULLS FIRST, id"""), {"owner": owner, "thread": thread_id}).all()


# -- IMAP -------------------------------------------------------------------------------------

def save_imap_mark(conn: Connection, owner: str, account: str, folder: str, uidvalidity: int,
                   last_uid: int) -> None:
    """Advance the folder's last imported UID (a new UIDVALIDITY starts it over)."""
    conn.execute(text("""
        INSERT INTO mail_imap_state (owner, account, folder, uidvalidity, last_uid, updated_at)
        VALUES (:owner, :account, :folder, :uidvalidity, :last_uid, now())
        ON CONFLICT (owner, account, folder) DO UPDATE
        SET last_uid = CASE WHEN mail_imap_state.uidvalidity = excluded.uidvalidity
                            THEN GREATEST(mail_imap_state.last_uid, excluded.last_uid)
                            ELSE excluded.last_uid END,
            uidvalidity = excluded.uidvalidity, updated_at = now()
    """), {"owner": owner, "account": account, "folder": folder, "uidvalidity": uidvalidity,
           "last_uid": last_uid})


def imap_state(conn: Connection, owner: str, account: str) -> dict[str, tuple[int, int]]:
    """folder → (uidvalidity, last_uid) of ``owner``'s earlier imports of ``account``."""
    rows = conn.execute(text("SELECT folder, uidvalidity, last_uid FROM mail_imap_state "
                             "WHERE owner = :owner AND account = :account"),
                        {"owner": owner, "account": account}).all()
    return {row.folder: (int(row.uidvalidity), int(row.last_uid)) for row in rows}


# -- the search -------------------------------------------------------------------------------

RRF_K = 60
"""The constant of reciprocal rank fusion: score = sum of 1 / (RRF_K + rank) over the rankings."""
CANDIDATES = 100
"""How many messages each ranking contributes before fusion."""
MAX_SEMANTIC_DISTANCE = 0.8
"""Messages farther than this cosine distance from the topic are not semantic matches at all,
for an embedding model with no cut-off of its own in `SEMANTIC_CUTOFFS`."""
SEMANTIC_CUTOFFS = {"all-MiniLM-L6-v2": 0.575}
"""Per embedding model, the cosine distance within which a message is about the topic: chosen
from the distances of relevant mail, unrelated mail and made-up words in real mailboxes
(`benchmarks/semantic_cutoff.py`, docs/benchmarks.md). When no message is this near, nothing
matches by meaning at all."""
SEMANTIC_MARGIN = 0.2
"""When the nearest message is within the cut, its neighbours up to this much farther match too
(never beyond `MAX_SEMANTIC_DISTANCE`): a topic the mailbox clearly holds brings the mail around it."""
SORTS = ("relevance", "newest", "oldest")
"""The orders a search can be shown in (`search_rows`)."""
_ORDERS = {"relevance": "f.score DESC, f.text_rank ASC NULLS LAST, f.id DESC",
           "newest": "f.sent_at DESC NULLS LAST, f.id DESC",
           "oldest": "f.sent_at ASC NULLS LAST, f.id ASC"}
MARK_START, MARK_END = "\ue000", "\ue001"
"""What `ts_headline` puts around a match in a row's ``headline`` (characters mail never holds)."""


def semantic_cutoff(model: str) -> float:
    """The cosine distance within which a message is a match by meaning for ``model``."""
    return SEMANTIC_CUTOFFS.get(model, MAX_SEMANTIC_DISTANCE)


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
    for i, value in enumerate(query.cc):
        params[f"cc_{i}"] = f"%{_like(value)}%"
        clauses.append(f"array_to_string(m.cc_addrs, ' ') ILIKE :cc_{i}")
    for i, value in enumerate(query.subjects):
        params[f"subject_{i}"] = f"%{_like(value)}%"
        clauses.append(f"m.subject ILIKE :subject_{i}")
    for i, value in enumerate(query.filenames):
        params[f"filename_{i}"] = f"%{_like(value)}%"
        clauses.append(f"EXISTS (SELECT 1 FROM jsonb_array_elements(m.attachments) AS a "
                       f"WHERE a ->> 'filename' ILIKE :filename_{i})")
    for i, value in enumerate(query.folders):
        params[f"folder_{i}"] = value.lower()
        clauses.append(f"(lower(m.folder) = :folder_{i} OR {_FOLDER} = :folder_{i})")
    for i, value in enumerate(query.labels):
        params[f"label_{i}"] = value
        clauses.append(f"EXISTS (SELECT 1 FROM mail_labels l WHERE l.owner = m.owner AND l.message_pk = m.id "
                       f"AND l.label = :label_{i})")
    if query.larger is not None:
        params["larger"] = query.larger
        clauses.append("m.size_bytes > :larger")
    if query.smaller is not None:
        params["smaller"] = query.smaller
        clauses.append("m.size_bytes < :smaller")
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


_FOLDER = ("lower(coalesce(regexp_replace(m.folder, '^.*[/.]', ''), "
           "regexp_replace(split_part(m.source, ' #', 1), '^.*/|\\.[^./]*$', '', 'g')))")
"""What ``in:`` matches besides the whole folder name: an IMAP folder's last part ("INBOX/Receipts"
is in:receipts), or, for mail imported from files, the mailbox file's name ("archive.mbox #3" is
in:archive)."""


def _plain(term: str) -> str:
    """A term as words only, so websearch syntax ("or", quotes, a leading -) cannot leak in."""
    words = [w for w in re.findall(r"[\w'@.]+", term) if w.lower() not in ("or", "and")]
    return " ".join(words)


def _excluded(term: str) -> str:
    return f'-"{term}"' if " " in term else f"-{term}"


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_rows(conn: Connection, owner: str, query: Query, *, limit: int, offset: int,
                space: MailSpace | None = None, vector: np.ndarray | None = None,
                sort: str = "relevance", threads: bool = False) -> list:
    """One page of ``owner``'s messages for ``query``: full-text over the weighted vector when
    the query has free words (every match), by meaning in ``space`` when ``vector`` (the topic's)
    is given (the nearest `CANDIDATES`, cut by `semantic_cutoff` and `SEMANTIC_MARGIN`), fused by
    reciprocal rank. ``sort`` is one of `SORTS`: "relevance" (newest first for operators only),
    "newest" or "oldest". With ``threads`` a row stands for its conversation: the best message
    of each thread by that order, with ``thread_matches`` (its messages matched) and
    ``thread_size`` (all its messages). Each row has the message's columns, its ``score``, ranks
    and distance, the ``total`` matched (messages, or threads), ``word_matches`` (messages
    matched by their words), a ``headline`` (matches between `MARK_START` and `MARK_END`) and
    the body's ``opening``."""
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
    params: dict = {"owner": owner, "k": CANDIDATES, "limit": limit, "offset": offset, "rrf": RRF_K,
                    "max_distance": MAX_SEMANTIC_DISTANCE, "margin": SEMANTIC_MARGIN,
                    "cutoff": semantic_cutoff(space.model) if space is not None else MAX_SEMANTIC_DISTANCE}
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
            )""")
    semantic = space is not None and vector is not None
    if semantic:
        params["vec"] = vector
        arms.append(f"""
            nearest AS MATERIALIZED (
                SELECT e.message_pk AS id, e.embedding::{space.cast} <=> CAST(:vec AS {space.cast}) AS distance
                FROM mail_embeddings e JOIN mail_messages m ON m.id = e.message_pk
                WHERE e.{space.predicate.replace(' AND ', ' AND e.')} AND e.owner = :owner {where}
                ORDER BY distance LIMIT :k
            ),
            semantic_ranked AS (
                SELECT id, distance, row_number() OVER (ORDER BY distance, id) AS rank
                FROM nearest, (SELECT min(distance) AS best FROM nearest) b
                WHERE b.best <= :cutoff
                  AND distance <= LEAST(:max_distance, GREATEST(:cutoff, b.best + :margin))
            )""")
    if not arms:
        matched = f"""
            matched AS (
                SELECT m.id, 0.0::float8 AS score, NULL::bigint AS text_rank, NULL::bigint AS semantic_rank,
                       NULL::float8 AS semantic_distance, m.sent_at, m.thread_id, 0::bigint AS word_matches
                FROM mail_messages m WHERE m.owner = :owner {where}
            )"""
    else:
        parts = []
        if query.fts_query.strip():
            parts.append("SELECT id, rank AS text_rank, NULL::bigint AS semantic_rank, NULL::float8 AS distance "
                         "FROM text_ranked")
        if semantic:
            parts.append("SELECT id, NULL::bigint AS text_rank, rank AS semantic_rank, distance FROM semantic_ranked")
        matched = f"""
            fused AS (
                SELECT id, sum(1.0 / (:rrf + coalesce(text_rank, semantic_rank)))::float8 AS score,
                       min(text_rank) AS text_rank, min(semantic_rank) AS semantic_rank,
                       min(distance) AS semantic_distance
                FROM ({' UNION ALL '.join(parts)}) AS both_rankings
                GROUP BY id
            ),
            matched AS (
                SELECT f.*, m.sent_at, m.thread_id, count(f.text_rank) OVER () AS word_matches
                FROM fused f JOIN mail_messages m ON m.id = f.id AND m.owner = :owner
            )"""
    order = _ORDERS[sort if arms or sort != "relevance" else "newest"]
    if threads:
        # One row per conversation: its first message in this order, and how many of it matched.
        chosen = f"""
            chosen AS (
                SELECT f.*, count(*) OVER () AS total FROM (
                    SELECT f.*, row_number() OVER (PARTITION BY f.thread_id ORDER BY {order}) AS in_thread,
                           count(*) OVER (PARTITION BY f.thread_id) AS thread_matches
                    FROM matched f) f
                WHERE f.in_thread = 1
            )"""
        thread_size = ("(SELECT count(*) FROM mail_messages t WHERE t.owner = :owner "
                       "AND (t.thread_id = p.thread_id OR t.message_id = p.thread_id))")
    else:
        chosen = "chosen AS (SELECT f.*, 1::bigint AS thread_matches, count(*) OVER () AS total FROM matched f)"
        thread_size = "1::bigint"
    headline_query = ("websearch_to_tsquery('english', :fts)" if query.fts_query.strip()
                      else "websearch_to_tsquery('english', :headline_words)")
    params["headline_words"] = query.topic or ""
    sql = f"""
        {'SET LOCAL hnsw.ef_search = 100; SET LOCAL hnsw.iterative_scan = relaxed_order;' if semantic else ''}
        WITH {','.join(arms + [matched, chosen])},
        page AS (
            SELECT f.* FROM chosen f ORDER BY {order} LIMIT :limit OFFSET :offset
        )
        SELECT p.id, p.score, p.text_rank, p.semantic_rank, p.semantic_distance, p.total, p.word_matches,
               p.thread_matches, {thread_size} AS thread_size,
               m.message_id, m.thread_id, m.subject, m.from_name, m.from_addr, m.sent_at, m.has_attachments,
               ts_headline('english', left(m.body, 20000), {headline_query},
                           'StartSel={MARK_START}, StopSel={MARK_END}, MaxWords=28, MinWords=12, '
                           'MaxFragments=2, FragmentDelimiter=" … "') AS headline,
               left(m.body, 240) AS opening
        FROM page p JOIN mail_messages m ON m.id = p.id AND m.owner = :owner
        ORDER BY {order.replace('f.', 'p.')}
    """
    statement = text(sql)
    if semantic:
        statement = statement.bindparams(vectors.bind("vec"))
    return conn.execute(statement, params).all()


# -- imports ----------------------------------------------------------------------------------

IMPORT_COLUMNS = ("id, owner, kind, label, status, done, total, rate, eta_seconds, imported, duplicates, failed, "
                  "failures, embedded, error, cancel_requested, created_at, started_at, updated_at, finished_at, "
                  "job_id")
"""The columns an `mail.jobs.ImportJob` is made from."""


def insert_import(conn: Connection, owner: str, kind: str, label: str, params: dict,
                  secret: bytes | None) -> int:
    """A new queued import; its id."""
    return conn.execute(text("""
        INSERT INTO mail_imports (owner, kind, label, params, secret)
        VALUES (:owner, :kind, :label, CAST(:params AS jsonb), :secret) RETURNING id"""),
        {"owner": owner, "kind": kind, "label": label, "params": json.dumps(params), "secret": secret}).scalar_one()


def set_import_job(conn: Connection, import_id: int, job_id: int) -> None:
    conn.execute(text("UPDATE mail_imports SET job_id = :job WHERE id = :id"), {"job": job_id, "id": import_id})


def import_row(conn: Connection, import_id: int, owner: str | None = None):
    """One import's row by id (only ``owner``'s when given), or None."""
    return conn.execute(text(f"SELECT {IMPORT_COLUMNS} FROM mail_imports WHERE id = :id "
                             "AND (CAST(:owner AS text) IS NULL OR owner = :owner)"),
                        {"id": import_id, "owner": owner}).first()


def import_rows(conn: Connection, owner: str, limit: int) -> list:
    """``owner``'s imports, unfinished ones first, then newest first."""
    return conn.execute(text(f"""
        SELECT {IMPORT_COLUMNS} FROM mail_imports WHERE owner = :owner
        ORDER BY status IN ('queued', 'running') DESC, id DESC LIMIT :limit"""),
        {"owner": owner, "limit": limit}).all()


def active_import_rows(conn: Connection, owner: str) -> list:
    """``owner``'s queued and running imports, oldest first."""
    return conn.execute(text(f"""
        SELECT {IMPORT_COLUMNS} FROM mail_imports WHERE owner = :owner AND status IN ('queued', 'running')
        ORDER BY id"""), {"owner": owner}).all()


def upload_shared(conn: Connection, import_id: int, key: str) -> bool:
    """Whether an unfinished import other than ``import_id`` has the saved upload ``key``."""
    return conn.execute(text("""
        SELECT 1 FROM mail_imports WHERE id <> :id AND status IN ('queued', 'running')
        AND params -> 'files' @> CAST(:probe AS jsonb) LIMIT 1"""),
        {"id": import_id, "probe": json.dumps([{"key": key}])}).first() is not None


def workers_alive(conn: Connection, within_seconds: float) -> int:
    """Workers whose heartbeat (in procrastinate's table) is more recent than this."""
    return conn.execute(text("""
        SELECT count(*) FROM procrastinate_workers
        WHERE last_heartbeat > now() - make_interval(secs => :seconds)"""),
        {"seconds": within_seconds}).scalar_one()


def request_cancel(conn: Connection, owner: str, import_id: int):
    """Mark ``owner``'s unfinished import as asked to stop; its (status, job_id, params), or None."""
    return conn.execute(text("""
        UPDATE mail_imports SET cancel_requested = true, updated_at = now()
        WHERE id = :id AND owner = :owner AND status IN ('queued', 'running')
        RETURNING status, job_id, params"""), {"id": import_id, "owner": owner}).first()


def end_import(conn: Connection, import_id: int, status: str, error: str | None, *,
               only_if: str | None = None) -> bool:
    """End an import from the app's side (its secret goes); False when ``only_if`` was not its status."""
    return conn.execute(text("""
        UPDATE mail_imports SET status = :status, error = :error, secret = NULL, eta_seconds = NULL,
               finished_at = now(), updated_at = now()
        WHERE id = :id AND (CAST(:only_if AS text) IS NULL OR status = :only_if) RETURNING id"""),
        {"id": import_id, "status": status, "error": error, "only_if": only_if}).first() is not None


def claim_import(conn: Connection, import_id: int):
    """Start a new attempt of an unfinished import; its row (with ``stored_failures`` and the new
    ``attempt``), or None when it is over or gone."""
    return conn.execute(text("""
        UPDATE mail_imports SET status = 'running', attempt = attempt + 1, error = NULL,
               started_at = coalesce(started_at, now()), updated_at = now()
        WHERE id = :id AND status IN ('queued', 'running')
        RETURNING id, owner, kind, params, secret, done, imported, duplicates, failed,
                  jsonb_array_length(failures) AS stored_failures, cancel_requested, attempt"""),
        {"id": import_id}).first()


def note_import(conn: Connection, import_id: int, attempt: int, status: str, error: str | None) -> None:
    """Set an unfinished attempt's status and note, leaving its counts."""
    conn.execute(text("""
        UPDATE mail_imports SET status = :status, error = :error, rate = NULL, eta_seconds = NULL,
               updated_at = now()
        WHERE id = :id AND attempt = :attempt AND status IN ('queued', 'running')"""),
        {"id": import_id, "attempt": attempt, "status": status, "error": error})


def finish_import(conn: Connection, import_id: int, attempt: int, status: str, error: str | None,
                  embedded: bool | None) -> None:
    """End an attempt from the worker's side (its secret goes)."""
    conn.execute(text("""
        UPDATE mail_imports SET status = :status, error = :error, secret = NULL, eta_seconds = NULL,
               embedded = coalesce(:embedded, embedded), finished_at = now(), updated_at = now()
        WHERE id = :id AND attempt = :attempt"""),
        {"id": import_id, "attempt": attempt, "status": status, "error": error, "embedded": embedded})


def record_batch(conn: Connection, import_id: int, attempt: int, *, done: int, total: int | None,
                 rate: float, eta: float | None, imported: int, duplicates: int, failed: int,
                 failures: Sequence[tuple[str, str]]):
    """A running attempt's progress after a batch, with the batch's new failure reasons appended;
    (cancel_requested,), or None when another attempt has taken the import over."""
    return conn.execute(text("""
        UPDATE mail_imports SET done = :done, total = :total, rate = :rate, eta_seconds = :eta,
               imported = :imported, duplicates = :duplicates, failed = :failed,
               failures = failures || CAST(:failures AS jsonb), updated_at = now()
        WHERE id = :id AND attempt = :attempt AND status = 'running'
        RETURNING cancel_requested"""), {
        "id": import_id, "attempt": attempt, "done": done, "total": total, "rate": rate, "eta": eta,
        "imported": imported, "duplicates": duplicates, "failed": failed,
        "failures": json.dumps([list(f) for f in failures])}).first()


# -- labels and saved searches ----------------------------------------------------------------

def add_label(conn: Connection, owner: str, message_pk: int, label: str) -> bool:
    """Put ``label`` on one of ``owner``'s messages; False when the message is not theirs (a
    label it already has changes nothing)."""
    return conn.execute(text("""
        WITH target AS (SELECT id FROM mail_messages WHERE id = :id AND owner = :owner),
        added AS (
            INSERT INTO mail_labels (owner, message_pk, label) SELECT :owner, id, :label FROM target
            ON CONFLICT DO NOTHING
        )
        SELECT count(*) FROM target"""), {"owner": owner, "id": message_pk, "label": label}).scalar_one() > 0


def label_count(conn: Connection, owner: str, message_pk: int) -> int:
    return conn.execute(text("SELECT count(*) FROM mail_labels WHERE owner = :owner AND message_pk = :id"),
                        {"owner": owner, "id": message_pk}).scalar_one()


def remove_label(conn: Connection, owner: str, message_pk: int, label: str) -> None:
    conn.execute(text("DELETE FROM mail_labels WHERE owner = :owner AND message_pk = :id AND label = :label"),
                 {"owner": owner, "id": message_pk, "label": label})


def labels_of(conn: Connection, owner: str, message_pks: Sequence[int]) -> dict[int, list[str]]:
    """message id → its labels (sorted), for those of ``message_pks`` that have any."""
    rows = conn.execute(text("""
        SELECT message_pk, array_agg(label ORDER BY label) AS labels FROM mail_labels
        WHERE owner = :owner AND message_pk = ANY(CAST(:ids AS bigint[])) GROUP BY message_pk"""),
        {"owner": owner, "ids": list(message_pks)}).all()
    return {row.message_pk: list(row.labels) for row in rows}


def owner_labels(conn: Connection, owner: str, limit: int) -> list[tuple[str, int]]:
    """``owner``'s labels with how many messages carry each, most used first."""
    rows = conn.execute(text("""
        SELECT label, count(*) AS n FROM mail_labels WHERE owner = :owner
        GROUP BY label ORDER BY n DESC, label LIMIT :limit"""), {"owner": owner, "limit": limit}).all()
    return [(row.label, row.n) for row in rows]


def saved_search_rows(conn: Connection, owner: str, limit: int) -> list:
    """``owner``'s saved searches (id, name, query), by name."""
    return conn.execute(text("""
        SELECT id, name, query FROM mail_saved_searches WHERE owner = :owner
        ORDER BY lower(name), id LIMIT :limit"""), {"owner": owner, "limit": limit}).all()


def save_search(conn: Connection, owner: str, name: str, query: str, most: int) -> bool:
    """Save (or, under a name already used, replace) one of ``owner``'s searches; False when
    ``owner`` has ``most`` saved searches already and this is a new name."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:lock, hashtext(:owner))"),
                 {"lock": SAVED_SEARCH_LOCK, "owner": owner})
    replaced = conn.execute(text("""
        UPDATE mail_saved_searches SET query = :query WHERE owner = :owner AND name = :name RETURNING id"""),
        {"owner": owner, "name": name, "query": query}).first()
    if replaced is not None:
        return True
    return conn.execute(text("""
        INSERT INTO mail_saved_searches (owner, name, query)
        SELECT :owner, :name, :query
        WHERE (SELECT count(*) FROM mail_saved_searches WHERE owner = :owner) < :most
        RETURNING id"""), {"owner": owner, "name": name, "query": query, "most": most}).first() is not None


SAVED_SEARCH_LOCK = 727274010
"""With the owner's name hashed, the advisory lock that keeps two saves from passing the limit."""


def delete_saved_search(conn: Connection, owner: str, search_id: int) -> bool:
    return conn.execute(text("DELETE FROM mail_saved_searches WHERE id = :id AND owner = :owner RETURNING id"),
                        {"id": search_id, "owner": owner}).first() is not None


# -- export -----------------------------------------------------------------------------------

def export_rows(conn: Connection, owner: str, message_pks: Sequence[int]) -> list:
    """``owner``'s messages of ``message_pks`` with what an mbox copy needs, in that order."""
    return conn.execute(text("""
        SELECT m.id, m.message_id, m.in_reply_to, m.subject, m.from_name, m.from_addr, m.to_addrs, m.cc_addrs,
               m.sent_at, m.body, m.attachments, m.folder
        FROM unnest(CAST(:ids AS bigint[])) WITH ORDINALITY AS t(id, n)
        JOIN mail_messages m ON m.id = t.id AND m.owner = :owner
        ORDER BY t.n"""), {"owner": owner, "ids": list(message_pks)}).all()
