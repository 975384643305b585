"""Zips made to hurt the importer: one that lies about its compressed sizes, entries that share
their data, damaged archives, and batches of huge messages. Refused at once with a sentence
(the Import page, the sources), or in the worker before anything of the zip is stored (the job's
summary); never a traceback. The full-size zip of a security review (40 members of 24 MiB, 960
MiB from a few MB) runs through a real worker process as a `make attack` test.
"""

from __future__ import annotations

import io
import os
import random
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import event, text

from mail.sources import Limits, ZipSource, open_source, open_upload
from helpers import MiB, big_message, lying_zip, overlapping_zip
from helpers import shown_error as shown
from mail.types import ImportRefused, RawMessage

ROOT = Path(__file__).resolve().parent.parent


WORDS = ("invoice", "meeting", "holiday", "garden", "project", "budget", "river", "ticket", "report",
         "dinner", "photos", "contract", "weekend", "train", "office", "family", "review", "lunch")


def plain_message(n: int, size: int) -> bytes:
    """A message of about ``size`` bytes of random words: it compresses like mail, a few times."""
    rng = random.Random(n)
    head = (f"From: Sender {n} <sender{n}@example.org>\r\nTo: reader@example.com\r\n"
            f"Subject: Words {n}\r\nMessage-ID: <words-{n}@example.org>\r\n\r\n")
    words = " ".join(rng.choice(WORDS) for _ in range(size // 7))
    return (head + words)[:size].encode()


def stored(engine, owner: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM mail_messages WHERE owner = :owner"),
                            {"owner": owner}).scalar_one()


# --- refused at once, from the headers --------------------------------------------------------


def test_a_zip_that_lies_about_its_compressed_sizes_is_refused_at_once() -> None:
    data = lying_zip(8, 2 * MiB)
    assert len(data) < 100_000  # 16 MiB of mail, claiming a ratio of 50 (really about 300)
    started = time.perf_counter()
    with pytest.raises(ImportRefused) as refused:
        open_upload("figures.zip", data)
    assert time.perf_counter() - started < 1
    message = str(refused.value)
    assert message.startswith("figures.zip looks forged: 'mail/000.eml' claims 41 KiB of compressed data")
    assert "nothing was imported" in message and message.endswith(".")


def test_entries_that_share_their_data_are_refused() -> None:
    """Told honestly per entry, 30 entries over one stored message are 30 times the archive."""
    member = big_message(1, MiB // 2)
    data = overlapping_zip(30, member)
    assert len(zipfile.ZipFile(io.BytesIO(data)).infolist()) == 30
    with pytest.raises(ImportRefused, match="share the same data.*nothing was imported"):
        open_upload("copies.zip", data)


def test_damaged_zips_are_refused_or_read_member_by_member_never_an_unexpected_error() -> None:
    """Random bytes changed in a small zip: it is refused (a sentence), or its damaged members
    are skipped with a reason; no other exception ever escapes (zlib's, an empty name, an
    unknown version, an offset outside the file)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for n in range(3):
            archive.writestr(f"box/{n}.eml", big_message(n, 3000))
        archive.writestr("all.mbox", b"From someone Tue Oct  1 10:00:00 2024\n" + big_message(9, 3000))
    base = out.getvalue()
    rng = random.Random(11)
    outcomes = {"refused": 0, "read": 0, "skipped": 0}
    for _ in range(1500):
        data = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            with open_upload("mutated.zip", bytes(data)) as source:
                source.total
                items = list(source)
        except ImportRefused as refused:
            assert "mutated.zip" in str(refused) and str(refused).endswith("."), refused
            outcomes["refused"] += 1
            continue
        outcomes["read"] += 1
        outcomes["skipped"] += sum(1 for item in items if not isinstance(item, RawMessage))
    assert min(outcomes.values()) > 50, outcomes


# --- the bytes really decompressed ------------------------------------------------------------


def test_the_expansion_is_counted_while_decompressing(tmp_path: Path) -> None:
    members = {f"{n}.eml": plain_message(n, 300_000) for n in range(4)}
    with zipfile.ZipFile(tmp_path / "four.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with open_source(tmp_path / "four.zip") as source:
        assert source.expanded == 0  # opening read headers only
        assert source.total == 4
        assert source.expanded == 4 * 300_000  # the check decompressed every member, and counted it
        assert [item.raw for item in source] == list(members.values())
        assert source.expanded == 4 * 300_000  # and the reading counted again


def test_a_zip_that_expands_past_the_limit_is_refused_before_anything_is_stored(db, tmp_path: Path) -> None:
    """Whatever slips past the checks at open (here the limit is lowered once the zip is open, as
    if its headers had understated its size), the decompressing check refuses it before the
    first batch is stored, even with batches of two."""
    from mail.store import import_messages

    with zipfile.ZipFile(tmp_path / "eight.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for n in range(8):
            archive.writestr(f"{n}.eml", plain_message(n, 300_000))
    source = ZipSource(tmp_path / "eight.zip")
    source.limits = Limits(max_zip_total_bytes=MiB)
    with source, pytest.raises(ImportRefused) as refused:
        import_messages(db, "zip-owner", source, batch_size=2)
    assert stored(db, "zip-owner") == 0
    assert str(refused.value) == ("eight.zip expands to more than 1 MiB when decompressed, whatever its headers "
                                  "say; nothing was imported. Split it into smaller zips.")


# --- batches by bytes, statements of bounded size --------------------------------------------


def test_a_batch_closes_at_its_byte_limit_and_a_larger_message_goes_alone(db) -> None:
    from mail.store import import_messages

    sizes = [400_000] * 5 + [1_500_000] + [400_000] * 2
    items = [RawMessage(raw=big_message(n, size), source_id=f"#{n}") for n, size in enumerate(sizes)]
    batches: list[int] = []

    def record(conn, report) -> bool:
        batches.append(report.progress.done)
        return True

    summary = import_messages(db, "batch-owner", items, batch_bytes=MiB, on_batch=record)
    assert summary.imported == 8
    assert batches == [2, 4, 5, 6, 8]  # 2 x 400 KB, 2 x 400 KB, 400 KB (the next is larger), 1.5 MB alone, 2 x 400 KB


def test_rows_are_sent_in_statements_of_bounded_size(db, monkeypatch) -> None:
    import mail.store
    from mail.store import import_messages

    monkeypatch.setattr(mail.store, "PARAM_BYTES", MiB, raising=False)
    sent: list[int] = []

    def watch(conn, cursor, statement, parameters, context, executemany) -> None:
        if "INSERT INTO mail_messages" in statement:
            sent.append(len(parameters["rows"]))

    items = [RawMessage(raw=big_message(n, 300_000), source_id=f"#{n}") for n in range(10)]
    event.listen(db, "before_cursor_execute", watch)
    try:
        summary = import_messages(db, "param-owner", items)
    finally:
        event.remove(db, "before_cursor_execute", watch)
    assert summary.imported == 10 and stored(db, "param-owner") == 10
    assert len(sent) >= 3 and max(sent) <= MiB + 400_000, sent  # one batch, several statements
    with db.connect() as conn:
        subjects = conn.execute(text("SELECT subject FROM mail_messages WHERE owner = 'param-owner' ORDER BY id")).scalars()
        assert list(subjects) == [f"Figures {n}" for n in range(10)]  # in order


# --- what the person sees ---------------------------------------------------------------------


from helpers import button, page_text, subheaders  # noqa: E402


def test_the_lying_zip_on_the_import_page_is_a_sentence_and_nothing_is_kept(open_page, db, tmp_path, run_imports):
    """Uploaded, it is refused at once; as a path on the server, the worker refuses it and the
    import's summary says why."""
    data = lying_zip(8, 2 * MiB)
    app = open_page()
    app.file_uploader(key="upload_files").set_value([("figures.zip", data, "application/zip")]).run()
    button(app, "Import the files").click().run()
    assert not app.exception
    assert [shown(e.value) for e in app.error] == [open_error(data)]

    (tmp_path / "figures.zip").write_bytes(data)
    app.text_input(key="import_path").input(str(tmp_path / "figures.zip"))
    button(app, "Import from the path").click().run()
    assert not app.exception and not app.error
    run_imports()
    app.run()
    assert not app.exception
    assert "figures.zip was not imported" in subheaders(app)
    (error,) = [shown(e.value) for e in app.error]
    assert "looks forged" in error and "nothing was imported" in error
    text_shown = page_text(app)
    assert "Traceback" not in text_shown and str(tmp_path) not in text_shown and "SELECT" not in text_shown
    assert stored(db, "page-import") == 0 and not app.metric


def open_error(data: bytes) -> str:
    try:
        open_upload("figures.zip", data)
    except ImportRefused as refused:
        return str(refused)
    raise AssertionError("the zip was accepted")


# --- the full-size attack ---------------------------------------------------------------------


@pytest.mark.attack
def test_the_full_size_lying_zip_is_refused_by_a_worker_in_little_memory(db, pg_url, tmp_path) -> None:
    """40 members of 24 MiB (960 MiB of mail) in a few MB, claiming a ratio of 50. It took a server
    to 8.8 GB and 300 s and ended in PostgreSQL's "invalid memory alloc request size". Now: the
    upload is refused at once; imported from a path, a real worker process refuses it, its peak
    RSS stays under 1 GB, and nothing of it is stored."""
    from cryptography.fernet import Fernet

    from mail.jobs import ImportQueue, JobSecrets, job_app, psycopg_conninfo
    from semcache.blobstores import LocalBlobStore

    data = lying_zip(40, 24 * MiB)
    path = tmp_path / "figures.zip"
    path.write_bytes(data)
    print(f"\nthe zip: {len(data):,} bytes on disk, 960 MiB expanded")
    key = Fernet.generate_key().decode()
    queue = ImportQueue(db, job_app(psycopg_conninfo(pg_url)), uploads=LocalBlobStore(tmp_path / "uploads"),
                        secrets=JobSecrets(key), max_upload_mb=200, max_message_mb=25)
    try:
        started = time.perf_counter()
        with pytest.raises(ImportRefused, match="looks forged"):
            queue.enqueue_uploads("attacker", [("figures.zip", data)])
        print(f"upload refused in {time.perf_counter() - started:.3f} s")
        assert queue.imports("attacker") == []
        job = queue.enqueue_path("attacker", str(path))
    finally:
        queue.close()

    env = {**os.environ, "DATABASE_URL": pg_url, "DATA_DIR": str(tmp_path / "worker-data"),
           "EMBEDDING_PROVIDER": "local", "JOB_SECRET_KEY": key, "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "worker.log", "wb")
    started = time.perf_counter()
    worker = subprocess.Popen([sys.executable, "-m", "mail", "worker", "--once"], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 600
    while True:
        pid, status, usage = os.wait4(worker.pid, os.WNOHANG)
        if pid:
            break
        assert time.monotonic() < deadline, "the worker did not finish"
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    log.close()
    peak_mib = usage.ru_maxrss / 1024  # KiB on Linux
    print(f"worker: {seconds:.1f} s (start, model, the import, stop), peak RSS {peak_mib:.0f} MiB")
    assert os.waitstatus_to_exitcode(status) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    with db.connect() as conn:
        row = conn.execute(text("SELECT status, error, imported FROM mail_imports WHERE id = :id"),
                           {"id": job.id}).one()
    assert row.status == "failed" and row.imported == 0
    assert "looks forged" in row.error and "nothing was imported" in row.error
    assert "Traceback" not in row.error and str(tmp_path) not in row.error
    assert stored(db, "attacker") == 0
    assert peak_mib < 1024
