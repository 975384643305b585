"""The figures the settings page and the savings dashboard show, computed in SQL over
`semcache_events` (one row per lookup). Each function takes an Engine and returns typed rows.

A *hit* is an exact or semantic lookup; the hit rate is hits over lookups that were answered
(errors are counted apart, as `SemanticCache.stats` does).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable, Literal, Sequence

from sqlalchemy import Engine, text
from sqlalchemy.exc import InterfaceError, OperationalError

from semcache.errors import BlobStoreError, SemcacheError

KINDS = ("exact", "semantic", "generated", "error")
STEPS = ("total", "embed", "search", "generate", "blob")
Unit = Literal["lookup", "minute", "hour", "day"]

SERVICE_ERRORS = (SemcacheError, OperationalError, InterfaceError)
"""What a caller catches around a call to the cache: a service (database, blob store, model) is
not answering."""


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


_TOTALS_SQL = text("""
    SELECT (SELECT count(*) FROM semcache_entries) AS entries,
           count(*) AS lookups,
           count(*) FILTER (WHERE kind = 'exact') AS exact_hits,
           count(*) FILTER (WHERE kind = 'semantic') AS semantic_hits,
           count(*) FILTER (WHERE kind = 'generated') AS generations,
           count(*) FILTER (WHERE kind = 'error') AS errors,
           COALESCE(sum(cost_spent_usd), 0) AS spent, COALESCE(sum(cost_saved_usd), 0) AS saved
    FROM semcache_events""")


def totals(engine: Engine) -> Totals:
    with engine.connect() as conn:
        row = conn.execute(_TOTALS_SQL).one()
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


def _percentiles(column: str) -> str:
    return (f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {column}_ms) AS {column}_p50, "
            f"percentile_cont(0.95) WITHIN GROUP (ORDER BY {column}_ms) AS {column}_p95")


_LATENCY_SQL = text(f"""
    SELECT kind, count(*) AS lookups, {', '.join(_percentiles(step) for step in STEPS)}
    FROM semcache_events
    GROUP BY kind
    ORDER BY array_position(ARRAY['exact', 'semantic', 'generated', 'error']::text[], kind::text)""")


def latency_by_path(engine: Engine) -> list[PathLatency]:
    """p50 and p95 of the whole lookup and of each step, per path (exact, semantic, generated, error)."""
    with engine.connect() as conn:
        rows = conn.execute(_LATENCY_SQL).all()
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


_SPAN_SQL = text("SELECT min(at) AS first, max(at) AS last, count(*) AS n FROM semcache_events")

_BUCKETS = """
    SELECT bucket, min(at) AS first_at, max(at) AS last_at, count(*) AS lookups,
           count(*) FILTER (WHERE kind IN ('exact', 'semantic')) AS hits,
           count(*) FILTER (WHERE kind <> 'error') AS answered,
           sum(cost_saved_usd) AS saved, sum(cost_spent_usd) AS spent
    FROM numbered GROUP BY bucket"""
_TIMELINE_SQL = {
    unit: text(f"""
        WITH numbered AS (
            SELECT {bucket} AS bucket, at, kind, cost_saved_usd, cost_spent_usd
            FROM semcache_events
        ), buckets AS ({_BUCKETS})
        SELECT {'first_at' if unit != 'lookup' else 'last_at'} AS at, lookups, hits, answered,
               sum(lookups) OVER w AS lookup_number,
               sum(hits) OVER w AS cum_hits, sum(answered) OVER w AS cum_answered,
               sum(saved) OVER w AS cum_saved, sum(spent) OVER w AS cum_spent
        FROM buckets
        WINDOW w AS (ORDER BY bucket)
        ORDER BY bucket""")
    for unit, bucket in {
        "lookup": "(row_number() OVER (ORDER BY id) - 1) / :size",
        "minute": "date_trunc('minute', at)",
        "hour": "date_trunc('hour', at)",
        "day": "date_trunc('day', at)",
    }.items()
}


def timeline(engine: Engine, *, unit: Unit | None = None, max_points: int = 120) -> Timeline:
    """Hit rate per bucket and cumulative hit rate, savings and spending, oldest bucket first.
    Without ``unit``, the span of the events chooses it (`choose_unit`); by lookup number,
    lookups are grouped so that at most ``max_points`` points come back."""
    with engine.connect() as conn:
        span = conn.execute(_SPAN_SQL).one()
        if not span.n:
            return Timeline(unit=unit or "lookup", points=[])
        if unit is None:
            unit = choose_unit((span.last - span.first).total_seconds())
        size = max(1, -(-span.n // max_points))
        rows = conn.execute(_TIMELINE_SQL[unit], {"size": size}).all()
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


_HISTOGRAM_SQL = text("""
    WITH hits AS (
        SELECT floor(COALESCE(score, distance) / :width)::int AS bin FROM semcache_events
        WHERE kind = 'semantic' AND COALESCE(score, distance) IS NOT NULL
    ), bins AS (
        SELECT generate_series(0, GREATEST(max(bin), CAST(:min_bins AS int) - 1)) AS bin FROM hits
    )
    SELECT bins.bin, count(hits.bin) AS hits
    FROM bins LEFT JOIN hits ON hits.bin = bins.bin
    GROUP BY bins.bin ORDER BY bins.bin""")


def distance_histogram(engine: Engine, *, width: float = 0.025, up_to: float | None = None) -> list[DistanceBin]:
    """How far semantic hits were from the phrase that answered them, as the threshold saw it
    (the distance after WordNet's second look scaled it), in bins of ``width`` from 0 up to the
    farthest hit (or ``up_to``, whichever is larger). Empty when there are none."""
    if width <= 0:
        raise ValueError("The bin width must be positive.")
    min_bins = int(-(-(up_to or 0) // width))
    with engine.connect() as conn:
        rows = conn.execute(_HISTOGRAM_SQL, {"width": width, "min_bins": min_bins}).all()
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


_LOOKUPS_SQL = text("""
    SELECT v.id, v.at, v.query, v.key, v.kind, v.served_key, v.distance, v.threshold, v.total_ms,
           v.cost_spent_usd, v.cost_saved_usd, v.error,
           EXISTS (SELECT 1 FROM semcache_feedback f WHERE f.query_key = v.key AND f.entry_key = v.served_key
                   AND f.verdict = 'wrong') AS banned
    FROM semcache_events v
    WHERE CAST(:kinds AS text[]) IS NULL OR v.kind = ANY(CAST(:kinds AS text[]))
    ORDER BY v.id DESC LIMIT :limit""")


def recent_lookups(engine: Engine, *, limit: int = 50, kinds: Sequence[str] | None = None) -> list[Lookup]:
    """The latest lookups, newest first; ``kinds`` keeps only those paths (e.g. ``["semantic"]``)."""
    with engine.connect() as conn:
        rows = conn.execute(_LOOKUPS_SQL, {"limit": limit, "kinds": list(kinds) if kinds else None}).all()
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
    """False while no one has set it: the configured default applies."""
    updated_at: datetime | None
    updated_by: str | None


def threshold_setting(engine: Engine, default: float) -> ThresholdSetting:
    """The stored threshold with when and by whom it was last set; ``default`` when never set."""
    with engine.connect() as conn:
        row = conn.execute(text("SELECT value, updated_at, updated_by FROM semcache_settings "
                                "WHERE name = 'threshold'")).one_or_none()
    if row is None:
        return ThresholdSetting(value=default, stored=False, updated_at=None, updated_by=None)
    return ThresholdSetting(value=float(row.value), stored=True, updated_at=row.updated_at,
                            updated_by=row.updated_by)


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
    """Read each distinct blob with ``read`` (e.g. `SemanticCache.image`); one unreadable image
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

