"""The figures the settings page and the savings dashboard show, computed in SQL over
`semcache_events` (one row per lookup; the statements are in `semcache.store`). Each function
takes an Engine and returns typed rows.

A *hit* is an exact or semantic lookup; the hit rate is hits over lookups that were answered
(errors are counted apart, as `CacheAdmin.stats` does).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable, Literal, Sequence

from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from semcache import store
from semcache.errors import BlobStoreError, SemcacheError
from semcache.store import STEPS

KINDS = ("exact", "semantic", "generated", "error")
Unit = Literal["lookup", "minute", "hour", "day"]

SERVICE_ERRORS = (SemcacheError, OperationalError, InterfaceError)
"""What a caller catches around a call to the cache: a service (database, blob store, model) is
not answering. The cache raises `StorageError` for its database; the driver's own errors are
for an application's engine, which it may build in the same call."""


# ---------------------------------------------------------------------- totals


@dataclass(frozen=True)
class Totals:
    lookups: int
    exact_hits: int
    semantic_hits: int
    generations: int
    errors: int
    spent_usd: float
    saved_usd: float
    entries: int

    @property
    def hits(self) -> int:
        return self.exact_hits + self.semantic_hits

    @property
    def answered(self) -> int:
        return self.hits + self.generations

    @property
    def hit_rate(self) -> float:
        return self.hits / self.answered if self.answered else 0.0

    @property
    def without_cache_usd(self) -> float:
        """What the same lookups would have cost with every image generated."""
        return self.spent_usd + self.saved_usd


def totals(engine: Engine) -> Totals:
    with store.connect(engine) as conn:
        row = store.totals(conn)
    return Totals(lookups=row.lookups, exact_hits=row.exact_hits, semantic_hits=row.semantic_hits,
                  generations=row.generations, errors=row.errors, spent_usd=float(row.spent),
                  saved_usd=float(row.saved), entries=row.entries)


# ---------------------------------------------------------------------- latency


@dataclass(frozen=True)
class StepLatency:
    p50_ms: float | None
    p95_ms: float | None


@dataclass(frozen=True)
class PathLatency:
    """Latency percentiles of one path (``kind``); a step that never ran on it has None."""

    kind: str
    lookups: int
    total: StepLatency
    embed: StepLatency
    search: StepLatency
    generate: StepLatency
    blob: StepLatency


def latency_by_path(engine: Engine) -> list[PathLatency]:
    """p50 and p95 of the whole lookup and of each step, per path (exact, semantic, generated, error)."""
    with store.connect(engine) as conn:
        rows = store.latency(conn)
    out = []
    for row in rows:
        m = row._mapping
        steps = {step: StepLatency(_float(m[f"{step}_p50"]), _float(m[f"{step}_p95"])) for step in STEPS}
        out.append(PathLatency(kind=row.kind, lookups=row.lookups, **steps))
    return out


# ---------------------------------------------------------------------- time series


@dataclass(frozen=True)
class Point:
    """One bucket of lookups. ``at`` is the bucket's start (or, by lookup number, its last
    lookup's time); ``lookup_number`` counts lookups up to the end of the bucket."""

    at: datetime
    lookup_number: int
    lookups: int
    hits: int
    answered: int
    hit_rate: float
    cumulative_hit_rate: float
    saved_usd: float
    """Cumulative, to the end of the bucket; so are ``spent_usd``."""
    spent_usd: float


@dataclass(frozen=True)
class Timeline:
    unit: Unit
    points: list[Point]


def choose_unit(seconds: float) -> Unit:
    """Buckets by minute, hour or day when the span fills at least a dozen of them; lookups
    that all happened within a few minutes (a demo replay) are bucketed by lookup number."""
    if seconds >= 12 * 86400:
        return "day"
    if seconds >= 12 * 3600:
        return "hour"
    if seconds >= 12 * 60:
        return "minute"
    return "lookup"


def timeline(engine: Engine, *, unit: Unit | None = None, max_points: int = 120) -> Timeline:
    """Hit rate per bucket and cumulative hit rate, savings and spending, oldest bucket first.
    Without ``unit``, the span of the events chooses it (`choose_unit`); by lookup number,
    lookups are grouped so that at most ``max_points`` points come back."""
    with store.connect(engine) as conn:
        span = store.span(conn)
        if not span.n:
            return Timeline(unit=unit or "lookup", points=[])
        if unit is None:
            unit = choose_unit((span.last - span.first).total_seconds())
        size = max(1, -(-span.n // max_points))
        rows = store.timeline(conn, unit, size)
    return Timeline(unit=unit, points=[
        Point(at=row.at, lookup_number=int(row.lookup_number), lookups=row.lookups, hits=row.hits,
              answered=row.answered, hit_rate=row.hits / row.answered if row.answered else 0.0,
              cumulative_hit_rate=int(row.cum_hits) / int(row.cum_answered) if row.cum_answered else 0.0,
              saved_usd=float(row.cum_saved), spent_usd=float(row.cum_spent))
        for row in rows])


# ---------------------------------------------------------------------- distances


@dataclass(frozen=True)
class DistanceBin:
    low: float
    high: float
    hits: int

    @property
    def label(self) -> str:
        return f"{self.low:.2f}–{self.high:.2f}"


def distance_histogram(engine: Engine, *, width: float = 0.025, up_to: float | None = None) -> list[DistanceBin]:
    """How far semantic hits were from the phrase that answered them, as the threshold saw it
    (the distance after WordNet's second look scaled it), in bins of ``width`` from 0 up to the
    farthest hit (or ``up_to``, whichever is larger). Empty when there are none."""
    if width <= 0:
        raise ValueError("The bin width must be positive.")
    min_bins = int(-(-(up_to or 0) // width))
    with store.connect(engine) as conn:
        rows = store.histogram(conn, width, min_bins)
    if not any(row.hits for row in rows):
        return []
    return [DistanceBin(low=round(row.bin * width, 6), high=round((row.bin + 1) * width, 6), hits=row.hits)
            for row in rows]


# ---------------------------------------------------------------------- lookups


@dataclass(frozen=True)
class Lookup:
    id: int
    at: datetime
    query: str
    key: str
    kind: str
    served_key: str | None
    distance: float | None
    threshold: float | None
    total_ms: float | None
    spent_usd: float
    saved_usd: float
    error: str | None
    banned: bool
    """Whether a product owner has since marked ``served_key`` wrong for this query."""


def recent_lookups(engine: Engine, *, limit: int = 50, kinds: Sequence[str] | None = None) -> list[Lookup]:
    """The latest lookups, newest first; ``kinds`` keeps only those paths (e.g. ``["semantic"]``)."""
    with store.connect(engine) as conn:
        rows = store.lookups(conn, limit, kinds)
    return [Lookup(id=row.id, at=row.at, query=row.query, key=row.key, kind=row.kind, served_key=row.served_key,
                   distance=row.distance, threshold=row.threshold, total_ms=row.total_ms,
                   spent_usd=float(row.cost_spent_usd), saved_usd=float(row.cost_saved_usd), error=row.error,
                   banned=row.banned)
            for row in rows]


# ---------------------------------------------------------------------- the threshold


@dataclass(frozen=True)
class ThresholdSetting:
    value: float
    stored: bool
    """False while no one has set it for the space: the configured default applies."""
    updated_at: datetime | None
    updated_by: str | None
    model: str = ""
    dimensions: int = 0
    """The embedding space the threshold belongs to (distances of other models are not comparable)."""


def threshold_setting(engine: Engine, default: float, *, model: str = "", dimensions: int = 0) -> ThresholdSetting:
    """The threshold stored for the space of ``model`` at ``dimensions``, with when and by whom it
    was last set; ``default`` when never set there."""
    with store.connect(engine) as conn:
        row = store.stored_threshold(conn, model, dimensions)
    if row is None or row.value is None:
        return ThresholdSetting(value=default, stored=False, updated_at=None, updated_by=None, model=model,
                                dimensions=dimensions)
    return ThresholdSetting(value=store.threshold_value(row.value, default), stored=True,
                            updated_at=row.updated_at, updated_by=row.updated_by, model=model, dimensions=dimensions)


# ---------------------------------------------------------------------- pictures


def data_url(png: bytes) -> str:
    """A PNG as a `data:` URL, for an image column of a table."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@dataclass(frozen=True)
class Thumbnails:
    urls: dict[str, str]
    """Blob key → data URL, for the blobs that could be read."""
    failures: dict[str, str]
    """Blob key → why it could not be read."""


def thumbnails(read: Callable[[str], bytes], blob_keys: Iterable[str]) -> Thumbnails:
    """Read each distinct blob with ``read`` (e.g. `CacheAdmin.image`); one unreadable image
    does not stop the others."""
    urls, failures = {}, {}
    for key in dict.fromkeys(blob_keys):
        try:
            urls[key] = data_url(read(key))
        except BlobStoreError as exc:
            failures[key] = str(exc)
    return Thumbnails(urls=urls, failures=failures)


def _float(value: object) -> float | None:
    return None if value is None else float(value)

