"""Import sources: files, folders, zips and uploads built here by hand, and a real IMAP server
(Dovecot, from tests/imapserver.py)."""

from __future__ import annotations

import mailbox
import os
import random
import socket
import stat
import struct
import threading
import uuid
import zipfile
from pathlib import Path

import pytest

from imapserver import ImapServer, imap_server  # noqa: F401  (session fixture)
from mail.sources import (
    EmlFileSource,
    EmlFolderSource,
    ImapRefused,
    ImapSource,
    Limits,
    MaildirSource,
    MboxSource,
    Skipped,
    ZipSource,
    imap_utf7,
    open_source,
    open_upload,
)
from mail.types import ImportRefused, RawMessage

NOT_MAIL = "is not an mbox file, a Maildir, .eml files or a .zip of them"


def message(n: int, body: str = "", *, eol: str = "\n") -> bytes:
    lines = [
        f"From: Sender {n} <sender{n}@example.org>",
        "To: reader@example.com",
        f"Subject: Message number {n}",
        "Date: Tue, 01 Oct 2024 10:00:00 +0000",
        f"Message-ID: <m{n}@example.org>",
        "",
        body or f"Hello, this is message {n}.",
        "",
    ]
    return eol.join(lines).encode()


def mbox_bytes(messages: list[bytes], eol: str = "\n") -> bytes:
    return b"".join(
        f"From sender@example.org Tue Oct  1 10:00:00 2024{eol}".encode() + raw + eol.encode()
        for raw in messages
    )


def raws(items: list[RawMessage | Skipped]) -> list[bytes]:
    return [item.raw for item in items if isinstance(item, RawMessage)]


def skipped(items: list[RawMessage | Skipped]) -> list[Skipped]:
    return [item for item in items if isinstance(item, Skipped)]


def read_all(source) -> list[RawMessage | Skipped]:
    with source:
        return list(source)


def make_zip(path: Path, members: dict[str, bytes], *,
             compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return path


# --- mbox -------------------------------------------------------------------------------------


def test_mbox_file_yields_each_message_with_its_number(tmp_path: Path) -> None:
    body = "First line\nFrom here on the text only talks about the From line.\nbye"
    messages = [message(1), message(2, body), message(3)]
    path = tmp_path / "inbox.mbox"
    path.write_bytes(mbox_bytes(messages))

    source = open_source(path)
    assert isinstance(source, MboxSource)
    assert source.total == 3
    items = read_all(source)
    assert raws(items) == messages
    assert [item.source_id for item in items] == ["inbox.mbox #1", "inbox.mbox #2", "inbox.mbox #3"]


def test_mbox_with_crlf_lines_and_leading_empty_lines(tmp_path: Path) -> None:
    messages = [message(1, eol="\r\n"), message(2, eol="\r\n")]
    path = tmp_path / "windows.mbox"
    path.write_bytes(b"\r\n" + mbox_bytes(messages, eol="\r\n"))
    source = open_source(path)
    assert source.total == 2
    assert raws(read_all(source)) == messages


def test_mbox_matches_the_standard_library_across_read_blocks(tmp_path: Path) -> None:
    """Messages of random sizes around 1 MiB read blocks: the same bytes as mailbox.mbox."""
    rng = random.Random(7)
    messages = [message(n, "\n".join("x" * rng.randint(1, 300)
                                     for _ in range(rng.randint(1, 4000))))
                for n in range(60)]
    path = tmp_path / "big.mbox"
    path.write_bytes(mbox_bytes(messages))
    assert path.stat().st_size > 3 * 1024 * 1024

    expected = [box.get_bytes(key) for box in [mailbox.mbox(path, create=False)]
                for key in box.iterkeys()]
    source = open_source(path)
    assert source.total == len(expected) == 60
    assert raws(read_all(source)) == expected == messages


def test_oversized_message_in_mbox_is_skipped_with_a_reason(tmp_path: Path) -> None:
    big = message(2, "y" * 3 * 1024 * 1024)  # spans several read blocks
    messages = [message(1), big, message(3)]
    path = tmp_path / "box.mbox"
    path.write_bytes(mbox_bytes(messages))

    items = read_all(open_source(path, max_message_bytes=1024 * 1024))
    assert raws(items) == [messages[0], messages[2]]
    (skip,) = skipped(items)
    assert skip.source_id == "box.mbox #2"
    assert "over the 1 MiB limit" in skip.reason and "3 MiB" in skip.reason


def test_mbox_upload(tmp_path: Path) -> None:
    messages = [message(1), message(2)]
    source = open_upload("C:\\Users\\me\\Takeout.mbox", mbox_bytes(messages))
    assert isinstance(source, MboxSource)
    assert source.total == 2
    items = read_all(source)
    assert raws(items) == messages
    assert items[1].source_id == "Takeout.mbox #2"


# --- Maildir and .eml -------------------------------------------------------------------------


def test_maildir_reads_cur_new_and_subfolders(tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "Mail", create=True)
    box.add(mailbox.MaildirMessage(message(1)))          # lands in new/
    seen = mailbox.MaildirMessage(message(2))
    seen.set_subdir("cur")
    seen.set_flags("S")
    box.add(seen)
    box.add_folder("Sent").add(mailbox.MaildirMessage(message(3)))
    (tmp_path / "Mail" / "tmp" / "123.partial").write_bytes(b"half a deliv")
    (tmp_path / "Mail" / "dovecot-uidlist").write_text("3 V1 N4\n")

    source = open_source(tmp_path / "Mail")
    assert isinstance(source, MaildirSource)
    assert source.total == 3
    items = read_all(source)
    assert sorted(raws(items)) == sorted([message(1), message(2), message(3)])
    ids = [item.source_id for item in items]
    assert ids[0].startswith("cur/") and ids[0].endswith(":2,S")
    assert ids[1].startswith("new/")
    assert ids[2].startswith(".Sent/new/")


def test_oversized_maildir_file_is_skipped_unread(tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "Mail", create=True)
    box.add(message(1, "z" * 5000))
    box.add(message(2))
    items = read_all(open_source(tmp_path / "Mail", max_message_bytes=2000))
    assert raws(items) == [message(2)]
    (skip,) = skipped(items)
    assert skip.reason == "the message is 5 KiB, over the 2 KiB limit for one message"


def test_eml_folder_is_searched_recursively(tmp_path: Path) -> None:
    root = tmp_path / "export"
    (root / "2023" / "march").mkdir(parents=True)
    (root / "2023" / "march" / "a.eml").write_bytes(message(1))
    (root / "B.EML").write_bytes(message(2))
    (root / "notes.txt").write_text("not mail")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "c.eml").write_bytes(message(3))

    source = open_source(root)
    assert isinstance(source, EmlFolderSource)
    assert source.total == 2
    items = read_all(source)
    assert {item.source_id: item.raw for item in items} == {
        "2023/march/a.eml": message(1), "B.EML": message(2)}


def test_single_eml_file_by_extension_or_by_content(tmp_path: Path) -> None:
    (tmp_path / "one.eml").write_bytes(message(1))
    (tmp_path / "saved-message").write_bytes(message(2))
    for name, expected in (("one.eml", message(1)), ("saved-message", message(2))):
        source = open_source(tmp_path / name)
        assert isinstance(source, EmlFileSource)
        assert source.total == 1
        (item,) = read_all(source)
        assert item == RawMessage(raw=expected, source_id=name)


def test_eml_upload_and_oversized_eml_upload() -> None:
    (item,) = read_all(open_upload("note.eml", message(1)))
    assert item == RawMessage(raw=message(1), source_id="note.eml")
    (skip,) = read_all(open_upload("huge.eml", message(2, "q" * 4000), max_message_bytes=1000))
    assert isinstance(skip, Skipped) and skip.source_id == "huge.eml"


@pytest.mark.parametrize("content", [b"just some notes\nnothing else\n", b"\x89PNG\r\n\x1a\n\0\0",
                                     b"Note: buy milk\n"])
def test_non_mail_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(ImportRefused, match=NOT_MAIL):
        open_source(path)
    with pytest.raises(ImportRefused, match=NOT_MAIL):
        open_upload("notes.txt", content)


def test_empty_missing_and_mailless_paths_are_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.mbox").write_bytes(b"")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "readme.md").write_text("# hi")
    with pytest.raises(ImportRefused, match="is empty"):
        open_source(tmp_path / "empty.mbox")
    with pytest.raises(ImportRefused, match="does not exist"):
        open_source(tmp_path / "nope.mbox")
    with pytest.raises(ImportRefused, match=NOT_MAIL):
        open_source(tmp_path / "folder")
    with pytest.raises(ImportRefused, match="cannot be imported"):
        open_source("https://example.com/inbox.mbox")


def test_upload_over_the_limit_is_refused() -> None:
    with pytest.raises(ImportRefused, match=r"big\.mbox is 2 MiB, over the 1 MiB limit"):
        open_upload("big.mbox", mbox_bytes([message(1, "w" * 2 * 1024 * 1024)]),
                    max_upload_bytes=1024 * 1024)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_zip_entries"):
        Limits(max_zip_entries=0)


# --- zip --------------------------------------------------------------------------------------


def test_zip_of_eml_files(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "mail.zip", {
        "export/": b"",
        "export/a.eml": message(1),
        "export/sub/b.eml": message(2),
        "__MACOSX/export/._a.eml": b"\0\5\26\7",
        "export/.DS_Store": b"\0\0\0\1Bud1",
        "export/readme.txt": b"exported by hand",
    })
    source = open_source(path)
    assert isinstance(source, ZipSource)
    assert source.total == 2
    items = read_all(source)
    assert {item.source_id: item.raw for item in items} == {
        "export/a.eml": message(1), "export/sub/b.eml": message(2)}
    assert "export/readme.txt" in source.ignored


def test_zip_of_mbox_files(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "takeout.zip", {
        "Takeout/Mail/All mail.mbox": mbox_bytes([message(1), message(2)]),
        "Takeout/Mail/Sent": mbox_bytes([message(3)]),  # no extension: told by content
    })
    source = open_source(path)
    assert source.total == 3
    items = read_all(source)
    assert raws(items) == [message(1), message(2), message(3)]
    assert [item.source_id for item in items] == [
        "Takeout/Mail/All mail.mbox #1", "Takeout/Mail/All mail.mbox #2", "Takeout/Mail/Sent #1"]


def test_zip_of_a_maildir_tree(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "maildir.zip", {
        "Maildir/cur/1700000000.M1P1.host:2,S": message(1),
        "Maildir/new/1700000001.M2P1.host": message(2),
        "Maildir/.Archive/cur/1700000002.M3P1.host:2,": message(3),
        "Maildir/tmp/1700000003.M4P1.host": b"From: half",
        "Maildir/dovecot-uidlist": b"3 V1700000000 N4\n",
        "Maildir/dovecot.index.log": b"\x01\x02\x00\x00",
    })
    items = read_all(open_source(path))
    assert raws(items) == [message(1), message(2), message(3)]
    assert items[0].source_id == "Maildir/cur/1700000000.M1P1.host:2,S"


def test_zip_upload_and_nested_zip_is_not_followed(tmp_path: Path) -> None:
    inner = make_zip(tmp_path / "inner.zip", {"x.eml": message(9)}).read_bytes()
    data = make_zip(tmp_path / "outer.zip", {"a.eml": message(1), "old/inner.zip": inner}).read_bytes()
    source = open_upload("outer.zip", data)
    assert isinstance(source, ZipSource)
    items = read_all(source)
    assert raws(items) == [message(1)]
    (skip,) = skipped(items)
    assert skip.source_id == "old/inner.zip" and "not opened" in skip.reason


def test_zip_without_mail_is_refused(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "photos.zip", {"a.jpg": b"\xff\xd8\xff\xe0JFIF", "b.txt": b"hi"})
    with pytest.raises(ImportRefused, match=NOT_MAIL):
        open_source(path)


def test_oversized_member_of_a_zip_is_skipped(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "m.zip", {"big.eml": message(1, "b" * 9000), "ok.eml": message(2)})
    items = read_all(open_source(path, max_message_bytes=4000))
    assert raws(items) == [message(2)]
    assert skipped(items)[0].source_id == "big.eml"


@pytest.mark.parametrize("name", ["../evil.eml", "/abs.eml", "mail/../../evil.eml",
                                  "C:/Windows/evil.eml", "..\\evil.eml"])
def test_zip_slip_names_are_refused(tmp_path: Path, name: str) -> None:
    path = make_zip(tmp_path / "slip.zip", {"good.eml": message(1), name: message(2)})
    with pytest.raises(ImportRefused, match="outside the archive's folder"):
        open_source(path)
    with pytest.raises(ImportRefused, match="outside the archive's folder"):
        open_upload("slip.zip", path.read_bytes())


def test_zip_with_a_symlink_is_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("inbox.eml")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("good.eml", message(1))
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(ImportRefused, match="symbolic link"):
        open_source(path)


def test_zip_bomb_by_compression_ratio_is_refused(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "bomb.zip", {"a.eml": message(1), "b.eml": b"\0" * (20 * 1024 * 1024)})
    assert path.stat().st_size < 100_000
    with pytest.raises(ImportRefused, match="zip bomb"):
        open_source(path)


def test_zip_expanding_over_the_total_limit_is_refused(tmp_path: Path) -> None:
    rng = random.Random(1)
    noise = bytes(rng.getrandbits(8) for _ in range(600_000))  # incompressible
    path = make_zip(tmp_path / "large.zip", {f"{n}.eml": message(n) + noise for n in range(4)})
    with pytest.raises(ImportRefused, match=r"expands to 2\.\d MiB, over the 2 MiB limit"):
        open_source(path, max_zip_total_bytes=2 * 1024 * 1024)


def test_zip_that_understates_its_sizes_is_not_expanded_past_them(tmp_path: Path) -> None:
    """A central directory that declares 1 KiB for a member of 3 MiB: zipfile and the source
    read at most the declared size, so the member comes back as damaged, not as 3 MiB."""
    big = message(1, "spam " * 600_000)
    path = make_zip(tmp_path / "liar.zip", {"big.eml": big, "ok.eml": message(2)})
    data = bytearray(path.read_bytes())
    central = data.find(b"PK\x01\x02")
    assert data[central + 46:central + 46 + 7] == b"big.eml"
    struct.pack_into("<I", data, central + 24, 1024)  # uncompressed size
    path.write_bytes(bytes(data))

    source = open_source(path)
    items = read_all(source)
    assert raws(items) == [message(2)]
    (skip,) = skipped(items)
    assert skip.source_id == "big.eml" and "damaged" in skip.reason
    assert source._expanded < 10_000


def test_zip_with_too_many_entries_is_refused(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "many.zip", {f"{n}.eml": message(n) for n in range(6)})
    with pytest.raises(ImportRefused, match="6 entries, more than the 5 allowed"):
        open_source(path, max_zip_entries=5)


def test_damaged_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.zip"
    path.write_bytes(b"PK\x03\x04" + os.urandom(200))
    with pytest.raises(ImportRefused, match="not a readable zip"):
        open_source(path)


# --- IMAP -------------------------------------------------------------------------------------


def new_folder() -> str:
    return f"import-{uuid.uuid4().hex[:8]}"


def imap(target: str, **options) -> ImapSource:
    """An IMAP source allowed to reach the test server (Dovecot listens on loopback)."""
    source = open_source(target, allow_private_hosts=True, **options)
    assert isinstance(source, ImapSource)
    return source


def url(server: ImapServer, folder: str, *, with_password: bool = False) -> str:
    secret = f":{server.password}" if with_password else ""
    return f"imap://{server.user}{secret}@{server.host}:{server.port}/{folder}"


def crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def without_recent(flags: dict[int, str]) -> dict[int, str]:
    return {uid: " ".join(f for f in text.split() if f != "\\Recent") for uid, text in flags.items()}


def test_imap_fetches_everything_and_leaves_flags_alone(imap_server: ImapServer) -> None:
    folder = new_folder()
    imap_server.append(folder, crlf(message(1)))
    imap_server.append(folder, crlf(message(2)), flags="\\Flagged")
    imap_server.append(folder, crlf(message(3)), flags="\\Seen")
    before = without_recent(imap_server.flags(folder))

    source = imap(url(imap_server, folder, with_password=True))
    assert isinstance(source, ImapSource)
    assert source.total == 3
    items = read_all(source)

    assert raws(items) == [crlf(message(n)) for n in (1, 2, 3)]
    assert [(item.folder, item.uid) for item in items] == [(folder, 1), (folder, 2), (folder, 3)]
    assert items[0].source_id == f"{folder} UID 1"
    assert len({item.uidvalidity for item in items}) == 1
    after = without_recent(imap_server.flags(folder))
    assert after == before == {1: "", 2: "\\Flagged", 3: "\\Seen"}


def test_imap_incremental_import_fetches_only_new_uids(imap_server: ImapServer) -> None:
    folder = new_folder()
    for n in range(5):
        imap_server.append(folder, crlf(message(n)))

    # small batches: several UID FETCH rounds
    first = ImapSource(imap_server.host, imap_server.port, user=imap_server.user,
                       password=imap_server.password, security="plain", folders=[folder],
                       batch_size=2, allow_private_hosts=True)
    items = read_all(first)
    assert [item.uid for item in items] == [1, 2, 3, 4, 5]
    state = first.new_state()
    assert state == {folder: (items[0].uidvalidity, 5)}

    imap_server.append(folder, crlf(message(99)))
    second = imap(url(imap_server, folder), password=imap_server.password, state=state)
    assert second.total == 1
    items = read_all(second)
    assert raws(items) == [crlf(message(99))]
    assert items[0].uid == 6
    assert second.uidvalidity_changed == []
    state = second.new_state()
    assert state[folder][1] == 6

    # nothing new: "UID 7:*" still matches the last message on the wire; it must not come back
    third = imap(url(imap_server, folder), password=imap_server.password, state=state)
    assert third.total == 0 and read_all(third) == []
    assert third.new_state() == state


def test_imap_changed_uidvalidity_fetches_everything_again(imap_server: ImapServer) -> None:
    folder = new_folder()
    imap_server.append(folder, crlf(message(1)))
    imap_server.append(folder, crlf(message(2)))
    first = imap(url(imap_server, folder), password=imap_server.password)
    read_all(first)
    state = first.new_state()

    imap_server.delete_folder(folder)
    imap_server.append(folder, crlf(message(3)))  # recreated: a new UIDVALIDITY
    imap_server.append(folder, crlf(message(4)))
    imap_server.append(folder, crlf(message(5)))
    again = imap(url(imap_server, folder), password=imap_server.password, state=state)
    assert again.uidvalidity_changed == [folder]
    items = read_all(again)
    assert raws(items) == [crlf(message(n)) for n in (3, 4, 5)]
    uidvalidity, last = again.new_state()[folder]
    assert uidvalidity != state[folder][0] and last == 3
    assert all(item.uidvalidity == uidvalidity for item in items)


def test_imap_wrong_password_is_refused_without_showing_it(imap_server: ImapServer) -> None:
    wrong = "Tr0ub4dor&3-wrong"
    for attempt in (
        lambda: imap(url(imap_server, "INBOX"), password=wrong),
        lambda: imap(f"imap://{imap_server.user}:{wrong}@{imap_server.host}:"
                     f"{imap_server.port}/INBOX"),
    ):
        with pytest.raises(ImportRefused) as refused:
            attempt()
        text = str(refused.value)
        assert "refused the login" in text and "alice" in text
        assert wrong not in text and wrong not in repr(refused.value.__dict__)
        assert refused.value.__cause__ is None


def test_imap_source_does_not_keep_the_password(imap_server: ImapServer) -> None:
    source = imap(url(imap_server, "INBOX", with_password=True))
    try:
        kept = repr(vars(source)) + repr(vars(source._conn)) + source.name + repr(source)
        assert imap_server.password not in kept
    finally:
        source.close()


def test_imap_oversized_message_is_skipped_and_the_state_moves_past_it(
        imap_server: ImapServer) -> None:
    folder = new_folder()
    imap_server.append(folder, crlf(message(1, "big " * 2000)))
    imap_server.append(folder, crlf(message(2)))
    source = imap(url(imap_server, folder), password=imap_server.password,
                  max_message_bytes=4000)
    items = read_all(source)
    skip, ok = items
    assert isinstance(skip, Skipped) and (skip.folder, skip.uid) == (folder, 1)
    assert skip.source_id == f"{folder} UID 1" and "over the 3.9 KiB limit" in skip.reason
    assert raws([ok]) == [crlf(message(2))]
    assert source.new_state()[folder][1] == 2


def test_imap_several_folders_and_a_non_ascii_name(imap_server: ImapServer) -> None:
    assert imap_utf7("Entwürfe") == "Entw&APw-rfe"
    assert imap_utf7("台北") == "&U,BTFw-"
    assert imap_utf7("R&D") == "R&-D"
    drafts = f"Entwürfe {uuid.uuid4().hex[:6]}"
    other = new_folder()
    imap_server.append(imap_utf7(drafts), crlf(message(1)))
    imap_server.append(other, crlf(message(2)))
    source = imap(f"imap://{imap_server.host}:{imap_server.port}", user=imap_server.user,
                  password=imap_server.password, folders=[drafts, other])
    items = read_all(source)
    assert [(item.folder, item.raw) for item in items] == [
        (drafts, crlf(message(1))), (other, crlf(message(2)))]
    assert set(source.new_state()) == {drafts, other}


def test_imap_missing_folder_is_refused_with_the_folders_there(imap_server: ImapServer) -> None:
    with pytest.raises(ImportRefused, match="has no folder 'Nope'.*INBOX"):
        imap(url(imap_server, "Nope"), password=imap_server.password)


def test_imap_implicit_tls_and_starttls(imap_server: ImapServer) -> None:
    if not imap_server.tls:
        pytest.skip("openssl was not found, so the test server has no certificate")
    folder = new_folder()
    imap_server.append(folder, crlf(message(1)))
    context = imap_server.ssl_context()
    tls = imap(f"imaps://{imap_server.user}@{imap_server.host}:{imap_server.tls_port}/{folder}",
               password=imap_server.password, ssl_context=context)
    assert tls.name.startswith("imaps://alice@")
    assert raws(read_all(tls)) == [crlf(message(1))]
    starttls = imap(url(imap_server, folder) + "?starttls=1",
                    password=imap_server.password, ssl_context=context)
    assert raws(read_all(starttls)) == [crlf(message(1))]

    with pytest.raises(ImportRefused, match="certificate that is not trusted"):
        imap(f"imaps://{imap_server.user}@{imap_server.host}:{imap_server.tls_port}/",
             password=imap_server.password)  # the system's CAs do not know it


def test_imap_plaintext_password_to_a_remote_host_is_refused() -> None:
    with pytest.raises(ImportRefused, match="unencrypted.*imaps://"):
        open_source("imap://me@imap.example.com/INBOX", password="secret")
    with pytest.raises(ImportRefused, match="only \\?starttls=1"):
        open_source("imaps://me@imap.example.com/INBOX?tls=0", password="secret")
    with pytest.raises(ImportRefused, match="user name and password"):
        open_source("imaps://imap.example.com/INBOX")


def test_imap_unreachable_server_is_refused() -> None:
    from imapserver import free_ports

    (port,) = free_ports(1)
    with pytest.raises(ImportRefused, match=f"Could not reach an IMAP server at 127.0.0.1:{port}"):
        imap(f"imap://me@127.0.0.1:{port}/INBOX", password="x", timeout=2)


# --- IMAP: which hosts an import may reach, and what it repeats of them ----------------------

REFUSED_HOSTS = [
    "127.0.0.1", "127.8.9.10", "localhost", "::1", "[::1]", "::ffff:127.0.0.1", "2130706433", "0x7f.1",
    "10.1.2.3", "172.16.0.1", "192.168.0.10", "100.64.0.1", "169.254.1.1", "fe80::1", "fc00::1",
    "64:ff9b::a00:1", "2002:a00:1::",  # 10.0.0.1 inside NAT64 and 6to4
]
NEVER_HOSTS = [
    "169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "100.100.100.200",  # cloud metadata
    "0.0.0.0", "::", "224.0.0.1", "ff02::1", "240.0.0.1", "255.255.255.255",
]


@pytest.mark.parametrize("host", REFUSED_HOSTS + NEVER_HOSTS)
def test_imap_refuses_this_machine_private_networks_and_metadata(host: str) -> None:
    with pytest.raises(ImapRefused) as refused:
        ImapSource(host, 993, user="sam", password="hunter2", timeout=2)
    assert "is not an IMAP server this app may connect to" in str(refused.value)
    assert "resolves to" in refused.value.detail and "IMAP_ALLOW_PRIVATE_HOSTS" in refused.value.detail \
        or host in NEVER_HOSTS


@pytest.mark.parametrize("host", NEVER_HOSTS)
def test_imap_never_reaches_metadata_multicast_or_reserved_addresses(host: str) -> None:
    with pytest.raises(ImapRefused, match="is not an IMAP server this app may connect to"):
        ImapSource(host, 993, user="sam", password="hunter2", timeout=2, allow_private_hosts=True)


def test_imap_to_the_test_server_needs_private_hosts_allowed(imap_server: ImapServer) -> None:
    with pytest.raises(ImapRefused, match="not an IMAP server this app may connect to") as refused:
        open_source(url(imap_server, "INBOX", with_password=True))
    assert "IMAP_ALLOW_PRIVATE_HOSTS" in refused.value.detail
    with imap(url(imap_server, "INBOX", with_password=True)) as source:
        assert source.total >= 0


def test_imap_connects_to_the_address_it_checked(imap_server: ImapServer, monkeypatch) -> None:
    """A name that resolves differently the second time (DNS rebinding) is asked once: the
    connection goes to the address that was checked, not to a new answer."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def rebinding(host, port, *args, **kwargs):
        if host != "mail.rebind.test":
            return real(host, port, *args, **kwargs)
        asked.append(host)
        first = len(asked) == 1
        return real(imap_server.host if first else "127.0.0.2", port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    source = ImapSource("mail.rebind.test", imap_server.port, user=imap_server.user,
                        password=imap_server.password, security="plain", allow_plaintext=True,
                        allow_private_hosts=True)
    source.close()
    assert asked == ["mail.rebind.test"]

    if imap_server.tls:  # the certificate is still checked against the name, not the address
        asked.clear()
        with pytest.raises(ImapRefused, match="certificate that is not trusted"):
            ImapSource("mail.rebind.test", imap_server.tls_port, user=imap_server.user,
                       password=imap_server.password, ssl_context=imap_server.ssl_context(),
                       allow_private_hosts=True)
        assert asked == ["mail.rebind.test"]
        ImapSource("localhost", imap_server.tls_port, user=imap_server.user, password=imap_server.password,
                   ssl_context=imap_server.ssl_context(), allow_private_hosts=True).close()


class ScriptedServer:
    """A TCP server on loopback that is not an IMAP server: it sends ``greeting``, then answers
    every line with ``reply`` (``{tag}`` is the line's first word; a CAPABILITY command gets
    IMAP4rev1), until the client leaves."""

    def __init__(self, greeting: bytes, reply: bytes | None = None) -> None:
        self.greeting, self.reply = greeting, reply
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    conn.sendall(self.greeting)
                    for line in conn.makefile("rb"):
                        if self.reply is None:
                            continue
                        tag = line.split(b" ", 1)[0]
                        if b"CAPABILITY" in line.upper():
                            conn.sendall(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")
                        else:
                            conn.sendall(self.reply.replace(b"{tag}", tag))
                except OSError:
                    pass

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()


SECRET_BANNER = b"SSH-2.0-OpenSSH_9.6p1 build-7 internal-db-03.corp"


@pytest.mark.parametrize("security", ["plain", "starttls", "ssl"])
@pytest.mark.parametrize("script", [(SECRET_BANNER + b"\r\n", None),
                                    (b"* OK ready\r\n", b"{tag} NO " + SECRET_BANNER + b"\r\n")],
                         ids=["ssh-banner", "imap-lookalike"])
def test_imap_error_repeats_nothing_the_server_sent(security: str, script) -> None:
    with ScriptedServer(*script) as server:
        with pytest.raises(ImapRefused) as refused:
            ImapSource("127.0.0.1", server.port, user="sam", password="hunter2", security=security,
                       timeout=5, allow_private_hosts=True)
    message = str(refused.value)
    assert message in (
        f"Could not reach an IMAP server at 127.0.0.1:{server.port}; check the host, the port and the "
        "security setting (SSL/TLS, usually port 993, or STARTTLS, port 143).",
        f"The IMAP server 127.0.0.1:{server.port} did not start TLS; use SSL/TLS (imaps://) if it expects "
        "TLS from the start.",
        "The IMAP server 127.0.0.1 refused the login for 'sam'; check the user name and password (some "
        "providers, like Gmail, want an app password).",
    )
    for word in ("SSH", "OpenSSH", "internal-db", "corp"):
        assert word not in message
    if security == "plain":  # the admins' detail has the server's words
        assert SECRET_BANNER.decode() in refused.value.detail


def _import_settings(pg_url: str, tmp_path: Path, **values):
    """The app's settings for the test database, with "boss" as the admin."""
    from settings import Settings

    values.setdefault("imap_allow_private_hosts", False)  # the suite's environment turns it on
    return Settings(database_url=pg_url, data_dir=tmp_path, auth_mode="password", admin_users="boss", **values)


def _run_worker(pg_url: str, runner) -> None:
    import asyncio

    from mail.jobs import psycopg_conninfo
    from mail.jobs_worker import serve, worker_app

    asyncio.run(serve(worker_app(psycopg_conninfo(pg_url)), runner, once=True))


def test_imap_import_refuses_private_hosts_when_queued_and_again_when_it_connects(db, pg_url, tmp_path,
                                                                                  imap_server) -> None:
    import services
    from sqlalchemy import text

    closed = services.build_import_queue(_import_settings(pg_url, tmp_path), db)
    for host in ("localhost", "127.0.0.1", "::1", "169.254.169.254"):
        with pytest.raises(ImapRefused, match="not an IMAP server this app may connect to"):
            closed.enqueue_imap("sam", host=host, user="sam", password="hunter2", security="ssl")
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM mail_imports")).scalar_one() == 0

    # Queued while private hosts were allowed; the worker, without, refuses when it connects.
    opened = services.build_import_queue(_import_settings(pg_url, tmp_path, imap_allow_private_hosts=True), db)
    job = opened.enqueue_imap("sam", host=imap_server.host, port=imap_server.port, security="plain",
                              user=imap_server.user, password=imap_server.password)
    _run_worker(pg_url, services.build_import_runner(_import_settings(pg_url, tmp_path), db, None))
    ended = opened.get("sam", job.id)
    assert ended.status == "failed" and "not an IMAP server this app may connect to" in ended.error
    assert ended.imported == 0
    opened.close()
    closed.close()


def test_a_failed_imap_import_shows_the_server_s_words_to_admins_only(db, pg_url, tmp_path) -> None:
    import services

    settings = _import_settings(pg_url, tmp_path, imap_allow_private_hosts=True)
    queue = services.build_import_queue(settings, db)
    runner = services.build_import_runner(settings, db, None)
    with ScriptedServer(SECRET_BANNER + b"\r\n") as server:
        jobs = {owner: queue.enqueue_imap(owner, host="127.0.0.1", port=server.port, security="plain",
                                          user="sam", password="hunter2") for owner in ("sam", "boss")}
        _run_worker(pg_url, runner)
    shown = {owner: queue.get(owner, job.id) for owner, job in jobs.items()}
    queue.close()
    assert shown["sam"].status == shown["boss"].status == "failed"
    assert shown["sam"].error.startswith(f"Could not reach an IMAP server at 127.0.0.1:{server.port}")
    assert "SSH" not in shown["sam"].error and "internal-db" not in shown["sam"].error
    assert SECRET_BANNER.decode() in shown["boss"].error
