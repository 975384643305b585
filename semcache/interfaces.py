"""The pluggable parts of the cache: what an embedder, a generator and a blob store provide.

The cache takes one of each as a constructor argument. None of them reads the environment:
whoever builds them passes every setting explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Turns phrases into L2-normalised float32 vectors.

    ``model`` and ``dimensions`` together name the vector space; vectors from different spaces
    are never compared.
    """

    model: str
    dimensions: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return an array of shape (len(texts), dimensions), dtype float32, rows of unit length.

        Raises EmbeddingError when the model cannot answer.
        """
        ...


@dataclass(frozen=True)
class GeneratedImage:
    png: bytes
    """The final PNG, already through the shared pixelation step."""
    detail: str
    """How it was made, for people: e.g. "emoji 🐕 (dog, distance 0.12)", "sprite", "openai gpt-image-1"."""


@runtime_checkable
class Generator(Protocol):
    """Makes the image for a topic. Expensive; the cache exists to call it rarely."""

    name: str
    price_usd: float
    """What one generated image costs, used to count money spent and saved."""

    def generate(self, topic: str, embedding: np.ndarray | None = None) -> GeneratedImage:
        """Make the image for ``topic``. A generator that picks by meaning has an ``embedder``
        attribute; when it embeds with the cache's model, ``embedding`` is the topic's vector,
        already computed, and otherwise None.

        Raises GenerationError on failure; never returns a half-made image.
        """
        ...


@runtime_checkable
class BlobStore(Protocol):
    """Content-addressed storage for image bytes."""

    name: str
    """Where blobs live, for people: "local folder /x/y" or "s3://bucket/prefix"."""

    def put(self, data: bytes, content_type: str = "image/png") -> str:
        """Store ``data`` and return its key (derived from the content, never from user text).
        Writes are atomic: a reader sees the whole object or nothing."""
        ...

    def get(self, key: str) -> bytes:
        """Raises BlobNotFound when missing, BlobStoreError on other failures."""
        ...

    def delete(self, key: str) -> None:
        """Remove the blob; deleting a missing key is not an error."""
        ...

    def exists(self, key: str) -> bool:
        ...
