"""Latency of the cache at scale, and how often the HNSW index agrees with an exact scan.

    python -m benchmarks.cache_bench [--entries 100000] [--lookups 2000] [--vectors wordnet|random]

A fresh embedded PostgreSQL is started in a temporary folder. The cache is bulk-loaded with
``--entries`` phrases and their 384-dimension vectors in the local model's embedding space:
- ``wordnet`` (the default where Debian's `wordnet` package is installed): distinct WordNet
  lemmas ("hot dog", "tax return"), embedded with the real local model once (kept in
  bench-results/); the lookups are other lemmas, not in the cache. Real topic-like phrases.
- ``random``: random unit vectors; the lookups are entries' vectors moved 0.05-0.35 away.
Lookups get their vectors from a table (the embedding call costs nothing), and images come from
a generator that returns one fixed PNG: neither model is what is measured here.

Reported, as p50/p99 of `SemanticCache.get(..., fetch_image=False)` by outcome: exact hits;
first-time lookups (exact-path miss, embedding stored, HNSW search, event); repeated lookups at
several `hnsw.ef_search` values; how often the index's decision agrees with an exact scan over
every vector at the default threshold; and full `get` with the real local model.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import text

from benchmarks.common import percentiles, write_report
from db.engine import create_db_engine, embedded_postgres_url, migrate
from semcache import GeneratedImage, SemanticCache
from semcache.blobstores import LocalBlobStore
from semcache.normalize import normalize
from semcache.pixelart import pixelate

DIMS = 384
WORDNET = "/usr/share/wordnet"
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


def _copy_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", " ").replace("\n", " ")


def fill(cache: SemanticCache, keys: list[str], vectors: np.ndarray, blob_key: str) -> float:
    """Bulk-load entries and their vectors with COPY; returns the seconds the HNSW build took."""
    engine = cache.engine
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SELECT coalesce(max(id), 0) FROM semcache_entries")
        base = cur.fetchone()[0]
        entries = io.StringIO()
        for i, key in enumerate(keys):
            entries.write(f"{base + i + 1}\t{_copy_text(key)}\t{_copy_text(key)}\t{blob_key}\t100\tfixed\t0\n")
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
        for i, (key, v) in enumerate(zip(keys, vectors)):
            rows.write(f"{space_id}\t{_copy_text(key)}\t[{','.join(f'{x:.7f}' for x in v)}]\t{base + i + 1}\n")
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


def wordnet_phrases(limit: int, seed: int) -> list[str]:
    """Distinct WordNet lemmas ("hot dog", "trip", "tax return"), shuffled: real topic-like phrases."""
    seen: dict[str, None] = {}
    for part in ("noun", "verb", "adj", "adv"):
        for line in Path(f"{WORDNET}/index.{part}").read_text(encoding="utf-8", errors="replace").splitlines():
            if line and not line.startswith(" "):
                seen.setdefault(normalize(line.split(" ", 1)[0].replace("_", " ")), None)
    phrases = list(seen)
    np.random.default_rng(seed).shuffle(phrases)
    return phrases[:limit]


def embed_cached(phrases: list[str], path: Path) -> np.ndarray:
    if path.exists():
        vectors = np.load(path)
        if len(vectors) == len(phrases):
            return vectors
    from semcache.embedders import LocalEmbedder

    vectors = LocalEmbedder(batch_size=256).embed(phrases)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--vectors", choices=["wordnet", "random"],
                        default="wordnet" if Path(WORDNET).is_dir() else "random")
    parser.add_argument("--ef-search", type=int, nargs="*", default=[40, 100, 200])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    args = parser.parse_args(argv)
    rng = np.random.default_rng(2026)
    report: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "platform": platform.platform()},
                    "entries": args.entries, "vectors": args.vectors}

    embedder = TableEmbedder()
    if args.vectors == "wordnet":
        phrases = wordnet_phrases(args.entries + args.lookups, seed=2026)
        if len(phrases) < args.entries + args.lookups:
            raise SystemExit(f"WordNet has only {len(phrases)} distinct lemmas.")
        all_vectors = embed_cached(phrases, Path("bench-results") / f"wordnet-{len(phrases)}-minilm.npy")
        entry_keys, query_keys = phrases[: args.entries], phrases[args.entries:]
        vectors = all_vectors[: args.entries]
        embedder.table.update(zip(phrases, all_vectors))
        report["vectors"] = ("all-MiniLM-L6-v2 embeddings of distinct WordNet lemmas; queries are "
                             f"{args.lookups} other lemmas, not in the cache")
    else:
        vectors = unit_rows(rng, args.entries)
        entry_keys = [f"filler {i}" for i in range(args.entries)]
        embedder.table.update(zip(entry_keys, vectors))
        query_keys = []
        for n, i in enumerate(rng.integers(0, args.entries, args.lookups)):
            query_keys.append(f"near query {n}")
            embedder.table[query_keys[-1]] = near(rng, vectors[i], float(rng.uniform(0.05, 0.35)))
        report["vectors"] = ("random unit vectors, 384 dims; queries are entries' vectors moved a random "
                             "cosine distance of 0.05-0.35 away")

    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        os.chmod(tmp, 0o755)
        url = args.database_url or embedded_postgres_url(Path(tmp) / "pg", on_exit="stop")
        engine = create_db_engine(url, pool_size=4)
        migrate(engine)
        cache = SemanticCache(engine, embedder, FixedImage(), LocalBlobStore(Path(tmp) / "blobs"))
        threshold = cache.default_threshold
        report["threshold"] = threshold
        blob_key = cache.blobs.put(cache.generator.png)

        t = time.perf_counter()
        report["index_build_s"] = round(fill(cache, entry_keys, vectors, blob_key), 1)
        report["load_s"] = round(time.perf_counter() - t - report["index_build_s"], 1)
        with engine.connect() as conn:
            size = lambda sql: round(conn.execute(text(sql)).scalar() / 2**20, 1)  # noqa: E731
            report["embeddings_table_mb"] = size("SELECT pg_table_size('semcache_embeddings')")
            report["entries_table_mb"] = size("SELECT pg_table_size('semcache_entries')")
            report["hnsw_index_mb"] = size(f"SELECT pg_relation_size('{cache.space().index_name}')")

        keys = [entry_keys[i] for i in rng.integers(0, args.entries, args.lookups)]
        for k in keys[:200]:
            cache.get(k, fetch_image=False)
        report["exact_hit"] = percentiles(timed(lambda k: cache.get(k, fetch_image=False), keys))

        def exact_decision(phrase: str) -> str | None:
            sims = vectors @ embedder.table[phrase]
            best = int(np.argmax(sims))
            return entry_keys[best] if 1.0 - sims[best] <= threshold else None

        truth = {q: exact_decision(q) for q in query_keys}
        report["exact_scan_would_serve"] = sum(v is not None for v in truth.values())

        def run(c: SemanticCache, label: str) -> None:
            by_kind: dict[str, list[float]] = {}
            served: dict[str, str | None] = {}
            for q in query_keys:
                started = time.perf_counter()
                result = c.get(q, fetch_image=False)
                by_kind.setdefault(result.kind, []).append((time.perf_counter() - started) * 1000)
                served[q] = result.served_key if result.kind == "semantic" else None
                if result.kind == "generated":  # keep the cache as it was, outside the timings
                    c.delete(q)
            report[label] = {kind: percentiles(ms) for kind, ms in sorted(by_kind.items())}
            report[label]["agreement_with_exact_scan"] = round(
                sum(served[q] == truth[q] for q in query_keys) / len(query_keys), 4)
            report[label]["exact_scan_hits_found"] = round(
                sum(served[q] == truth[q] for q in query_keys if truth[q]) / max(1, report["exact_scan_would_serve"]), 4)

        # First time each query is seen: exact-path miss, embedding (from the table, so ~free)
        # and its storage, HNSW search, event; misses also "generate" a fixed image.
        run(cache, f"first_lookup_ef_search_{cache.ef_search}")
        for ef in args.ef_search:
            run(SemanticCache(engine, embedder, cache.generator, cache.blobs, ef_search=ef),
                f"repeat_lookup_ef_search_{ef}")

        from semcache.embedders import LocalEmbedder

        local = LocalEmbedder()
        local.embed(["warm up"])
        real = SemanticCache(engine, local, FixedImage(), cache.blobs)
        for topic in TOPICS:
            real.get(topic, fetch_image=False)
        by_kind: dict[str, list[float]] = {}
        for phrase in NEW_PHRASES:
            started = time.perf_counter()
            result = real.get(phrase, fetch_image=False)
            by_kind.setdefault(result.kind, []).append((time.perf_counter() - started) * 1000)
        report["full_get_local_model_new_phrase"] = {
            "all": percentiles([ms for v in by_kind.values() for ms in v]),
            **{kind: percentiles(ms) for kind, ms in sorted(by_kind.items())}}
        engine.dispose()

    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
