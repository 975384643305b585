"""Plain helpers shared by the test modules: messages to import, the app run as a user starts it,
reading what AppTest pages show, hostile zips and Markdown. Fixtures live in conftest.py."""

from __future__ import annotations

import io
import os
import re
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from sqlalchemy import text

from mail.types import RawMessage

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------- messages

def mail(subject: str, body: str, *, sender: str = "Alex Doe <alex@example.com>", to: str = "me@example.org",
         date: datetime | None = None, html: bool = False, attachment: bytes | None = None,
         message_id: str | None = "auto", references: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime(2025, 3, 1, 12, tzinfo=timezone.utc))
    if message_id:
        msg["Message-ID"] = make_msgid(domain="example.com") if message_id == "auto" else message_id
    if references:
        msg["References"] = references
        msg["In-Reply-To"] = references.split()[-1]
    if html:
        msg.set_content(body, subtype="html")
    else:
        msg.set_content(body)
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="pdf", filename="statement.pdf")
    return msg.as_bytes()


def raw(messages: list[bytes]) -> list[RawMessage]:
    return [RawMessage(raw=m, source_id=f"test #{i}") for i, m in enumerate(messages, 1)]


LABELLED = {
    "dog-word": mail("Dog walking rota", "Who walks the dog on Tuesday? The dog needs a long walk."),
    "puppy-no-dog-word": mail("Our new arrival", "The puppy chewed my slippers and barked at the postman."),
    "cat": mail("Cat food order", "Ordered the cat's favourite salmon food, the kitten loves it."),
    "invoice": mail("Invoice 2291", "Please find the invoice for March attached. Payment due in 30 days.",
                    attachment=b"%PDF-1.4 small"),
    "paris": mail("Trip to Paris", "Train tickets to Paris are booked; hotel near the Louvre.",
                  sender="Jamie Lee <jamie@example.net>", date=datetime(2024, 6, 2, tzinfo=timezone.utc)),
    "football": mail("Football practice", "Practice moved to Saturday morning at the park.",
                     to="team@example.org", date=datetime(2023, 9, 9, tzinfo=timezone.utc)),
}


# ---------------------------------------------------------------------------- counting collaborators

class Counting:
    """Wraps a real embedder or generator and counts what reaches it."""

    def __init__(self, inner, delay: float = 0.0) -> None:
        self.inner = inner
        self.delay = delay
        self.calls: list = []
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def embed(self, texts):
        with self._lock:
            self.calls.extend(texts)
        return self.inner.embed(texts)

    def generate(self, topic, embedding=None):
        with self._lock:
            self.calls.append(topic)
        time.sleep(self.delay)
        return self.inner.generate(topic, embedding)


# ---------------------------------------------------------------------------- the app in a real browser

ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
E2E_OWNER = "e2e"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(pg_url: str, tmp_path: Path, emoji_cache_dir: Path, **settings: str):
    port = free_port()
    (tmp_path / "emoji-index").symlink_to(emoji_cache_dir)
    env = {**os.environ, "DATABASE_URL": pg_url, "DATA_DIR": str(tmp_path), "EMBEDDING_PROVIDER": "local",
           "IMAGE_PROVIDER": "offline", "DEFAULT_OWNER": E2E_OWNER, "OPENAI_API_KEY": "", **settings}
    log = open(tmp_path / "streamlit.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "asgi.py", "--server.port", str(port), "--server.address",
         "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    # The import worker `make run` starts beside the app: the demo mailbox is a background import.
    worker_log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([sys.executable, "-m", "mail", "worker"], cwd=ROOT, env=env, stdout=worker_log,
                              stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        worker.kill()
        pytest.fail("streamlit did not start:\n" + (tmp_path / "streamlit.log").read_text()[-3000:])
    yield url
    for child in (process, worker):
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
    log.close()
    worker_log.close()


def shot(page, name: str) -> None:
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def search_for(page, query: str) -> None:
    box = page.get_by_placeholder(re.compile("dog · invoices"))
    box.fill(query)
    box.press("Enter")
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)


def open_buttons(page):
    """The results' "Open" buttons (keyed ``open-<id>``), and nothing else a name could match: the
    sort box's own button is also called "Open"."""
    return page.locator("[class*='st-key-open-'] button")


# ---------------------------------------------------------------------------- pages through AppTest

IMPORT_PAGE = ROOT / "pages" / "import_mail.py"
IMPORT_OWNER = "page-import"


def count(engine, table: str, owner: str = IMPORT_OWNER) -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table} WHERE owner = :owner"), {"owner": owner}).scalar_one()


def eml(subject: str, body: str = "Hello there.") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alice Example <alice@example.com>"
    msg["To"] = "me@example.com"
    msg["Subject"] = subject
    msg["Date"] = "Tue, 02 Jan 2024 10:00:00 +0000"
    msg["Message-ID"] = f"<{secrets.token_hex(8)}@example.com>"
    msg.set_content(body)
    return msg.as_bytes()


def counts(app) -> tuple[str, str, str]:
    """The summary's three metrics: imported, already here, failed."""
    by_label = {metric.label: metric.value for metric in app.metric}
    return by_label["Imported"], by_label["Already here"], by_label["Failed"]


def button(app, label: str):
    return next(b for b in app.button if b.label == label)


def captions(app) -> str:
    """Every caption of an AppTest run, one a line, as Streamlit was given them."""
    return "\n".join(c.value for c in app.caption)


def markdown(app) -> str:
    """Every Markdown element of an AppTest run, one a line, as Streamlit was given them."""
    return "\n".join(m.value for m in app.markdown)


def run_page(path: str, **url: str):
    """An AppTest of the page at ``path``, opened with ``url`` as its query string, run once."""
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(path, default_timeout=180)
    for key, value in url.items():
        app.query_params[key] = value
    app.run()
    assert not app.exception, app.exception
    return app


def page_text(app) -> str:
    """Every element and block of the page as its protobuf text: labels, values, defaults, help."""
    found: list[str] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            found.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(app._tree)
    return "\n".join(found)


def fill_imap(app, server, password: str, folder: str) -> None:
    app.text_input(key="imap_host").input(server.host)
    app.number_input(key="imap_port").set_value(server.port)
    app.radio(key="imap_security").set_value("plain")
    app.text_input(key="imap_user").input(server.user)
    app.text_input(key="imap_folders").input(folder)
    app.text_input(key="imap_password").input(password)


def unescaped(text: str) -> str:
    """Markdown as the browser shows it: labels from mail are escaped with backslashes."""
    return re.sub(r"\\(.)", r"\1", text).replace("\u2060", "")


def subheaders(app) -> list[str]:
    return [unescaped(h.value) for h in app.subheader]


# ---------------------------------------------------------------------------- hostile zips

MiB = 2**20
LINE = b"The quarterly figures are attached; please review them before Monday.\r\n"


def big_message(n: int, size: int) -> bytes:
    """A message of exactly ``size`` bytes whose body is one line said over and over (it
    compresses some 300 times)."""
    head = (f"From: Sender {n} <sender{n}@example.org>\r\nTo: reader@example.com\r\n"
            f"Subject: Figures {n}\r\nDate: Tue, 01 Oct 2024 10:00:00 +0000\r\n"
            f"Message-ID: <figures-{n}@example.org>\r\n\r\n").encode()
    body = LINE * ((size - len(head)) // len(LINE))
    return head + body + b" " * (size - len(head) - len(body))


def _central_entries(data: bytes):
    """(offset of each central directory entry, its ZipInfo), walked by their real lengths."""
    archive = zipfile.ZipFile(io.BytesIO(data))
    at = archive.start_dir
    for info in archive.infolist():
        assert data[at:at + 4] == b"PK\x01\x02"
        name, extra, comment = struct.unpack_from("<HHH", data, at + 28)
        yield at, info
        at += 46 + name + extra + comment


def lying_zip(members: int, member_bytes: int, *, shrink: int = 50) -> bytes:
    """A zip of ``members`` .eml files of ``member_bytes`` each, whose compressed-size fields
    (local header and central directory) are rewritten to size/``shrink``: its ratio, as the
    headers tell it, is ``shrink``; the real one is some 300."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for n in range(members):
            archive.writestr(f"mail/{n:03}.eml", big_message(n, member_bytes))
    data = bytearray(out.getvalue())
    for at, info in list(_central_entries(bytes(data))):
        claimed = info.file_size // shrink
        struct.pack_into("<I", data, at + 20, claimed)
        struct.pack_into("<I", data, info.header_offset + 18, claimed)
    return bytes(data)


def overlapping_zip(copies: int, member: bytes) -> bytes:
    """One stored message and ``copies`` central directory entries that all point at it: each
    entry is honest about its sizes, together they expand ``copies`` times what is there."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("inbox.eml", member)
    data = out.getvalue()
    start = zipfile.ZipFile(io.BytesIO(data)).start_dir
    central, end = data[start:-22], bytearray(data[-22:])
    struct.pack_into("<HHI", end, 8, copies, copies, len(central) * copies)
    return data[:start] + central * copies + bytes(end)


def shown_error(markdown: str) -> str:
    """An error as the page draws it: Markdown with its escapes (a backslash before a
    punctuation mark, an invisible word joiner) taken out."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown).replace("\u2060", "")


# ---------------------------------------------------------------------------- Markdown as Streamlit renders it

# Streamlit's Markdown (frontend, StreamlitMarkdown) rewrites the *text* of the parsed document:
# GFM bare links and e-mail addresses (mdast-util-gfm-autolink-literal), material icons (after
# ":material/" in the source became ":material_"), its logo, emoji shortcodes (remark-emoji) and
# arrows. JavaScript's \w is ASCII.
TEXT_REWRITES = [
    re.compile(r"(https?://|www(?=\.))([-.\w]+)([^ \t\r\n]*)", re.I | re.A),
    re.compile(r"(?<![^\s\W])([-.\w+]+)@([-\w]+(?:\.[-\w]+)+)", re.A),
    re.compile(r":material_(\w+):", re.A),
    re.compile(r":streamlit:"),
    re.compile(r":\+1:|:-1:|:[\w-]+:", re.A),
    re.compile(r"(^|\s)(<->|->|<-|--|>=|<=|~=)(\s|$)"),
]

PARSER = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def rewrites(text: str) -> list[str]:
    return [m.group() for pattern in TEXT_REWRITES for m in pattern.finditer(text)]


def _walk(tokens):
    for token in tokens:
        yield token
        yield from _walk(token.children or [])


def not_inert(source: str) -> list[str]:
    """What Markdown ``source`` would turn into a link, an image, HTML (other than the snippets'
    <mark>) or a rewritten text, as Streamlit renders it; [] when it is inert."""
    found = [":material/"] if ":material/" in source else []
    for token in _walk(PARSER.parse(source)):
        if token.type in ("link_open", "image", "html_block") or (
                token.type == "html_inline" and token.content not in ("<mark>", "</mark>")):
            found.append(f"{token.type} {token.content or token.attrs}")
        elif token.type == "text":
            found += rewrites(token.content)
    return found


def shown_markdown(app) -> list[str]:
    """Every Markdown string an AppTest run shows: bodies, captions, messages and labels."""
    sources = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "success", "warning", "error"):
        sources += [str(element.value) for element in getattr(app, kind)]
    for kind in ("button", "metric", "expander"):
        sources += [str(element.label) for element in getattr(app, kind)]
    return [source for source in sources if not _BADGE.fullmatch(source)]


_BADGE = re.compile(r":[a-z]+-badge\[(:material/[a-z_]+: )?[\w ]+\]")
"""The pages' own badges (st.badge), with their icons."""


class HtmlReader(HTMLParser):
    """The text of some HTML, and every tag in it with the names of its attributes."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.tags: set[tuple[str, tuple[str, ...]]] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add((tag, tuple(name for name, _ in attrs)))

    def handle_data(self, data):
        self.text.append(data)


def opened_message(app) -> tuple[str, set[tuple[str, tuple[str, ...]]]]:
    """The Search page's message view in an AppTest run (its one `st.html`): the text it shows,
    and every tag in it with the names of its attributes; ("", set()) when none is open."""
    reader = HtmlReader()
    for element in app.html:
        if element.value.startswith('<div class="message-view">'):
            reader.feed(element.value)
    return "\n".join(reader.text), reader.tags


MESSAGE_VIEW_TAGS = {("div", ("class",)), ("article", ("data-message",)), ("h3", ()), ("pre", ())}
"""The only markup of the message view: everything from the mail in it is text."""
