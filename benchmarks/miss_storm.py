"""A storm of slow misses: does the picture cache keep answering while many new pictures are made?

    python -m benchmarks.miss_storm [--topics 32] [--seconds 20] [--generator openai|sleep]
                                    [--cache-module-file PATH] [--json out.json]

What runs: a fresh embedded PostgreSQL, migrated; an engine with the app's pool
(`db.engine.create_db_engine` defaults); the cache with the app's cost guard (50 pictures per
user, $20 a day). ``--topics`` threads each ask for a different new topic at once; every image
takes ``--seconds``: with ``--generator openai`` (the default) the real `openai` client asks
tests/fake_openai.py's server on loopback, which holds each image request that long; with
``sleep`` the generator sleeps. The topics' embeddings are random unit vectors (nearly
orthogonal, so no topic answers for another) from a table, so the embedding model costs nothing.

Every 0.25 s, from ``--baseline`` seconds before the storm until it is over, one thread asks
for a picture already cached (an exact hit, image included) and another runs ``SELECT 1`` on a
pooled connection.

Reported: the storm's errors (by type), kinds and wall time; the hits' and SELECT 1's latency
(median, p95, max) and errors of the probes sent before the storm and of those sent during it;
connections checked out at the peak. The "before" figures show what this machine's load alone
does to the probes. ``--cache-module-file`` loads
`SemanticCache` from another copy of semcache/cache.py (e.g. an older revision, from
``git show REV:semcache/cache.py``) to compare.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from benchmarks.common import FixedImage, TableEmbedder, fresh_database, machine, unit_rows, write_report  # noqa: E402
from semcache.blobstores import LocalBlobStore  # noqa: E402
from semcache.budget import CostGuard  # noqa: E402

PROBE_INTERVAL_S = 0.25


def cache_class(path: str | None):
    if path is None:
        from semcache.cache import SemanticCache

        return SemanticCache
    spec = importlib.util.spec_from_file_location("semcache._compared_cache", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.SemanticCache


def summary(samples: list[tuple[float, float | str]]) -> dict:
    """Median, 95th percentile and max of the answers' milliseconds, when the max was (seconds into the storm),
    and the failures by type."""
    answered = [(at, ms) for at, ms in samples if not isinstance(ms, str)]
    errors = Counter(error for _, error in samples if isinstance(error, str))
    out: dict = {"n": len(samples), "median_ms": None, "max_ms": None, "errors": sum(errors.values()),
                 "error_types": dict(errors)}
    if answered:
        at, worst = max(answered, key=lambda sample: sample[1])
        ordered = sorted(ms for _, ms in answered)
        out.update(median_ms=round(statistics.median(ordered), 1),
                   p95_ms=round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 1),
                   max_ms=round(worst, 1), max_at_s=round(at, 1))
    return out


def error_name(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"


def run(topics: int, seconds: float, generator_kind: str, cache_file: str | None, baseline: float = 5.0) -> dict:
    from db.engine import create_db_engine

    report: dict = {"benchmark": "miss_storm", "machine": machine(), "topics": topics,
                    "generator_seconds": seconds, "generator": generator_kind,
                    "cache_module": cache_file or "semcache/cache.py"}
    names = [f"storm topic {i}" for i in range(topics)] + ["cached topic"]
    vectors = unit_rows(np.random.default_rng(7), len(names))
    embedder = TableEmbedder(dict(zip(names, vectors)))
    server = None
    if generator_kind == "openai":
        from fake_openai import API_KEY, FakeOpenAI
        from semcache.openai_images import OpenAIImageGenerator

        server = FakeOpenAI().start()
        generator = OpenAIImageGenerator(API_KEY, base_url=server.base_url, timeout=seconds + 60, max_retries=0,
                                         size="256x256")
    else:
        generator = FixedImage()
    SemanticCache = cache_class(cache_file)
    with fresh_database("miss-storm-") as (url, _, folder), tempfile.TemporaryDirectory() as blob_dir:
        engine = create_db_engine(url)  # the app's pool
        report["pool"] = engine.pool.status()
        guard = CostGuard(engine, images_per_user=50, budget_usd=20.0)
        cache = SemanticCache(engine, embedder, generator, LocalBlobStore(Path(blob_dir)), guard=guard)
        cache.get("cached topic")  # made at once: the storm's delay is scripted after it
        if server is not None:
            server.hang_next(seconds=seconds, times=topics, path="/v1/images/generations")
        else:
            generator.delay_s = seconds
        for name in names[:-1]:
            cache.embedding(name)

        probes_over = threading.Event()
        samples: dict[str, list[tuple[float, float | str]]] = {"hit": [], "select": []}
        peak = [0]

        def probe(name: str, ask) -> None:
            """(when, milliseconds) of each answer, or (when, the error) of each failure."""
            while not probes_over.is_set():
                t = time.perf_counter()
                try:
                    ask()
                    samples[name].append((t, (time.perf_counter() - t) * 1000))
                except Exception as exc:
                    samples[name].append((t, error_name(exc)))
                probes_over.wait(PROBE_INTERVAL_S)

        def hit() -> None:
            result = cache.get("cached topic")
            assert result.kind == "exact" and result.image, result.kind

        def select_1() -> None:
            peak[0] = max(peak[0], engine.pool.checkedout())
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        def miss(i: int) -> str:
            try:
                return cache.get(names[i], user=f"user {i % 8}").kind
            except Exception as exc:
                return "error " + error_name(exc)

        probes = [threading.Thread(target=probe, args=("hit", hit)),
                  threading.Thread(target=probe, args=("select", select_1))]
        for thread in probes:
            thread.start()
        time.sleep(baseline)  # the probes alone first: how fast they are on this machine right now
        began = time.perf_counter()
        with ThreadPoolExecutor(topics) as pool:
            storm = [pool.submit(miss, i) for i in range(topics)]
            kinds = [future.result() for future in storm]
        ended = time.perf_counter()
        probes_over.set()
        for thread in probes:
            thread.join()
        with engine.connect() as conn:
            generated = conn.execute(text("SELECT count(*) FROM semcache_events WHERE kind = 'generated'")).scalar()
        engine.dispose()
    if server is not None:
        server.stop()
    errors = Counter(kind[len("error "):] for kind in kinds if kind.startswith("error "))
    report.update({
        "storm": {"seconds": round(ended - began, 1),
                  "kinds": dict(Counter(k for k in kinds if not k.startswith("error "))),
                  "errors": sum(errors.values()), "error_types": dict(errors), "generated_events": generated},
        "peak_checked_out": peak[0],
    })
    for name, label in (("hit", "exact_hits"), ("select", "select_1")):
        before = [(t - began, v) for t, v in samples[name] if t < began]
        during = [(t - began, v) for t, v in samples[name] if began <= t < ended]
        report[f"{label}_before"] = summary(before)
        report[f"{label}_meanwhile"] = summary(during)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topics", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--generator", choices=["openai", "sleep"], default="openai")
    parser.add_argument("--baseline", type=float, default=5.0, help="seconds of probes alone before the storm")
    parser.add_argument("--cache-module-file", help="a copy of semcache/cache.py to load SemanticCache from")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    write_report(run(args.topics, args.seconds, args.generator, args.cache_module_file, args.baseline), args.json)


if __name__ == "__main__":
    main()
