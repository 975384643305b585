"""Mail's SQL gateway (`mail.sql`): every statement on mail's tables is there, vectors go in and
come back exactly, no embedding waits with a connection held, and a database that does not
answer reaches the callers as `StorageError`."""

from __future__ import annotations

import ast
import re
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from helpers import LABELLED, mail, raw
from mail import importing
from mail.jobs import ImportQueue, JobSecrets, load_job
from mail.search import message, search, thread
from mail.sql import MailSpace
from mail.store import import_messages, message_count
from mail.types import StorageError

MAIL = Path(__file__).resolve().parent.parent / "mail"
GATEWAY = {"sql.py", "schema.py"}
"""The statements (`mail.sql`) and the declared tables (`mail.schema`, DDL only)."""
_STATEMENT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|CREATE|DROP|ALTER|TRUNCATE|SET LOCAL)\b")


def sql_outside_the_gateway(source: str, name: str) -> list[str]:
    """Where ``source`` holds SQL: a string (or an f-string's text) that starts like a statement,
    or a call of ``text(...)``/``exec_driver_sql(...)``."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _STATEMENT.match(node.value):
            found.append(f"{name}:{node.lineno}: {node.value.strip()[:40]!r}")
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if called == "exec_driver_sql" or (called == "text" and isinstance(func, ast.Name)):
                found.append(f"{name}:{node.lineno}: {called}(...)")
    return found


def test_every_statement_on_mails_tables_is_in_the_gateway():
    modules = [path for path in sorted(MAIL.rglob("*.py")) if path.relative_to(MAIL).as_posix() not in GATEWAY]
    assert len(modules) >= 10, "the scan reads mail's modules"
    found = [hit for path in modules for hit in sql_outside_the_gateway(path.read_text(), str(path.relative_to(MAIL)))]
    assert found == [], "SQL belongs in mail/sql.py:\n" + "\n".join(found)


def test_the_scan_finds_statements_text_calls_and_fstrings():
    assert sorted(sql_outside_the_gateway('x = text("SELECT 1")', "m.py")) == ["m.py:1: 'SELECT 1'", "m.py:1: text(...)"]
    assert sql_outside_the_gateway('conn.execute(f"""\n  UPDATE t SET a = {b}""")', "m.py")
    assert sql_outside_the_gateway('conn.exec_driver_sql(statement)', "m.py")
    assert sql_outside_the_gateway('subject = "Update on the budget"; self.text(item)', "m.py") == []


def test_a_space_is_indexed_as_vector_up_to_2000_dimensions_and_halfvec_above():
    assert (MailSpace("m", 384).cast, MailSpace("m", 384).opclass) == ("vector(384)", "vector_cosine_ops")
    assert MailSpace("m", 2000).cast == "vector(2000)"
    assert (MailSpace("m", 3072).cast, MailSpace("m", 3072).opclass) == ("halfvec(3072)", "halfvec_cosine_ops")


# ---------------------------------------------------------------------------- vectors


class Recording:
    """The real model, keeping every vector it returned by the text it embedded."""

    def __init__(self, inner) -> None:
        self.inner, self.model, self.dimensions = inner, inner.model, inner.dimensions
        self.vectors: dict[str, np.ndarray] = {}

    def embed(self, texts):
        out = np.asarray(self.inner.embed(texts), dtype=np.float32)
        self.vectors.update(zip(texts, out))
        return out


def test_vectors_are_stored_and_searched_exactly_as_the_model_made_them(db, local_embedder):
    embedder = Recording(local_embedder)
    summary = import_messages(db, "alice", raw(list(LABELLED.values())), embedder=embedder, batch_size=3)
    assert summary.imported == len(LABELLED)
    with db.connect() as conn:
        rows = conn.execute(text("""
            SELECT m.id, m.excerpt, m.subject, e.embedding::text AS embedding FROM mail_messages m
            JOIN mail_embeddings e ON e.message_pk = m.id WHERE m.owner = 'alice' ORDER BY m.id""")).all()
    assert len(rows) == len(LABELLED)
    for row in rows:
        stored = np.array(row.embedding.strip("[]").split(","), dtype=np.float32)
        made = embedder.vectors[row.excerpt or row.subject or " "]
        assert stored.tobytes() == made.tobytes(), row.subject  # every bit of every float32

    target = rows[0]
    found = search(db, "alice", "anything at all", embedder=embedder,
                   query_vector=embedder.vectors[target.excerpt or target.subject or " "])
    nearest = min((h for h in found.hits if h.semantic_rank is not None), key=lambda h: h.semantic_rank)
    assert nearest.id == target.id and nearest.semantic_distance < 1e-6


# ---------------------------------------------------------------------------- no embedding in a transaction


class HeldConnections:
    """Connections checked out of the engine's pool, per thread."""

    def __init__(self, engine) -> None:
        self.engine, self.held = engine, Counter()

    def __enter__(self):
        event.listen(self.engine, "checkout", self._out)
        event.listen(self.engine, "checkin", self._in)
        return self

    def __exit__(self, *exc) -> None:
        event.remove(self.engine, "checkout", self._out)
        event.remove(self.engine, "checkin", self._in)

    def _out(self, *args) -> None:
        self.held[threading.get_ident()] += 1

    def _in(self, *args) -> None:
        self.held[threading.get_ident()] -= 1

    def by_this_thread(self) -> int:
        return self.held[threading.get_ident()]


def test_no_embedding_runs_while_its_thread_holds_a_connection(db, local_embedder):
    """Imports (batches overlapping: one stored while the next is embedded) and searches embed
    with no connection, and so no transaction, of their own open."""
    calls: list[int] = []

    with HeldConnections(db) as pool:
        class Watching:
            model, dimensions = local_embedder.model, local_embedder.dimensions

            def embed(self, texts):
                calls.append(pool.by_this_thread())
                return local_embedder.embed(texts)

        summary = import_messages(db, "alice", raw([mail(f"Note {i}", f"Body {i}") for i in range(12)]),
                                  embedder=Watching(), batch_size=3)
        assert summary.imported == 12
        assert search(db, "alice", "a note", embedder=Watching()).hits
    assert len(calls) == 12 // 3 + 1 and calls == [0] * len(calls), calls


# ---------------------------------------------------------------------------- StorageError


@pytest.fixture
def unanswering():
    """An engine on a port where no database answers: every statement fails to connect."""
    engine = create_engine("postgresql+psycopg2://nobody@127.0.0.1:9/none?connect_timeout=2")
    yield engine
    engine.dispose()


def test_a_database_that_does_not_answer_is_a_storage_error(unanswering, tmp_path):
    calls = [lambda: search(unanswering, "alice", "dog"), lambda: message(unanswering, "alice", 1),
             lambda: thread(unanswering, "alice", "t"), lambda: message_count(unanswering, "alice"),
             lambda: load_job(unanswering, 1, "alice")]
    queue = ImportQueue(unanswering, None, uploads=None, secrets=JobSecrets.from_key_file(tmp_path / "key"))
    calls += [lambda: queue.imports("alice"), lambda: queue.active("alice"), lambda: queue.get("alice", 1),
              lambda: queue.workers_alive(), lambda: queue.cancel("alice", 1)]
    for call in calls:
        with pytest.raises(StorageError) as caught:
            call()
        assert caught.value.unavailable and isinstance(caught.value.__cause__, OperationalError)
        assert str(caught.value).startswith("The mail database failed while ")
        assert "127.0.0.1" not in str(caught.value), "the server's address is for the log"


def test_the_import_pages_outage_sentence_is_the_same_for_a_storage_error(unanswering):
    with pytest.raises(importing.ImportStopped) as direct, importing.reporting_outages():
        with unanswering.connect():
            pass
    with pytest.raises(importing.ImportStopped) as wrapped, importing.reporting_outages():
        message_count(unanswering, "alice")
    assert str(wrapped.value) == str(direct.value)
    assert str(direct.value).startswith("The database could not be reached (")

    refused = StorageError("refused")
    refused.__cause__ = ProgrammingError("SELECT", {}, Exception("no such table"))
    with pytest.raises(ProgrammingError), importing.reporting_outages():  # no outage: unexpected, as raised
        raise refused
