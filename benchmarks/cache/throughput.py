"""Throughput of `SemanticCache.get` with several concurrent workers, threads or processes.

The cache holds ``base`` entries; a stream of ``stream`` lookups is drawn with Zipf weights
(exponent ``zipf``) from ``topics`` other phrases, so a few topics come back often (exact hits
after their first lookup) and many come once (a semantic hit, or a generation). Phrases and
vectors are WordNet lemmas in the local model's space, or random unit vectors where WordNet is
not installed; the embedder answers from a table and the generator returns a fixed PNG after
``generate_ms``, so what is measured is the cache and the database.

The stream is dealt round-robin to the workers, which start together (a barrier, after each has
connected); lookups/s is the stream's length over the time from the first start to the last
finish. Before every run the stream's entries, vectors and events are deleted, so every run
starts from the same cache.

Generations are counted three ways: the workers' results, the generator's calls, and the cache's
`generated` events. No key may be generated twice, whatever the concurrency. The expected count
is what an exact scan would do with the stream in order: a topic is generated when no entry made
before it (the base or an earlier generation) is within the threshold.
"""

from __future__ import annotations

import multiprocessing
import statistics
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
from sqlalchemy import Engine, create_engine

from benchmarks.common import (
    FixedImage, TableEmbedder, expected_generations, fill, log, machine, near, percentiles, unit_rows,
    wordnet_phrases, wordnet_vectors,
)
from semcache import store
from semcache.blobstores import LocalBlobStore
from semcache.cache import SemanticCache

BARRIER_TIMEOUT_S = 600


def dataset(vectors: str, base: int, topics: int, seed: int, cache_dir: Path):
    """(base keys, base vectors, topic keys, topic vectors, vectors used, description)."""
    phrases = wordnet_phrases() if vectors in ("auto", "wordnet") else []
    if len(phrases) >= base + topics:
        table = wordnet_vectors(phrases, base + topics, cache_dir)
        return (phrases[:base], table[:base], phrases[base:base + topics], table[base:], "wordnet",
                "all-MiniLM-L6-v2 embeddings of distinct WordNet lemmas; the stream's topics are other lemmas")
    if vectors == "wordnet":
        raise SystemExit(f"WordNet has {len(phrases):,} distinct lemmas, fewer than {base + topics:,}.")
    rng = np.random.default_rng(seed)
    base_vectors = unit_rows(rng, base)
    topic_vectors = np.stack([near(rng, base_vectors[int(rng.integers(0, base))], float(rng.uniform(0.05, 0.5)))
                              if i % 2 else unit_rows(rng, 1)[0] for i in range(topics)])
    return ([f"filler {i}" for i in range(base)], base_vectors, [f"topic {i}" for i in range(topics)],
            topic_vectors, "random",
            "random unit vectors; half the stream's topics are near a cached entry, half are not")


def zipf_stream(keys: Sequence[str], length: int, exponent: float, rng: np.random.Generator) -> list[str]:
    """``length`` draws from ``keys``, the i-th key weighted 1 / i**exponent."""
    weights = 1.0 / np.arange(1, len(keys) + 1) ** exponent
    return [keys[i] for i in rng.choice(len(keys), size=length, p=weights / weights.sum())]


def _lookups(cache: SemanticCache, keys: Sequence[str], barrier) -> dict:
    barrier.wait(timeout=BARRIER_TIMEOUT_S)
    kinds: Counter = Counter()
    ms = []
    start = time.perf_counter()
    for key in keys:
        t = time.perf_counter()
        kinds[cache.get(key, fetch_image=False).kind] += 1
        ms.append((time.perf_counter() - t) * 1000)
    return {"start": start, "end": time.perf_counter(), "kinds": dict(kinds), "ms": ms}


def _process_worker(url: str, keys: list[str], table: dict, warm_key: str, threshold: float,
                    ef_search: int | None, delay_s: float, blobs_dir: str, barrier, results) -> None:
    """One worker process: its own engine and cache, then its share of the stream."""
    try:
        engine = create_engine(url, pool_size=2, max_overflow=2, pool_pre_ping=True)
        generator = FixedImage(delay_s=delay_s)
        cache = SemanticCache(engine, TableEmbedder(table), generator, LocalBlobStore(blobs_dir),
                              default_threshold=threshold, ef_search=ef_search)
        cache.get(warm_key, fetch_image=False)
        out = _lookups(cache, keys, barrier)
        out["generated"] = generator.generated
        engine.dispose()
    except Exception:
        barrier.abort()
        out = {"error": traceback.format_exc()}
    results.put(out)


def _run_threads(url: str, cache_args: dict, slices: list[list[str]], warm_key: str) -> tuple[list[dict], list[str]]:
    engine = create_engine(url, pool_size=len(slices) + 2, max_overflow=len(slices), pool_pre_ping=True)
    generator = FixedImage(delay_s=cache_args["delay_s"])
    cache = SemanticCache(engine, TableEmbedder(cache_args["table"]), generator,
                          LocalBlobStore(cache_args["blobs_dir"]), default_threshold=cache_args["threshold"],
                          ef_search=cache_args["ef_search"])
    connections = [engine.connect() for _ in slices]  # the pool holds one connection per worker
    for conn in connections:
        conn.close()
    cache.get(warm_key, fetch_image=False)
    barrier = threading.Barrier(len(slices))
    results: list[dict] = [{} for _ in slices]

    def work(i: int) -> None:
        try:
            results[i] = _lookups(cache, slices[i], barrier)
        except Exception:
            barrier.abort()
            results[i] = {"error": traceback.format_exc()}

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(slices))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.dispose()
    return results, list(generator.generated)


def _run_processes(url: str, cache_args: dict, slices: list[list[str]], warm_key: str) -> tuple[list[dict], list[str]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(slices))
    queue = ctx.Queue()
    processes = [ctx.Process(target=_process_worker, args=(
        url, keys, cache_args["table"], warm_key, cache_args["threshold"], cache_args["ef_search"],
        cache_args["delay_s"], str(cache_args["blobs_dir"]), barrier, queue)) for keys in slices]
    for p in processes:
        p.start()
    results = [queue.get(timeout=BARRIER_TIMEOUT_S * 2) for _ in processes]
    for p in processes:
        p.join()
    return results, [key for r in results for key in r.get("generated", [])]


def _reset(engine: Engine, keys: list[str]) -> None:
    """The stream's entries, stored vectors and every event deleted: the cache as first loaded."""
    with store.begin(engine) as conn:
        store.forget(conn, keys)
    store.vacuum(engine)


def run(url: str, engine: Engine, blobs_dir: Path, *, base: int = 10_000, topics: int = 2000,
        stream: int = 4000, zipf: float = 1.1, workers: Sequence[int] = (1, 4, 16),
        modes: Sequence[str] = ("thread", "process"), repeats: int = 3, generate_ms: float = 0.0,
        vectors: str = "auto", seed: int = 2026, cache_dir: Path = Path("bench-results")) -> dict:
    """Load ``base`` entries into the (empty) cache tables at ``url`` and run the stream with each
    number of workers in each mode, ``repeats`` times (interleaved); returns the report."""
    base_keys, base_vectors, topic_keys, topic_vectors, vectors, description = dataset(
        vectors, base, topics, seed, cache_dir)
    rng = np.random.default_rng(seed + 2)
    lookups = zipf_stream(topic_keys, stream, zipf, rng)
    table = dict(zip(topic_keys, topic_vectors))
    generator = FixedImage()
    blobs = LocalBlobStore(blobs_dir)
    cache = SemanticCache(engine, TableEmbedder(table), generator, blobs)
    threshold = cache.default_threshold
    log(f"throughput: loading {base:,} entries ({vectors})")
    load_s, build_s = fill(cache, base_keys, base_vectors, blobs.put(generator.png))
    stream_keys = sorted(set(lookups))
    expected = expected_generations(lookups, table, threshold, base_vectors)
    report: dict = {
        "machine": machine(), "vectors": vectors, "description": description, "base_entries": base,
        "topics": topics, "stream": stream, "distinct_topics_in_stream": len(stream_keys), "zipf_exponent": zipf,
        "threshold": threshold, "ef_search": cache.ef_search, "generate_ms": generate_ms, "repeats": repeats,
        "index_build_s": round(build_s, 1), "expected_generations_exact_scan_in_order": expected, "runs": []}
    cache_args = {"table": table, "threshold": threshold, "ef_search": cache.ef_search,
                  "delay_s": generate_ms / 1000.0, "blobs_dir": blobs_dir}
    for repeat in range(repeats):
        for mode in modes:
            for count in workers:
                _reset(engine, stream_keys)
                slices = [lookups[i::count] for i in range(count)]
                go = _run_threads if mode == "thread" else _run_processes
                results, generated = go(url, cache_args, slices, base_keys[0])
                errors = [r["error"] for r in results if "error" in r]
                if errors:
                    raise RuntimeError(f"a {mode} worker failed:\n{errors[0]}")
                with store.connect(engine) as conn:
                    events = store.generations_per_key(conn)
                kinds = sum((Counter(r["kinds"]) for r in results), Counter())
                wall = max(r["end"] for r in results) - min(r["start"] for r in results)
                calls = Counter(generated)
                run_report = {
                    "mode": mode, "workers": count, "repeat": repeat, "wall_s": round(wall, 3),
                    "lookups_per_s": round(stream / wall, 1), "kinds": dict(sorted(kinds.items())),
                    "latency": percentiles([ms for r in results for ms in r["ms"]]),
                    "generations": kinds["generated"], "generator_calls": len(generated),
                    "generated_events": sum(events.values()),
                    "keys_generated_twice": sorted(k for k, n in calls.items() if n > 1)
                    + sorted(k for k, n in events.items() if n > 1 and calls[k] <= 1),
                    "latencies_ms": [ms for r in results for ms in r["ms"]]}
                report["runs"].append(run_report)
                log(f"  {mode} x{count} (repeat {repeat + 1}): {run_report['lookups_per_s']} lookups/s, "
                    f"{run_report['generations']} generations, kinds {run_report['kinds']}")
    report["summary"] = summarise(report["runs"], modes, workers)
    for r in report["runs"]:
        del r["latencies_ms"]
    return report


def summarise(runs: list[dict], modes: Sequence[str], workers: Sequence[int]) -> list[dict]:
    """Per mode and number of workers: the median lookups/s over the repeats, its ratio to one
    thread's, the pooled latency percentiles, each run's generations and any key made twice."""
    out = []
    for mode in modes:
        for count in workers:
            mine = [r for r in runs if r["mode"] == mode and r["workers"] == count]
            out.append({"mode": mode, "workers": count,
                        "lookups_per_s_median": round(statistics.median(r["lookups_per_s"] for r in mine), 1),
                        "lookups_per_s_runs": [r["lookups_per_s"] for r in mine],
                        "latency": percentiles([ms for r in mine for ms in r["latencies_ms"]]),
                        "generations_runs": [r["generations"] for r in mine],
                        "generator_calls_runs": [r["generator_calls"] for r in mine],
                        "generated_events_runs": [r["generated_events"] for r in mine],
                        "keys_generated_twice": sorted({k for r in mine for k in r["keys_generated_twice"]})})
    baseline = next((s["lookups_per_s_median"] for s in out if s["mode"] == "thread" and s["workers"] == 1), None)
    for s in out:
        s["ratio_to_one_thread"] = round(s["lookups_per_s_median"] / baseline, 2) if baseline else None
    return out
