"""Benchmarks of the cache, run as `python -m benchmarks.cache` (see `benchmarks.cache.cli`).

- `scale`: lookup latency by outcome at several cache sizes, HNSW agreement with an exact scan,
  index build time and sizes;
- `throughput`: `get` with concurrent threads and processes, and the generations it caused;
- `cost`: what a replayed topic stream costs with no cache, exact-only, and semantic;
- `mail`: the app's mail import rate and search latency (through `benchmarks.mail_bench`).

Each part runs on its own embedded PostgreSQL (`benchmarks.common.fresh_database`).
"""
