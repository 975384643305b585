"""`python -m benchmarks.cache`: the cache's benchmarks, each on a fresh embedded PostgreSQL.

    python -m benchmarks.cache scale [--entries 10000 100000 1000000] [--lookups 2000] [--vectors auto]
    python -m benchmarks.cache throughput [--workers 1 4 16] [--modes thread process] [--repeats 3]
    python -m benchmarks.cache cost [--stream 1000] [--price 0.04]
    python -m benchmarks.cache mail --mail ../shared/data/mail
    python -m benchmarks.cache all [--entries ...] [--mail PATH]
    python -m benchmarks.cache report

Each part writes its JSON report to the output folder (``--out``, default bench-results/) and
then rewrites bench.md there from every report in the folder.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Sequence

from benchmarks import common
from benchmarks.cache import markdown

DEFAULT_SIZES = [10_000, 100_000, 1_000_000]


def size_label(entries: int) -> str:
    if entries % 1_000_000 == 0:
        return f"{entries // 1_000_000}m"
    if entries % 1000 == 0:
        return f"{entries // 1000}k"
    return str(entries)


def memory_for(entries: int) -> str:
    """maintenance_work_mem for an index build: 2 GB, or 4 kB per entry where that is more, so
    the HNSW graph is built in memory."""
    return f"{max(2048, entries * 4 // 1024)}MB"


def _positive(value: str) -> int:
    number = int(value.replace("_", "").replace(",", ""))
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _memory(value: str) -> str:
    if not re.fullmatch(r"\d+\s*(kB|MB|GB)", value):
        raise argparse.ArgumentTypeError("a size such as 512MB or 4GB")
    return value.replace(" ", "")


def _parser() -> argparse.ArgumentParser:
    common_options = argparse.ArgumentParser(add_help=False)
    common_options.add_argument("--out", type=Path, default=Path("bench-results"),
                                help="folder for the JSON reports, bench.md and cached embeddings")
    sizes = argparse.ArgumentParser(add_help=False)
    sizes.add_argument("--entries", type=_positive, nargs="+", default=DEFAULT_SIZES, help="cache sizes")
    mail = argparse.ArgumentParser(add_help=False)
    mail.add_argument("--mail", type=Path, help="folder with the two real mailboxes (skipped when absent)")

    parser = argparse.ArgumentParser(prog="python -m benchmarks.cache", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    scale = commands.add_parser("scale", parents=[common_options, sizes],
                                help="lookup latency, HNSW agreement, build time and sizes per cache size")
    scale.add_argument("--lookups", type=_positive, default=2000)
    scale.add_argument("--vectors", choices=["auto", "wordnet", "random"], default="auto",
                       help="auto: WordNet lemmas where there are enough of them, else random unit vectors")
    scale.add_argument("--ef-search", type=_positive, nargs="+", default=[40, 100, 200])
    scale.add_argument("--scan-lookups", type=_positive, default=100, help="lookups for the exact-scan baseline")
    scale.add_argument("--no-model", action="store_true", help="skip the full get with the real local model")
    scale.add_argument("--maintenance-work-mem", type=_memory,
                       help="for the index build (default: 2GB, or 4 kB per entry where that is more)")
    scale.add_argument("--parallel-workers", type=int,
                       help="max_parallel_maintenance_workers for the index build (default: the server's)")

    throughput = commands.add_parser("throughput", parents=[common_options],
                                     help="lookups/s with concurrent threads and processes, and generations")
    throughput.add_argument("--base", type=_positive, default=10_000, help="entries in the cache")
    throughput.add_argument("--topics", type=_positive, default=2000, help="topics the stream draws from")
    throughput.add_argument("--stream", type=_positive, default=4000, help="lookups per run")
    throughput.add_argument("--zipf", type=float, default=1.1)
    throughput.add_argument("--workers", type=_positive, nargs="+", default=[1, 4, 16])
    throughput.add_argument("--modes", choices=["thread", "process"], nargs="+", default=["thread", "process"])
    throughput.add_argument("--repeats", type=_positive, default=3)
    throughput.add_argument("--generate-ms", type=float, default=0.0, help="how long a generation takes")
    throughput.add_argument("--vectors", choices=["auto", "wordnet", "random"], default="auto")

    cost = commands.add_parser("cost", parents=[common_options],
                               help="money spent on a topic stream: no cache, exact-only, semantic")
    cost.add_argument("--stream", type=_positive, default=1000, help="lookups")
    cost.add_argument("--zipf", type=float, default=1.1)
    cost.add_argument("--price", type=float, default=0.04, help="dollars per generated image")
    cost.add_argument("--threshold", type=float, help="semantic threshold (default: the cache's default)")

    mail_command = commands.add_parser("mail", parents=[common_options, mail],
                                       help="mail import rate and search latency")
    mail_command.add_argument("--total", type=_positive, default=10_000, help="messages in the searched mailbox")

    commands.add_parser("all", parents=[common_options, sizes, mail], help="every part, with default settings")
    commands.add_parser("report", parents=[common_options], help="rewrite bench.md from the JSON reports")
    return parser


def _save(report: dict, out: Path, name: str) -> None:
    common.finish(report)
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(report, indent=2))
    common.log(f"wrote {out / name}")
    _write_markdown(out)


def _write_markdown(out: Path) -> None:
    text = markdown.render(out)
    (out / "bench.md").write_text(text)
    print(text)


def run_scale(out: Path, entries: Sequence[int], *, lookups: int = 2000, vectors: str = "auto",
              ef_search: Sequence[int] = (40, 100, 200), scan_lookups: int = 100, with_model: bool = True,
              maintenance_work_mem: str | None = None, parallel_workers: int | None = None) -> None:
    from benchmarks.cache import scale

    for count in entries:
        chosen = scale.pick_vectors(vectors, count, lookups)
        settings = {"maintenance_work_mem": maintenance_work_mem or memory_for(count)}
        if parallel_workers is not None:
            settings["max_parallel_maintenance_workers"] = str(parallel_workers)
        with common.fresh_database() as (_, engine, folder):
            report = scale.run(engine, folder / "blobs", entries=count, lookups=lookups, vectors=chosen,
                               ef_search=ef_search, scan_lookups=scan_lookups, with_model=with_model,
                               build_settings=settings, cache_dir=out)
        _save(report, out, f"scale-{chosen}-{size_label(count)}.json")


def run_throughput(out: Path, **options) -> None:
    from benchmarks.cache import throughput

    with common.fresh_database() as (url, engine, folder):
        report = throughput.run(url, engine, folder / "blobs", cache_dir=out, **options)
    _save(report, out, "throughput.json")


def run_cost(out: Path, **options) -> None:
    from benchmarks.cache import cost
    from semcache.embedders import LocalEmbedder

    embedder = LocalEmbedder()
    embedder.embed(["warm up"])
    with common.fresh_database() as (_, engine, folder):
        report = cost.run(engine, embedder, folder / "blobs", **options)
    _save(report, out, "cost.json")


def run_mail(out: Path, mail: Path | None, total: int = 10_000) -> None:
    if mail is None or not mail.is_dir():
        reason = ("no mail folder given (--mail PATH)" if mail is None
                  else f"the mail folder {mail} does not exist")
        common.log(f"mail benchmark skipped: {reason}")
        _save({"machine": common.machine(), "skipped": reason}, out, "mail.json")
        return
    try:
        from benchmarks.mail_bench import run
    except ImportError:
        sys.exit("The mail benchmark uses the app's mail/ and benchmarks/ packages: run it from the app's folder.")
    _save(run(mail, total), out, "mail.json")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out: Path = args.out
    if args.command == "scale":
        run_scale(out, args.entries, lookups=args.lookups, vectors=args.vectors, ef_search=args.ef_search,
                  scan_lookups=args.scan_lookups, with_model=not args.no_model,
                  maintenance_work_mem=args.maintenance_work_mem, parallel_workers=args.parallel_workers)
    elif args.command == "throughput":
        run_throughput(out, base=args.base, topics=args.topics, stream=args.stream, zipf=args.zipf,
                       workers=args.workers, modes=args.modes, repeats=args.repeats,
                       generate_ms=args.generate_ms, vectors=args.vectors)
    elif args.command == "cost":
        run_cost(out, stream=args.stream, zipf=args.zipf, price=args.price, threshold=args.threshold)
    elif args.command == "mail":
        run_mail(out, args.mail, args.total)
    elif args.command == "all":
        run_scale(out, args.entries)
        run_throughput(out)
        run_cost(out)
        run_mail(out, args.mail)
    else:
        _write_markdown(out)
    return 0
