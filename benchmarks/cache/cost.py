"""What a replayed stream of topics costs in generated images: with no cache, with exact-match
caching only, and with semantic caching.

The stream draws ``stream`` lookups with Zipf weights (exponent ``zipf``) from the distinct topics
of `demo_topics.TOPICS`, the most frequent there first, and writes each in one of
several forms: as typed, in other case or spacing (the same key), or reworded ("my dog",
"dog photos", "dog?": a new key, close in meaning). The cached policies run the real
`SemanticCache.get` with the real local model (`LocalEmbedder`), from an empty cache each, with a
generator that charges ``price`` per image: exact-only at threshold 0, semantic at the cache's
default threshold. Without a cache every lookup generates, so that figure is computed.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from sqlalchemy import Engine

from benchmarks.common import FixedImage, empty_cache, expected_generations, log, machine, percentiles
from demo_topics import TOPICS
from semcache.blobstores import LocalBlobStore
from semcache.cache import SemanticCache
from semcache.interfaces import Embedder
from semcache.normalize import normalize

FORMS: tuple[tuple[str, float, Callable[[str], str]], ...] = (
    ("as typed", 0.5, lambda t: t),
    ("upper case", 0.1, str.upper),
    ("title case, extra spaces", 0.1, lambda t: f"  {t.title()}  "),
    ("'my ...'", 0.1, lambda t: f"my {t}"),
    ("'... photos'", 0.1, lambda t: f"{t} photos"),
    ("question mark", 0.1, lambda t: f"{t}?"),
)


def by_popularity(topics: Sequence[str] = TOPICS) -> list[str]:
    """The distinct topics (by key), most often listed first, then in order of first appearance."""
    counts = Counter(normalize(t) for t in topics)
    first: dict[str, str] = {}
    for t in topics:
        first.setdefault(normalize(t), t)
    return sorted(first.values(), key=lambda t: -counts[normalize(t)])


def topic_stream(length: int, zipf: float, rng: np.random.Generator) -> list[str]:
    topics = by_popularity()
    weights = 1.0 / np.arange(1, len(topics) + 1) ** zipf
    picks = rng.choice(len(topics), size=length, p=weights / weights.sum())
    form_weights = np.array([w for _, w, _ in FORMS])
    forms = rng.choice(len(FORMS), size=length, p=form_weights / form_weights.sum())
    return [FORMS[f][2](topics[i]) for i, f in zip(picks, forms)]


def _replay(cache: SemanticCache, lookups: Sequence[str]) -> dict:
    kinds: Counter = Counter()
    spent = saved = 0.0
    ms: list[float] = []
    examples: dict[str, tuple[str, float]] = {}
    for topic in lookups:
        t = time.perf_counter()
        result = cache.get(topic, fetch_image=False)
        ms.append((time.perf_counter() - t) * 1000)
        kinds[result.kind] += 1
        spent += result.cost_spent_usd
        saved += result.cost_saved_usd
        if result.kind == "semantic" and len(examples) < 20:
            examples.setdefault(result.key, (result.served_key, round(result.distance, 3)))
    calls = Counter(cache.generator.generated)
    return {"kinds": dict(sorted(kinds.items())), "generations": kinds["generated"],
            "spent_usd": round(spent, 2), "saved_usd": round(saved, 2), "latency": percentiles(ms),
            "keys_generated_twice": sorted(k for k, n in calls.items() if n > 1),
            "semantic_examples": [f"{q} -> {served} ({d})" for q, (served, d) in examples.items()]}


def run(engine: Engine, embedder: Embedder, blobs_dir: Path, *, stream: int = 1000, zipf: float = 1.1,
        price: float = 0.04, threshold: float | None = None, seed: int = 2026) -> dict:
    """Replay the stream through an empty cache at ``engine`` per policy; returns the report."""
    lookups = topic_stream(stream, zipf, np.random.default_rng(seed))
    keys = [normalize(t) for t in lookups]
    distinct = list(dict.fromkeys(keys))
    vectors = dict(zip(distinct, embedder.embed(distinct)))
    blobs = LocalBlobStore(blobs_dir)
    semantic_threshold = SemanticCache(engine, embedder, FixedImage(price), blobs).default_threshold \
        if threshold is None else threshold
    report: dict = {"machine": machine(), "embedding_model": embedder.model, "lookups": stream,
                    "distinct_keys": len(distinct), "distinct_topics": len(by_popularity()), "zipf_exponent": zipf,
                    "forms": {name: weight for name, weight, _ in FORMS}, "price_usd": price,
                    "policies": {"no_cache": {"generations": stream, "spent_usd": round(stream * price, 2),
                                              "how": "computed: every lookup generates"}}}
    for name, value, expected in (
            ("exact_only", 0.0, len(distinct)),
            ("semantic", semantic_threshold, expected_generations(keys, vectors, semantic_threshold))):
        log(f"cost: {name} (threshold {value})")
        empty_cache(engine)
        cache = SemanticCache(engine, embedder, FixedImage(price), blobs, default_threshold=value)
        report["policies"][name] = {"threshold": value, **_replay(cache, lookups),
                                    "expected_generations_exact_scan": expected}
    for policy in report["policies"].values():
        policy["fraction_of_no_cache"] = round(policy["spent_usd"] / report["policies"]["no_cache"]["spent_usd"], 4)
    return report
