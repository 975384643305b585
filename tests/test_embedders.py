"""LocalEmbedder against the real bundled model; OnnxEmbedder, the same model exported to ONNX
Runtime, against it; OpenAIEmbedder through the real openai client
against FakeOpenAI on loopback."""

from __future__ import annotations

import ipaddress
import json
import logging
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import require
from fake_openai import API_KEY, FakeOpenAI, fake_openai  # noqa: F401  (fixture)
from semcache.embedders import LocalEmbedder, OpenAIEmbedder, shipped_model_path
from semcache.onnx_embedder import OnnxEmbedder
from semcache.errors import EmbeddingError, InvalidTopic
from semcache.interfaces import Embedder

# ---------------------------------------------------------------------------------------------
# LocalEmbedder


@pytest.fixture(scope="module")
def local() -> Iterator[LocalEmbedder]:
    """The real model, loaded once, with every non-loopback connection refused while it loads."""
    attempts: list[object] = []
    real_connect = socket.socket.connect

    def guarded(sock: socket.socket, address: object) -> None:
        host = address[0] if isinstance(address, tuple) else None
        try:
            loopback = host is not None and ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback and sock.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError("network access is not allowed while loading the local model")
        real_connect(sock, address)

    embedder = LocalEmbedder()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", guarded)
        embedder.load()
    assert attempts == [], f"the local model tried to reach the network: {attempts}"
    yield embedder


def cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    return 1.0 - float(np.dot(a, b))


@pytest.mark.model
def test_local_shape_dtype_and_unit_rows(local: LocalEmbedder) -> None:
    vectors = local.embed(["dog", "a trip to Paris", "quarterly invoice"])
    assert isinstance(local, Embedder)
    assert (local.model, local.dimensions) == ("all-MiniLM-L6-v2", 384)
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.model
def test_local_similar_phrases_are_closer(local: LocalEmbedder) -> None:
    dog, puppy, invoice = local.embed(["dog", "puppy", "invoice"])
    assert cosine_distance(dog, puppy) < cosine_distance(dog, invoice)
    assert cosine_distance(dog, puppy) < 0.3


@pytest.mark.model
def test_local_empty_input_and_embed_one(local: LocalEmbedder) -> None:
    empty = local.embed([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    one = local.embed_one("dog")
    assert one.shape == (384,)
    np.testing.assert_allclose(one, local.embed(["dog", "cat"])[0], atol=1e-5)


@pytest.mark.model
def test_local_rejects_a_bare_string(local: LocalEmbedder) -> None:
    with pytest.raises(TypeError, match="embed_one"):
        local.embed("dog")


@pytest.mark.model
def test_local_concurrent_calls_agree(local: LocalEmbedder) -> None:
    phrases = ["dog", "puppy", "invoice", "beach holiday", "birthday cake", "tax return"]
    expected = local.embed(phrases)
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = local.embed(phrases)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in results.values():
        np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.model
def test_local_model_loads_once_when_threads_race() -> None:
    embedder = LocalEmbedder()
    calls: list[int] = []

    def slow_load() -> object:
        calls.append(1)
        time.sleep(0.2)
        return object()

    embedder._load = slow_load  # type: ignore[method-assign]
    threads = [threading.Thread(target=embedder.load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1


@pytest.mark.model  # imports torch and sentence-transformers to find the model missing
def test_local_missing_model_is_an_embedding_error(tmp_path) -> None:
    with pytest.raises(EmbeddingError, match="could not be loaded"):
        LocalEmbedder(model_path=tmp_path / "nothing-here").embed(["dog"])


# ---------------------------------------------------------------------------------------------
# OnnxEmbedder: the same model through ONNX Runtime, exported from the shipped weights


def onnx_runtime_present() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory) -> Path:
    require(onnx_runtime_present(), "onnxruntime is not installed")
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def onnx_local(onnx_dir: Path) -> OnnxEmbedder:
    embedder = OnnxEmbedder(onnx_dir, threads=2)
    embedder.load()
    assert embedder.backend == "onnx", embedder.fallback_reason
    return embedder


def max_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(1.0 - np.sum(a.astype(np.float64) * b.astype(np.float64), axis=1)))


LONG_MAIL = ("Hello team, the quarterly invoice for the hosting contract is attached; please check the "
             "amounts against the purchase order before Friday, and forward it to accounting. ") * 12
VARIED = [
    "dog", "invoice", "Paris", "a trip to Paris", "quarterly invoice from the hosting company",
    LONG_MAIL, "word " * 600, "x" * 5000,
    "東京への出張", "Привет, как дела?", "مرحبا بالعالم", "नमस्ते दुनिया", "한국어 문장", "Ελληνικά",
    "🐕", "🎉🎂 birthday party", "👩‍👩‍👧 family", "café naïve résumé", "e\u0301",
    "", " ", "\t\n", ".", "?!", "\u200b", "[CLS] [SEP] [PAD]",
]


@pytest.mark.model
def test_onnx_shares_the_torch_models_space(onnx_local: OnnxEmbedder, local: LocalEmbedder) -> None:
    assert isinstance(onnx_local, Embedder)
    assert (onnx_local.model, onnx_local.dimensions) == (local.model, local.dimensions)
    vectors = onnx_local.embed(["dog", "puppy"])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert onnx_local.embed([]).shape == (0, 384)
    with pytest.raises(TypeError, match="embed_one"):
        onnx_local.embed("dog")


@pytest.mark.model
def test_onnx_matches_torch_within_1e_5_one_by_one(onnx_local: OnnxEmbedder, local: LocalEmbedder) -> None:
    for text in VARIED:
        got, expected = onnx_local.embed_one(text), local.embed_one(text)
        assert max_distance(got[None], expected[None]) <= 1e-5, repr(text[:40])


@pytest.mark.model
def test_onnx_matches_torch_within_1e_5_in_padded_batches(onnx_local: OnnxEmbedder, local: LocalEmbedder) -> None:
    # Short and long mixed, more than one batch of 32 (sorted by length, padded per batch), and
    # the small-batch path (one thread) as well as the large one.
    mixed = [VARIED[i % len(VARIED)] + (f" {i}" if i >= len(VARIED) else "") for i in range(75)]
    expected = local.embed(mixed)
    assert max_distance(onnx_local.embed(mixed), expected) <= 1e-5
    assert max_distance(onnx_local.embed(mixed[:5]), expected[:5]) <= 1e-5
    # Order and duplicates survive the sorting.
    shuffled = [mixed[i] for i in (40, 3, 3, 70, 0)]
    np.testing.assert_allclose(onnx_local.embed(shuffled), onnx_local.embed(mixed)[[40, 3, 3, 70, 0]], atol=1e-6)


@pytest.mark.model
def test_onnx_concurrent_calls_agree(onnx_local: OnnxEmbedder) -> None:
    phrases = ["dog", "puppy", "invoice", LONG_MAIL, "beach holiday"] * 4
    expected = onnx_local.embed(phrases)
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = onnx_local.embed(phrases if i % 2 else phrases[:3])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6
    for i, got in results.items():
        np.testing.assert_allclose(got, expected if i % 2 else expected[:3], atol=1e-6)


@pytest.mark.model
def test_onnx_export_is_reused(onnx_local: OnnxEmbedder, onnx_dir: Path) -> None:
    path = onnx_local.onnx_path
    assert path is not None and path.parent.parent == onnx_dir
    before = path.stat()
    again = OnnxEmbedder(onnx_dir)
    again.load()
    assert again.onnx_path == path and again.backend == "onnx"
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in path.parent.iterdir()) == ["export.lock", "model.onnx"]
    np.testing.assert_allclose(again.embed(["dog"]), onnx_local.embed(["dog"]), atol=1e-6)


def copy_model(target: Path) -> Path:
    """The shipped model's folder, copied, so a test can change one file of it."""
    shutil.copytree(shipped_model_path(), target)
    return target


@pytest.mark.model
def test_a_new_model_version_is_exported_again(onnx_local: OnnxEmbedder, onnx_dir: Path, tmp_path: Path,
                                               local: LocalEmbedder) -> None:
    model = copy_model(tmp_path / "model")
    config = json.loads((model / "config.json").read_text())
    config["transformers_version"] = "4.9.0"  # a different release of the same weights
    (model / "config.json").write_text(json.dumps(config))
    newer = OnnxEmbedder(onnx_dir, model_path=model)
    newer.load()
    assert newer.backend == "onnx"
    assert newer.onnx_path != onnx_local.onnx_path and onnx_local.onnx_path.is_file()
    assert max_distance(newer.embed(VARIED[:6]), local.embed(VARIED[:6])) <= 1e-5


@pytest.mark.model
def test_unwritable_export_folder_falls_back_to_torch(tmp_path: Path, local: LocalEmbedder,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    require(onnx_runtime_present(), "onnxruntime is not installed")
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data folder should be")  # unwritable even for root
    embedder = OnnxEmbedder(blocker / "onnx", fallback=local)
    with caplog.at_level(logging.WARNING, logger="semcache.onnx_embedder"):
        vectors = embedder.embed(["dog", "invoice"])
    assert embedder.backend == "torch"
    assert "could not be written" in embedder.fallback_reason and str(blocker) in embedder.fallback_reason
    assert "torch instead of ONNX Runtime" in caplog.text
    np.testing.assert_allclose(vectors, local.embed(["dog", "invoice"]), atol=1e-6)

    strict = OnnxEmbedder(blocker / "onnx")
    with pytest.raises(EmbeddingError, match="make the folder writable"):
        strict.embed(["dog"])


@pytest.mark.model
def test_failed_export_falls_back_and_leaves_no_file(tmp_path: Path, local: LocalEmbedder) -> None:
    require(onnx_runtime_present(), "onnxruntime is not installed")
    model = copy_model(tmp_path / "model")
    (model / "model.safetensors").write_bytes(b"\x00" * 4096)  # damaged weights
    folder = tmp_path / "onnx"
    embedder = OnnxEmbedder(folder, model_path=model, fallback=local)
    vectors = embedder.embed(["dog"])
    assert embedder.backend == "torch"
    assert "could not be loaded for the ONNX export" in embedder.fallback_reason
    np.testing.assert_allclose(vectors, local.embed(["dog"]), atol=1e-6)
    assert list(folder.rglob("*.onnx")) == [] and list(folder.rglob("*.partial")) == []
    with pytest.raises(EmbeddingError, match="ONNX export"):
        OnnxEmbedder(folder, model_path=model).load()


@pytest.mark.model
def test_a_damaged_export_is_not_used(tmp_path: Path, onnx_local: OnnxEmbedder, local: LocalEmbedder) -> None:
    folder = tmp_path / "onnx"
    target = folder / onnx_local.onnx_path.relative_to(onnx_local.onnx_path.parent.parent)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not an onnx model")
    with pytest.raises(EmbeddingError, match="delete the file"):
        OnnxEmbedder(folder).load()
    fallen_back = OnnxEmbedder(folder, fallback=local)
    np.testing.assert_allclose(fallen_back.embed(["dog"]), local.embed(["dog"]), atol=1e-6)


EXPORT_SCRIPT = """
import logging, sys, time
sys.path.insert(0, sys.argv[3])
logging.basicConfig(level=logging.INFO, format="%(message)s")
from pathlib import Path
while not Path(sys.argv[2]).exists():
    time.sleep(0.01)
from semcache.onnx_embedder import OnnxEmbedder
embedder = OnnxEmbedder(sys.argv[1])
vector = embedder.embed_one("two processes")
print("PATH", embedder.onnx_path, embedder.backend, float(vector[0]))
"""


@pytest.mark.model
def test_two_processes_exporting_at_once_end_with_one_good_file(tmp_path: Path, local: LocalEmbedder) -> None:
    require(onnx_runtime_present(), "onnxruntime is not installed")
    folder, go = tmp_path / "onnx", tmp_path / "go"
    root = str(Path(__file__).resolve().parent.parent)
    procs = [subprocess.Popen([sys.executable, "-c", EXPORT_SCRIPT, str(folder), str(go), root],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    go.touch()  # both start exporting at the same moment
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-2000:]
    lines = [next(line for line in out.splitlines() if line.startswith("PATH")).split() for out, _ in outputs]
    assert lines[0][1] == lines[1][1] and lines[0][2] == lines[1][2] == "onnx"
    exports = sum(err.count("Exported all-MiniLM-L6-v2 to ONNX") for _, err in outputs)
    assert exports == 1
    [onnx_file] = folder.rglob("*.onnx")
    assert str(onnx_file) == lines[0][1]
    assert list(folder.rglob("*.partial")) == []
    reused = OnnxEmbedder(folder)
    assert max_distance(reused.embed(["two processes"]), local.embed(["two processes"])) <= 1e-5


@pytest.mark.model
def test_services_pick_the_configured_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import services
    from settings import Settings

    monkeypatch.delenv("ONNX_EXPORT_DIR", raising=False)
    torch_only = services.build_embedder(Settings(data_dir=tmp_path, local_embedding_backend="torch"))
    assert isinstance(torch_only, LocalEmbedder)
    auto = services.build_embedder(Settings(data_dir=tmp_path, local_embedding_threads=3))
    assert isinstance(auto, OnnxEmbedder) and isinstance(auto.fallback, LocalEmbedder)
    assert (auto.export_dir, auto.threads, auto.model) == (tmp_path / "onnx", 3, LocalEmbedder.model)
    shared = services.build_embedder(Settings(data_dir=tmp_path, onnx_export_dir=tmp_path / "shared"))
    assert shared.export_dir == tmp_path / "shared"
    strict = services.build_embedder(Settings(data_dir=tmp_path, local_embedding_backend="onnx"))
    assert isinstance(strict, OnnxEmbedder) and strict.fallback is None


# ---------------------------------------------------------------------------------------------
# OpenAIEmbedder


def make(server: FakeOpenAI, **kwargs: object) -> OpenAIEmbedder:
    options: dict[str, object] = {"timeout": 0.5, "max_retries": 2, "backoff_seconds": 0.01,
                                  "max_backoff_seconds": 0.05}
    options.update(kwargs)
    return OpenAIEmbedder(API_KEY, base_url=server.base_url, **options)  # type: ignore[arg-type]


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def test_openai_small_happy_path(fake_openai: FakeOpenAI) -> None:
    embedder = make(fake_openai)
    assert isinstance(embedder, Embedder)
    assert (embedder.model, embedder.dimensions) == ("text-embedding-3-small", 1536)

    vectors = embedder.embed(["dog", "puppy"])

    assert vectors.shape == (2, 1536) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], fake_openai.vector_for("dog"), atol=1e-6)
    np.testing.assert_allclose(vectors[1], fake_openai.vector_for("puppy"), atol=1e-6)
    [request] = fake_openai.requests
    assert request.path == "/v1/embeddings"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.json == {"model": "text-embedding-3-small", "input": ["dog", "puppy"],
                            "encoding_format": "base64"}


def test_openai_large_model_has_3072_dimensions(fake_openai: FakeOpenAI) -> None:
    embedder = make(fake_openai, model="text-embedding-3-large")
    vectors = embedder.embed(["dog"])
    assert embedder.dimensions == 3072 and vectors.shape == (1, 3072)
    np.testing.assert_allclose(vectors[0], fake_openai.vector_for("dog", "text-embedding-3-large"), atol=1e-6)
    assert "dimensions" not in fake_openai.requests[0].json


def test_openai_dimensions_are_sent_and_honoured(fake_openai: FakeOpenAI) -> None:
    embedder = make(fake_openai, model="text-embedding-3-large", dimensions=256)
    vectors = embedder.embed(["dog", "cat"])
    assert embedder.dimensions == 256 and vectors.shape == (2, 256)
    assert fake_openai.requests[0].json["dimensions"] == 256
    np.testing.assert_allclose(vectors[1], fake_openai.vector_for("cat", "text-embedding-3-large", 256), atol=1e-6)


def test_openai_base64_decoding_is_exact(fake_openai: FakeOpenAI) -> None:
    known = np.linspace(-1.0, 1.0, 1536, dtype=np.float32)
    known[7] = 1e-30  # a denormal-ish value survives the round trip
    fake_openai.vectors["known phrase"] = known.tolist()
    got = make(fake_openai).embed(["known phrase"])[0]
    np.testing.assert_allclose(got, unit(known.astype(np.float64)).astype(np.float32), rtol=1e-6, atol=1e-7)


def test_openai_batches_split_requests_and_keep_order(fake_openai: FakeOpenAI) -> None:
    phrases = [f"phrase {i}" for i in range(7)]
    vectors = make(fake_openai, batch_size=3).embed(phrases)
    sent = [r.json["input"] for r in fake_openai.requests]
    assert sent == [phrases[0:3], phrases[3:6], phrases[6:7]]
    for phrase, row in zip(phrases, vectors):
        np.testing.assert_allclose(row, fake_openai.vector_for(phrase), atol=1e-6)
    assert fake_openai.embedded_texts() == phrases  # each phrase sent exactly once


def test_openai_empty_input_sends_nothing(fake_openai: FakeOpenAI) -> None:
    assert make(fake_openai).embed([]).shape == (0, 1536)
    with pytest.raises(InvalidTopic):
        make(fake_openai).embed(["dog", "  "])
    assert fake_openai.requests == []


def test_openai_rate_limit_is_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(status=429, times=2)
    vectors = make(fake_openai, max_retries=3).embed(["dog"])
    np.testing.assert_allclose(vectors[0], fake_openai.vector_for("dog"), atol=1e-6)
    assert len(fake_openai.requests) == 3


def test_openai_retry_after_is_honoured_up_to_the_cap(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(status=429, retry_after=0.3)
    started = time.monotonic()
    make(fake_openai, max_backoff_seconds=1.0).embed(["dog"])
    assert 0.3 <= time.monotonic() - started < 1.5


def test_openai_persistent_server_error_gives_up_after_bounded_attempts(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(status=500, times=100)
    started = time.monotonic()
    with pytest.raises(EmbeddingError, match=r"HTTP 500, 3 attempts") as caught:
        make(fake_openai, max_retries=2).embed(["dog"])
    assert len(fake_openai.requests) == 3
    assert time.monotonic() - started < 2
    assert API_KEY not in str(caught.value)


def test_openai_hang_times_out_quickly(fake_openai: FakeOpenAI) -> None:
    fake_openai.hang_next(seconds=10, times=10)
    started = time.monotonic()
    with pytest.raises(EmbeddingError, match=r"within 0\.5 s \(2 attempts\)") as caught:
        make(fake_openai, timeout=0.5, max_retries=1).embed(["dog"])
    assert time.monotonic() - started < 2.5
    assert len(fake_openai.requests) == 2
    assert API_KEY not in str(caught.value)


def test_openai_hang_then_success(fake_openai: FakeOpenAI) -> None:
    fake_openai.hang_next(seconds=10)
    vectors = make(fake_openai, timeout=0.5, max_retries=1).embed(["dog"])
    assert vectors.shape == (1, 1536)


def test_openai_bad_key_is_not_retried_and_not_echoed(fake_openai: FakeOpenAI) -> None:
    wrong_key = "sk-wrong-key-that-must-not-leak-42"
    embedder = OpenAIEmbedder(wrong_key, base_url=fake_openai.base_url, timeout=0.5, max_retries=3,
                              backoff_seconds=0.01)
    with pytest.raises(EmbeddingError, match="API key") as caught:
        embedder.embed(["dog"])
    assert len(fake_openai.requests) == 1
    assert wrong_key not in str(caught.value) and wrong_key not in repr(embedder)


def test_openai_client_error_is_not_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(status=400, message="Invalid 'input': too long.")
    with pytest.raises(EmbeddingError, match=r"rejected the embedding request \(HTTP 400"):
        make(fake_openai, max_retries=3).embed(["dog"])
    assert len(fake_openai.requests) == 1


def test_openai_unknown_model_is_a_clear_error(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(EmbeddingError, match="model"):
        make(fake_openai, model="text-embedding-9", dimensions=64).embed(["dog"])


@pytest.mark.parametrize("body,content_type", [
    (b'{"object": "list", "unexpected": true}', "application/json"),
    (b"<html>oops</html>", "text/html"),
    (b"{not json", "application/json"),
    (b'{"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": "@@not base64@@"}]}',
     "application/json"),
])
def test_openai_invalid_payload_is_an_embedding_error(fake_openai: FakeOpenAI, body: bytes,
                                                      content_type: str) -> None:
    fake_openai.invalid_next(body=body, content_type=content_type)
    with pytest.raises(EmbeddingError):
        make(fake_openai).embed(["dog"])


def test_openai_wrong_dimension_is_rejected(fake_openai: FakeOpenAI) -> None:
    fake_openai.vectors["odd"] = [1.0] * 10
    with pytest.raises(EmbeddingError, match="10-dimensional"):
        make(fake_openai).embed(["dog", "odd"])


def test_openai_unreachable_server_is_an_embedding_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    embedder = OpenAIEmbedder(API_KEY, base_url=f"http://127.0.0.1:{port}/v1", timeout=0.5, max_retries=1,
                              backoff_seconds=0.01)
    with pytest.raises(EmbeddingError, match="Could not reach OpenAI"):
        embedder.embed(["dog"])


def test_openai_needs_a_key_and_known_dimensions() -> None:
    with pytest.raises(EmbeddingError, match="API key"):
        OpenAIEmbedder("")
    with pytest.raises(ValueError, match="dimensions"):
        OpenAIEmbedder(API_KEY, model="my-own-model")
    assert OpenAIEmbedder(API_KEY, model="my-own-model", dimensions=768).dimensions == 768
