"""Benchmarks of the cache, run as `python -m semcache.bench` (see `semcache.bench.cli`).

- `scale`: lookup latency by outcome at several cache sizes, HNSW agreement with an exact scan,
  index build time and sizes;
- `throughput`: `get` with concurrent threads and processes, and the generations it caused;
- `cost`: what a replayed topic stream costs with no cache, exact-match only, and semantic;
- `mail`: the app's mail import rate and search latency (through `benchmarks.mail_bench`).

Each part runs on its own embedded PostgreSQL, started with the app's `db` package; the library
itself never needs these modules.
"""
