"""The local model on torch against the same model on ONNX Runtime, in one run.

    python -m benchmarks.embed_bench --mail ../shared/data/mail [--rounds 2] [--threads 2] [--json out.json]

Measured, with the two backends alternated (ABBA: the order flips every round) so the shared
machine's noise falls on both alike:
- start: a fresh process's time to its first vector (ONNX reusing its export), and the export's
  own time at first use;
- one search topic at a time: p50 and p90 of ``embed([topic])`` over the demo topics;
- batches: mail excerpts of the SpamAssassin mbox embedded 200 at a time (the import's batch);
- the import of the SpamAssassin mbox (2,500 messages) with embeddings into a fresh embedded
  database, messages/s (and this process's CPU seconds, which other work on a shared machine
  disturbs less than the wall clock), and once without embeddings, which with the parse time
  splits the import into parse, embed and store. ``--only imports`` measures just that.
Every figure is a median; ``ratio`` is ONNX's speed over torch's.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import finish, fresh_database, machine, write_report
from demo_topics import TOPICS
from mail.parse import parse_message
from mail.sources import open_source
from mail.store import import_messages
from semcache.embedders import LocalEmbedder
from semcache.onnx_embedder import OnnxEmbedder

ROOT = Path(__file__).resolve().parent.parent
BATCH = 200

FIRST_VECTOR = """
import sys, time
started = time.perf_counter()
sys.path.insert(0, {root!r})
{build}
embedder.embed(["warm up"])
print(time.perf_counter() - started)
"""
BUILD = {
    "torch": "from semcache.embedders import LocalEmbedder\nembedder = LocalEmbedder()",
    "onnx": "from semcache.onnx_embedder import OnnxEmbedder\nembedder = OnnxEmbedder({folder!r})",
}


def ordered(round_: int) -> list[str]:
    return ["torch", "onnx"] if round_ % 2 == 0 else ["onnx", "torch"]


def ratio(onnx: float, torch: float) -> float:
    return round(onnx / torch, 2)


def first_vector_seconds(backend: str, folder: Path) -> float:
    code = FIRST_VECTOR.format(root=str(ROOT), build=BUILD[backend].format(folder=str(folder)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def quantiles(samples: list[float]) -> dict:
    ordered_ = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered_), 2),
            "p90_ms": round(ordered_[min(len(ordered_) - 1, int(len(ordered_) * 0.9))], 2), "n": len(ordered_)}


def run(mail: Path, rounds: int, threads: int, batch_texts: int, only: str = "all") -> dict:
    mbox = mail / "spamassassin-easy-ham-1.mbox"
    report: dict = {"machine": machine(), "threads_for_batches": threads, "rounds": rounds}
    with tempfile.TemporaryDirectory(prefix="embed-bench-") as tmp:
        folder = Path(tmp) / "onnx"
        embedders = {"torch": LocalEmbedder()}
        started = time.perf_counter()
        embedders["torch"].embed(["warm up"])
        report["torch_load_seconds_in_process"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        embedders["onnx"] = OnnxEmbedder(folder, threads=threads)
        embedders["onnx"].embed(["warm up"])
        report["onnx_export_seconds_first_use"] = round(time.perf_counter() - started, 2)
        assert embedders["onnx"].backend == "onnx", embedders["onnx"].fallback_reason
        if only == "all":
            _speeds(report, mail, embedders, folder, rounds, batch_texts)
        _imports(report, mbox, embedders, rounds)
    return finish(report)


def _speeds(report: dict, mail: Path, embedders: dict, folder: Path, rounds: int, batch_texts: int) -> None:
    mbox = mail / "spamassassin-easy-ham-1.mbox"

    starts: dict[str, list[float]] = {"torch": [], "onnx": []}
    for r in range(rounds):
        for backend in ordered(r):
            starts[backend].append(first_vector_seconds(backend, folder))
    report["fresh_process_first_vector_seconds"] = {
        b: round(statistics.median(v), 2) for b, v in starts.items()}

    topics = list(dict.fromkeys(TOPICS))
    single: dict[str, list[float]] = {"torch": [], "onnx": []}
    for r in range(rounds):
        for i, topic in enumerate(topics):
            for backend in ordered(r + i):
                t = time.perf_counter()
                embedders[backend].embed([topic])
                single[backend].append((time.perf_counter() - t) * 1000)
    report["single_phrase"] = {b: quantiles(v) for b, v in single.items()}
    report["single_phrase"]["ratio_p50"] = ratio(statistics.median(single["torch"]),  # time: torch over onnx
                                                 statistics.median(single["onnx"]))

    started = time.perf_counter()
    excerpts = []
    for item in open_source(mbox):
        if not hasattr(item, "raw"):  # a message the source skipped
            continue
        parsed = parse_message(item.raw)
        excerpts.append(parsed.excerpt or parsed.subject or " ")
    parse_seconds = time.perf_counter() - started
    report["parse_spamassassin_seconds"] = round(parse_seconds, 2)

    sample = excerpts[:batch_texts]
    rates: dict[str, list[float]] = {"torch": [], "onnx": []}
    agreement = 1.0
    for r in range(rounds):
        for start in range(0, len(sample), BATCH):
            chunk = sample[start:start + BATCH]
            vectors = {}
            for backend in ordered(r + start // BATCH):
                t = time.perf_counter()
                vectors[backend] = embedders[backend].embed(chunk)
                rates[backend].append(len(chunk) / (time.perf_counter() - t))
            agreement = min(agreement, float(np.min(np.sum(vectors["torch"] * vectors["onnx"], axis=1))))
    report["batch_texts_per_second"] = {b: round(statistics.median(v), 1) for b, v in rates.items()}
    report["batch_texts_per_second"]["ratio"] = ratio(report["batch_texts_per_second"]["onnx"],
                                                      report["batch_texts_per_second"]["torch"])
    report["batch_max_cosine_distance_torch_onnx"] = float(f"{1.0 - agreement:.2e}")


def _imports(report: dict, mbox: Path, embedders: dict, rounds: int) -> None:

    with fresh_database("embed-bench-") as (_, engine, _folder):
        plain = import_messages(engine, "plain", open_source(mbox), embedder=None)
        imports: dict[str, list[dict]] = {"torch": [], "onnx": []}
        for r in range(rounds):
            for backend in ordered(r):
                cpu = time.process_time()
                summary = import_messages(engine, f"{backend}-{r}", open_source(mbox),
                                          embedder=embedders[backend])
                cpu = time.process_time() - cpu
                handled = summary.imported + summary.duplicates + summary.failed
                imports[backend].append({"messages": handled, "imported": summary.imported,
                                         "seconds": round(summary.seconds, 2),
                                         "per_second": round(handled / summary.seconds, 1),
                                         "cpu_seconds": round(cpu, 1)})
    report["import_without_embeddings"] = {"seconds": round(plain.seconds, 2),
                                           "per_second": round(plain.imported / plain.seconds, 1)}
    report["import_with_embeddings"] = {
        b: {"runs": runs, "median_seconds": round(statistics.median(x["seconds"] for x in runs), 2),
            "median_per_second": round(statistics.median(x["per_second"] for x in runs), 1),
            "median_cpu_seconds": round(statistics.median(x["cpu_seconds"] for x in runs), 1)}
        for b, runs in imports.items()}
    report["import_with_embeddings"]["ratio"] = ratio(
        report["import_with_embeddings"]["onnx"]["median_per_second"],
        report["import_with_embeddings"]["torch"]["median_per_second"])
    report["import_with_embeddings"]["cpu_ratio"] = ratio(
        report["import_with_embeddings"]["torch"]["median_cpu_seconds"],
        report["import_with_embeddings"]["onnx"]["median_cpu_seconds"])
    parse_seconds = report.get("parse_spamassassin_seconds", 0.0)
    store_seconds = max(0.0, plain.seconds - parse_seconds)
    report["import_time_split_seconds"] = {
        b: {"parse": round(parse_seconds, 2), "store": round(store_seconds, 2),
            "embed": round(report["import_with_embeddings"][b]["median_seconds"] - plain.seconds, 2)}
        for b in ("torch", "onnx")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mail", type=Path, required=True, help="folder with the SpamAssassin mbox")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each measurement")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads for batches")
    parser.add_argument("--batch-texts", type=int, default=600, help="mail excerpts in the batch measurement")
    parser.add_argument("--only", choices=("all", "imports"), default="all",
                        help="imports: only the mbox import, torch against ONNX")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    write_report(run(args.mail, args.rounds, args.threads, args.batch_texts, args.only), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
