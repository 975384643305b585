"""End to end in a real browser: `streamlit run app.py` on a loopback port against the test
database, driven by Playwright in Debian's Chromium. Screenshots of each step are saved under
test-artifacts/e2e/."""

from __future__ import annotations

import re
import time

import pytest

from helpers import E2E_OWNER as OWNER
from helpers import open_buttons, search_for, serve, shot


@pytest.fixture
def slow_pictures(fake_openai):
    """The image service: the fake OpenAI server, holding every picture until released."""
    fake_openai.hang_next(seconds=300, times=100, path="/v1/images/generations")
    yield fake_openai
    fake_openai.release_hangs()


@pytest.fixture
def slow_picture_app_url(db, pg_url, tmp_path, emoji_cache_dir, slow_pictures):
    """The whole app, its pictures made by `slow_pictures`."""
    yield from serve(pg_url, tmp_path, emoji_cache_dir, IMAGE_PROVIDER="openai", OPENAI_API_KEY=slow_pictures.api_key,
                     OPENAI_BASE_URL=slow_pictures.base_url, OPENAI_MAX_RETRIES="0", OPENAI_TIMEOUT_SECONDS="600")


def image_caption(page):
    return page.locator("[data-testid='stCaptionContainer']").filter(
        has_text=re.compile("Generated|cache hit|Served from cache|No picture"))


def test_search_story_in_a_real_browser(app_url, browser_page):
    page = browser_page
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:",
                                                                              "blob:", "about:")) else None)
    page.goto(app_url)
    page.get_by_text("There is no mail here yet").wait_for()
    shot(page, "01-empty-state")

    page.get_by_role("button", name="Load the demo mailbox").click()
    page.get_by_placeholder(re.compile("dog · invoices")).wait_for(timeout=180_000)
    shot(page, "02-demo-loaded")

    search_for(page, "dog")
    image_caption(page).filter(has_text="Generated").wait_for()
    assert page.locator("mark").first.inner_text().lower().startswith("dog")
    shot(page, "03-dog-generated")

    search_for(page, "puppy")
    served = image_caption(page).filter(has_text="Served from cache")
    served.wait_for()
    assert re.search(r"Served from cache: dog \(distance 0\.\d\d, saved \$0\.04\)", served.inner_text())
    shot(page, "04-puppy-served-from-dog")

    open_buttons(page).first.click()
    message = page.locator(".message-view")
    message.get_by_text(re.compile(r"^From .*@example")).first.wait_for()
    shot(page, "05-message-open")
    page.get_by_role("button", name="← Back to results").click()
    message.wait_for(state="detached")

    page.get_by_role("link", name="Settings").click()
    slider = page.get_by_role("slider")
    slider.wait_for()
    slider.focus()
    slider.press("Home")
    page.get_by_text("In use for every search").wait_for()
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stMetricValue\"]')]"
                           ".some(e => e.innerText.trim() === '0.00')")
    shot(page, "06-threshold-zero")

    page.get_by_role("link", name="Search").click()
    search_for(page, "doggy")
    image_caption(page).filter(has_text="Generated").wait_for()
    shot(page, "07-doggy-generated-at-zero")

    page.get_by_role("link", name="Settings").click()
    slider = page.get_by_role("slider")
    slider.focus()
    slider.press("End")
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stMetricValue\"]')]"
                           ".some(e => e.innerText.trim() === '1.00')")
    page.get_by_role("link", name="Search").click()
    search_for(page, "pup")
    image_caption(page).filter(has_text="Served from cache").wait_for()
    shot(page, "08-pup-served-at-one")

    page.get_by_role("link", name="Savings").click()
    page.get_by_text("Semantic hits").first.wait_for()
    values = page.locator("[data-testid='stMetric']").all_inner_texts()
    figures = {text.splitlines()[0].strip(): text.splitlines()[-1].strip() for text in values if text.strip()}
    shot(page, "09-savings")
    # dog (generated), puppy (semantic), doggy (generated at 0), pup (semantic at 1.0)
    assert figures["Generations"] == "2" and figures["Semantic hits"] == "2" and figures["Exact hits"] == "0"
    assert outside == [], f"the page asked the network for {outside}"


def test_html_mail_is_shown_as_text_and_runs_no_script(app_url, browser_page, db, local_embedder):
    from email.message import EmailMessage

    from mail.store import import_messages
    from mail.types import RawMessage

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "Mallory <m@example.com>", "e2e@example.org", "Garden party"
    msg["Message-ID"] = "<garden-party@example.com>"
    msg.set_content("<html><body onload=\"window.__pwned='onload'\"><p>Garden party on Sunday</p>"
                    "<script>window.__pwned='script'; alert('x')</script>"
                    "<img src=\"http://tracker.example.com/pixel.gif\" onerror=\"window.__pwned='img'\">"
                    "<a href=\"javascript:window.__pwned='link'\">details</a></body></html>", subtype="html")
    import_messages(db, OWNER, [RawMessage(raw=msg.as_bytes(), source_id="e2e")], embedder=local_embedder)

    page = browser_page
    dialogs, outside = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: outside.append(r.url) if "example.com" in r.url else None)
    page.goto(app_url)
    search_for(page, "garden party")
    open_buttons(page).first.click()
    message = page.locator(".message-view")
    message.get_by_text("Garden party on Sunday").wait_for()
    page.wait_for_timeout(1000)
    shot(page, "10-html-mail-as-text")
    assert page.evaluate("() => window.__pwned === undefined")
    assert dialogs == [] and outside == []
    assert "<script" not in message.inner_text()


def test_results_show_before_a_slow_picture(slow_picture_app_url, slow_pictures, browser_page, db, local_embedder):
    """The image service holds the picture: the results, and a message opened from them, show at
    once beside "Making a picture…"; when the picture comes it takes that place by itself, and
    the open message stays open."""
    from mail.store import import_messages
    from helpers import mail, raw

    import_messages(db, OWNER, raw([mail(f"Invoice {n}", f"Invoice {n} for the roof repair.") for n in range(3)]),
                    embedder=local_embedder)
    page = browser_page
    page.goto(slow_picture_app_url)
    box = page.get_by_placeholder(re.compile("dog · invoices"))
    box.fill("invoice")
    box.press("Enter")
    open_buttons(page).first.wait_for()
    making = page.get_by_text("Making a picture…")
    making.wait_for()
    assert image_caption(page).count() == 0
    shot(page, "11-results-before-the-picture")

    open_buttons(page).first.click()
    message = page.locator(".message-view")
    message.get_by_text(re.compile("for the roof repair")).first.wait_for()
    assert making.is_visible() and len(slow_pictures.requests_to("/v1/images/generations")) == 1
    shot(page, "12-message-open-while-the-picture-is-made")

    slow_pictures.release_hangs()
    image_caption(page).filter(has_text="Generated").wait_for()
    assert message.is_visible(), "the picture arriving leaves the open message open"
    shot(page, "13-picture-arrived")
    page.get_by_role("button", name="← Back to results").click()
    message.wait_for(state="detached")
    assert len(slow_pictures.requests_to("/v1/images/generations")) == 1


def test_a_bookmarked_page_opens_inside_the_app(app_url, browser_page):
    """The server's first request names a page: it still opens with the app's menu and layout."""
    page = browser_page
    page.goto(f"{app_url}/savings")
    page.get_by_role("heading", name="Savings").wait_for()
    nav = page.locator("[data-testid='stSidebarNav']")
    nav.get_by_text("Settings", exact=True).wait_for()
    assert "cache settings" not in nav.inner_text() and "import mail" not in nav.inner_text()


def test_the_url_keeps_the_search_through_reload_and_history(app_url, browser_page, db, local_embedder):
    """A link with ?q= searches; each search is a step in the browser's history; a reload keeps
    the search and its page; turning the page brings the first result into view."""
    from mail.store import import_messages
    from helpers import mail, raw

    messages = [mail(f"Invoice {n:02d}", f"Invoice {n:02d} for the roof repair, due in 30 days.") for n in range(45)]
    messages += [mail("Dog walking rota", "Who walks the dog on Sunday?")]
    import_messages(db, OWNER, raw(messages), embedder=local_embedder)
    page = browser_page
    first_subject = page.locator(".st-key-results strong").first

    box_holds = "value => document.querySelector('input[placeholder*=\"dog\"]')?.value === value"
    page.goto(f"{app_url}/?q=invoice")
    page.get_by_text("Page 1 of 3").first.wait_for()
    page.wait_for_function(box_holds, arg="invoice")

    search_for(page, "dog walking")
    page.wait_for_url(re.compile(r"\?q=dog\+walking$"))
    page.get_by_text("Dog walking rota").first.wait_for()

    page.go_back()
    page.wait_for_url(re.compile(r"\?q=invoice$"))
    page.get_by_text("Page 1 of 3").first.wait_for()
    page.wait_for_function(box_holds, arg="invoice")
    page.go_forward()
    page.wait_for_url(re.compile(r"\?q=dog\+walking$"))
    page.wait_for_function(box_holds, arg="dog walking")

    page.go_back()
    page.get_by_text("Page 1 of 3").first.wait_for()
    page.mouse.wheel(0, 5000)  # the lower pager
    page.get_by_role("button", name="Next →").last.click()
    page.wait_for_url(re.compile(r"\?q=invoice&page=2$"))
    page.get_by_text("Page 2 of 3").first.wait_for()
    page.wait_for_timeout(500)
    top = first_subject.evaluate("e => e.getBoundingClientRect().top")
    assert 0 <= top < 1000, f"the first result of the new page is in view (top at {top}px)"
    on_page_2 = first_subject.inner_text()
    shot(page, "14-page-two-from-the-url")

    page.reload()
    page.get_by_text("Page 2 of 3").first.wait_for()
    page.wait_for_function(box_holds, arg="invoice")  # the box is filled a moment after the results show
    assert first_subject.inner_text() == on_page_2


def test_search_on_a_phone(app_url, db, local_embedder):
    """At 390 x 844: the picture above the results, each pager one row."""
    from playwright.sync_api import sync_playwright

    from helpers import CHROMIUM, CHROMIUM_ARGS, mail, raw
    from mail.store import import_messages

    import_messages(db, OWNER, raw([mail(f"Garden {n}", f"Note {n} about the garden.") for n in range(25)]),
                    embedder=local_embedder)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        page.set_default_timeout(120_000)
        page.goto(app_url)
        search_for(page, "garden")
        image_caption(page).filter(has_text="Generated").wait_for()
        shot(page, "15-phone-search")
        picture = page.locator(".st-key-picture img").bounding_box()
        first = page.locator(".st-key-results strong").first.bounding_box()
        assert picture["y"] + picture["height"] <= first["y"], "the picture comes before the results"
        assert picture["width"] <= 96
        for where in ("top", "bottom"):
            previous = page.locator(f".st-key-pager-{where}").get_by_role("button", name="← Previous").bounding_box()
            following = page.locator(f".st-key-pager-{where}").get_by_role("button", name="Next →").bounding_box()
            assert abs(previous["y"] - following["y"]) < 4 and following["x"] > previous["x"] + previous["width"]
        browser.close()


def test_the_menu_folds_away_on_a_phone_once_a_page_is_chosen(app_url):
    """At 390 px the menu covers the page: choosing a page from it folds it away."""
    from playwright.sync_api import expect, sync_playwright

    from helpers import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        page.set_default_timeout(120_000)
        page.goto(app_url)
        page.get_by_text("There is no mail here yet").wait_for()
        # The first page of a new server is still running (loading the model) when its text shows.
        page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")
        menu = page.locator("[data-testid='stSidebar']")
        link = menu.locator("[data-testid='stSidebarNav']").get_by_text("Import", exact=True)
        for _ in range(3):  # opened while a run was ending, the menu can fold back: open it again
            expand = page.locator("[data-testid='stExpandSidebarButton']")
            if expand.is_visible():
                expand.click()
            try:
                expect(link).to_be_in_viewport(timeout=15_000)
                break
            except AssertionError:
                continue
        link.click()
        page.get_by_role("heading", name="Import").first.wait_for()
        page.wait_for_function("() => document.querySelector('[data-testid=\"stSidebar\"]')"
                               ".getBoundingClientRect().right <= 0")
        shot(page, "16-phone-menu-folded")
        browser.close()



def console_of(page, url: str, ready, tab: str | None = None) -> list[str]:
    """What the browser's console said while a page loaded and drew its charts."""
    said: list[str] = []
    listen = lambda message: said.append(f"{message.type}: {message.text}")  # noqa: E731
    page.on("console", listen)
    page.goto(url)
    ready(page).first.wait_for(timeout=300_000)  # the first page of a new server loads the model
    if tab:
        page.get_by_role("tab", name=re.compile(tab)).click()
    # Every chart on the page has drawn (Vega renders into a canvas or an svg once it has its data).
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stVegaLiteChart\"]')]"
                           ".every(chart => chart.querySelector('canvas, svg'))")
    page.wait_for_load_state("networkidle")
    page.goto("about:blank")  # what the page says as it goes is its own too
    page.remove_listener("console", listen)
    return said



def test_the_console_pages_draw_charts_without_warnings(no_file_watcher, app_url, browser_page, db):
    """Savings and Settings with no lookups, with one, and with a few of every kind: no chart
    warns of an "Infinite extent" (an axis with no data, or a single value and no domain)."""
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import text

    def lookups(rows: list[tuple[str, str, float | None]]) -> None:
        start = datetime.now(timezone.utc) - timedelta(minutes=len(rows))
        if not rows:
            return
        with db.begin() as conn:
            conn.execute(text(
                "INSERT INTO semcache_events (at, query, key, kind, served_key, distance, threshold, total_ms, "
                "cost_spent_usd, cost_saved_usd, error) VALUES (:at, :query, :query, :kind, :served, :distance, "
                "0.35, 12.5, :spent, :saved, :error)"),
                [{"at": start + timedelta(minutes=i), "query": query, "kind": kind, "distance": distance,
                  "served": None if kind in ("generated", "error") else "dog",
                  "spent": 0.04 if kind == "generated" else 0, "saved": 0.04 if kind in ("exact", "semantic") else 0,
                  "error": "GenerationError: down" if kind == "error" else None}
                 for i, (query, kind, distance) in enumerate(rows)])

    page = browser_page
    said = []
    for state, rows in (("empty", []), ("one", [("dog", "generated", None)]),
                        ("some", [("dog", "exact", 0.0), ("puppy", "semantic", 0.21), ("house", "generated", None),
                                  ("broken", "error", None), ("doggy", "semantic", 0.3)])):
        lookups(rows)
        savings = console_of(page, f"{app_url}/savings",
                             lambda p: p.locator("[data-testid='stMetricLabel']").filter(has_text="Lookups"))
        shot(page, f"17-console-savings-{state}")
        settings = console_of(page, f"{app_url}/cache_settings", lambda p: p.get_by_role("tab", name=re.compile(
            "Evidence")), tab="Evidence")
        shot(page, f"17-console-settings-{state}")
        said += [f"{state} savings: {line}" for line in savings] + [f"{state} settings: {line}" for line in settings]
    # A replay started here, the page reloaded meanwhile: it goes on, and the page follows it live.
    messages: list[str] = []
    page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
    page.goto(f"{app_url}/savings")
    how_many = page.get_by_label("How many")
    how_many.fill("40")
    how_many.press("Enter")
    page.get_by_role("button", name="Replay").click()
    page.get_by_text(re.compile(r"Replaying… \d+ of 40")).first.wait_for()
    page.reload()
    page.get_by_text("Replayed 40 topics").first.wait_for(timeout=300_000)  # drawn by the live view
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stVegaLiteChart\"]')]"
                           ".every(chart => chart.querySelector('canvas, svg'))")
    shot(page, "18-replay-after-a-reload")
    page.goto("about:blank")
    said += [f"replay savings: {line}" for line in messages]
    assert sorted({line for line in said if "Infinite extent" in line}) == []


_RECORD_MESSAGE_VIEW = """() => {
  window.__shown = [];
  const record = () => {
    for (const view of document.querySelectorAll(".message-view, [role='dialog']")) {
      if (view.checkVisibility()) window.__shown.push(view.innerText);
    }
  };
  new MutationObserver(record).observe(document.body, {subtree: true, childList: true, characterData: true,
                                                       attributes: true});
  record();
}"""
"""Records the text of the message view (or of a dialog) at every change of the page, in
``window.__shown``."""


def test_a_second_message_opened_never_shows_the_first(slow_picture_app_url, browser_page, db, local_embedder):
    """While a picture is being made (the page runs again every second), open a message, go back
    and at once open another: no moment of the message view, recorded on every change of the page,
    shows the first message once the second was clicked. Five times."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from sqlalchemy import text

    from mail.store import import_messages
    from helpers import mail, raw

    words = ["kestrel", "otter", "badger", "heron", "marten", "plover", "stoat", "curlew", "vole", "lapwing"]
    import_messages(db, OWNER, raw([mail(f"Invoice {word}", f"The {word} invoice for the roof repair.")
                                    for word in words]), embedder=local_embedder)
    with db.connect() as conn:
        ids = dict(conn.execute(text("SELECT subject, id FROM mail_messages WHERE owner = :owner"),
                                {"owner": OWNER}).all())
    page = browser_page
    page.goto(f"{slow_picture_app_url}/?q=invoice")
    page.get_by_text("Making a picture…").wait_for()
    page.evaluate(_RECORD_MESSAGE_VIEW)

    def open_message(subject: str) -> None:
        button = page.locator(f".st-key-open-{ids[subject]} button")
        button.wait_for()
        page.evaluate("() => { window.__shown = []; }")
        button.click()

    seen = []
    for first, second in zip(words[0::2], words[1::2]):
        open_message(f"Invoice {first}")
        page.locator(".message-view").get_by_text(f"The {first} invoice").wait_for()
        page.get_by_role("button", name="← Back to results").click()
        open_message(f"Invoice {second}")
        second_view = page.locator(".message-view").get_by_text(f"The {second} invoice")
        try:
            second_view.wait_for(timeout=10_000)
        except PlaywrightTimeout:  # a click during a run may be lost, as the user's would: click again
            page.locator(f".st-key-open-{ids[f'Invoice {second}']} button").click()
            second_view.wait_for()
        page.wait_for_timeout(1500)  # a picture run or two while the second message is open
        shown = page.evaluate("() => window.__shown")
        seen.append((first, sum(f"Invoice {first}" in view for view in shown), len(shown)))
        assert re.search(rf"[?&]open={ids[f'Invoice {second}']}$", page.url)
        page.get_by_role("button", name="← Back to results").click()
    shot(page, "18-second-message-opened")
    assert page.get_by_text("Making a picture…").is_visible(), "the picture was being made all along"
    assert all(views for _, _, views in seen), "the observer saw the message view"
    assert [s for s in seen if s[1]] == [], f"(first message, views showing it after the second was clicked, views) {seen}"


def test_a_message_opened_on_a_phone_and_back(app_url, db, local_embedder):
    """At 390 x 844 the message fills the width (no sideways scrolling, long lines wrap), below
    the picture; the browser's back button returns to the results."""
    from playwright.sync_api import sync_playwright

    from helpers import CHROMIUM, CHROMIUM_ARGS, mail, raw
    from mail.store import import_messages

    import_messages(db, OWNER, raw([mail("Garden plan", "The garden plan: " + "tomatoes-and-beans-" * 30)]),
                    embedder=local_embedder)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        page.set_default_timeout(120_000)
        page.goto(f"{app_url}/?q=garden")
        open_buttons(page).first.click()
        message = page.locator(".message-view")
        message.get_by_text("The garden plan").wait_for()
        shot(page, "19-phone-message")
        box = message.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        picture = page.locator(".st-key-picture").bounding_box()
        assert picture["height"] > 0 and picture["y"] + picture["height"] <= box["y"], "the picture stays, above"
        page.go_back()
        message.wait_for(state="detached")
        open_buttons(page).first.wait_for()
        browser.close()


_PHONE_LAYOUT = """() => {
  const problems = [];
  if (document.documentElement.scrollWidth > window.innerWidth)
    problems.push(`the page is ${document.documentElement.scrollWidth}px wide`);
  for (const tab of document.querySelectorAll("[role='tab']")) {
    const list = tab.closest("[role='tablist']");
    const label = tab.innerText.trim();
    if (tab.scrollWidth > tab.clientWidth + 1) problems.push(`tab ${label} is cut`);
    const scrolls = ["auto", "scroll"].includes(getComputedStyle(list).overflowX);
    const [t, l] = [tab.getBoundingClientRect(), list.getBoundingClientRect()];
    if (!scrolls && (t.left < l.left - 1 || t.right > l.right + 1)) problems.push(`tab ${label} is outside its row`);
  }
  for (const chart of document.querySelectorAll("[data-testid='stVegaLiteChart'], [data-testid='stArrowVegaLiteChart']")) {
    const box = chart.getBoundingClientRect();
    if (box.right > window.innerWidth + 1 || box.left < -1) problems.push(`a chart reaches ${box.right}px`);
  }
  return problems;
}"""
"""What does not fit a phone's width: the page scrolling sideways, a tab label cut (a row of tabs
may scroll), a chart wider than the screen."""


def test_every_page_fits_a_phone(app_url, db, local_embedder, emoji_generator, tmp_path):
    """At 390 x 844 no page scrolls sideways, every tab label is whole, every chart fits."""
    from playwright.sync_api import sync_playwright

    from helpers import CHROMIUM, CHROMIUM_ARGS, LABELLED, raw
    from mail.store import import_messages
    from semcache import SemanticCache
    from semcache.blobstores import LocalBlobStore

    import_messages(db, OWNER, raw(list(LABELLED.values())), embedder=local_embedder)
    cache = SemanticCache(db, local_embedder, emoji_generator, LocalBlobStore(tmp_path / "blobs"),
                          default_threshold=0.35)
    for topic in ("dog", "puppy", "house", "villa", "dog"):
        cache.get(topic)
    found = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        page.set_default_timeout(120_000)
        for path, ready in (("?q=dog", ".st-key-results [data-testid='stButton']"), ("import_mail", "[role='tab']"),
                            ("cache_settings", "[role='tab']"), ("savings", "[data-testid='stVegaLiteChart'] canvas,"
                                                                          " [data-testid='stVegaLiteChart'] svg")):
            page.goto(f"{app_url}/{path}")
            page.locator(ready).first.wait_for()
            page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")
            tabs = page.locator("[role='tab']")
            for n in range(tabs.count()) or [None]:
                if n is not None:
                    tabs.nth(n).click()
                page.wait_for_timeout(800)
                name = f"20-phone-{path.strip('?=')}-{n or 0}"
                shot(page, name)
                found[name] = page.evaluate(_PHONE_LAYOUT)
        browser.close()
    assert {name: problems for name, problems in found.items() if problems} == {}
