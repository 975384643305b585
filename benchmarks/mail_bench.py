"""Mail import rate and search latency on real mailboxes.

    python -m benchmarks.mail_bench --mail ../shared/data/mail [--json out.json]

A fresh embedded PostgreSQL in a temporary folder. Measured:
- import rate of the SpamAssassin mbox (2,500 messages) with and without embeddings, and of the
  Enron Maildir (560), with the failures and their reasons;
- search latency over one owner's 10,000 messages (both real mailboxes plus demo messages made
  up to the count), p50/p99 with the local model embedding the query and with the query's
  vector already known (as when the image cache embedded the topic first);
- the top results of a few topic searches, for a person to judge.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.common import fresh_database, machine, percentiles, write_report
from mail.demo import write_demo_mbox
from mail.search import search
from mail.sources import open_source
from mail.store import import_messages, message_count

QUERIES = ["dog", "puppy", "invoice", "trip to Paris", "linux kernel", "spam filter", "meeting schedule",
           "python script", "energy trading", "gas prices", "interview candidates", "conference in houston",
           "birthday party", "football practice", "tax return", "hotel booking", "security patch", "music",
           "from:enron.com gas", "has:attachment report", "subject:re weekend", "after:2002-08-01 razor",
           "\"spam assassin\"", "email -spam", "bank statement", "garden", "vacation", "software release",
           "power plant", "weather"]
SHOW = ["dog", "invoice", "linux kernel", "energy trading", "vacation"]


def timed_import(engine, owner, path, embedder) -> dict:
    source = open_source(path)
    summary = import_messages(engine, owner, source, embedder=embedder)
    reasons = Counter(reason.split(":")[0][:80] for _, reason in summary.failures)
    return {"messages": summary.imported + summary.duplicates + summary.failed, "imported": summary.imported,
            "duplicates": summary.duplicates, "failed": summary.failed, "failure_reasons": dict(reasons),
            "seconds": round(summary.seconds, 2),
            "per_second": round((summary.imported + summary.duplicates + summary.failed) / summary.seconds, 1)}


def run(mail: Path, total: int = 10_000) -> dict:
    """Import both mailboxes in ``mail`` (and demo messages up to ``total``) into a fresh embedded
    database, search them, and return the report."""
    mbox = mail / "spamassassin-easy-ham-1.mbox"
    maildir = mail / "enron-kaminski-inbox.Maildir"
    from semcache.embedders import LocalEmbedder

    embedder = LocalEmbedder()
    embedder.embed(["warm up"])
    report: dict = {"machine": machine(), "mail": str(mail)}
    with fresh_database("mail-bench-") as (_, engine, folder):
        report["import_spamassassin_without_embeddings"] = timed_import(engine, "plain", mbox, None)
        report["import_spamassassin_with_embeddings"] = timed_import(engine, "bench", mbox, embedder)
        report["import_enron_with_embeddings"] = timed_import(engine, "bench", maildir, embedder)
        report["reimport_spamassassin"] = timed_import(engine, "bench", mbox, embedder)
        have = message_count(engine, "bench")
        demo = folder / "demo.mbox"
        write_demo_mbox(demo, count=max(0, total - have), now=datetime(2026, 11, 1, tzinfo=timezone.utc))
        report["import_demo_with_embeddings"] = timed_import(engine, "bench", demo, embedder)
        report["searched_messages"] = message_count(engine, "bench")

        for q in QUERIES:  # warm up caches and plans
            search(engine, "bench", q, embedder=embedder)
        with_embedding, known_vector = [], []
        for _ in range(3):
            for q in QUERIES:
                t = time.perf_counter()
                results = search(engine, "bench", q, embedder=embedder)
                with_embedding.append((time.perf_counter() - t) * 1000)
                vector = embedder.embed([results.topic])[0] if results.topic else None
                t = time.perf_counter()
                search(engine, "bench", q, embedder=embedder, query_vector=vector)
                known_vector.append((time.perf_counter() - t) * 1000)
        report["search_with_query_embedding"] = percentiles(with_embedding)
        report["search_with_known_vector"] = percentiles(known_vector)
        report["top_results"] = {
            q: [f"{h.subject[:70]} (text {h.text_rank}, semantic {h.semantic_rank})"
                for h in search(engine, "bench", q, embedder=embedder, limit=5).hits] for q in SHOW}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mail", type=Path, required=True, help="folder with the two real mailboxes")
    parser.add_argument("--total", type=int, default=10_000, help="messages in the searched mailbox")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    write_report(run(args.mail, args.total), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
