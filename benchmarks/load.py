"""Bounded load on the real app, on loopback only: browsers searching while mail is imported.

    python -m benchmarks.load [--seconds 120] [--workers 8] [--imports 2] [--json out.json]

What runs: a fresh embedded PostgreSQL (or DATABASE_URL) with the demo mailbox loaded, and the
app itself (`streamlit run app.py` on 127.0.0.1). Then, for ``--seconds``:
- ``--workers`` browser tabs (Debian's Chromium, driven by Playwright), each its own Streamlit
  session, type topics drawn from a Zipf mix over the demo topics (a few topics very often, most
  rarely) into the search box and wait until both the results and the picture's caption are
  shown: one request is one search with its picture lookup, timed from Enter to that point;
- ``--imports`` import processes (`python -m mail import`) bring a real mailbox into the same
  database, each for an owner of its own, one after another until the time is up.
Nothing leaves the machine: the app, the database and the browsers are all on loopback.

Reported: requests, errors (a page exception, a timeout, or a cache error event), p50/p99
latency, pictures generated against the distinct topics asked for (and any key generated twice,
which must be 0), messages imported, and the resident memory of the app's server process
(sampled every second from /proc).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from benchmarks.common import percentiles, write_report

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
OWNER = "load"
CAPTION = re.compile("Generated|cache hit|Served from cache|From the picture cache|No picture|No new picture")


def zipf_topics(count: int, seed: int, exponent: float = 1.1) -> list[str]:
    from semcache.demo_topics import TOPICS

    rng = random.Random(seed)
    weights = [1.0 / (rank ** exponent) for rank in range(1, len(TOPICS) + 1)]
    return rng.choices(list(TOPICS), weights=weights, k=count)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Memory(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.samples, self.stop = pid, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.samples.append(rss_mb(self.pid))
            except OSError:
                return
            self.stop.wait(1.0)


def start_app(env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
         "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return process, url
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("The app did not start:\n" + log.read_text()[-2000:])


def browse(url: str, workers: int, seconds: float, seed: int, ready=lambda: None) -> dict:
    """``workers`` tabs searching until the time is up; returns the timings and the failures.
    Each tab first runs one untimed search (the server loads its model and caches on the very
    first), then ``ready()`` is called and the clock starts."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    timings: list[float] = []
    errors: list[str] = []
    asked: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        pages = []
        for _ in range(workers):
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.get_by_placeholder(re.compile("dog · invoices")).wait_for(timeout=180_000)
            pages.append(page)
        warm = []
        for page in pages:
            started = time.perf_counter()
            box = page.get_by_placeholder(re.compile("dog · invoices"))
            box.fill("warm up")
            box.press("Enter")
            page.locator("[data-testid='stCaptionContainer']").filter(has_text=CAPTION).first.wait_for(timeout=300_000)
            warm.append((time.perf_counter() - started) * 1000)
        ready()
        # One thread drives the browser (Playwright's sync API is not thread-safe): the tabs take
        # turns being typed into, and each search is awaited while the others' run on the server.
        streams = [iter(zipf_topics(100_000, seed + i)) for i in range(workers)]
        pending: dict[int, tuple[str, float]] = {}
        last: dict[int, str] = {}
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline or pending:
            for i, page in enumerate(pages):
                if i not in pending and time.monotonic() < deadline:
                    topic = next(streams[i])
                    while topic == last.get(i):  # the same words again would not rerun the page
                        topic = next(streams[i])
                    last[i] = topic
                    box = page.get_by_placeholder(re.compile("dog · invoices"))
                    box.fill(topic)
                    box.press("Enter")
                    pending[i] = (topic, time.perf_counter())
                    asked.append(topic)
            for i in list(pending):
                topic, started = pending[i]
                page = pages[i]
                try:
                    done = page.evaluate(
                        """(topic) => {
                            const caps = [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
                              .map(e => e.innerText);
                            const results = caps.some(t => t.includes(' · ') && t.toLowerCase().includes(topic.toLowerCase()));
                            const picture = caps.some(t => /%s/.test(t));
                            const running = document.querySelector('[data-testid="stStatusWidget"]');
                            return results && picture && !running;
                        }""" % CAPTION.pattern, topic)
                except Exception as exc:  # a page that broke counts as an error, and the run goes on
                    errors.append(f"{topic}: {exc}"[:200])
                    del pending[i]
                    continue
                if done:
                    timings.append((time.perf_counter() - started) * 1000)
                    if page.locator("[data-testid='stException']").count():
                        errors.append(f"{topic}: the page showed an exception")
                    del pending[i]
                elif time.perf_counter() - started > 60:
                    errors.append(f"{topic}: no answer within 60 s")
                    del pending[i]
            time.sleep(0.02)
        browser.close()
    return {"timings": timings, "errors": errors, "asked": asked, "warm_up_ms": [round(w) for w in warm]}


def importer(env: dict, mailbox: Path, owner: str, deadline: float, out: list) -> None:
    """Import ``mailbox`` again and again (a fresh owner each round) until the deadline; a round
    still running then is stopped (what it committed, in batches, stays and is counted)."""
    while time.monotonic() < deadline:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "mail", "import", str(mailbox), "--owner", owner],
                                   cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _, err = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            state = "finished" if process.returncode == 0 else f"failed ({err.strip().splitlines()[-1:]})"
        except subprocess.TimeoutExpired:
            process.terminate()
            process.communicate(timeout=30)
            state = "stopped at the deadline"
        out.append({"owner": owner, "seconds": round(time.perf_counter() - started, 1), "state": state})
        owner = owner + "+"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--imports", type=int, default=2)
    parser.add_argument("--mailbox", type=Path, default=ROOT.parent / "shared" / "data" / "mail" /
                        "enron-kaminski-inbox.Maildir", help="what the import processes import (default: "
                        "the shared Enron Maildir; the demo mailbox where that is absent)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", type=Path, default=ROOT / "bench-results" / "load.json")
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= 32 or not 10 <= args.seconds <= 1800:
        parser.error("workers 1-32, seconds 10-1800: the load is bounded.")
    if not Path(CHROMIUM).exists():
        raise SystemExit("Debian's chromium is needed: apt-get install chromium")

    from sqlalchemy import text

    from db.engine import create_db_engine, embedded_postgres_url, migrate

    with tempfile.TemporaryDirectory(prefix="mailsearch-load-", dir="/var/tmp") as tmp:
        os.chmod(tmp, 0o755)
        url = os.environ.get("DATABASE_URL") or embedded_postgres_url(Path(tmp) / "pg", on_exit="delete")
        engine = create_db_engine(url)
        migrate(engine)
        env = {**os.environ, "DATABASE_URL": url, "DATA_DIR": str(Path(tmp) / "data"), "EMBEDDING_PROVIDER": "local",
               "IMAGE_PROVIDER": "offline", "DEFAULT_OWNER": OWNER, "OPENAI_API_KEY": "", "AUTH_MODE": "none",
               "DAILY_IMAGES_PER_USER": "", "DAILY_BUDGET_USD": ""}
        prepared = subprocess.run([sys.executable, "-m", "mail", "demo", "--import", "--owner", OWNER],
                                  cwd=ROOT, env=env, capture_output=True, text=True)
        if prepared.returncode:
            raise SystemExit("Loading the demo mailbox failed:\n" + prepared.stderr[-2000:])
        mailbox = args.mailbox
        if not mailbox.exists():
            mailbox = Path(env["DATA_DIR"]) / "demo.mbox"
        app, app_url = start_app(env, Path(tmp) / "streamlit.log")
        memory = Memory(app.pid)
        memory.start()
        try:
            imports: list[dict] = []
            threads: list[threading.Thread] = []
            clock: dict = {}

            def start_imports() -> None:
                clock["started"] = time.monotonic()
                deadline = clock["started"] + args.seconds
                threads.extend(threading.Thread(target=importer, args=(env, mailbox, f"import-{n}", deadline, imports))
                               for n in range(args.imports))
                for t in threads:
                    t.start()

            load = browse(app_url, args.workers, args.seconds, args.seed, ready=start_imports)
            for t in threads:
                t.join()
            elapsed = time.monotonic() - clock["started"]
        finally:
            memory.stop.set()
            app.terminate()
            try:
                app.wait(15)
            except subprocess.TimeoutExpired:
                app.kill()
        with engine.connect() as conn:
            events = dict(conn.execute(text("SELECT kind, count(*) FROM semcache_events GROUP BY kind")).all())
            twice = conn.execute(text("SELECT count(*) FROM (SELECT key FROM semcache_events WHERE kind = 'generated' "
                                      "GROUP BY key HAVING count(*) > 1) k")).scalar()
            imported = dict(conn.execute(text("SELECT owner, count(*) FROM mail_messages WHERE owner <> :o "
                                              "GROUP BY owner"), {"o": OWNER}).all())
            cache_errors = conn.execute(text("SELECT error FROM semcache_events WHERE kind = 'error' LIMIT 5")).scalars().all()
        engine.dispose()

    from semcache.normalize import normalize

    report = {
        "seconds": round(elapsed, 1), "workers": args.workers, "imports": args.imports,
        "warm_up_ms": load["warm_up_ms"],
        "requests": len(load["timings"]), "requests_per_second": round(len(load["timings"]) / elapsed, 2),
        "latency": percentiles(load["timings"]) if load["timings"] else None,
        "errors": len(load["errors"]) + events.get("error", 0), "error_samples": (load["errors"] + cache_errors)[:10],
        "distinct_topics_asked": len({normalize(t) for t in load["asked"]}),
        "lookups": {k: v for k, v in events.items()},
        "generations": events.get("generated", 0), "keys_generated_twice": twice,
        "import_rounds": imports, "messages_imported": sum(imported.values()),
        "app_rss_mb": {"start": round(memory.samples[0], 1) if memory.samples else None,
                       "peak": round(max(memory.samples), 1) if memory.samples else None,
                       "end": round(memory.samples[-1], 1) if memory.samples else None},
    }
    write_report(report, args.json)
    return 0 if report["errors"] == 0 and twice == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
