"""LocalEmbedder against the real bundled model; OpenAIEmbedder through the real openai client
against FakeOpenAI on loopback."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from fake_openai import API_KEY, FakeOpenAI, fake_openai  # noqa: F401  (fixture)
from semcache.embedders import LocalEmbedder, OpenAIEmbedder
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


def test_local_shape_dtype_and_unit_rows(local: LocalEmbedder) -> None:
    vectors = local.embed(["dog", "a trip to Paris", "quarterly invoice"])
    assert isinstance(local, Embedder)
    assert (local.model, local.dimensions) == ("all-MiniLM-L6-v2", 384)
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_local_similar_phrases_are_closer(local: LocalEmbedder) -> None:
    dog, puppy, invoice = local.embed(["dog", "puppy", "invoice"])
    assert cosine_distance(dog, puppy) < cosine_distance(dog, invoice)
    assert cosine_distance(dog, puppy) < 0.3


def test_local_empty_input_and_embed_one(local: LocalEmbedder) -> None:
    empty = local.embed([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    one = local.embed_one("dog")
    assert one.shape == (384,)
    np.testing.assert_allclose(one, local.embed(["dog", "cat"])[0], atol=1e-5)


def test_local_rejects_a_bare_string(local: LocalEmbedder) -> None:
    with pytest.raises(TypeError, match="embed_one"):
        local.embed("dog")


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


def test_local_missing_model_is_an_embedding_error(tmp_path) -> None:
    with pytest.raises(EmbeddingError, match="could not be loaded"):
        LocalEmbedder(model_path=tmp_path / "nothing-here").embed(["dog"])


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
