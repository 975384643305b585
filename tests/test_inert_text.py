"""Text from mail and from other users renders inert: as written, with no link, image, icon or
markup. First the escaping helpers (`markup`) over a hostile corpus, checked with a CommonMark
parser and with the rewrites Streamlit's Markdown applies to plain text after parsing; then the
whole app in a real browser, where a listener on the hostile URLs' port counts what reaches it."""

from __future__ import annotations

import html
import re
import time
from urllib.parse import urlsplit

import pytest

import app_state
from helpers import E2E_OWNER as OWNER
from helpers import PARSER, open_buttons, rewrites, search_for, shot
from markup import JOINER, html_text, markdown_text

HOSTILE = [
    "![x](http://127.0.0.1:9/p.png)",
    "![x][ref]\n\n[ref]: http://127.0.0.1:9/ref.png",
    "[click](https://example.com/a) and [js](javascript:alert(1))",
    "<http://127.0.0.1:9/angle> <alice@example.com>",
    "see http://127.0.0.1:9/a now",
    "HTTPS://EXAMPLE.COM/UPPER",
    "www.example.com and WWW.EXAMPLE.ORG/path",
    "mail alice@example.com or mailto:bob@example.net, xmpp:carol@example.org",
    "<img src=x onerror=alert(1)> <b>bold</b> <script>alert(1)</script>",
    "&lt;b&gt; &amp; &copy; &#60;",
    ":red[red text] :blue-background[bg] :small[tiny] :color[x]{foreground=red}",
    ":material/star: :material/home: :material_star: :streamlit:",
    ":smile: :+1: :-1: :heart_eyes:",
    "$x^2$ and $$\\int_0^1 f$$",
    "`code` ``double`` ```fence```",
    "# Heading",
    "## Second ### third",
    "> quote",
    "- item",
    "1. first",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "*em* **strong** _under_ __dunder__ ~~strike~~",
    "line  \nbreak\\\nand ---\n===",
    "a -> b <- c <-> d -- e >= f <= g ~= h",
    "[^1] footnote\n\n[^1]: http://127.0.0.1:9/fn",
    "\\*already escaped\\* \\\\ backslash",
    "ordinary Re: subject at 10:30, 3.5 kg, 100% sure?",
]


def inline_tokens(source: str) -> list:
    blocks = PARSER.parse(source)
    assert [t.type for t in blocks] == ["paragraph_open", "inline", "paragraph_close"], source
    return blocks[1].children


def shown(source: str) -> str:
    """What a reader sees of Markdown that is one paragraph of text only."""
    tokens = inline_tokens(source)
    assert {t.type for t in tokens} <= {"text"}, [(t.type, t.content) for t in tokens]
    return "".join(t.content for t in tokens)


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_text_is_shown_as_written(text):
    source = app_state.md(text)  # what the pages use
    assert source == markdown_text(text)
    assert ":material/" not in source  # Streamlit rewrites that in the source, before parsing
    seen = shown(source)
    assert seen.replace(JOINER, "") == " ".join(text.split())
    assert rewrites(seen) == []


@pytest.mark.parametrize("text", HOSTILE)
def test_html_text_is_shown_as_written(text):
    source = html_text(text)
    assert "<" not in source and ">" not in source
    tokens = inline_tokens(source)  # through Markdown with HTML allowed, as the snippets are
    assert {t.type for t in tokens} <= {"text"}, [(t.type, t.content) for t in tokens]
    seen = "".join(t.content for t in tokens)
    assert seen.replace(JOINER, "") == " ".join(text.split())
    assert rewrites(seen) == []
    assert html.unescape(source).replace(JOINER, "") == " ".join(text.split())  # and the same in HTML


def test_ordinary_text_stays_as_it_was():
    """Only where a rewrite could start does a joiner go in: names, dates and sentences keep their
    characters."""
    for text in ("Invoice 2291 from Alice", "Re: lunch at 12:30?", "Dog walking rota", "3.5 kg", "a.eml"):
        assert JOINER not in markdown_text(text), text


@pytest.mark.attack
def test_escaping_is_linear():
    """A megabyte of any marker escapes in about a second, and twice as much takes about twice as long."""
    for unit in ("www.", "http://", "a@b", ":x", "->", ":material/", "![", "\\", "x" * 8):
        took = []
        for repeats in (100_000, 200_000):
            started = time.perf_counter()
            out = markdown_text(unit * repeats)
            html_text(unit * repeats)
            took.append(time.perf_counter() - started)
            assert len(out) <= 3 * len(unit) * repeats
        assert took[1] < 5.0 and took[1] < 4 * took[0] + 0.5, (unit, took)


# ---------------------------------------------------------------------- in a real browser


def test_hostile_topics_and_mail_fetch_nothing_and_link_nothing(app_url, browser_page, db, local_embedder,
                                                                emoji_generator, tripwire, tmp_path):
    from email.message import EmailMessage

    from mail.store import import_messages
    from mail.types import RawMessage
    from semcache import SemanticCache
    from semcache.blobstores import LocalBlobStore

    host, port = tripwire.server_address[:2]
    image = f"http://{host}:{port}/p.png"
    bare = f"http://{host}:{port}/a"
    hostile = f"![x]({image}) {bare} www.example.com"

    # Another user's lookup caches the hostile topic; every later lookup is served its picture.
    cache = SemanticCache(db, local_embedder, emoji_generator, LocalBlobStore(tmp_path / "blobs"),
                          default_threshold=0.35)
    assert cache.get(f"garden {hostile}", user="mallory").kind == "generated"
    cache.set_threshold(2.0, actor="test")

    message = EmailMessage()
    message["From"] = f"Mallory {image} <mallory@example.com>"
    message["To"], message["Message-ID"] = f"{OWNER}@example.org", "<inert@example.com>"
    message["Subject"] = f"Garden {hostile}"
    message.set_content(f"The garden party: see {bare} or www.example.com, ask mallory@example.com :material/star:\n")
    summary = import_messages(db, OWNER, [RawMessage(raw=message.as_bytes(), source_id="inert")],
                              embedder=local_embedder)
    assert summary.imported == 1

    page = browser_page
    app = urlsplit(app_url)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(app_url)
    page.get_by_text("1 messages. Type a topic to search them.").wait_for()
    search_for(page, "garden party")
    page.get_by_text("1 message · garden party").wait_for()
    page.get_by_text(re.compile(r"Served from cache")).wait_for()  # the hostile phrase answered, as admin
    open_buttons(page).first.click()
    page.locator(".message-view").get_by_text("The garden party: see").wait_for()
    page.wait_for_timeout(1500)
    shot(page, "inert-01-search")
    search_dom = dom_links(page)
    search_text = page.inner_text("body").replace(JOINER, "")

    page.goto(f"{app_url}/savings")
    page.get_by_role("heading", name="Savings").wait_for()
    page.get_by_label("How many").fill("1")
    page.get_by_label("How many").press("Enter")
    page.get_by_role("button", name="Replay").click()
    page.get_by_text(re.compile(r"Replayed 1 topics")).click()  # open the finished replay's list
    page.get_by_text(re.compile(r"picture of “garden")).wait_for()
    page.wait_for_timeout(1500)
    shot(page, "inert-02-savings")
    savings_dom = dom_links(page)
    savings_text = page.inner_text("body").replace(JOINER, "")

    assert tripwire.hits == [], f"the browser fetched {tripwire.hits}"
    origin = f"{app.scheme}://{app.netloc}"
    foreign = [u for u in requests if not (u.startswith(("data:", "blob:", "about:"))
                                           or u == origin or u.startswith(origin + "/"))]
    assert foreign == [], foreign
    for links in (search_dom, savings_dom):
        assert not [u for u in links if str(port) in u or "example.com" in u or "mailto:" in u], links
    for text in (search_text, savings_text):  # shown, as written
        assert f"![x]({image})" in text and bare in text and "www.example.com" in text
    assert "mallory@example.com" in search_text

    # The tripwire does see what a browser sends it: the empty list above means something.
    page.evaluate("url => fetch(url, {mode: 'no-cors'}).catch(() => null)", f"http://{host}:{port}/control")
    page.wait_for_timeout(500)
    assert tripwire.hits == ["GET /control"]


def dom_links(page) -> list[str]:
    """Every URL an element of the page would load or link to."""
    return page.evaluate("""() => [...document.querySelectorAll('a[href], img[src], [srcset], source[src]')]
        .map(e => e.getAttribute('href') || e.getAttribute('src') || e.getAttribute('srcset'))""")
