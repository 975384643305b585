"""How long a new topic's mail results wait when its picture is slow to make.

    python -m benchmarks.results_first --image-delay 20 --topics 3

Imports the demo mailbox into a fresh embedded database, starts an OpenAI-compatible server on
loopback whose image endpoint answers only after ``--image-delay`` seconds (the test suite's
`tests/fake_openai.py`, spoken to by the real ``openai`` client), starts `streamlit run app.py`
with IMAGE_PROVIDER=openai, and drives Debian's Chromium with Playwright: for each new topic,
from pressing Enter on a freshly loaded Search page to the first result on screen, and to the
topic's picture on screen, and from the image service's answer to the picture on screen.
Prints each run and the medians (milliseconds) as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.browser import launch
from benchmarks.common import start_app

ROOT = Path(__file__).resolve().parent.parent
TOPICS = ["dog", "invoice", "vacation", "birthday party", "garden", "recipe", "football", "dentist"]

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-delay", type=float, default=20.0, help="seconds each new picture takes")
    parser.add_argument("--topics", type=int, default=3, help=f"how many new topics (at most {len(TOPICS)})")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "tests"))
    from fake_openai import FakeOpenAI
    from playwright.sync_api import sync_playwright

    from db.engine import create_db_engine, embedded_postgres_url, migrate
    from mail.importing import load_demo
    from semcache.embedders import LocalEmbedder

    topics = TOPICS[:args.topics]
    report: dict = {"image_delay_s": args.image_delay, "topics": topics}
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp, FakeOpenAI() as images:
        os.chmod(tmp, 0o755)
        images.hang_next(seconds=args.image_delay, times=1000, path="/v1/images/generations")
        url = embedded_postgres_url(Path(tmp) / "pg", on_exit="stop")
        engine = create_db_engine(url)
        migrate(engine)
        report["messages"] = load_demo(engine, "me", Path(tmp), embedder=LocalEmbedder()).imported
        engine.dispose()

        env = {**os.environ, "DATABASE_URL": url, "DATA_DIR": tmp, "EMBEDDING_PROVIDER": "local",
               "IMAGE_PROVIDER": "openai", "OPENAI_API_KEY": images.api_key, "OPENAI_BASE_URL": images.base_url,
               "OPENAI_TIMEOUT_SECONDS": str(args.image_delay + 60), "OPENAI_MAX_RETRIES": "0",
               "DEFAULT_OWNER": "me"}
        server, app = start_app(env, Path(tmp) / "streamlit.log")
        try:
            with sync_playwright() as p:
                browser = launch(p)
                page = browser.new_page()
                page.set_default_timeout(300_000)
                box = page.get_by_placeholder(re.compile("dog · invoices"))
                picture = page.locator("[data-testid='stCaptionContainer']").filter(
                    has_text=re.compile(r"Generated|cache hit|Served from cache|From the picture cache|No picture"))

                asked_at: list[float] = []  # when each picture request reached the image service
                watching = threading.Event()

                def watch() -> None:
                    while not watching.wait(0.005):
                        if len(images.requests_to("/v1/images/generations")) > len(asked_at):
                            asked_at.append(time.perf_counter())

                threading.Thread(target=watch, daemon=True).start()

                def search(topic: str) -> tuple[float, float, float]:
                    page.goto(app)
                    box.wait_for()
                    asked = len(asked_at)
                    started = time.perf_counter()
                    box.fill(topic)
                    box.press("Enter")
                    page.get_by_role("button", name="Open", exact=True).first.wait_for()
                    first_result = (time.perf_counter() - started) * 1000
                    picture.first.wait_for()
                    shown = time.perf_counter()
                    answered = asked_at[asked] + args.image_delay
                    return first_result, (shown - started) * 1000, (shown - answered) * 1000

                search("warm up")  # the server loads the model and connects on its first run
                runs = [search(topic) for topic in topics]
                watching.set()
                browser.close()
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:  # a script run still waiting for a picture
                server.kill()
    for i, name in enumerate(("first_result_ms", "picture_ms", "picture_after_answer_ms")):
        report[name] = [round(run[i]) for run in runs]
        report[f"{name}_median"] = round(statistics.median(run[i] for run in runs))
    print(json.dumps(report, indent=2))
    return 0

if __name__ == "__main__":
    sys.exit(main())
