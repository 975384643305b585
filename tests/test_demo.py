"""The demo mailbox: read back with the standard library, as any mail tool would read it."""

from __future__ import annotations

import email
import mailbox
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from mail.demo import SPAN_DAYS, write_demo_mbox

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


def read(path: Path) -> list[EmailMessage]:
    box = mailbox.mbox(path, factory=lambda f: email.message_from_binary_file(f, policy=policy.default), create=False)
    try:
        return list(box)
    finally:
        box.close()


def text_of(msg: EmailMessage) -> str:
    body = msg.get_body(("plain", "html"))
    return f"{msg['Subject']}\n{body.get_content() if body else ''}".lower()


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, list[EmailMessage]]:
    path = tmp_path_factory.mktemp("demo") / "demo.mbox"
    assert write_demo_mbox(path, count=300, now=NOW) == 300
    return path, read(path)


def test_writes_the_requested_count(demo, tmp_path):
    assert len(demo[1]) == 300
    for count in (0, 1, 7):
        path = tmp_path / f"{count}.mbox"
        assert write_demo_mbox(path, count=count, now=NOW) == count
        assert len(read(path)) == count


def test_negative_count_is_refused(tmp_path):
    with pytest.raises(ValueError):
        write_demo_mbox(tmp_path / "x.mbox", count=-1)


def test_from_lines_and_escaping(demo):
    path, messages = demo
    raw = path.read_bytes()
    assert raw.startswith(b"From ")
    from_lines = re.findall(rb"^From (\S+@\S+) \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$", raw, re.MULTILINE)
    assert len(from_lines) == len(messages)
    assert b"\n>From " in raw  # a body line starting "From " was escaped, so the count above holds


def test_parses_without_defects(demo):
    for msg in demo[1]:
        for part in msg.walk():
            assert not part.defects, (msg["Message-ID"], part.defects)
        assert msg["From"].addresses and msg["To"].addresses and msg["Subject"] and msg["Date"].datetime


def test_only_reserved_domains(demo):
    for msg in demo[1]:
        for name in ("From", "To", "Cc"):
            for address in (msg[name].addresses if msg[name] else ()):
                assert address.domain in {"example.com", "example.org", "example.net"}, address


def test_owner_receives_as_to_or_cc(demo):
    owner = "sam.rivera@example.net"
    to, cc, sent = 0, 0, 0
    for msg in demo[1]:
        recipients = lambda name: {a.addr_spec for a in msg[name].addresses} if msg[name] else set()  # noqa: E731
        to += owner in recipients("To")
        cc += owner in recipients("Cc")
        sent += msg["From"].addresses[0].addr_spec == owner
    assert to > 150 and cc >= 10 and sent >= 30
    assert to + cc + sent >= len(demo[1])


def test_about_twenty_five_senders_with_names(demo):
    senders = {msg["From"].addresses[0].addr_spec: msg["From"].addresses[0].display_name for msg in demo[1]}
    assert len(senders) >= 25
    assert all(senders.values())
    assert any(not name.isascii() for name in senders.values())


def test_unique_message_ids(demo):
    ids = [msg["Message-ID"] for msg in demo[1]]
    assert all(re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_threads_reference_earlier_messages(demo):
    seen: set[str] = set()
    replies = 0
    for msg in demo[1]:  # the mbox is in date order
        if msg["In-Reply-To"]:
            replies += 1
            assert msg["In-Reply-To"] in seen
            assert msg["References"].split()[-1] == msg["In-Reply-To"]
            assert all(ref in seen for ref in msg["References"].split())
            assert str(msg["Subject"]).startswith("Re: ")
            assert re.search(r"^On .+ wrote:$", text_of(msg), re.MULTILINE | re.IGNORECASE)
            assert "\n> " in msg.get_body(("plain",)).get_content()
        seen.add(msg["Message-ID"])
    assert replies >= 60
    assert sum(1 for msg in demo[1] if len(str(msg["References"] or "").split()) >= 2) >= 10


def test_forwards_signatures_html_and_attachments(demo):
    messages = demo[1]
    forwards = [m for m in messages if str(m["Subject"]).startswith("Fwd: ")]
    html_only = [m for m in messages if m.get_body(("plain",)) is None]
    alternative = [m for m in messages if any(p.get_content_type() == "multipart/alternative" for p in m.walk())]
    attachments = [a for m in messages for a in m.iter_attachments()]
    signed_off = [m for m in messages if m.get_body(("plain",)) and "\n-- \n" in m.get_body(("plain",)).get_content()]
    assert forwards and all("forwarded message" in text_of(m) for m in forwards)
    assert len(html_only) >= 15 and all(m.get_body(("html",)) for m in html_only)
    assert len(alternative) >= 15
    assert len(signed_off) >= 30
    kinds = {a.get_content_type() for a in attachments}
    assert {"application/pdf", "image/png", "text/csv"} <= kinds
    for part in attachments:
        data = part.get_content()
        assert part.get_filename()
        if part.get_content_type() == "application/pdf":
            assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
        elif part.get_content_type() == "image/png":
            assert data.startswith(b"\x89PNG\r\n\x1a\n")


def test_png_attachments_are_real_images(demo):
    from PIL import Image
    import io

    pngs = [a.get_content() for m in demo[1] for a in m.iter_attachments() if a.get_content_type() == "image/png"]
    assert pngs
    for data in pngs:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert image.size[0] > 0


@pytest.mark.parametrize("pattern, at_least", [
    (r"\b(dog|dogs|puppy|puppies|pup|pups)\b", 15),
    (r"\b(invoice|bill|receipt|statement)\b", 15),
    (r"\bparis\b", 8),
    (r"\b(holiday|vacation|trip|getaway)\b", 10),
    (r"\b(vet|veterinary)\b", 5),
    (r"\bcat\b", 3),
    (r"\b(wedding|married)\b", 2),
    (r"\bbirthday\b", 2),
    (r"\b(launch|bug|meeting|review)\b", 15),
    (r"\b(football|soccer|marathon|tennis)\b", 8),
    (r"\b(renovation|villa|moving|garden)\b", 8),
    (r"\b(recipe|restaurant|pizza)\b", 6),
    (r"\b(tax|bank)\b", 5),
    (r"\b(guitar|book club|photo)\b", 5),
])
def test_topics_are_covered(demo, pattern, at_least):
    assert sum(1 for m in demo[1] if re.search(pattern, text_of(m))) >= at_least


def test_synonyms_are_spread_so_full_text_alone_misses_some(demo):
    texts = [text_of(m) for m in demo[1]]
    for words in (("puppy", "pup ", "dog"), ("invoice", "bill", "receipt"), ("holiday", "vacation", "trip")):
        counts = [sum(1 for t in texts if w in t) for w in words]
        assert all(counts), (words, counts)
        alone = [sum(1 for t in texts if w in t and not any(o in t for o in words if o != w)) for w in words]
        assert sum(1 for n in alone if n) >= 2, (words, alone)


def test_texts_do_not_repeat_verbatim(demo):
    bodies = [m.get_body(("plain", "html")).get_content() for m in demo[1]]
    assert len(set(bodies)) == len(bodies)


def test_dates_spread_over_eighteen_months_before_now(demo):
    dates = [m["Date"].datetime for m in demo[1]]
    assert all(d.tzinfo is not None for d in dates)
    assert all(NOW - timedelta(days=SPAN_DAYS + 2) <= d <= NOW for d in dates)
    assert min(dates) < NOW - timedelta(days=400) and max(dates) > NOW - timedelta(days=60)
    assert dates == sorted(dates)
    assert len({d.utcoffset() for d in dates}) >= 3


def test_deterministic_for_seed_and_now(tmp_path):
    a, b, c = tmp_path / "a.mbox", tmp_path / "b.mbox", tmp_path / "c.mbox"
    write_demo_mbox(a, count=80, now=NOW)
    write_demo_mbox(b, count=80, now=NOW)
    write_demo_mbox(c, count=80, now=NOW, seed=8)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_rewrites_an_existing_file(tmp_path):
    path = tmp_path / "demo.mbox"
    write_demo_mbox(path, count=20, now=NOW)
    write_demo_mbox(path, count=5, now=NOW)
    assert len(read(path)) == 5


def test_owner_name(tmp_path):
    path = tmp_path / "demo.mbox"
    write_demo_mbox(path, count=40, owner_name="Zoë Okoye", now=NOW)
    messages = read(path)
    owner = "zoe.okoye@example.net"
    assert any(a.addr_spec == owner and a.display_name == "Zoë Okoye" for m in messages for a in m["To"].addresses)


def test_command_line(tmp_path):
    out = tmp_path / "cli.mbox"
    result = subprocess.run([sys.executable, "-m", "mail.demo", str(out), "--count", "12"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "12" in result.stdout
    assert len(read(out)) == 12
