"""Choose "close enough" from evidence: how often the cache would serve labelled phrase pairs.

A pairs file has tab-separated lines ``text_a<TAB>text_b<TAB>label``: label 1 means the same
image may be served for both, 0 that it may not; lines starting with ``#`` are comments. Files of
human similarity scores (SimLex, WordSim: 0-10; MEN: 0-50) are read too: a score of at least
``positive_min`` (7 of 10) is a positive, at most ``negative_max`` (3 of 10) a negative, and
the pairs between are left out (``negatives_only`` for relatedness scores, where a high score
does not mean the same picture).

For each pair, text_a is the cached phrase and text_b the lookup, decided the way
`SemanticCache.get` decides: the same key or dictionary form is an exact hit, and otherwise the
`Matcher` scores the cosine distance of the two embeddings (WordNet's second look included when
it is switched on) and serves when that score is within the threshold. The report gives the hit
rate (share of positives served), the false-hit rate (share of negatives served) and the
precision at every threshold, at the default, and the largest threshold that keeps the
false-hit rate within a limit.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from sqlalchemy import Engine

from semcache import store
from semcache.errors import InvalidTopic
from semcache.interfaces import Embedder
from semcache.matching import Matcher
from semcache.normalize import topic_key

GRID = np.round(np.arange(0.0, 1.0001, 0.01), 4)


@dataclass(frozen=True)
class Pair:
    cached: str
    lookup: str
    label: int


@dataclass(frozen=True)
class Scored:
    """Every usable pair with its verdict: ``score`` is what the threshold is compared with
    (0 on the exact path, inf when the matcher never serves it); ``exact`` pairs are served at
    any threshold."""

    pairs: list[Pair]
    scores: np.ndarray
    exact: np.ndarray
    labels: np.ndarray
    relations: list[str]
    skipped: int

    def served(self, threshold: float) -> np.ndarray:
        return self.exact | ((threshold > 0) & (self.scores <= threshold))

    def rates(self, threshold: float) -> dict:
        served = self.served(threshold)
        pos, neg = self.labels == 1, self.labels == 0
        hits, false_hits = int((served & pos).sum()), int((served & neg).sum())
        return {
            "threshold": round(float(threshold), 4),
            "hit_rate": _ratio(hits, int(pos.sum())),
            "false_hit_rate": _ratio(false_hits, int(neg.sum())),
            "precision": _ratio(hits, hits + false_hits),
        }

    def recommend(self, max_false_hit_rate: float) -> float | None:
        """The largest threshold (to 3 decimals, at most 1.0) whose false-hit rate stays within
        the limit; None without negatives to judge by."""
        negatives = np.sort(self.scores[(self.labels == 0) & ~self.exact])
        total = int((self.labels == 0).sum())
        if total == 0:
            return None
        allowed = math.floor(max_false_hit_rate * total + 1e-9) - int(((self.labels == 0) & self.exact).sum())
        if allowed < 0:
            return 0.0
        if allowed >= len(negatives) or not math.isfinite(negatives[allowed]):
            return 1.0
        limit = float(negatives[allowed])  # serving this one would break the limit
        return float(min(1.0, max(0.0, math.floor(np.nextafter(limit, 0) * 1000) / 1000)))


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


# ---------------------------------------------------------------------- how much the evidence knows

MIN_NEGATIVES = 30
"""Fewer pairs that may not share a picture than this, and a recommendation is too thin to trust
on its own: with 0 of 30 served, the false-hit rate may still be as high as 11%."""


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval (95% for the default ``z``) of a rate seen ``successes`` times
    in ``trials``; None without trials. Unlike the normal approximation it stays inside 0..1 and
    says something at 0 of n: 0 of 30 gives 0..0.114."""
    if trials <= 0:
        return None
    if not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes in {trials} trials is not a rate.")
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z / (1 + z2 / trials) * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Recommendation:
    """A threshold with the evidence behind it: how many pairs judged it, what it serves of
    them, and the 95% Wilson intervals of both rates."""

    threshold: float
    max_false_hit_rate: float
    positives: int
    negatives: int
    hits: int
    false_hits: int
    hit_rate: float | None
    false_hit_rate: float | None
    hit_interval: tuple[float, float] | None
    false_hit_interval: tuple[float, float] | None
    min_negatives: int = MIN_NEGATIVES

    @property
    def thin(self) -> bool:
        """Too few negatives to trust the false-hit rate: applying it wants a confirmation."""
        return self.negatives < self.min_negatives

    def as_dict(self) -> dict:
        return {"threshold": self.threshold, "max_false_hit_rate": self.max_false_hit_rate,
                "positives": self.positives, "negatives": self.negatives, "hits": self.hits,
                "false_hits": self.false_hits, "hit_rate": self.hit_rate, "false_hit_rate": self.false_hit_rate,
                "hit_interval": _rounded(self.hit_interval), "false_hit_interval": _rounded(self.false_hit_interval),
                "min_negatives": self.min_negatives, "thin": self.thin}


def evidence(scored: "Scored", threshold: float, max_false_hit_rate: float = 0.0, *,
             min_negatives: int = MIN_NEGATIVES) -> Recommendation:
    """What the judged pairs say of ``threshold``: counts, rates and their intervals."""
    served = scored.served(threshold)
    pos, neg = scored.labels == 1, scored.labels == 0
    positives, negatives = int(pos.sum()), int(neg.sum())
    hits, false_hits = int((served & pos).sum()), int((served & neg).sum())
    return Recommendation(threshold=round(float(threshold), 4), max_false_hit_rate=max_false_hit_rate,
                          positives=positives, negatives=negatives, hits=hits, false_hits=false_hits,
                          hit_rate=_ratio(hits, positives), false_hit_rate=_ratio(false_hits, negatives),
                          hit_interval=wilson(hits, positives), false_hit_interval=wilson(false_hits, negatives),
                          min_negatives=min_negatives)


def recommendation(scored: "Scored", max_false_hit_rate: float, *,
                   min_negatives: int = MIN_NEGATIVES) -> Recommendation | None:
    """The largest threshold keeping the false-hit rate of the judged pairs within the limit
    (`Scored.recommend`), with its evidence; None without negatives to judge by."""
    threshold = scored.recommend(max_false_hit_rate)
    if threshold is None:
        return None
    return evidence(scored, threshold, max_false_hit_rate, min_negatives=min_negatives)


def _rounded(interval: tuple[float, float] | None) -> list[float] | None:
    return None if interval is None else [round(interval[0], 4), round(interval[1], 4)]


# ---------------------------------------------------------------------- reading pairs

def read_pairs(path: Path | str, *, positive_min: float = 7.0, negative_max: float = 3.0,
               negatives_only: bool = False) -> list[Pair]:
    """The labelled pairs of a file (see the module's docstring); raises ValueError naming the
    first line it cannot read."""
    rows: list[tuple[str, str, float]] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) < 3:
            raise ValueError(f"{path}, line {number}: expected text_a<TAB>text_b<TAB>label.")
        try:
            value = float(fields[2])
        except ValueError:
            raise ValueError(f"{path}, line {number}: the label {fields[2]!r} is not a number.") from None
        rows.append((fields[0].strip(), fields[1].strip(), value))
    return label_pairs(rows, positive_min=positive_min, negative_max=negative_max, negatives_only=negatives_only)


def label_pairs(rows: Sequence[tuple[str, str, float]], *, positive_min: float = 7.0, negative_max: float = 3.0,
                negatives_only: bool = False) -> list[Pair]:
    values = {v for _, _, v in rows}
    if values <= {0.0, 1.0}:
        return [Pair(a, b, int(v)) for a, b, v in rows if not (negatives_only and v == 1)]
    scale = 10.0 / 50.0 if max(values) > 10 else 1.0  # MEN scores 0-50
    out = []
    for a, b, v in rows:
        score = v * scale
        if score >= positive_min and not negatives_only:
            out.append(Pair(a, b, 1))
        elif score <= negative_max:
            out.append(Pair(a, b, 0))
    return out


def feedback_pairs(engine: Engine) -> list[Pair]:
    """The recorded verdicts (`CacheAdmin.mark_wrong` / `mark_right`): a served entry marked
    wrong is a negative, one confirmed right a positive."""
    with store.connect(engine) as conn:
        rows = store.verdicts(conn)
    return [Pair(entry, query, 1 if verdict == "right" else 0) for entry, query, verdict in rows]


# ---------------------------------------------------------------------- the evaluation

def score_pairs(pairs: Sequence[Pair], embedder: Embedder, matcher: Matcher, *,
                max_topic_chars: int = 200) -> Scored:
    """Each pair's verdict, by the cache's own decision (see the module's docstring)."""
    usable, keys = [], []
    for pair in pairs:
        try:
            keys.append((topic_key(pair.cached, max_topic_chars), topic_key(pair.lookup, max_topic_chars)))
            usable.append(pair)
        except InvalidTopic:
            continue
    need = sorted({k for cached, lookup in keys if cached != lookup and
                   matcher.canonical(cached) != matcher.canonical(lookup) for k in (cached, lookup)})
    vectors = dict(zip(need, np.asarray(embedder.embed(need), dtype=np.float32))) if need else {}
    scores, exact, relations = [], [], []
    for cached, lookup in keys:
        distance = None
        if cached in vectors and lookup in vectors:
            distance = 1.0 - float(vectors[cached] @ vectors[lookup])
        match = matcher.match(lookup, cached, distance)
        scores.append(match.score)
        exact.append(match.relation == "exact")
        relations.append(match.relation)
    return Scored(pairs=list(usable), scores=np.array(scores, dtype=np.float64), exact=np.array(exact, dtype=bool),
                  labels=np.array([p.label for p in usable], dtype=np.int8), relations=relations,
                  skipped=len(pairs) - len(usable))


def report(scored: Scored, *, model: str, default_threshold: float, max_false_hit_rate: float = 0.01,
           matcher: Matcher | None = None, thresholds: Iterable[float] = GRID) -> dict:
    """The JSON report: counts, rates at the default, the recommendation and the curve."""
    rec = recommendation(scored, max_false_hit_rate)
    recommended = None if rec is None else rec.threshold
    now = evidence(scored, default_threshold)
    by_relation: dict[str, Counter] = {}
    for relation, label in zip(scored.relations, scored.labels):
        by_relation.setdefault(relation, Counter())["positives" if label == 1 else "negatives"] += 1
    out = {
        "model": model,
        "pairs": len(scored.pairs),
        "positives": int((scored.labels == 1).sum()),
        "negatives": int((scored.labels == 0).sum()),
        "skipped": scored.skipped,
        "default_threshold": default_threshold,
        "at_default": {**_without_threshold(scored.rates(default_threshold)),
                       "hit_interval": _rounded(now.hit_interval),
                       "false_hit_interval": _rounded(now.false_hit_interval)},
        "recommended": {
            "max_false_hit_rate": max_false_hit_rate,
            "threshold": recommended,
            **(_without_threshold(scored.rates(recommended)) if recommended is not None else {}),
            **({k: v for k, v in rec.as_dict().items() if k not in ("threshold", "max_false_hit_rate",
                                                                     "hit_rate", "false_hit_rate")}
               if rec is not None else {"thin": True, "min_negatives": MIN_NEGATIVES}),
        },
        "curve": [scored.rates(t) for t in thresholds],
        "relations": {k: dict(v) for k, v in sorted(by_relation.items())},
    }
    if matcher is not None:
        described = matcher.describe()
        out["matcher"] = {"lemmas": described["lemmas"], "lexicon": described["lexicon"]}
    return out


def _without_threshold(rates: dict) -> dict:
    return {k: v for k, v in rates.items() if k != "threshold"}


def plot(result: dict, path: Path | str, *, title: str = "") -> None:
    """The curve as a PNG: hit and false-hit rate against the threshold, the default and the
    recommended threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = result["curve"]
    xs = [p["threshold"] for p in curve]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(xs, [p["hit_rate"] or 0 for p in curve], label="hit rate (positives served)", color="#2b7bba")
    ax.plot(xs, [p["false_hit_rate"] or 0 for p in curve], label="false-hit rate (negatives served)", color="#d1495b")
    ax.axvline(result["default_threshold"], color="#555555", linestyle="--", linewidth=1,
               label=f"current {result['default_threshold']:.2f}")
    rec = result["recommended"]
    if rec.get("threshold") is not None:
        ax.axvline(rec["threshold"], color="#2a9d8f", linestyle=":", linewidth=1.5,
                   label=f"recommended {rec['threshold']:.3f} (false hits ≤ {rec['max_false_hit_rate']:.0%})")
    ax.set_xlabel("threshold (cosine distance, as the matcher scores it)")
    ax.set_ylabel("share of pairs served")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(min(xs), max(xs))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or f"{result['model']}: {result['positives']} positives, {result['negatives']} negatives",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
