"""How long a search for a new word takes while a mailbox imports, the old way and the new.

    python -m benchmarks.import_contention --messages 1000 --json bench-results/import-contention.json

Three runs on a fresh embedded database, each timing a search for a word never searched before
every ``--every`` seconds in this process, the app's: the word's embedding by the local model,
then the ranking of a reader's 300 demo messages by words and meaning (`mail.search.search`):

- ``idle``: nothing else running;
- ``in_process``: the import runs in a thread of this process on the same embedder, as the
  Import page ran it before imports became jobs (the query waits behind a batch's embedding);
- ``worker``: the import is a queued job run by a `python -m mail worker` process (nice 10, one
  thread), and this process keeps its own embedder.

Reports the medians and p99 of the searches in milliseconds, their ratios to idle, and how long
each import took. The app, the old-way import and the worker use ``--backend`` of the local model
(the app's default, ``auto``, is ONNX Runtime).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.common import finish, fresh_database, log, machine, percentiles, write_report

ROOT = Path(__file__).resolve().parent.parent


def _words():
    from benchmarks.common import wordnet_phrases

    for n, phrase in enumerate(wordnet_phrases()):
        yield f"{phrase} {n}"


READER = "reader"


def _sample(engine, embedder, words, *, until, every: float) -> list[float]:
    from mail.search import search

    samples = []
    while not until():
        word = next(words)
        started = time.perf_counter()
        vector = embedder.embed([word])[0]
        search(engine, READER, word, query_vector=vector, limit=20)
        samples.append((time.perf_counter() - started) * 1000)
        time.sleep(every)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.import_contention", description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--every", type=float, default=0.5, help="seconds between two query embeddings")
    parser.add_argument("--idle-samples", type=int, default=20)
    parser.add_argument("--backend", choices=("auto", "onnx", "torch"), default="auto",
                        help="the local model's backend, in the app and the worker alike")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from cryptography.fernet import Fernet

    from mail.demo import write_demo_mbox
    from mail.jobs import ImportQueue, JobSecrets, job_app, psycopg_conninfo
    from mail.store import import_from
    from mail.sources import open_source
    from mail.store import import_messages
    from semcache.blobstores import LocalBlobStore
    from services import build_local_embedder
    from settings import Settings

    report: dict = {"benchmark": "import_contention", "machine": machine(), "messages": args.messages,
                    "every_s": args.every}
    with fresh_database("import-contention-") as (url, engine, folder):
        mbox = folder / "mailbox.mbox"
        write_demo_mbox(mbox, count=args.messages)
        settings = Settings(_env_file=None, data_dir=folder / "data", local_embedding_backend=args.backend)
        app_embedder = build_local_embedder(settings)
        app_embedder.embed(["warm up"])
        report["backend"] = getattr(app_embedder, "backend", "torch")
        write_demo_mbox(folder / "reader.mbox", count=300)
        import_messages(engine, READER, open_source(folder / "reader.mbox"), embedder=app_embedder)
        words = _words()
        for _ in range(5):  # the planner's and the model's first calls
            _sample(engine, app_embedder, words, until=iter([False, True]).__next__, every=0)

        log("idle …")
        count = iter(range(args.idle_samples))
        idle = _sample(engine, app_embedder, words, until=lambda: next(count, None) is None, every=args.every)

        log("in_process …")
        done = threading.Event()
        timing: dict[str, float] = {}

        def old_way() -> None:
            started = time.perf_counter()
            import_from(engine, "old-way", mbox, embedder=app_embedder)
            timing["in_process"] = time.perf_counter() - started
            done.set()

        thread = threading.Thread(target=old_way)
        thread.start()
        in_process = _sample(engine, app_embedder, words, until=done.is_set, every=args.every)
        thread.join()

        log("worker …")
        key = Fernet.generate_key().decode()
        env = {**os.environ, "DATABASE_URL": url, "DATA_DIR": str(folder / "data"), "EMBEDDING_PROVIDER": "local",
               "LOCAL_EMBEDDING_BACKEND": args.backend,
               "ONNX_EXPORT_DIR": str(settings.onnx_folder), "JOB_SECRET_KEY": key}
        worker = subprocess.Popen([sys.executable, "-m", "mail", "worker"], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        queue = ImportQueue(engine, job_app(psycopg_conninfo(url)), uploads=LocalBlobStore(folder / "uploads"),
                            secrets=JobSecrets(key))
        try:
            while queue.workers_alive() == 0:
                time.sleep(0.5)
            job = queue.enqueue_path("new-way", str(mbox))
            started = time.perf_counter()
            in_worker = _sample(engine, app_embedder, words, every=args.every,
                                until=lambda: not queue.get("new-way", job.id).active)
            timing["worker"] = time.perf_counter() - started
            status = queue.get("new-way", job.id).status
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=120)
            queue.close()

    base = percentiles(idle)
    report["search"] = {
        name: {**percentiles(samples),
               "p50_to_idle": round(percentiles(samples)["p50_ms"] / base["p50_ms"], 2),
               "p99_to_idle": round(percentiles(samples)["p99_ms"] / base["p99_ms"], 2)}
        for name, samples in (("idle", idle), ("in_process", in_process), ("worker", in_worker))}
    report["import_seconds"] = {name: round(value, 1) for name, value in timing.items()}
    report["worker_import_status"] = status
    write_report(finish(report), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
