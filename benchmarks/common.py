"""What every benchmark script shares: percentiles and writing the report."""

from __future__ import annotations

import json
import statistics
from pathlib import Path


def percentiles(samples_ms: list[float]) -> dict:
    """p50 and p99 of a list of milliseconds, with the sample count."""
    ordered = sorted(samples_ms)
    return {"p50_ms": round(statistics.median(ordered), 3),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
            "n": len(ordered)}


def write_report(report: dict, path: Path | None) -> None:
    """Print the report as JSON, and save it to ``path`` when given."""
    out = json.dumps(report, indent=2)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(out)
    print(out)
