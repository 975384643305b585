"""Lookup latency at scale, how often the HNSW index agrees with an exact scan, the index's build
time and the sizes on disk.

The cache is bulk-loaded with ``entries`` phrases and their 384-dimension vectors in the local
model's space, either
- ``wordnet``: distinct WordNet lemmas ("hot dog", "tax return"), embedded with the real local
  model once (kept in the output folder); the lookups are other lemmas, not in the cache. Real
  topic-like phrases, but there are only about 147,000 of them; or
- ``random``: random unit vectors; three lookups in four are an entry's vector moved a cosine
  distance of 0.05-0.35 away, the fourth is another random vector (a miss). Random vectors have
  no neighbourhood structure, the worst case for a graph index.
Lookups take their vectors from a table (the embedding call costs nothing) and images from a
generator that returns one fixed PNG: neither model is what is measured.

Every latency is `SemanticCache.get(topic, fetch_image=False)` wall time, by outcome: exact hits;
first-time lookups (exact-path miss, the phrase's vector stored, HNSW search, the event); repeated
lookups at several `hnsw.ef_search` values; misses without the generator's own time. Agreement is
measured twice against an exact scan over every vector (numpy): the cache's decision (which entry
serves, or generate) at the threshold, and the index's top-1 neighbour. The baseline is the same
top-1 search in SQL without the index (an exact scan in PostgreSQL), on fewer lookups.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
from sqlalchemy import Engine

from benchmarks.common import (
    FixedImage, TableEmbedder, fill, log, machine, near, nearest, percentiles, relation_sizes, unit_rows,
    wordnet_phrases, wordnet_vectors,
)
from semcache import store
from semcache.admin import CacheAdmin
from semcache.blobstores import LocalBlobStore
from semcache.cache import SemanticCache

# With the real model: topics cached first, then new phrases close to them.
MODEL_TOPICS = ["dog", "cat", "house", "rocket", "invoice", "pizza", "car", "birthday", "rain", "trip to paris",
                "beach", "mountain", "guitar", "coffee", "train", "airplane", "football", "tax return", "wedding",
                "doctor appointment", "garden", "bicycle", "snow", "computer", "book club", "concert", "hospital",
                "restaurant", "salary", "insurance"]
MODEL_NEW_PHRASES = ["puppy", "kitten", "villa", "spaceship", "bill", "pasta", "automobile", "anniversary", "storm",
                     "vacation in france", "seaside", "hill", "violin", "espresso", "railway", "jet", "soccer",
                     "taxes", "marriage", "dentist", "flowers", "bike", "blizzard", "laptop", "reading group",
                     "gig", "clinic", "diner", "payroll", "policy renewal"]


def pick_vectors(requested: str, entries: int, lookups: int) -> str:
    """``wordnet`` where the lemmas are installed and enough of them, else ``random``."""
    if requested != "auto":
        return requested
    return "wordnet" if len(wordnet_phrases()) >= entries + lookups else "random"


def dataset(vectors: str, entries: int, lookups: int, seed: int, cache_dir: Path):
    """(entry keys, entry vectors, query keys, query vectors, description)."""
    rng = np.random.default_rng(seed)
    if vectors == "wordnet":
        phrases = wordnet_phrases()
        if len(phrases) < entries + lookups:
            raise SystemExit(f"WordNet has {len(phrases):,} distinct lemmas, fewer than {entries + lookups:,}; "
                             "use --vectors random for this size.")
        table = wordnet_vectors(phrases, entries + lookups, cache_dir)
        return (phrases[:entries], table[:entries], phrases[entries:entries + lookups], table[entries:],
                f"all-MiniLM-L6-v2 embeddings of distinct WordNet lemmas; the {lookups:,} lookups are other "
                "lemmas, not in the cache")
    if vectors != "random":
        raise ValueError(f"unknown vectors {vectors!r}")
    entry_vectors = unit_rows(rng, entries)
    query_keys, query_vectors = [], []
    for n in range(lookups):
        query_keys.append(f"query {n}")
        if n % 4 == 3:
            query_vectors.append(unit_rows(rng, 1)[0])
        else:
            i = int(rng.integers(0, entries))
            query_vectors.append(near(rng, entry_vectors[i], float(rng.uniform(0.05, 0.35))))
    return ([f"filler {i}" for i in range(entries)], entry_vectors, query_keys, np.stack(query_vectors),
            "random unit vectors, 384 dims; 3 in 4 lookups are an entry's vector moved a cosine distance of "
            "0.05-0.35 away, the 4th another random vector (a miss)")


def _timed(fn, items: Sequence) -> list[float]:
    out = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - t) * 1000)
    return out


def run(engine: Engine, blobs_dir: Path, *, entries: int, lookups: int = 2000, vectors: str = "auto",
        ef_search: Sequence[int] = (40, 100, 200), scan_lookups: int = 100, with_model: bool = True,
        build_settings: dict[str, str] | None = None, seed: int = 2026,
        cache_dir: Path = Path("bench-results")) -> dict:
    """Load ``entries`` into the (empty) cache tables of ``engine`` and measure; returns the report."""
    vectors = pick_vectors(vectors, entries, lookups)
    entry_keys, entry_vectors, query_keys, query_vectors, description = dataset(
        vectors, entries, lookups, seed, cache_dir)
    rng = np.random.default_rng(seed + 1)
    embedder = TableEmbedder(dict(zip(query_keys, query_vectors)))
    generator = FixedImage()
    blobs = LocalBlobStore(blobs_dir)
    cache = SemanticCache(engine, embedder, generator, blobs)
    threshold = cache.default_threshold
    report: dict = {"machine": machine(), "entries": entries, "vectors": vectors, "description": description,
                    "lookups": lookups, "threshold": threshold, "default_ef_search": cache.ef_search,
                    "build_settings": build_settings or {}}

    log(f"scale {entries:,} ({vectors}): loading")
    load_s, build_s = fill(cache, entry_keys, entry_vectors, blobs.put(generator.png), build_settings=build_settings)
    report["load_s"], report["index_build_s"] = round(load_s, 1), round(build_s, 1)
    report.update(relation_sizes(engine))
    log(f"  loaded in {load_s:.0f} s, index built in {build_s:.0f} s; {report['hnsw_index_mb']} MB")

    keys = [entry_keys[i] for i in rng.integers(0, entries, lookups)]
    for k in keys[:200]:
        cache.get(k, fetch_image=False)
    report["exact_hit"] = percentiles(_timed(lambda k: cache.get(k, fetch_image=False), keys))

    log("  exact scan (numpy)")
    best, distance = nearest(query_vectors, entry_vectors)
    top1 = {q: entry_keys[i] for q, i in zip(query_keys, best)}
    truth = {q: (top1[q] if d <= threshold else None) for q, d in zip(query_keys, distance)}
    would_serve = sum(v is not None for v in truth.values())
    report["exact_scan_would_serve"] = would_serve

    def lookups_at(c: SemanticCache) -> dict:
        by_kind: dict[str, list[float]] = {}
        served: dict[str, str | None] = {}
        admin = CacheAdmin(c)
        for q in query_keys:
            started = time.perf_counter()
            result = c.get(q, fetch_image=False)
            ms = (time.perf_counter() - started) * 1000
            if result.kind == "generated":
                ms -= result.timings.generate_ms or 0.0
                admin.delete(q)  # the cache as it was, outside the timings
            by_kind.setdefault("miss" if result.kind == "generated" else result.kind, []).append(ms)
            served[q] = result.served_key if result.kind == "semantic" else None
        out = {kind: percentiles(ms) for kind, ms in sorted(by_kind.items())}
        out["decision_agreement"] = round(sum(served[q] == truth[q] for q in query_keys) / len(query_keys), 4)
        out["exact_scan_hits_found"] = round(
            sum(served[q] == truth[q] for q in query_keys if truth[q]) / max(1, would_serve), 4)
        return out

    def top1_agreement(c: SemanticCache) -> float:
        found = 0
        for q in query_keys:
            rows = c.neighbours(q, k=1)
            found += bool(rows) and rows[0].key == top1[q]
        return round(found / len(query_keys), 4)

    log("  first lookups")
    report["first_lookup"] = {"ef_search": cache.ef_search, **lookups_at(cache)}
    report["repeat_lookup"] = {}
    for ef in ef_search:
        log(f"  repeat lookups, ef_search {ef}")
        c = SemanticCache(engine, embedder, generator, blobs, ef_search=ef)
        report["repeat_lookup"][str(ef)] = {**lookups_at(c), "top1_agreement": top1_agreement(c)}

    log(f"  the top-1 query alone in SQL, through the index and as an exact scan, {min(scan_lookups, lookups)} lookups")
    report.update(_sql_baseline(engine, cache, list(zip(query_keys, query_vectors))[:scan_lookups], top1))

    if with_model and vectors == "wordnet":
        log("  full get with the local model")
        from semcache.embedders import LocalEmbedder

        local = LocalEmbedder()
        local.embed(["warm up"])
        real = SemanticCache(engine, local, FixedImage(), blobs)
        for topic in MODEL_TOPICS:
            real.get(topic, fetch_image=False)
        by_kind: dict[str, list[float]] = {}
        for phrase in MODEL_NEW_PHRASES:
            started = time.perf_counter()
            result = real.get(phrase, fetch_image=False)
            by_kind.setdefault(result.kind, []).append((time.perf_counter() - started) * 1000)
        report["full_get_local_model_new_phrase"] = {
            "all": percentiles([ms for v in by_kind.values() for ms in v]),
            **{kind: percentiles(ms) for kind, ms in sorted(by_kind.items())}}
    return report


def _sql_baseline(engine: Engine, cache: SemanticCache, queries: list, top1: dict[str, str]) -> dict:
    """The top-1 query alone: through the space's HNSW index (its expression and predicate, at
    the cache's ef_search) and without it (an exact scan), timed alternately on one connection."""
    space = cache.space()
    with store.connect(engine) as conn:
        plan = store.explain_nearest_key(conn, space, queries[0][1], ef_search=cache.ef_search)
        conn.rollback()
        timings: dict[str, list[float]] = {"hnsw": [], "scan": []}
        found = {"hnsw": 0, "scan": 0}
        for key, vector in queries:
            for name, scan in (("hnsw", False), ("scan", True)):
                t = time.perf_counter()
                served = store.nearest_key(conn, space, vector, ef_search=cache.ef_search, scan=scan)
                timings[name].append((time.perf_counter() - t) * 1000)
                conn.rollback()
                found[name] += served == top1[key]
    hnsw, exact = percentiles(timings["hnsw"]), percentiles(timings["scan"])
    return {"hnsw_query_sql": {**hnsw, "ef_search": cache.ef_search, "uses_index": "hnsw" in plan,
                               "top1_agreement": round(found["hnsw"] / len(queries), 4)},
            "exact_scan_sql": {**exact, "top1_same_as_numpy": round(found["scan"] / len(queries), 4)},
            "index_speedup_p50": round(exact["p50_ms"] / hnsw["p50_ms"], 1)}
