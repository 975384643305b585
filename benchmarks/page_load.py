"""How fast the Search page is in a real browser with a real mailbox imported.

    python -m benchmarks.page_load --mbox ../shared/data/mail/spamassassin-easy-ham-1.mbox

Imports the mailbox into a fresh embedded database, starts `streamlit run app.py` on a loopback
port, and drives Debian's Chromium with Playwright: the first load (the server loads the model
and connects), warm loads of the Search page until the search box is usable, and searches from
pressing Enter to the results and the topic's picture being on screen.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.browser import launch
from benchmarks.common import start_app

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ["linux kernel", "spam filter", "python script", "music", "security patch"]

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mbox", type=Path, required=True)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args(argv)

    from db.engine import create_db_engine, embedded_postgres_url, migrate
    from mail.sources import open_source
    from mail.store import import_messages
    from semcache.embedders import LocalEmbedder
    from playwright.sync_api import sync_playwright

    report: dict = {}
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        os.chmod(tmp, 0o755)
        url = embedded_postgres_url(Path(tmp) / "pg", on_exit="stop")
        engine = create_db_engine(url)
        migrate(engine)
        summary = import_messages(engine, "me", open_source(args.mbox), embedder=LocalEmbedder())
        report["messages"] = summary.imported
        engine.dispose()

        env = {**os.environ, "DATABASE_URL": url, "DATA_DIR": tmp, "EMBEDDING_PROVIDER": "local",
               "IMAGE_PROVIDER": "offline", "DEFAULT_OWNER": "me"}
        server, app = start_app(env, Path(tmp) / "streamlit.log")
        try:
            with sync_playwright() as p:
                browser = launch(p)
                page = browser.new_page()
                page.set_default_timeout(300_000)
                box = page.get_by_placeholder(re.compile("dog · invoices"))

                def load() -> float:
                    started = time.perf_counter()
                    page.goto(app)
                    box.wait_for()
                    return (time.perf_counter() - started) * 1000

                report["first_load_ms"] = round(load())
                report["warm_load_ms_median"] = round(statistics.median(load() for _ in range(args.loads)))

                def query(text: str) -> float:
                    started = time.perf_counter()
                    box.fill(text)
                    box.press("Enter")
                    page.locator("[data-testid='stCaptionContainer']").filter(
                        has_text=re.compile(r"^\d[\d,]* messages · " + re.escape(text))).wait_for()
                    page.locator("[data-testid='stCaptionContainer']").filter(
                        has_text=re.compile("Generated|cache hit|Served from cache|No picture")).wait_for()
                    return (time.perf_counter() - started) * 1000

                first = [query(q) for q in QUERIES]
                page.goto(app)
                box.wait_for()
                again = [query(q) for q in QUERIES]
                report["search_new_topic_ms_median"] = round(statistics.median(first))
                report["search_cached_topic_ms_median"] = round(statistics.median(again))
                browser.close()
        finally:
            server.terminate()
            server.wait(10)
    print(json.dumps(report, indent=2))
    return 0

if __name__ == "__main__":
    sys.exit(main())
