"""Hostile mail in a real browser: HTML with scripts, event handlers, remote images, CSS, frames
and javascript: links, and plain text with markdown that would fetch an image if rendered.
The app (started as in test_e2e.py) shows it all as text: no script runs, no dialog opens, and
the browser asks nothing of anyone but the app, which a listener on another loopback address
(127.0.0.2) checks by counting what reaches it."""

from __future__ import annotations

import re
from email.message import EmailMessage
from urllib.parse import urlsplit

import pytest

from helpers import E2E_OWNER as OWNER
from helpers import open_buttons, search_for, shot

pytestmark = pytest.mark.usefixtures("no_file_watcher")


def hostile_mail(remote: str) -> list[bytes]:
    """A hostile HTML message and a plain-text reply whose text is markdown."""
    html = EmailMessage()
    html["From"] = "Mallory <script>alert('from')</script> <m@example.com>"
    html["To"], html["Message-ID"] = f"{OWNER}@example.org", "<garden-party@example.com>"
    html["Subject"] = f"Garden party <img src=\"{remote}/subject.gif\" onerror=\"alert('subject')\">"
    html.set_content(f"""<!doctype html><html><head>
<meta http-equiv="refresh" content="0;url={remote}/refresh">
<base href="{remote}/">
<link rel="stylesheet" href="{remote}/link.css">
<style>@import url("{remote}/import.css"); body {{ background: url({remote}/background.png) }}</style>
<script src="{remote}/external.js"></script>
<script>window.__pwned = 'script'; alert('script'); fetch('{remote}/fetch')</script>
</head><body onload="window.__pwned = 'onload'; alert('onload')">
<p style="background-image: url('{remote}/inline.png')">Garden party on Sunday</p>
<img src="{remote}/pixel.gif" onerror="window.__pwned = 'img'; alert('img')">
<img src="x" onerror="window.__pwned = 'broken-img'; alert('broken')">
<svg onload="window.__pwned = 'svg'"><image href="{remote}/svg.png"/></svg>
<iframe src="{remote}/frame.html"></iframe><iframe srcdoc="<script>parent.__pwned = 'srcdoc'</script>"></iframe>
<object data="{remote}/object.swf"></object><embed src="{remote}/embed.swf">
<video poster="{remote}/poster.png" src="{remote}/video.mp4"></video><audio src="{remote}/audio.mp3" autoplay></audio>
<form action="{remote}/form"><input type="image" src="{remote}/input.png"><button>Send</button></form>
<a href="javascript:window.__pwned = 'link'; alert('link')">details</a>
<a href="{remote}/click" onmouseover="window.__pwned = 'hover'">menu</a>
<details open ontoggle="window.__pwned = 'toggle'"><summary>more</summary>marquee</details>
</body></html>""", subtype="html")

    reply = EmailMessage()
    reply["From"], reply["To"] = "Mallory <m@example.com>", f"{OWNER}@example.org"
    reply["Subject"], reply["Message-ID"] = "Re: Garden party", "<garden-party-reply@example.com>"
    reply["In-Reply-To"] = reply["References"] = "<garden-party@example.com>"
    reply.set_content(f"Garden party menu ![menu]({remote}/markdown.png) and <img src=\"{remote}/snippet.gif\" "
                      f"onerror=\"alert('snippet')\"> [rsvp](javascript:alert('rsvp')) <{remote}/autolink>\n")
    return [html.as_bytes(), reply.as_bytes()]


def test_hostile_mail_runs_nothing_and_fetches_nothing(app_url, browser_page, db, local_embedder, tripwire):
    from mail.store import import_messages
    from mail.types import RawMessage

    remote = "http://127.0.0.2:{}".format(tripwire.server_address[1])
    summary = import_messages(db, OWNER, [RawMessage(raw=raw, source_id=f"hostile #{n}")
                                          for n, raw in enumerate(hostile_mail(remote))], embedder=local_embedder)
    assert summary.imported == 2

    page = browser_page
    app = urlsplit(app_url)
    dialogs, requests, sockets = [], [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: requests.append(r.url))
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(app_url)
    page.get_by_text("2 messages. Type a topic to search them.").wait_for()  # the first run is done
    search_for(page, "garden party")
    try:
        page.get_by_text("2 messages · garden party").wait_for()
    finally:
        shot(page, "hostile-01-results")

    open_buttons(page).first.click()
    dialog = page.locator(".message-view")
    dialog.get_by_text("Garden party on Sunday").wait_for()
    dialog.get_by_text(re.compile(r"Garden party menu !\[menu\]")).wait_for()  # markdown shown as text
    page.mouse.move(10, 10)
    page.wait_for_timeout(2000)  # time for anything that would load or run late
    shot(page, "hostile-02-message-open")

    shown = dialog.inner_text()
    assert "From Mallory <script>" in shown  # a display name with markup, as text
    assert "onerror=\"alert('snippet')\"" in shown  # the reply's text, as written
    for word in ("__pwned", "background.png", "frame.html", "import.css"):  # the HTML's code is not text
        assert word not in shown, word
    assert page.evaluate("() => window.__pwned === undefined")
    assert page.evaluate("() => document.querySelectorAll('iframe, object, embed, video, audio, form, "
                         "a[href^=\"javascript:\" i], img[src^=\"http://127.0.0.2\"]').length") == 0
    assert dialogs == [], dialogs
    assert tripwire.hits == [], f"the browser fetched {tripwire.hits}"
    origin = f"{app.scheme}://{app.netloc}"
    foreign = [url for url in requests if not (url.startswith(("data:", "blob:", "about:"))
                                               or url == origin or url.startswith(origin + "/"))]
    assert foreign == [], foreign
    assert sockets and all(urlsplit(url).netloc == app.netloc for url in sockets), sockets

    # The listener does see what a browser sends it: the empty list above means something.
    page.evaluate("url => fetch(url, {mode: 'no-cors'}).catch(() => null)", f"{remote}/control")
    page.wait_for_timeout(500)
    assert tripwire.hits == ["GET /control"]
