"""Hostile and broken uploads on the Import page (Streamlit's AppTest, the test database, the
real model): what the person sees is one sentence naming the file and what to do, at once,
nothing is queued or imported, and no traceback. What tests/test_page_import.py covers already (a zip-slip entry, an
upload over the size limit) is not repeated; tests/test_sources.py covers the sources below the
page."""

from __future__ import annotations

import io
import random
import stat
import zipfile

from helpers import button, count, counts, eml, lying_zip, overlapping_zip, page_text
from helpers import shown_error as shown

NOT_MAIL = "is not an mbox file, a Maildir, .eml files or a .zip of them"
PNG = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(64)
JPEG = b"\xff\xd8\xff\xe0\0\x10JFIF" + bytes(64)


def zip_of(members: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        if symlink:
            link = zipfile.ZipInfo(symlink)
            link.create_system = 3
            link.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(link, "/etc/passwd")
    return out.getvalue()


def encrypted(data: bytes) -> bytes:
    """The zip with every entry flagged as encrypted (bit 0), as a password-protected zip is."""
    raw = bytearray(data)
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = raw.find(signature)
        while at >= 0:
            raw[at + flags_at] |= 0x1
            at = raw.find(signature, at + 4)
    return bytes(raw)


def future_version(data: bytes) -> bytes:
    """The zip with its central directory asking for a zip version no reader knows (11.9)."""
    raw = bytearray(data)
    at = raw.find(b"PK\x01\x02")
    while at >= 0:
        raw[at + 6] = 119
        at = raw.find(b"PK\x01\x02", at + 4)
    return bytes(raw)


def refusals() -> list[tuple[str, bytes, str]]:
    good = eml("Fine")
    noise = random.Random(7).randbytes(300)
    return [
        ("bomb.zip", zip_of({"a.eml": good, "b.eml": b"\0" * (20 * 2**20)}), "looks like a zip bomb"),
        ("flat-bomb.zip", zip_of({f"{n}.eml": good + b" " * 900_000 for n in range(4)}), "looks like a zip bomb"),
        ("lying.zip", lying_zip(8, 2 * 2**20), "looks forged"),
        ("copies.zip", overlapping_zip(30, good + b"x" * 300_000), "share the same data"),
        ("future.zip", future_version(zip_of({"a.eml": good})), "is not a readable zip archive"),
        ("locked.zip", encrypted(zip_of({"a.eml": good})), "is password-protected"),
        ("link.zip", zip_of({"a.eml": good}, symlink="inbox.eml"), "symbolic link"),
        ("absolute.zip", zip_of({"a.eml": good, "/etc/cron.d/evil.eml": good}), "leads outside the archive's folder"),
        ("broken.zip", b"PK\x03\x04" + noise, "is not a readable zip archive"),
        ("zips.zip", zip_of({"inner.zip": zip_of({"a.eml": good})}), "only holds other zips"),
        ("photos.zip", zip_of({"a.jpg": JPEG, "b.txt": b"hi"}), "contains no mail"),
        ("notes.txt", b"Shopping list\nmilk, eggs, bread\n", NOT_MAIL),
        ("photo.png", PNG, NOT_MAIL),
        ("setup.exe", b"MZ\x90\0" + noise, NOT_MAIL),
        ("inbox.mbox", b"", "is empty"),
        ("spaces.mbox", b" \r\n\t\n", "is empty"),
    ]


def test_hostile_uploads_are_refused_with_a_sentence(open_page, db):
    app = open_page()
    for name, data, says in refusals():
        app.file_uploader(key="upload_files").set_value([(name, data, "application/octet-stream")]).run()
        button(app, "Import the files").click().run()
        assert not app.exception, (name, app.exception)
        errors = [shown(e.value) for e in app.error]
        assert len(errors) == 1 and name in errors[0] and says in errors[0], (name, errors)
        assert errors[0].rstrip().endswith("."), errors[0]
        assert "Traceback" not in page_text(app) and not app.metric
        assert count(db, "mail_imports") == 0 and count(db, "mail_messages") == 0, name


def test_broken_messages_inside_an_accepted_upload_are_listed_with_reasons(open_page, db, monkeypatch, run_imports):
    monkeypatch.setenv("MAX_UPLOAD_MB", "3")
    monkeypatch.setenv("MAX_MESSAGE_MB", "1")
    envelope = b"From someone@example.com Tue Oct  1 10:00:00 2024\n"
    mbox = b"".join(envelope + m + b"\n" for m in (
        eml("Kept"),
        eml("Far too long", "z" * (3 * 2**19)),          # 1.5 MiB
        PNG + b"\n",                                   # an image where a message should be
        b"just words, no headers at all\n",
    ))
    app = open_page()
    app.file_uploader(key="upload_files").set_value([("box.mbox", mbox, "application/mbox"),
                                                     ("photo.eml", JPEG, "message/rfc822")]).run()
    button(app, "Import the files").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    run_imports()  # a background import, run here as a worker would
    app.run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert counts(app) == ("1", "0", "4")
    failures = app.dataframe[0].value
    reasons = dict(zip(failures["Message"], failures["Reason"]))
    assert "over the 1 MiB limit for one message" in reasons["box.mbox #2"]
    assert reasons["box.mbox #3"].startswith("This is a PNG image, not an email message")
    assert reasons["box.mbox #4"].startswith("This is not an email message: it has no mail headers")
    assert reasons["photo.eml"].startswith("This is a JPEG image, not an email message")
    assert count(db, "mail_messages") == 1
