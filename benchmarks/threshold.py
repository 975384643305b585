"""Measure the cache's decision on human-judged word pairs and recommend a default threshold.

    python -m benchmarks.threshold --pairs ../shared/data/pairs [--json out.json]

For each pair the first phrase is cached and the second looked up, the way `SemanticCache.get`
decides: the same normalised key is an exact hit; otherwise it is served when the cosine
distance between the two phrases' embeddings is at most the threshold.

Labels come from the human scores: on 0-10 similarity scales (SimLex, WordSim-353 similarity)
a pair scored >= 7 may share an image and one scored <= 3 may not; the middle is left out. MEN
rates relatedness, not sameness (cup/coffee scores high), so only its clearly unrelated pairs
(<= 15 of 50) are used, as negatives.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semcache.normalize import normalize


@dataclass(frozen=True)
class LabelledPairs:
    name: str
    a: list[str]
    b: list[str]
    labels: np.ndarray  # 1: may share an image, 0: may not


def read_scored_pairs(path: Path) -> LabelledPairs:
    scale = 50.0 if "MEN" in path.name else 10.0
    a, b, labels = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        left, right, score = line.split("\t")[:3]
        score = float(score) * 10.0 / scale
        if scale == 50.0:
            label = 0 if score <= 3 else None
        else:
            label = 1 if score >= 7 else 0 if score <= 3 else None
        if label is not None:
            a.append(left)
            b.append(right)
            labels.append(label)
    return LabelledPairs(path.stem, a, b, np.array(labels, dtype=np.int8))


def distances(embedder, pairs: LabelledPairs) -> np.ndarray:
    """The distance the cache would see for each pair; 0 where the normalised keys are equal."""
    keys_a = [normalize(t) for t in pairs.a]
    keys_b = [normalize(t) for t in pairs.b]
    vocabulary = sorted(set(keys_a) | set(keys_b))
    vectors = dict(zip(vocabulary, embedder.embed(vocabulary)))
    out = np.array([1.0 - float(vectors[x] @ vectors[y]) for x, y in zip(keys_a, keys_b)])
    out[[x == y for x, y in zip(keys_a, keys_b)]] = 0.0
    return out


def rates(dist: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    served = dist <= threshold
    pos, neg = labels == 1, labels == 0
    hits = int((served & pos).sum())
    false_hits = int((served & neg).sum())
    return {
        "threshold": round(threshold, 4),
        "hit_rate": hits / pos.sum() if pos.any() else None,
        "false_hit_rate": false_hits / neg.sum() if neg.any() else None,
        "precision": hits / (hits + false_hits) if hits + false_hits else None,
    }


def best_threshold(dist: np.ndarray, labels: np.ndarray, max_false_hit_rate: float) -> float:
    """The largest threshold whose false-hit rate stays within the limit."""
    negatives = np.sort(dist[labels == 0])
    allowed = int(np.floor(max_false_hit_rate * len(negatives)))
    if allowed >= len(negatives):
        return 2.0
    return float(np.nextafter(negatives[allowed], 0))  # just below the first negative over the limit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=Path, required=True, help="a pairs file or a folder of them")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)

    from semcache.embedders import LocalEmbedder

    embedder = LocalEmbedder()
    files = sorted(args.pairs.glob("*.txt")) if args.pairs.is_dir() else [args.pairs]
    sets = [read_scored_pairs(f) for f in files]
    dists = {s.name: distances(embedder, s) for s in sets}
    labelled = [s for s in sets if (s.labels == 1).any()]
    all_dist = np.concatenate([dists[s.name] for s in labelled])
    all_labels = np.concatenate([s.labels for s in labelled])

    report = {"model": f"{embedder.model} ({embedder.dimensions} dims)", "sets": {}, "recommended": {}}
    for s in sets:
        report["sets"][s.name] = {"positives": int((s.labels == 1).sum()), "negatives": int((s.labels == 0).sum())}
    for limit in (0.01, 0.05, 0.10):
        t = best_threshold(all_dist, all_labels, limit)
        report["recommended"][f"max_false_hit_rate_{limit}"] = {
            "threshold": round(t, 4),
            "combined": rates(all_dist, all_labels, t),
            **{s.name: rates(dists[s.name], s.labels, t) for s in sets},
        }
    report["curve"] = [rates(all_dist, all_labels, t) for t in np.arange(0.0, 1.001, 0.05)]
    json.dump(report, sys.stdout if args.json is None else args.json.open("w"), indent=2, default=float)
    print(file=sys.stderr)
    for t in [r["threshold"] for r in report["curve"]][2:14]:
        row = [f"t={t:.2f}"]
        for s in sets:
            r = rates(dists[s.name], s.labels, t)
            if r["hit_rate"] is not None:
                row.append(f"{s.name}: hit {r['hit_rate']:.2f} false {r['false_hit_rate']:.3f}")
            else:
                row.append(f"{s.name}: false {r['false_hit_rate']:.3f}")
        print("  ".join(row), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
