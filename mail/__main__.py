"""`python -m mail`: import and search mail from a terminal.

    python -m mail import PATH_OR_IMAP_URL [--owner NAME] [--json] [--no-embed] [--password-stdin]
    python -m mail search "QUERY" [--owner NAME] [--limit N] [--json]
    python -m mail demo [OUT.mbox] [--count N] [--import] [--owner NAME]
    python -m mail worker [--once] [--heartbeat SECONDS] [--stalled-after SECONDS] [--no-embed]

`worker` runs the background imports the app queues (see `mail.jobs`), at low priority and with
the embedding model on one thread, so the app's searches keep the CPU; run any number of them.

Same settings and embedded defaults as the app (environment and `.env`).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from mail.types import MailError
from semcache.errors import SemcacheError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mail", description="Import and search mail.")
    commands = parser.add_subparsers(dest="command", required=True)
    imp = commands.add_parser("import", help="import an mbox, Maildir, .eml files, a .zip, or an IMAP account")
    imp.add_argument("target", help="a path, or imaps://user@host/INBOX (imap://…?starttls=1)")
    imp.add_argument("--owner", help="whose mail this is (default: DEFAULT_OWNER)")
    imp.add_argument("--json", action="store_true", help="print one JSON object")
    imp.add_argument("--no-embed", action="store_true", help="full-text only; no embeddings")
    imp.add_argument("--password-stdin", action="store_true", help="read the IMAP password from standard input")
    find = commands.add_parser("search", help="search one owner's mail")
    find.add_argument("query")
    find.add_argument("--owner")
    find.add_argument("--limit", type=int, default=20)
    find.add_argument("--json", action="store_true")
    demo = commands.add_parser("demo", help="write (and import) the demo mailbox")
    demo.add_argument("out", nargs="?", type=Path)
    demo.add_argument("--count", type=int, default=300)
    demo.add_argument("--import", dest="do_import", action="store_true")
    demo.add_argument("--owner")
    work = commands.add_parser("worker", help="run the imports queued by the app (Ctrl-C stops it)")
    work.add_argument("--once", action="store_true", help="stop when the queue is empty")
    work.add_argument("--heartbeat", type=float, default=10.0, metavar="SECONDS",
                      help="how often the worker says it is alive (default 10)")
    work.add_argument("--stalled-after", type=float, default=30.0, metavar="SECONDS",
                      help="an import of a worker silent this long is taken over (default 30)")
    work.add_argument("--no-embed", action="store_true", help="full-text only; no embeddings")
    work.add_argument("--name", help="the worker's name in its log")
    return parser


def _worker(args, settings) -> int:
    """Run import jobs until SIGINT/SIGTERM; the database may come and go meanwhile."""
    import asyncio
    import logging
    import os
    import time

    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    try:
        os.nice(10)
    except OSError:
        pass
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("procrastinate", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.heartbeat <= 0 or args.stalled_after <= args.heartbeat:
        print("error: --stalled-after must be longer than --heartbeat, and both positive.", file=sys.stderr)
        return 2
    import services
    from mail.jobs import psycopg_conninfo
    from mail.jobs_worker import serve, worker_app

    if "local_embedding_threads" in type(settings).model_fields:
        settings = settings.model_copy(update={"local_embedding_threads": 1})
    embedder = None
    if not args.no_embed:
        try:
            import torch

            torch.set_num_threads(1)
        except ImportError:
            pass
        embedder = services.build_embedder(settings)
        embedder.embed(["warm up"])
    wait = 1.0
    while True:  # the database may still be starting
        try:
            engine = services.build_engine(settings)
            break
        except Exception as error:
            print(f"The database is not answering ({str(error).strip().splitlines()[0][:200]}); "
                  f"trying again in {wait:.0f} s.", file=sys.stderr)
            time.sleep(wait)
            wait = min(wait * 2, 30.0)
    runner = services.build_import_runner(settings, engine, embedder)
    app = worker_app(psycopg_conninfo(services.database_url(settings)))
    logging.getLogger("mail.worker").info("Worker started (pid %s); waiting for imports.", os.getpid())
    try:
        asyncio.run(serve(app, runner, heartbeat_seconds=args.heartbeat, stalled_after=args.stalled_after,
                          once=args.once, name=args.name))
    except KeyboardInterrupt:
        pass
    return 0


def _progress_bar():
    if not sys.stderr.isatty():
        return None

    def show(p) -> None:
        total = f"/{p.total}" if p.total else ""
        eta = f", {p.eta_seconds:.0f} s left" if p.eta_seconds is not None else ""
        width = 30
        filled = int(width * p.done / p.total) if p.total else 0
        print(f"\r[{'#' * filled}{'.' * (width - filled)}] {p.done}{total} ({p.rate:.0f}/s{eta})  ",
              end="", file=sys.stderr, flush=True)
    return show


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import services
    from settings import get_settings

    settings = get_settings()
    owner = getattr(args, "owner", None) or settings.default_owner
    if args.command == "worker":
        return _worker(args, settings)
    try:
        if args.command == "search":
            from mail.search import search

            engine = services.build_engine(settings)
            results = search(engine, owner, args.query, embedder=services.build_embedder(settings), limit=args.limit)
            if args.json:
                print(json.dumps([{"id": h.id, "message_id": h.message_id, "subject": h.subject, "sender": h.sender,
                                   "date": h.date.isoformat() if h.date else None, "score": round(h.score, 6),
                                   "text_rank": h.text_rank, "semantic_rank": h.semantic_rank,
                                   "thread_id": h.thread_id} for h in results.hits]))
            else:
                print(f"{results.total} messages for {results.query.describe()}")
                for h in results.hits:
                    when = h.date.strftime("%Y-%m-%d") if h.date else "          "
                    print(f"{when}  {h.sender[:32]:32}  {h.subject[:70]}")
            return 0

        if args.command == "demo":
            from mail.demo import write_demo_mbox

            out = args.out or settings.data_dir / "demo.mbox"
            out.parent.mkdir(parents=True, exist_ok=True)
            count = write_demo_mbox(out, count=args.count)
            print(f"wrote {count} messages to {out}", file=sys.stderr)
            if not args.do_import:
                return 0
            target, password = str(out), None
        else:
            target = args.target
            password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
            if password is None and target.lower().startswith(("imap://", "imaps://")) and "@" in target \
                    and ":" not in target.split("://", 1)[1].split("@", 1)[0] and sys.stdin.isatty():
                password = getpass.getpass("IMAP password: ")

        from mail.store import import_from

        engine = services.build_engine(settings)
        embedder = None if getattr(args, "no_embed", False) else services.build_embedder(settings)
        # Whoever runs this has the machine already: an IMAP server on it or its network is theirs to read.
        summary = import_from(engine, owner, target, embedder=embedder, password=password, progress=_progress_bar(),
                              allow_private_hosts=True, max_message_bytes=settings.max_message_mb * 2**20,
                              max_upload_bytes=settings.max_upload_mb * 2**20)
        if sys.stderr.isatty():
            print(file=sys.stderr)
        if getattr(args, "json", False):
            print(json.dumps({"imported": summary.imported, "duplicates": summary.duplicates,
                              "failed": summary.failed, "seconds": round(summary.seconds, 3),
                              "failures": [{"source": s, "reason": r} for s, r in summary.failures]}))
        else:
            print(f"imported {summary.imported}, duplicates {summary.duplicates}, failed {summary.failed} "
                  f"in {summary.seconds:.1f} s")
            for source, reason in summary.failures[:50]:
                print(f"  {source}: {reason}")
        return 0
    except (MailError, SemcacheError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
