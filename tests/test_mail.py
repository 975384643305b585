"""Importing and searching mail against the real database and the real local model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import datetime, timezone
from email.utils import make_msgid
from pathlib import Path

import pytest
from sqlalchemy import text

from helpers import LABELLED, mail, raw
from mail.demo import write_demo_mbox
from mail.search import message, search, thread
from mail.sources import SourceInterrupted, open_source
from mail.store import AHEAD, import_messages, message_count
from mail.types import QueryError
from semcache.errors import EmbeddingError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def labelled(db, local_embedder):
    summary = import_messages(db, "alice", raw(list(LABELLED.values())), embedder=local_embedder)
    assert summary.imported == len(LABELLED) and summary.failed == 0
    return db


def subjects(results) -> list[str]:
    return [h.subject for h in results.hits]


# ---------------------------------------------------------------------------- ranking

def test_exact_word_ranks_first_and_meaning_finds_the_rest(labelled, local_embedder):
    results = search(labelled, "alice", "dog", embedder=local_embedder)
    assert subjects(results)[0] == "Dog walking rota"
    assert "Our new arrival" in subjects(results)[:3], "the puppy mail never says dog"
    assert results.hits[0].text_rank == 1 and results.hits[0].semantic_rank is not None
    assert results.topic == "dog"


def test_puppy_finds_dog_mail_that_never_says_puppy(labelled, local_embedder):
    results = search(labelled, "alice", "canine", embedder=local_embedder)
    assert set(subjects(results)[:2]) == {"Dog walking rota", "Our new arrival"}
    assert all(h.text_rank is None for h in results.hits), "no message contains the word"


def test_without_an_embedder_search_is_full_text(labelled):
    results = search(labelled, "alice", "invoice")
    assert subjects(results) == ["Invoice 2291"]
    assert results.hits[0].semantic_rank is None


def test_snippets_are_escaped_and_highlighted(db, local_embedder):
    import_messages(db, "alice", raw([mail("Alert", "Note: the dog is 3 < 4 years old & fine <script>alert(1)</script>")]),
                    embedder=local_embedder)
    (hit,) = search(db, "alice", "dog", embedder=local_embedder).hits
    assert "<mark>dog</mark>" in hit.snippet
    assert "<script" not in hit.snippet and "3 &lt; 4" in hit.snippet and "&amp;" in hit.snippet


# ---------------------------------------------------------------------------- query syntax

@pytest.mark.parametrize("query,expected", [
    ("from:jamie", ["Trip to Paris"]),
    ("from:jamie@example.net paris", ["Trip to Paris"]),
    ("to:team@example.org", ["Football practice"]),
    ("subject:invoice", ["Invoice 2291"]),
    ('subject:"walking rota"', ["Dog walking rota"]),
    ("has:attachment", ["Invoice 2291"]),
    ("before:2024-01-01", ["Football practice"]),
    ("after:2024-06-01 before:2024-06-03", ["Trip to Paris"]),
    ('"train tickets"', ["Trip to Paris"]),
])
def test_operators_filter(labelled, local_embedder, query, expected):
    assert subjects(search(labelled, "alice", query, embedder=local_embedder)) == expected


def test_excluded_words_remove_messages_from_both_rankings(labelled, local_embedder):
    found = subjects(search(labelled, "alice", "dog -puppy", embedder=local_embedder))
    assert "Dog walking rota" in found and "Our new arrival" not in found


def test_bad_dates_are_a_clear_error(labelled):
    with pytest.raises(QueryError, match="after"):
        search(labelled, "alice", "after:someday")


def test_pagination(labelled, local_embedder):
    first = search(labelled, "alice", "after:2000-01-01", limit=2)
    second = search(labelled, "alice", "after:2000-01-01", limit=2, offset=2)
    assert first.total == len(LABELLED) and len(first.hits) == 2
    assert not {h.id for h in first.hits} & {h.id for h in second.hits}


# ---------------------------------------------------------------------------- owners

def test_an_owner_never_sees_another_owners_mail(labelled, local_embedder):
    import_messages(labelled, "bob", raw([mail("Bob's secret", "The zeppelin arrives at noon.")]),
                    embedder=local_embedder)
    assert search(labelled, "alice", "zeppelin", embedder=local_embedder).hits == [] or \
        all(h.subject != "Bob's secret" for h in search(labelled, "alice", "zeppelin", embedder=local_embedder).hits)
    assert all(h.subject != "Bob's secret" for h in search(labelled, "alice", "from:alex").hits)
    with labelled.connect() as conn:
        bob_id, bob_thread = conn.execute(text("SELECT id, thread_id FROM mail_messages WHERE owner = 'bob'")).one()
    assert message(labelled, "alice", bob_id) is None
    assert thread(labelled, "alice", bob_thread) == []
    assert message(labelled, "bob", bob_id).subject == "Bob's secret"
    assert subjects(search(labelled, "bob", "zeppelin", embedder=local_embedder)) == ["Bob's secret"]


# ---------------------------------------------------------------------------- import

def test_reimport_adds_nothing_and_embeds_nothing(db, local_embedder):
    messages = [mail(f"Note {i}", f"Body {i}") for i in range(5)] + [
        mail("No id", "A message without a Message-ID", message_id=None)]
    first = import_messages(db, "alice", raw(messages), embedder=local_embedder)
    assert (first.imported, first.duplicates, first.failed) == (6, 0, 0)

    class Counting:
        model, dimensions = local_embedder.model, local_embedder.dimensions
        calls = 0

        def embed(self, texts):
            Counting.calls += len(texts)
            return local_embedder.embed(texts)

    again = import_messages(db, "alice", raw(messages + messages[:2]), embedder=Counting())
    assert (again.imported, again.duplicates) == (0, 8)
    assert Counting.calls == 0
    assert message_count(db, "alice") == 6


def test_broken_messages_are_counted_and_the_import_carries_on(db, local_embedder):
    items = raw([mail("Fine", "A fine message"), b"\x89PNG\r\n\x1a\n\x00\x00binary", b"",
                 mail("Also fine", "Another")])
    summary = import_messages(db, "alice", items, embedder=local_embedder)
    assert (summary.imported, summary.failed) == (2, 2)
    assert [source for source, _ in summary.failures] == ["test #2", "test #3"]
    assert all(reason for _, reason in summary.failures)


def test_threads_and_progress(db, local_embedder):
    root_id = make_msgid(domain="example.com")
    messages = [mail("Plans", "Shall we meet?", message_id=root_id),
                mail("Re: Plans", "Yes, at noon.", references=root_id),
                mail("Unrelated", "Something else")]
    seen = []
    import_messages(db, "alice", raw(messages), embedder=local_embedder, progress=seen.append, total=3,
                    batch_size=2)
    assert [p.done for p in seen] == [2, 3] and seen[-1].total == 3 and seen[-1].rate > 0
    hit = search(db, "alice", "noon").hits[0]
    assert [m.subject for m in thread(db, "alice", hit.thread_id)] == ["Plans", "Re: Plans"]


def test_demo_mailbox_imports_and_finds_topics(db, local_embedder, tmp_path):
    path = tmp_path / "demo.mbox"
    count = write_demo_mbox(path, count=120, now=datetime(2026, 11, 1, tzinfo=timezone.utc))
    source = open_source(path)
    summary = import_messages(db, "demo", source, embedder=local_embedder)
    assert summary.imported == count and summary.failed == 0
    for topic in ["dog", "invoice", "trip to Paris"]:
        assert search(db, "demo", topic, embedder=local_embedder).hits, topic


def test_command_line_import_and_search(db, pg_url, tmp_path):
    folder = tmp_path / "eml"
    folder.mkdir()
    for name, message_bytes in LABELLED.items():
        (folder / f"{name}.eml").write_bytes(message_bytes)
    (folder / "broken.eml").write_bytes(b"\x89PNG\r\n\x1a\nnot mail")
    env = {**os.environ, "DATABASE_URL": pg_url, "DATA_DIR": str(tmp_path), "EMBEDDING_PROVIDER": "local"}

    def run(*args):
        done = subprocess.run([sys.executable, "-m", "mail", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    summary = run("import", str(folder), "--owner", "carol", "--json")
    assert (summary["imported"], summary["failed"]) == (len(LABELLED), 1)
    assert summary["failures"][0]["source"].endswith("broken.eml") and summary["seconds"] > 0
    assert run("import", str(folder), "--owner", "carol", "--json")["duplicates"] == len(LABELLED)
    hits = run("search", "puppy", "--owner", "carol", "--json")
    assert hits and {"message_id", "subject", "sender", "date", "score"} <= set(hits[0])
    assert hits[0]["subject"] in {"Dog walking rota", "Our new arrival"}
    assert run("search", "puppy", "--owner", "nobody", "--json") == []


def test_imap_import_is_incremental_and_marks_nothing_read(db, local_embedder, imap_server):
    from mail.store import import_from

    user = "bob"
    folder = "Import" + make_msgid(domain="x").strip("<>").split("@")[0][-8:]
    for i in range(3):
        imap_server.append(folder, mail(f"IMAP note {i}", f"Body {i}"), user=user)
    url = f"imap://{user}@{imap_server.host}:{imap_server.port}/{folder}"
    password = imap_server.passwords[user]
    first = import_from(db, "alice", url, embedder=local_embedder, password=password, allow_private_hosts=True)
    assert (first.imported, first.failed) == (3, 0)
    flags = imap_server.flags(folder, user=user)
    assert len(flags) == 3 and not any("\\Seen" in f for f in flags.values())
    imap_server.append(folder, mail("IMAP note 3", "Body 3"), user=user)
    second = import_from(db, "alice", url, embedder=local_embedder, password=password, allow_private_hosts=True)
    assert (second.imported, second.duplicates) == (1, 0), "only the new UID is fetched"
    with db.connect() as conn:
        state = conn.execute(text("SELECT account, folder, last_uid FROM mail_imap_state")).one()
    assert state.folder == folder and state.last_uid == 4 and password not in state.account


# ---------------------------------------------------------------------------- the import's stages

def import_threads() -> list:
    return [t for t in threading.enumerate() if t.name.startswith("mail-import")]


class Reading:
    """A source that records how far it was read, and on which threads."""

    def __init__(self, items, *, fail_after: int | None = None):
        self.items, self.fail_after = list(items), fail_after
        self.read, self.threads = 0, set()

    def __iter__(self):
        for item in self.items:
            self.threads.add(threading.get_ident())
            if self.read == self.fail_after:
                raise SourceInterrupted("The IMAP connection dropped.")
            self.read += 1
            yield item


def stored_subjects(engine, owner: str) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT subject FROM mail_messages WHERE owner = :o ORDER BY id"),
                                 {"o": owner}).scalars())


def embedded_count(engine, owner: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM mail_embeddings WHERE owner = :o"), {"o": owner}).scalar_one()


def test_batches_are_stored_in_order_with_their_counts(db, local_embedder):
    before = set(threading.enumerate())
    messages = [mail(f"Note {i}", f"Body of note {i}") for i in range(9)]
    messages[3] = b""  # unreadable
    messages[6] = messages[1]  # a repeat in a later batch
    source = Reading(raw(messages))
    reports, seen = [], []

    def record(conn, report):
        assert conn.execute(text("SELECT count(*) FROM mail_messages")).scalar_one() == report.imported
        reports.append(report)
        return True

    summary = import_messages(db, "alice", source, embedder=local_embedder, total=9, batch_size=2,
                              on_batch=record, progress=seen.append)
    assert [p.done for p in seen] == [2, 4, 6, 8, 9] == [r.progress.done for r in reports]
    assert [(r.imported, r.duplicates, r.failed) for r in reports] == [(2, 0, 0), (3, 0, 1), (5, 0, 1),
                                                                       (6, 1, 1), (7, 1, 1)]
    assert [s for s, _ in reports[1].new_failures] == ["test #4"] and not reports[2].new_failures
    assert (summary.imported, summary.duplicates, summary.failed, summary.cancelled) == (7, 1, 1, False)
    assert stored_subjects(db, "alice") == [f"Note {i}" for i in (0, 1, 2, 4, 5, 7, 8)]
    assert embedded_count(db, "alice") == 7
    assert len(source.threads) == 1 and threading.get_ident() not in source.threads
    assert import_threads() == [] and set(threading.enumerate()) <= before


def test_a_source_failing_part_way_keeps_the_batches_before_it(db, local_embedder):
    before = set(threading.enumerate())
    source = Reading(raw([mail(f"Note {i}", f"Body {i}") for i in range(9)]), fail_after=5)
    with pytest.raises(SourceInterrupted, match="dropped"):
        import_messages(db, "alice", source, embedder=local_embedder, batch_size=2)
    assert stored_subjects(db, "alice") == [f"Note {i}" for i in range(4)]
    assert embedded_count(db, "alice") == 4
    assert import_threads() == [] and set(threading.enumerate()) <= before


def test_an_embedder_failing_part_way_keeps_the_batches_before_it(db, local_embedder):
    before = set(threading.enumerate())

    class FailingSecond:
        model, dimensions = local_embedder.model, local_embedder.dimensions
        calls = 0

        def embed(self, texts):
            FailingSecond.calls += 1
            if FailingSecond.calls == 2:
                raise EmbeddingError("The embedding service is down.")
            return local_embedder.embed(texts)

    source = Reading(raw([mail(f"Note {i}", f"Body {i}") for i in range(20)]))
    with pytest.raises(EmbeddingError, match="down"):
        import_messages(db, "alice", source, embedder=FailingSecond(), batch_size=2)
    assert stored_subjects(db, "alice") == ["Note 0", "Note 1"]
    assert embedded_count(db, "alice") == 2
    assert FailingSecond.calls == 2, "nothing is embedded after the failure"
    assert source.read <= 2 * (1 + AHEAD + 1), "the source is read at most a few batches ahead"
    assert import_threads() == [] and set(threading.enumerate()) <= before


def test_a_database_error_while_storing_stops_every_stage(db, local_embedder):
    before = set(threading.enumerate())
    source = Reading(raw([mail(f"Note {i}", f"Body {i}") for i in range(12)]))

    def broken(conn, report):
        if report.progress.done == 4:
            conn.execute(text("SELECT no_such_function()"))
        return True

    with pytest.raises(Exception, match="no_such_function"):
        import_messages(db, "alice", source, embedder=local_embedder, batch_size=2, on_batch=broken)
    assert stored_subjects(db, "alice") == ["Note 0", "Note 1"]
    assert import_threads() == [] and set(threading.enumerate()) <= before


def test_a_cancel_stops_after_its_batch_and_reads_little_ahead(db, local_embedder):
    before = set(threading.enumerate())
    source = Reading(raw([mail(f"Note {i}", f"Body {i}") for i in range(40)]))
    reports = []

    def cancel_second(conn, report):
        reports.append(report.progress.done)
        return report.progress.done < 4

    summary = import_messages(db, "alice", source, embedder=local_embedder, batch_size=2, on_batch=cancel_second)
    assert summary.cancelled and summary.imported == 4 and reports == [2, 4]
    assert stored_subjects(db, "alice") == [f"Note {i}" for i in range(4)]
    assert source.read <= 2 * (2 + AHEAD + 1), "no more than a couple of batches are parsed ahead"
    assert import_threads() == [] and set(threading.enumerate()) <= before


def test_embedding_holds_no_database_connection(db, local_embedder):
    checked_out = []

    class Watching:
        model, dimensions = local_embedder.model, local_embedder.dimensions

        def embed(self, texts):
            checked_out.append(db.pool.checkedout())
            return local_embedder.embed(texts)

    summary = import_messages(db, "alice", raw([mail(f"Note {i}", f"Body {i}") for i in range(5)]),
                              embedder=Watching())
    assert summary.imported == 5 and checked_out == [0]
