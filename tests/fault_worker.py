"""Processes for the fault tests (tests/test_faults.py), each run as ``python fault_worker.py MODE``.

``hold DATABASE_URL BLOB_DIR EMOJI_DIR SIGNAL_DIR``
    Two lookups that stop halfway and wait to be killed, each holding its topic's claim:
    "volcano" inside the generator, "lighthouse" after its picture is written to the blob store
    and before its row is committed. Each touches a file in SIGNAL_DIR when it gets there.

``app``
    One app process: the cache exactly as the app wires it (``services.build_cache(Settings())``,
    settings from the environment), its generator slowed by FAULT_GENERATE_DELAY seconds so that
    lookups from other processes overlap. It prints "ready", then answers one JSON line per
    command line on stdin::

        {"get": "windmill", "threads": 4}   -> {"kinds": [...], "thresholds": [...], "generated": 1}
        {"set_threshold": 0.0}              -> {"threshold": 0.0}
        {"threshold": null}                 -> {"threshold": 0.0}

Neither mode calls the embedding model when the test has stored the topics' embeddings first
(the model is loaded on first use), which keeps their start-up to the imports.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from semcache.blobstores import LocalBlobStore  # noqa: E402
from semcache.interfaces import GeneratedImage  # noqa: E402

FOREVER = 600.0


class BlockingGenerator:
    """Stops inside generate(), as a slow image service would."""

    name = "blocking"
    price_usd = 0.04

    def __init__(self, signal: Path) -> None:
        self.signal = signal

    def generate(self, topic: str, embedding=None) -> GeneratedImage:
        self.signal.touch()
        time.sleep(FOREVER)
        raise AssertionError("killed before this")


class BlockingAfterPut(LocalBlobStore):
    """Writes the picture, then stops before the caller can commit its row."""

    def __init__(self, root: Path, signal: Path) -> None:
        super().__init__(root)
        self.signal = signal

    def put(self, data: bytes, content_type: str = "image/png") -> str:
        key = super().put(data, content_type)
        self.signal.write_text(key)
        time.sleep(FOREVER)
        return key


class Slow:
    """A generator that takes ``delay`` seconds longer, and counts its calls."""

    def __init__(self, inner, delay: float) -> None:
        self.inner = inner
        self.delay = delay
        self.calls = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def generate(self, topic: str, embedding=None) -> GeneratedImage:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        return self.inner.generate(topic, embedding)


def hold(url: str, blob_dir: str, emoji_dir: str, signal_dir: str) -> None:
    from db.engine import create_db_engine
    from semcache import SemanticCache
    from semcache.embedders import LocalEmbedder
    from semcache.pixelart import EmojiPixelArtGenerator

    signals = Path(signal_dir)
    engine = create_db_engine(url)
    embedder = LocalEmbedder()
    generating = SemanticCache(engine, embedder, BlockingGenerator(signals / "generating"), LocalBlobStore(blob_dir))
    storing = SemanticCache(engine, embedder, EmojiPixelArtGenerator(embedder, cache_dir=emoji_dir),
                            BlockingAfterPut(Path(blob_dir), signals / "stored"))
    threads = [threading.Thread(target=generating.get, args=("volcano",), daemon=True),
               threading.Thread(target=storing.get, args=("lighthouse",), daemon=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def app() -> None:
    import services
    from settings import Settings

    cache = services.build_cache(Settings())
    generator = cache.generator = Slow(cache.generator, float(os.environ.get("FAULT_GENERATE_DELAY", "0")))
    print("ready", flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if "get" in command:
            before = generator.calls
            with ThreadPoolExecutor(command.get("threads", 1)) as pool:
                results = list(pool.map(lambda _: cache.get(command["get"]), range(command.get("threads", 1))))
            answer = {"kinds": [r.kind for r in results], "thresholds": [r.threshold for r in results],
                      "served": [r.served_key for r in results], "generated": generator.calls - before}
        elif "set_threshold" in command:
            answer = {"threshold": cache.set_threshold(command["set_threshold"], actor="fault test")}
        else:
            answer = {"threshold": cache.threshold}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    mode, *arguments = sys.argv[1:]
    {"hold": hold, "app": app}[mode](*arguments)
