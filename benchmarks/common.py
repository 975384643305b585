"""What every benchmark script shares: percentiles and writing the report (kept with the
`python -m semcache.bench` command, and re-exported here for the scripts)."""

from semcache.bench.common import percentiles, write_report

__all__ = ["percentiles", "write_report"]
