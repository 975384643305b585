"""Latency of the cache at scale, and how often the HNSW index agrees with an exact scan.

    python -m benchmarks.cache_bench [--entries 100000] [--lookups 2000] [--json out.json]

A fresh embedded PostgreSQL is started in a temporary folder (or DATABASE_URL is used). The
cache is filled with ``--entries`` random unit vectors of 384 dimensions, filed in the local
model's embedding space so that real phrases can be looked up among them, plus the real phrases
of a small topic list. Images come from a generator that returns one fixed PNG: generation is
not what is measured here.

Measured, each as p50/p99 over ``--lookups`` calls of `SemanticCache.get(..., fetch_image=False)`:
- exact hits (one indexed lookup, no embedding);
- semantic lookups excluding the embedding call (query vectors are supplied by a table, so the
  time is the exact-path miss, the embedding-cache read and write, the HNSW search and the event);
- HNSW decisions against an exact scan at the default threshold, for near queries (an entry's
  vector plus noise) and far queries (fresh random vectors);
- full `get` with the real local embedding model, for phrases never seen before.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import text

from db.engine import create_db_engine, embedded_postgres_url, migrate
from semcache import GeneratedImage, SemanticCache
from semcache.blobstores import LocalBlobStore
from semcache.pixelart import pixelate

DIMS = 384
TOPICS = ["dog", "cat", "house", "rocket", "invoice", "pizza", "car", "birthday", "rain", "trip to paris",
          "beach", "mountain", "guitar", "coffee", "train", "airplane", "football", "tax return", "wedding",
          "doctor appointment", "garden", "bicycle", "snow", "computer", "book club", "concert", "hospital",
          "restaurant", "salary", "insurance"]
NEW_PHRASES = ["puppy", "kitten", "villa", "spaceship", "bill", "pasta", "automobile", "anniversary", "storm",
               "vacation in france", "seaside", "hill", "violin", "espresso", "railway", "jet", "soccer",
               "taxes", "marriage", "dentist", "flowers", "bike", "blizzard", "laptop", "reading group",
               "gig", "clinic", "diner", "payroll", "policy renewal"]


class TableEmbedder:
    """Answers from a table of precomputed vectors, in the local model's space: the embedding
    call costs nothing, so what remains is the cache's own work."""

    model, dimensions = "all-MiniLM-L6-v2", DIMS

    def __init__(self) -> None:
        self.table: dict[str, np.ndarray] = {}

    def embed(self, texts):
        return np.stack([self.table[t] for t in texts]) if texts else np.zeros((0, DIMS), np.float32)


class FixedImage:
    name, price_usd = "fixed", 0.04

    def __init__(self) -> None:
        buf = io.BytesIO()
        Image.new("RGB", (32, 32), (200, 120, 40)).save(buf, "PNG")
        self.png = pixelate(Image.open(io.BytesIO(buf.getvalue())))

    def generate(self, topic, embedding=None):
        return GeneratedImage(self.png, "fixed image for benchmarks")


def percentiles(samples_ms: list[float]) -> dict:
    ordered = sorted(samples_ms)
    return {"p50_ms": round(statistics.median(ordered), 3),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
            "n": len(ordered)}


def unit_rows(rng, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIMS)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def near(rng, vector: np.ndarray, distance: float) -> np.ndarray:
    """A unit vector at cosine distance ``distance`` from ``vector``."""
    noise = rng.normal(size=DIMS).astype(np.float32)
    noise -= (noise @ vector) * vector
    noise /= np.linalg.norm(noise)
    cos = 1.0 - distance
    out = cos * vector + np.sqrt(1 - cos * cos) * noise
    return (out / np.linalg.norm(out)).astype(np.float32)


def fill(cache: SemanticCache, vectors: np.ndarray, blob_key: str) -> float:
    """Bulk-load entries and their vectors with COPY; returns the seconds the HNSW build took."""
    engine = cache.engine
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SELECT coalesce(max(id), 0) FROM semcache_entries")
        base = cur.fetchone()[0]
        entries = io.StringIO()
        for i in range(len(vectors)):
            entries.write(f"{base + i + 1}\tfiller {i}\tfiller {i}\t{blob_key}\t100\tfixed\t0\n")
        entries.seek(0)
        cur.copy_expert("COPY semcache_entries (id, key, phrase, blob_key, size_bytes, generator, cost_usd) "
                        "FROM STDIN", entries)
        cur.execute("SELECT setval('semcache_entries_id_seq', (SELECT max(id) FROM semcache_entries))")
        cur.execute("INSERT INTO semcache_spaces (model, dimensions) VALUES (%s, %s) "
                    "ON CONFLICT DO NOTHING RETURNING id", (TableEmbedder.model, DIMS))
        cur.execute("SELECT id FROM semcache_spaces WHERE model = %s AND dimensions = %s",
                    (TableEmbedder.model, DIMS))
        space_id = cur.fetchone()[0]
        rows = io.StringIO()
        for i, v in enumerate(vectors):
            rows.write(f"{space_id}\tfiller {i}\t[{','.join(f'{x:.7f}' for x in v)}]\t{base + i + 1}\n")
        rows.seek(0)
        cur.copy_expert("COPY semcache_embeddings (space_id, key, embedding, entry_id) FROM STDIN", rows)
        raw.commit()
        cur.execute("SET maintenance_work_mem = '2GB'")
        cur.execute("ANALYZE semcache_entries")
        cur.execute("ANALYZE semcache_embeddings")
        raw.commit()
    finally:
        raw.close()
    with engine.begin() as conn:
        conn.execute(text("ALTER DATABASE postgres SET maintenance_work_mem = '2GB'"))
    engine.dispose()
    started = time.perf_counter()
    cache.space()  # creates the space's HNSW index
    return time.perf_counter() - started


def timed(fn, items) -> list[float]:
    out = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - t) * 1000)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    args = parser.parse_args(argv)
    rng = np.random.default_rng(2026)
    report: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "platform": platform.platform()},
                    "entries": args.entries, "vectors": "random unit vectors, 384 dims (local model's space)"}

    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        os.chmod(tmp, 0o755)
        url = args.database_url or embedded_postgres_url(Path(tmp) / "pg", keep_running=False)
        engine = create_db_engine(url, pool_size=4)
        migrate(engine)
        embedder = TableEmbedder()
        cache = SemanticCache(engine, embedder, FixedImage(), LocalBlobStore(Path(tmp) / "blobs"))
        threshold = cache.default_threshold
        report["threshold"] = threshold
        blob_key = cache.blobs.put(cache.generator.png)

        vectors = unit_rows(rng, args.entries)
        t = time.perf_counter()
        report["index_build_s"] = round(fill(cache, vectors, blob_key), 2)
        report["load_s"] = round(time.perf_counter() - t - report["index_build_s"], 2)
        with engine.connect() as conn:
            report["embeddings_table_mb"] = round(conn.execute(text(
                "SELECT pg_table_size('semcache_embeddings')")).scalar() / 2**20, 1)
            report["entries_table_mb"] = round(conn.execute(text(
                "SELECT pg_table_size('semcache_entries')")).scalar() / 2**20, 1)
            report["hnsw_index_mb"] = round(conn.execute(text("SELECT pg_relation_size(CAST(:i AS regclass))"),
                                                         {"i": cache.space().index_name}).scalar() / 2**20, 1)

        # Exact hits.
        keys = [f"filler {i}" for i in rng.integers(0, args.entries, args.lookups)]
        for k in keys[:200]:
            cache.get(k, fetch_image=False)
        report["exact_hit"] = percentiles(timed(lambda k: cache.get(k, fetch_image=False), keys))

        # Semantic lookups (embedding supplied by the table, so excluded) and HNSW agreement.
        targets = rng.integers(0, args.entries, args.lookups)
        near_queries = []
        for n, i in enumerate(targets):
            phrase = f"near query {n}"
            embedder.table[phrase] = near(rng, vectors[i], float(rng.uniform(0.05, threshold)))
            near_queries.append(phrase)
        far_queries = []
        for n, v in enumerate(unit_rows(rng, args.lookups // 4)):
            phrase = f"far query {n}"
            embedder.table[phrase] = v
            far_queries.append(phrase)

        kinds, decisions = [], {}

        def lookup(phrase):
            result = cache.get(phrase, fetch_image=False)
            kinds.append(result.kind)
            decisions[phrase] = result.served_key if result.kind == "semantic" else None

        def forget_generated(phrases):  # keep the cache as it was, outside the timings
            for phrase in phrases:
                if decisions[phrase] is None:
                    cache.delete(phrase)

        report["semantic_lookup_excluding_embedding"] = percentiles(timed(lookup, near_queries))
        report["semantic_lookup_kinds"] = {k: kinds.count(k) for k in sorted(set(kinds))}
        forget_generated(near_queries)
        kinds.clear()
        report["miss_excluding_embedding_fixed_image"] = percentiles(timed(lookup, far_queries))
        report["miss_kinds"] = {k: kinds.count(k) for k in sorted(set(kinds))}
        forget_generated(far_queries)

        # The same decision by exact scan over every vector.
        def exact_decision(phrase):
            sims = vectors @ embedder.table[phrase]
            best = int(np.argmax(sims))
            return f"filler {best}" if 1.0 - sims[best] <= threshold else None

        agree_near = sum(decisions[p] == exact_decision(p) for p in near_queries) / len(near_queries)
        agree_far = sum(decisions[p] == exact_decision(p) for p in far_queries) / len(far_queries)
        report["hnsw_agreement_at_threshold"] = {"near_queries": round(agree_near, 4),
                                                 "far_queries": round(agree_far, 4),
                                                 "all": round((agree_near * len(near_queries) + agree_far *
                                                               len(far_queries)) /
                                                              (len(near_queries) + len(far_queries)), 4)}

        # Full get with the real local model, phrases never seen before.
        from semcache.embedders import LocalEmbedder

        local = LocalEmbedder()
        local.embed(["warm up"])
        real = SemanticCache(engine, local, FixedImage(), cache.blobs)
        for topic in TOPICS:
            real.get(topic, fetch_image=False)
        full, full_kinds, made = [], [], []
        for phrase in NEW_PHRASES:
            t = time.perf_counter()
            result = real.get(phrase, fetch_image=False)
            full.append((time.perf_counter() - t) * 1000)
            full_kinds.append(result.kind)
            if result.kind == "generated":
                made.append(phrase)
        for phrase in made:
            real.delete(phrase)
        report["full_get_local_embedder_new_phrase"] = {**percentiles(full),
                                                        "kinds": {k: full_kinds.count(k) for k in set(full_kinds)}}
        engine.dispose()

    out = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
