"""The operators on the real database (cc:, filename:, in:, larger:/smaller:, label:), labels
and saved searches kept per owner, and a search exported as an mbox file that Python's own
`mailbox` reads back."""

from __future__ import annotations

import mailbox
from datetime import datetime, timezone
from email import message_from_binary_file, policy
from email.message import EmailMessage
from email.utils import format_datetime

import pytest

from mail import labels
from mail.export import mbox_of_messages, mbox_of_search
from mail.labels import LabelError
from mail.search import search
from mail.store import import_messages
from mail.types import RawMessage


def message(subject: str, body: str = "Hello.", *, cc: str | None = None, attachment: str | None = None,
            pad: int = 0, day: int = 1, message_id: str | None = None, reply_to: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alex Doe <alex@example.com>"
    msg["To"] = "me@example.org"
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime(2025, 3, day, 12, tzinfo=timezone.utc))
    msg["Message-ID"] = message_id or f"<{subject.replace(' ', '.')}@example.com>"
    if reply_to:
        msg["In-Reply-To"] = reply_to
    msg.set_content(body + "\n" + "x" * pad)
    if attachment:
        msg.add_attachment(b"%PDF-1.4 small", maintype="application", subtype="octet-stream", filename=attachment)
    return msg.as_bytes()


MAILBOX = [
    (message("Budget review", cc="Carol King <carol@example.net>"), "work.mbox #1", None),
    (message("Scan of the lease", attachment="Lease-2025.PDF"), "work.mbox #2", None),
    (message("Holiday photos", pad=300_000), "INBOX UID 7", "INBOX/Family"),
    (message("Short note"), "INBOX UID 8", "INBOX"),
]


@pytest.fixture
def mailbox_of_alice(db):
    items = [RawMessage(raw=raw, source_id=source, folder=folder) for raw, source, folder in MAILBOX]
    assert import_messages(db, "alice", items).imported == len(MAILBOX)
    import_messages(db, "bob", [RawMessage(raw=message("Budget review", cc="carol@example.net"),
                                           source_id="work.mbox #1")])
    return db


def subjects(engine, query: str, owner: str = "alice") -> list[str]:
    return sorted(hit.subject for hit in search(engine, owner, query).hits)


def pk(engine, subject: str, owner: str = "alice") -> int:
    return next(hit.id for hit in search(engine, owner, f'subject:"{subject}"').hits)


def test_cc_filename_folder_and_size_operators(mailbox_of_alice):
    db = mailbox_of_alice
    assert subjects(db, "cc:carol") == ["Budget review"]
    assert subjects(db, "cc:king") == ["Budget review"]
    assert subjects(db, "cc:me@example.org") == []  # To is not Cc
    assert subjects(db, "filename:pdf") == ["Scan of the lease"]  # any case, a part of the name
    assert subjects(db, "filename:lease-2025") == ["Scan of the lease"]
    assert subjects(db, "filename:docx") == []
    assert subjects(db, "in:work") == ["Budget review", "Scan of the lease"]  # the mailbox file's name
    assert subjects(db, "in:inbox") == ["Short note"]
    assert subjects(db, "in:family") == ["Holiday photos"]  # the last part of an IMAP folder
    assert subjects(db, 'in:"INBOX/Family"') == ["Holiday photos"]
    assert subjects(db, "larger:200k") == ["Holiday photos"]
    assert subjects(db, "smaller:200k") == ["Budget review", "Scan of the lease", "Short note"]
    assert subjects(db, "larger:100 smaller:200k in:work cc:carol") == ["Budget review"]


def test_labels_are_per_owner_and_found_with_label(mailbox_of_alice):
    db = mailbox_of_alice
    budget, lease = pk(db, "Budget review"), pk(db, "Scan of the lease")
    assert labels.add_label(db, "alice", budget, "  To Do ") == "to-do"
    labels.add_label(db, "alice", budget, "to-do")  # again: nothing changes
    labels.add_label(db, "alice", lease, "Receipts")
    assert labels.labels_of(db, "alice", [budget, lease]) == {budget: ["to-do"], lease: ["receipts"]}
    assert subjects(db, 'label:"to do"') == ["Budget review"]
    assert subjects(db, "label:receipts budget") == []
    assert labels.owner_labels(db, "alice") == [("receipts", 1), ("to-do", 1)]

    bobs = pk(db, "Budget review", "bob")
    assert subjects(db, "label:to-do", "bob") == []
    with pytest.raises(LabelError, match="not in your mailbox"):
        labels.add_label(db, "bob", budget, "mine")  # alice's message
    labels.remove_label(db, "bob", budget, "to-do")  # not bob's label: nothing happens
    assert labels.labels_of(db, "alice", [budget]) == {budget: ["to-do"]}
    assert labels.labels_of(db, "bob", [budget, bobs]) == {}

    labels.remove_label(db, "alice", budget, "TO DO")
    assert subjects(db, "label:to-do") == []
    with pytest.raises(LabelError, match="Type a label"):
        labels.add_label(db, "alice", budget, " \x00 ")
    with pytest.raises(LabelError, match="at most 64"):
        labels.add_label(db, "alice", budget, "x" * 65)
    for i in range(labels.MAX_LABELS_PER_MESSAGE - 1):
        labels.add_label(db, "alice", lease, f"l{i}")
    with pytest.raises(LabelError, match="remove one first"):
        labels.add_label(db, "alice", lease, "one too many")


def test_saved_searches_are_named_per_owner(db):
    first = labels.save_search(db, "alice", " Receipts ", "filename:pdf\x00 label:receipts")
    assert (first.name, first.query) == ("Receipts", "filename:pdf label:receipts")
    labels.save_search(db, "alice", "Budget", "budget cc:carol")
    labels.save_search(db, "alice", "Receipts", "filename:pdf")  # the same name: replaced
    labels.save_search(db, "bob", "Mine", "dog")
    assert [(s.name, s.query) for s in labels.saved_searches(db, "alice")] == [
        ("Budget", "budget cc:carol"), ("Receipts", "filename:pdf")]
    assert not labels.delete_saved_search(db, "bob", first.id)  # alice's
    assert labels.delete_saved_search(db, "alice", first.id)
    assert [s.name for s in labels.saved_searches(db, "alice")] == ["Budget"]
    assert [s.name for s in labels.saved_searches(db, "bob")] == ["Mine"]
    with pytest.raises(LabelError, match="name"):
        labels.save_search(db, "alice", "  ", "dog")
    with pytest.raises(LabelError, match="Type a search"):
        labels.save_search(db, "alice", "empty", "   ")
    for i in range(labels.MAX_SAVED_SEARCHES - 1):
        labels.save_search(db, "alice", f"s{i}", "dog")
    with pytest.raises(LabelError, match="delete one first"):
        labels.save_search(db, "alice", "one too many", "dog")
    labels.save_search(db, "alice", "Budget", "budget")  # replacing is still fine at the limit


def test_a_search_exports_as_an_mbox_that_mailbox_reads_back(db, tmp_path):
    hostile = "Invoice\r\nBcc: everyone@example.com\r\n\r\nInjected body"
    thread = [
        message("Trip to Paris", "From now on we meet at 9.\nFrom the station.\n>From quoted.\nBye.", day=2,
                cc="Carol King <carol@example.net>", attachment="tickets.pdf", message_id="<paris@example.com>"),
        message("Re: Trip to Paris", "Sounds good.", day=3, message_id="<re-paris@example.com>",
                reply_to="<paris@example.com>"),
        message("Zoë's café receipt", "Ça va. Paris again.", day=1, message_id="<zoe@example.com>"),
    ]
    msg = EmailMessage()
    msg["From"] = "mallory@example.com"
    msg["To"] = "me@example.org"
    msg["Date"] = format_datetime(datetime(2025, 3, 4, tzinfo=timezone.utc))
    msg["Message-ID"] = "<hostile@example.com>"
    msg.set_content("Paris is lovely.")
    items = [RawMessage(raw=raw, source_id=f"x.mbox #{i}") for i, raw in enumerate(thread, 1)]
    items.append(RawMessage(raw=msg.as_bytes(), source_id="x.mbox #4"))
    import_messages(db, "alice", items)
    import_messages(db, "bob", [RawMessage(raw=message("Bob in Paris", "Paris."), source_id="b.mbox #1")])
    with db.begin() as conn:  # a subject as a broken importer or a hostile mailbox could leave it
        conn.exec_driver_sql("UPDATE mail_messages SET subject = %s WHERE message_id = 'hostile@example.com'",
                             (hostile,))

    path = tmp_path / "paris.mbox"
    path.write_bytes(mbox_of_search(db, "alice", "paris"))
    read = read_mbox(path)
    assert [m["Subject"] for m in read] == [
        "Zoë's café receipt", "Trip to Paris", "Re: Trip to Paris", "Invoice Bcc: everyone@example.com Injected body"]
    assert all(m["Bcc"] is None for m in read)
    zoe, paris, reply, injected = read
    assert zoe.get_content().strip() == "Ça va. Paris again."
    assert paris["From"] == "Alex Doe <alex@example.com>" and paris["To"] == "me@example.org"
    assert paris["Cc"] == "Carol King <carol@example.net>"
    assert paris["Message-ID"] == "<paris@example.com>" and reply["In-Reply-To"] == "<paris@example.com>"
    assert paris["Date"] == "Sun, 02 Mar 2025 12:00:00 +0000"
    assert "tickets.pdf (application/octet-stream" in paris["X-Attachments-Not-Included"]
    assert paris.get_content().splitlines() == [
        ">From now on we meet at 9.", ">From the station.", ">>From quoted.", "Bye."]
    assert injected.get_content().strip() == "Paris is lovely."
    assert "Bob in Paris" not in path.read_text()


def test_an_export_holds_only_the_owners_messages_and_is_bounded(db, monkeypatch):
    import mail.export as export

    import_messages(db, "alice", [RawMessage(raw=message(f"Note {i}", day=i + 1), source_id=f"n #{i}")
                                  for i in range(5)])
    import_messages(db, "bob", [RawMessage(raw=message("Bob's note"), source_id="b #1")])
    ids = [hit.id for hit in search(db, "alice", "subject:note", limit=50).hits]
    bobs = [hit.id for hit in search(db, "bob", "subject:note").hits]
    assert len(mailbox_of_bytes(mbox_of_messages(db, "alice", ids + bobs))) == 5
    monkeypatch.setattr(export, "MAX_EXPORT_MESSAGES", 3)
    assert [m["Subject"] for m in mailbox_of_bytes(mbox_of_messages(db, "alice", ids))] == [
        "Note 2", "Note 3", "Note 4"]  # the first three of the search's order, oldest first


def read_mbox(path) -> list:
    """The messages of an mbox file as Python's `mailbox` reads them, headers decoded."""
    return list(mailbox.mbox(str(path), factory=lambda f: message_from_binary_file(f, policy=policy.default)))


def mailbox_of_bytes(data: bytes) -> list:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".mbox") as f:
        f.write(data)
        f.flush()
        return read_mbox(f.name)


def test_a_database_that_does_not_answer_is_a_storage_error():
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    from mail.types import StorageError

    unanswering = create_engine("postgresql+psycopg2://nobody@127.0.0.1:9/none?connect_timeout=2")
    calls = [lambda: labels.add_label(unanswering, "alice", 1, "x"), lambda: labels.remove_label(unanswering, "alice", 1, "x"),
             lambda: labels.labels_of(unanswering, "alice", [1]), lambda: labels.owner_labels(unanswering, "alice"),
             lambda: labels.saved_searches(unanswering, "alice"), lambda: labels.save_search(unanswering, "alice", "a", "b"),
             lambda: labels.delete_saved_search(unanswering, "alice", 1),
             lambda: mbox_of_messages(unanswering, "alice", [1]), lambda: mbox_of_search(unanswering, "alice", "dog")]
    try:
        for call in calls:
            with pytest.raises(StorageError) as caught:
                call()
            assert isinstance(caught.value.__cause__, OperationalError)
            assert str(caught.value).startswith("The mail database failed while ")
    finally:
        unanswering.dispose()
