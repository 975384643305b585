"""End to end in a real browser: `streamlit run app.py` on a loopback port against the test
database, driven by Playwright in Debian's Chromium. Screenshots of each step are saved under
test-artifacts/e2e/."""

from __future__ import annotations

import re
import time

import pytest

from helpers import E2E_OWNER as OWNER
from helpers import search_for, serve, shot


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

    page.get_by_role("button", name="Open").first.click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    dialog.get_by_text(re.compile(r"^From .*@example")).first.wait_for()
    shot(page, "05-message-open")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")

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
    page.get_by_role("button", name="Open").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Garden party on Sunday").wait_for()
    page.wait_for_timeout(1000)
    shot(page, "10-html-mail-as-text")
    assert page.evaluate("() => window.__pwned === undefined")
    assert dialogs == [] and outside == []
    assert "<script" not in dialog.inner_text()


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
    page.get_by_role("button", name="Open").first.wait_for()
    making = page.get_by_text("Making a picture…")
    making.wait_for()
    assert image_caption(page).count() == 0
    shot(page, "11-results-before-the-picture")

    page.get_by_role("button", name="Open").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text(re.compile("for the roof repair")).first.wait_for()
    assert making.is_visible() and len(slow_pictures.requests_to("/v1/images/generations")) == 1
    shot(page, "12-message-open-while-the-picture-is-made")

    slow_pictures.release_hangs()
    image_caption(page).filter(has_text="Generated").wait_for()
    assert dialog.is_visible(), "the picture arriving leaves the open message open"
    shot(page, "13-picture-arrived")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
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
    from playwright.sync_api import sync_playwright

    from helpers import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        page.set_default_timeout(120_000)
        page.goto(app_url)
        page.get_by_text("There is no mail here yet").wait_for()
        menu = page.locator("[data-testid='stSidebar']")
        page.locator("[data-testid='stExpandSidebarButton']").click()
        page.wait_for_function("() => document.querySelector('[data-testid=\"stSidebar\"]')"
                               ".getBoundingClientRect().right > 200")
        menu.locator("[data-testid='stSidebarNav']").get_by_text("Import", exact=True).click()
        page.get_by_role("heading", name="Import").first.wait_for()
        page.wait_for_function("() => document.querySelector('[data-testid=\"stSidebar\"]')"
                               ".getBoundingClientRect().right <= 0")
        shot(page, "16-phone-menu-folded")
        browser.close()
