"""A stand-in for OpenAI's HTTP API on loopback, so tests exercise the real ``openai`` client.

    with FakeOpenAI() as server:
        client = OpenAI(api_key=server.api_key, base_url=server.base_url, max_retries=0)
        server.fail_next(status=429, times=2)      # the next two requests get 429
        server.hang_next(seconds=3)                # the next request answers only after 3 s
        server.release_hangs()                     # ... or now: requests held answer at once
        server.invalid_next(body=b"<html>oops")    # the next request gets a 200 that is not JSON
        ...
        server.requests                            # every request received, in order

As a pytest fixture::

    from fake_openai import fake_openai  # noqa: F401  (makes the fixture available)

Endpoints (wire format as OpenAI documents it):

``POST /v1/embeddings``
    ``input`` is a string or a list of strings; ``encoding_format`` "base64" answers with the
    base64 of little-endian float32, anything else with lists of floats; ``dimensions`` shortens
    the vector and re-normalises it (models text-embedding-3-small: 1536, -3-large: 3072,
    text-embedding-ada-002: 1536, which refuses ``dimensions``). Vectors come from ``vectors``
    (text -> vector, sent as given) or else from a hash of model and text; ``vector_for`` says
    which vector the server sends for a text.
``POST /v1/images/generations``
    Answers ``{"created": ..., "data": [{"b64_json": <PNG>}]}``. gpt-image models refuse
    ``response_format``; dall-e models answer with a ``url`` unless it is "b64_json".
    ``image_bytes`` replaces the generated PNG (e.g. with bytes that are not an image).

Every request needs ``Authorization: Bearer <api_key>``; otherwise the answer is a 401.
Scripted faults apply to the next matching requests in the order they were scripted.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

API_KEY = "sk-fake-test-key-0123456789abcdef"

NATIVE_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes
    json: Any
    """The parsed body, or None when it was not JSON."""


@dataclass
class _Fault:
    kind: str  # "status" | "hang" | "invalid"
    times: int
    path: str | None
    status: int = 500
    seconds: float = 0.0
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class FakeOpenAI:
    """An OpenAI-compatible server on 127.0.0.1 (a free port), running in a background thread."""

    def __init__(self, *, api_key: str = API_KEY,
                 vectors: Mapping[str, Sequence[float]] | None = None,
                 image_bytes: bytes | None = None) -> None:
        self.api_key = api_key
        self.vectors: dict[str, list[float]] = {k: list(v) for k, v in (vectors or {}).items()}
        self.image_bytes = image_bytes
        """Sent as the image instead of a generated PNG when set."""
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        """Set to end every hang: on stop (the connection is closed) and by `release_hangs`."""
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._wake.clear()
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; requests still hanging are released at once."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._wake.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The ``base_url`` to give the openai client, e.g. ``http://127.0.0.1:40123/v1``."""
        if self._httpd is None:
            raise RuntimeError("FakeOpenAI is not running; call start() or use it in a with block.")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    # -- scripted faults -------------------------------------------------------------------

    def fail_next(self, status: int = 500, times: int = 1, *, path: str | None = None,
                  message: str = "Scripted failure from the fake OpenAI server.",
                  retry_after: float | None = None) -> None:
        """Answer the next ``times`` requests (to ``path``, e.g. "/v1/embeddings", if given) with
        ``status`` and an OpenAI-style error body. ``retry_after`` (seconds) adds Retry-After."""
        headers = {} if retry_after is None else {"retry-after": f"{retry_after:g}"}
        error_type = {429: "rate_limit_exceeded", 401: "invalid_request_error"}.get(
            status, "server_error" if status >= 500 else "invalid_request_error")
        body = json.dumps({"error": {"message": message, "type": error_type, "param": None,
                                     "code": error_type}}).encode()
        self._add(_Fault("status", times, path, status=status, body=body, headers=headers))

    def hang_next(self, seconds: float = 5.0, times: int = 1, *, path: str | None = None) -> None:
        """Hold the next ``times`` requests for ``seconds`` before answering normally."""
        self._add(_Fault("hang", times, path, seconds=seconds))

    def release_hangs(self) -> None:
        """Answer every request held by `hang_next` now, normally; hangs scripted later answer at
        once too."""
        self._wake.set()

    def invalid_next(self, times: int = 1, *, path: str | None = None,
                     body: bytes = b'{"object": "list", "unexpected": true}',
                     content_type: str = "application/json") -> None:
        """Answer the next ``times`` requests with 200 and ``body`` (by default JSON of the wrong
        shape; pass e.g. ``b"<html>oops"`` with ``content_type="text/html"`` for a non-JSON one)."""
        self._add(_Fault("invalid", times, path, status=200, body=body, content_type=content_type))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add(self, fault: _Fault) -> None:
        if fault.times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path is None or fault.path == path:
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # -- what was received -----------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def embedded_texts(self) -> list[str]:
        """Every text sent to /v1/embeddings, in order, one entry per text per request."""
        texts: list[str] = []
        for r in self.requests_to("/v1/embeddings"):
            sent = (r.json or {}).get("input")
            texts.extend([sent] if isinstance(sent, str) else list(sent or []))
        return texts

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    # -- answers ---------------------------------------------------------------------------

    def vector_for(self, text: str, model: str = "text-embedding-3-small",
                   dimensions: int | None = None) -> np.ndarray:
        """The float32 vector this server sends for ``text`` (before any base64 encoding)."""
        if text in self.vectors:
            vector = np.asarray(self.vectors[text], dtype=np.float32)
        else:
            seed = int.from_bytes(hashlib.sha256(f"{model}\0{text}".encode()).digest()[:8], "little")
            vector = np.random.default_rng(seed).standard_normal(NATIVE_DIMENSIONS[model])
            vector = (vector / np.linalg.norm(vector)).astype(np.float32)
        if dimensions is not None and dimensions < vector.shape[0]:
            vector = vector[:dimensions]
            vector = (vector / np.linalg.norm(vector)).astype(np.float32)
        return vector

    def _embeddings(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            return _error(400, "We could not parse the JSON body of your request.")
        model = body.get("model")
        if model not in NATIVE_DIMENSIONS:
            return _error(404, f"The model `{model}` does not exist or you do not have access to it.",
                          code="model_not_found")
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if (not isinstance(texts, list) or not texts or len(texts) > 2048
                or not all(isinstance(t, str) and t for t in texts)):
            return _error(400, "'input' must be a non-empty string or a list of 1 to 2048 non-empty strings.")
        dimensions = body.get("dimensions")
        if dimensions is not None:
            if model == "text-embedding-ada-002":
                return _error(400, "This model does not support specifying dimensions.")
            if not isinstance(dimensions, int) or not 1 <= dimensions <= NATIVE_DIMENSIONS[model]:
                return _error(400, f"'dimensions' must be between 1 and {NATIVE_DIMENSIONS[model]}.")
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = self.vector_for(text, model, dimensions)
            encoded: Any = (base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
                            if as_base64 else [float(x) for x in vector])
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(t.split()) for t in texts)
        return 200, {"object": "list", "data": data, "model": model,
                     "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    def _images(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str) or not body["prompt"]:
            return _error(400, "'prompt' is required.")
        model = body.get("model") or "dall-e-2"
        response_format = body.get("response_format")
        is_dalle = model.startswith("dall-e")
        if not is_dalle and response_format is not None:
            return _error(400, "Unknown parameter: 'response_format'.", param="response_format")
        if not is_dalle and not model.startswith(("gpt-image", "chatgpt-image")):
            return _error(404, f"The model `{model}` does not exist.", code="model_not_found")
        png = self.image_bytes if self.image_bytes is not None else _picture(body["prompt"], body.get("size"))
        if is_dalle and response_format != "b64_json":
            item = {"url": f"{self.base_url}/files/image.png", "revised_prompt": body["prompt"]}
        else:
            item = {"b64_json": base64.b64encode(png).decode("ascii")}
        return 200, {"created": int(time.time()), "data": [item]}


def _error(status: int, message: str, *, code: str | None = None, param: str | None = None) -> tuple[int, Any]:
    return status, {"error": {"message": message, "type": "invalid_request_error", "param": param,
                              "code": code}}


def _picture(prompt: str, size: Any) -> bytes:
    """A small PNG whose colours depend on the prompt: a disc on a plain background."""
    side = 256
    if isinstance(size, str) and "x" in size:
        try:
            side = max(16, min(1024, int(size.split("x")[0])))
        except ValueError:
            pass
    digest = hashlib.sha256(prompt.encode()).digest()
    image = Image.new("RGB", (side, side), (250, 250, 245))
    draw = ImageDraw.Draw(image)
    draw.ellipse((side // 5, side // 5, side * 4 // 5, side * 4 // 5), fill=tuple(digest[:3]))
    draw.rectangle((side * 2 // 5, side * 2 // 5, side * 3 // 5, side * 3 // 5), fill=tuple(digest[3:6]))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _handler_for(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    routes = {"/v1/embeddings": server._embeddings, "/v1/images/generations": server._images}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                parsed: Any = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            path = self.path.split("?", 1)[0]
            server._record(RecordedRequest("POST", path, {k.lower(): v for k, v in self.headers.items()},
                                           raw, parsed))

            if self.headers.get("Authorization", "") != f"Bearer {server.api_key}":
                self._send_json(*_error(401, "Incorrect API key provided.", code="invalid_api_key"))
                return
            fault = server._take_fault(path)
            if fault is not None and fault.kind == "hang":
                server._wake.wait(fault.seconds)
                if server._stopping.is_set():
                    self.close_connection = True
                    return
                fault = None
            if fault is not None:
                self._send(fault.status, fault.body, fault.content_type, fault.headers)
                return
            route = routes.get(path)
            if route is None:
                self._send_json(*_error(404, f"Invalid URL (POST {path})"))
                return
            self._send_json(*route(parsed))

        def _send_json(self, status: int, payload: Any) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json", {})

        def _send(self, status: int, body: bytes, content_type: str, headers: Mapping[str, str]) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("x-request-id", f"req_fake_{time.monotonic_ns()}")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (e.g. its timeout passed)

    return Handler


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A running FakeOpenAI, stopped after the test."""
    with FakeOpenAI() as server:
        yield server
