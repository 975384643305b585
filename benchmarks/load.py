"""Bounded load on the real app, on loopback only: browsers searching while mail is imported.

    python -m benchmarks.load [--seconds 120] [--workers 8] [--imports 2] [--json out.json]

What runs: a fresh embedded PostgreSQL (or DATABASE_URL) with the demo mailbox loaded, the app
itself (`streamlit run app.py` on 127.0.0.1) and ``--imports`` import workers (`python -m mail
worker`, with the app's settings). Then, for ``--seconds``:
- ``--workers`` browser tabs (Debian's Chromium, driven by Playwright), each its own Streamlit
  session, type topics drawn from a Zipf mix over the demo topics (a few topics very often, most
  rarely) into the search box. One request is one search with its picture lookup, timed twice
  from Enter: to the results drawn (their "N messages · topic" caption) and to the picture's
  caption (the page shows "Making a picture…" in between, when the picture is not cached);
- ``--imports`` import streams queue path imports of a real mailbox as the app does
  (`mail.jobs.ImportQueue.enqueue_path`), each for a fresh owner once the stream's previous one
  has ended, so each stream has one import at a time, until the time is up; the workers run them.
Nothing leaves the machine: the app, the database, the workers and the browsers are all on loopback.

Reported: requests, errors (a page exception, a timeout, a cache error event, a failed import
or a worker that died), p50/p99 of both timings, pictures generated against the distinct topics
asked for (and any key generated twice, which must be 0), the lookups by kind, the imports and
the messages they stored within the time (a worker stopped at the end finishes its current
batch; that is left out), and the resident memory of the app's server process and of each
worker (sampled every second from /proc).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.browser import CHROMIUM, launch
from benchmarks.common import percentiles, start_app, write_report

ROOT = Path(__file__).resolve().parent.parent
OWNER = "load"
CAPTION = re.compile("Generated|cache hit|Served from cache|From the picture cache|No picture|No new picture")


def zipf_topics(count: int, seed: int, exponent: float = 1.1) -> list[str]:
    from demo_topics import TOPICS

    rng = random.Random(seed)
    weights = [1.0 / (rank ** exponent) for rank in range(1, len(TOPICS) + 1)]
    return rng.choices(list(TOPICS), weights=weights, k=count)


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


# What a tab shows, read in one round trip: whether the results of ``topic`` are drawn (their
# caption, "N messages · topic", in an element of the current run) and whether its picture is
# (a picture caption of the current run, no "Making a picture…" left and the page idle).
PAGE_STATE = """(topic) => {
    const want = topic.trim().toLowerCase().replace(/\\s+/g, ' ');
    const fresh = [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
      .filter(e => !e.closest('[data-stale="true"]')).map(e => e.innerText.trim());
    const results = fresh.some(t => {
        const m = /^[\\d,]+ messages? · (.*)$/s.exec(t);
        return m !== null && m[1].trim().toLowerCase().replace(/\\s+/g, ' ') === want;
    });
    const making = fresh.some(t => t.startsWith('Making a picture'));
    const picture = results && !making && fresh.some(t => /%s/.test(t))
      && !document.querySelector('[data-testid="stStatusWidget"]');
    return {results, picture};
}""" % CAPTION.pattern


def browse(url: str, workers: int, seconds: float, seed: int, ready=lambda: None) -> dict:
    """``workers`` tabs searching until the time is up; returns both timings and the failures.
    Each tab first runs one untimed search (the server loads its model and caches on the very
    first), then ``ready()`` is called and the clock starts."""
    from playwright.sync_api import sync_playwright

    results_ms: list[float] = []
    picture_ms: list[float] = []
    errors: list[str] = []
    asked: list[str] = []
    with sync_playwright() as p:
        browser = launch(p, "--disable-quic")
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
            deadline = time.monotonic() + 300
            while not page.evaluate(PAGE_STATE, "warm up")["picture"]:
                if time.monotonic() > deadline:
                    raise SystemExit("A tab's first search showed no picture within 300 s.")
                time.sleep(0.05)
            warm.append((time.perf_counter() - started) * 1000)
        ready()
        # One thread drives the browser (Playwright's sync API is not thread-safe): the tabs take
        # turns being typed into, and each search is awaited while the others' run on the server.
        streams = [iter(zipf_topics(100_000, seed + i)) for i in range(workers)]
        pending: dict[int, dict] = {}
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
                    pending[i] = {"topic": topic, "started": time.perf_counter(), "results": None}
                    asked.append(topic)
            for i in list(pending):
                request, page = pending[i], pages[i]
                try:
                    state = page.evaluate(PAGE_STATE, request["topic"])
                except Exception as exc:  # a page that broke counts as an error, and the run goes on
                    errors.append(f"{request['topic']}: {exc}"[:200])
                    del pending[i]
                    continue
                waited = (time.perf_counter() - request["started"]) * 1000
                if request["results"] is None and (state["results"] or state["picture"]):
                    request["results"] = waited
                if state["picture"]:
                    results_ms.append(request["results"])
                    picture_ms.append(waited)
                    if page.locator("[data-testid='stException']").count():
                        errors.append(f"{request['topic']}: the page showed an exception")
                    del pending[i]
                elif waited > 60_000:
                    shown = "the results but no picture" if request["results"] is not None else "no results"
                    errors.append(f"{request['topic']}: {shown} within 60 s")
                    del pending[i]
            time.sleep(0.02)
        browser.close()
    return {"results_ms": results_ms, "picture_ms": picture_ms, "errors": errors, "asked": asked,
            "warm_up_ms": [round(w) for w in warm]}


def start_workers(count: int, env: dict, folder: Path) -> list[subprocess.Popen]:
    """``count`` import workers (`python -m mail worker`), each logging to a file of its own."""
    return [subprocess.Popen([sys.executable, "-m", "mail", "worker", "--name", f"load-{n}"], cwd=ROOT, env=env,
                             stdout=(folder / f"worker-{n}.log").open("w"), stderr=subprocess.STDOUT)
            for n in range(count)]


def wait_for_workers(queue, workers: list[subprocess.Popen], folder: Path, timeout: float = 300) -> None:
    """Until every worker has said it is alive (they load the model first)."""
    deadline = time.monotonic() + timeout
    while queue.workers_alive(within_seconds=60) < len(workers):
        for n, worker in enumerate(workers):
            if worker.poll() is not None:
                raise SystemExit(f"Import worker {n} stopped at start:\n"
                                 + (folder / f"worker-{n}.log").read_text()[-2000:])
        if time.monotonic() > deadline:
            raise SystemExit(f"The import workers did not start within {timeout:.0f} s.")
        time.sleep(0.5)


def stop_workers(workers: list[subprocess.Popen]) -> None:
    """SIGTERM (a worker ends its current batch and puts its import back in the queue), then kill."""
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def import_stream(queue, mailbox: Path, stream: str, deadline: float, out: list) -> None:
    """Queue the import of ``mailbox`` for a fresh owner, wait for it to end, and again, until the
    deadline (one import of this stream at a time); one still running then is left to the end."""
    round_ = 0
    while time.monotonic() < deadline:
        owner = f"{stream}-{round_}"
        round_ += 1
        started = time.monotonic()
        try:
            job = queue.enqueue_path(owner, str(mailbox))
        except Exception as exc:  # the run goes on; the failure is reported
            out.append({"owner": owner, "state": "not queued", "error": str(exc)[:200]})
            time.sleep(1.0)
            continue
        while time.monotonic() < deadline:
            job = queue.get(owner, job.id) or job
            if not job.active:
                break
            time.sleep(0.5)
        out.append({"owner": owner, "import_id": job.id, "seconds": round(time.monotonic() - started, 1),
                    "state": job.status if not job.active else f"{job.status} at the deadline",
                    "done": job.done, "total": job.total, "imported": job.imported, "duplicates": job.duplicates,
                    "failed": job.failed,
                    **({"error": job.error} if job.error else {})})


def rss_summary(samples: list[float]) -> dict:
    return {"start": round(samples[0], 1) if samples else None,
            "peak": round(max(samples), 1) if samples else None,
            "end": round(samples[-1], 1) if samples else None}


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
    if not 1 <= args.workers <= 32 or not 0 <= args.imports <= 8 or not 10 <= args.seconds <= 1800:
        parser.error("workers 1-32, imports 0-8, seconds 10-1800: the load is bounded.")
    if not Path(CHROMIUM).exists():
        raise SystemExit("Debian's chromium is needed: apt-get install chromium")

    from sqlalchemy import text

    from db.engine import create_db_engine, embedded_server, migrate

    with tempfile.TemporaryDirectory(prefix="mailsearch-load-", dir="/var/tmp") as tmp:
        os.chmod(tmp, 0o755)
        server = None if os.environ.get("DATABASE_URL") else embedded_server(Path(tmp) / "pg", on_exit="delete")
        url = server.url if server else os.environ["DATABASE_URL"]
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
        os.environ.update(env)  # this process queues the imports, with the app's settings
        import services
        from settings import Settings

        queue = services.build_import_queue(Settings(), engine)
        folder = Path(tmp)
        workers = start_workers(args.imports, env, folder)
        worker_memory = [Memory(w.pid) for w in workers]
        for m in worker_memory:
            m.start()
        app, app_url = start_app(env, folder / "streamlit.log")
        memory = Memory(app.pid)
        memory.start()
        imports: list[dict] = []
        threads: list[threading.Thread] = []
        clock: dict = {}
        died: list[str] = []
        try:
            wait_for_workers(queue, workers, folder)

            def start_imports() -> None:
                clock["started"] = time.monotonic()
                clock["deadline"] = clock["started"] + args.seconds
                threads.extend(threading.Thread(target=import_stream, args=(queue, mailbox, f"import-{n}",
                                                                             clock["deadline"], imports))
                               for n in range(args.imports))
                for t in threads:
                    t.start()

            load = browse(app_url, args.workers, args.seconds, args.seed, ready=start_imports)
            for t in threads:
                t.join()
            elapsed = time.monotonic() - clock["started"]
            with engine.connect() as conn:  # what the imports stored within the time
                imported = dict(conn.execute(text("SELECT owner, count(*) FROM mail_messages WHERE owner <> :o "
                                                  "GROUP BY owner"), {"o": OWNER}).all())
            died = [f"import worker {n} stopped during the run (exit {w.returncode})"
                    for n, w in enumerate(workers) if w.poll() is not None]
        finally:
            stop_workers(workers)
            for m in worker_memory:
                m.stop.set()
            memory.stop.set()
            app.terminate()
            try:
                app.wait(15)
            except subprocess.TimeoutExpired:
                app.kill()
        for row in imports:  # an import still under way ends here (a DATABASE_URL database is kept)
            if row["state"].endswith("at the deadline"):
                queue.cancel(row["owner"], row["import_id"])
        queue.close()
        with engine.connect() as conn:
            events = dict(conn.execute(text("SELECT kind, count(*) FROM semcache_events GROUP BY kind")).all())
            twice = conn.execute(text("SELECT count(*) FROM (SELECT key FROM semcache_events WHERE kind = 'generated' "
                                      "GROUP BY key HAVING count(*) > 1) k")).scalar()
            cache_errors = conn.execute(text("SELECT error FROM semcache_events WHERE kind = 'error' LIMIT 5")).scalars().all()
        engine.dispose()
        if server is not None:  # stopped before its folder goes
            server.close()

    from semcache.normalize import normalize

    failed_imports = [f"{row['owner']}: {row['state']} ({row.get('error', '')})"[:200]
                      for row in imports if row["state"] in ("failed", "not queued", "cancelled")]
    problems = load["errors"] + failed_imports + died
    messages = sum(imported.values())
    report = {
        "seconds": round(elapsed, 1), "workers": args.workers, "imports": args.imports,
        "mailbox": str(mailbox), "warm_up_ms": load["warm_up_ms"],
        "requests": len(load["picture_ms"]), "requests_per_second": round(len(load["picture_ms"]) / elapsed, 2),
        "results_latency": percentiles(load["results_ms"]) if load["results_ms"] else None,
        "picture_latency": percentiles(load["picture_ms"]) if load["picture_ms"] else None,
        "errors": len(problems) + events.get("error", 0), "error_samples": (problems + cache_errors)[:10],
        "distinct_topics_asked": len({normalize(t) for t in load["asked"]}),
        "lookups": {k: v for k, v in events.items()},
        "generations": events.get("generated", 0), "keys_generated_twice": twice,
        "import_rounds": imports, "messages_imported": messages,
        "messages_imported_per_second": round(messages / elapsed, 1),
        "app_rss_mb": rss_summary(memory.samples),
        "worker_rss_mb": [rss_summary(m.samples) for m in worker_memory],
    }
    write_report(report, args.json)
    return 0 if report["errors"] == 0 and twice == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
