"""Pixel-art images from OpenAI's image API, through the shared ``pixelate`` step."""

from __future__ import annotations

import base64
import binascii
import io
import unicodedata
from typing import Any

import numpy as np
import openai
from PIL import Image, UnidentifiedImageError

from semcache.embedders import call_with_retries, openai_client
from semcache.errors import GenerationError, InvalidTopic
from semcache.interfaces import GeneratedImage
from semcache.pixelart import pixelate

__all__ = ["OpenAIImageGenerator", "DEFAULT_PROMPT"]

DEFAULT_PROMPT = "A simple pixel-art icon of {topic}, 32x32 sprite style, plain background, no text."

VARIANT_PROMPT = "Version {n}: a different design from the earlier versions."

_MAX_IMAGE_PIXELS = 4096 * 4096


def prompt_topic(topic: str, max_chars: int) -> str:
    """``topic`` as it goes into the prompt: control characters and line breaks become spaces,
    whitespace is collapsed, and it must be 1..max_chars characters long."""
    text = unicodedata.normalize("NFKC", topic)
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text)
    text = " ".join(text.split())
    if not text:
        raise InvalidTopic("The topic is empty: type a word or a short phrase, such as \"dog\".")
    if len(text) > max_chars:
        raise InvalidTopic(f"That topic is {len(text):,} characters long; use at most {max_chars}.")
    return text


class OpenAIImageGenerator:
    """Asks an OpenAI image model for a pixel-art icon of the topic and pixelates the answer.

    gpt-image models always answer with base64 image data; dall-e models are asked for it with
    ``response_format="b64_json"``. Rate limits and server errors are retried ``max_retries``
    times; a timeout is not retried by default, because the image may still be made and billed.
    """

    def __init__(self, api_key: str, *, base_url: str | None = None, model: str = "gpt-image-2",
                 price_usd: float = 0.04, size: str = "1024x1024", quality: str | None = None,
                 timeout: float = 120.0, max_retries: int = 2, prompt_template: str = DEFAULT_PROMPT,
                 max_topic_chars: int = 200, retry_timeouts: bool = False,
                 backoff_seconds: float = 0.5, max_backoff_seconds: float = 8.0) -> None:
        if not api_key:
            raise GenerationError("No OpenAI API key was given; set one to generate images with OpenAI.")
        if "{topic}" not in prompt_template:
            raise ValueError("prompt_template must contain {topic}.")
        if price_usd < 0 or timeout <= 0 or max_retries < 0 or max_topic_chars < 1:
            raise ValueError("price_usd and max_retries must not be negative; timeout and max_topic_chars "
                             "must be positive.")
        self.model = model
        self.name = f"openai {model}"
        self.price_usd = price_usd
        self.size = size
        self.quality = quality
        self.timeout = timeout
        self.max_retries = max_retries
        self.prompt_template = prompt_template
        self.max_topic_chars = max_topic_chars
        self.retry_timeouts = retry_timeouts
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._api_key = api_key
        self._client = openai_client(api_key, base_url, timeout)

    def __repr__(self) -> str:
        return f"OpenAIImageGenerator(model={self.model!r}, size={self.size!r})"

    def prompt(self, topic: str, variant: int = 0) -> str:
        """The prompt sent for ``topic``; a ``variant`` above 0 asks for another take on it."""
        prompt = self.prompt_template.replace("{topic}", prompt_topic(topic, self.max_topic_chars))
        return prompt if variant <= 0 else f"{prompt} {VARIANT_PROMPT.format(n=variant + 1)}"

    def generate(self, topic: str, embedding: np.ndarray | None = None, *, variant: int = 0) -> GeneratedImage:
        """A new picture of ``topic``. ``variant`` n > 0 (a regeneration) asks for another design
        than before, so the same phrase does not come back as the same picture."""
        params: dict[str, Any] = {"model": self.model, "prompt": self.prompt(topic, variant), "n": 1,
                                  "size": self.size}
        if self.quality is not None:
            params["quality"] = self.quality
        if self.model.startswith("dall-e"):
            params["response_format"] = "b64_json"
        try:
            response = call_with_retries(
                lambda: self._client.images.generate(**params),
                what="image", api_key=self._api_key, error=GenerationError, max_retries=self.max_retries,
                backoff_seconds=self.backoff_seconds, max_backoff_seconds=self.max_backoff_seconds,
                timeout=self.timeout, retry_timeouts=self.retry_timeouts)
        except GenerationError as err:
            # An error status is not billed, nor is a request that never connected; a timeout or an
            # answer that could not be read may have been.
            cause = err.__cause__
            err.may_have_been_billed = cause is not None and (
                isinstance(cause, openai.APITimeoutError) or not isinstance(cause, openai.OpenAIError))
            raise
        try:
            return self._image(response)
        except GenerationError as err:
            err.may_have_been_billed = True  # OpenAI answered: the picture was made
            raise

    def _image(self, response: Any) -> GeneratedImage:
        data = getattr(response, "data", None)
        first = data[0] if isinstance(data, list) and data else None
        encoded = getattr(first, "b64_json", None)
        if not isinstance(encoded, str) or not encoded:
            if isinstance(getattr(first, "url", None), str):
                raise GenerationError(f"OpenAI answered with an image URL instead of image data; "
                                      f"{self.model} is not supported here.")
            raise GenerationError("OpenAI's answer held no image; try again later.")
        image = self._open(encoded)
        try:
            png = pixelate(image)
        except Exception as err:
            raise GenerationError(f"OpenAI's image could not be pixelated ({type(err).__name__}).") from err
        return GeneratedImage(png=png, detail=f"openai {self.model}")

    @staticmethod
    def _open(encoded: str) -> Image.Image:
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as err:
            raise GenerationError("OpenAI's image data was not valid base64; try again later.") from err
        try:
            image = Image.open(io.BytesIO(raw))
            if image.width * image.height > _MAX_IMAGE_PIXELS:
                raise GenerationError(f"OpenAI sent a {image.width}x{image.height} image, "
                                      "too large to pixelate.")
            image.load()
        except GenerationError:
            raise
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise GenerationError(f"OpenAI's answer was not a readable image ({type(err).__name__}); "
                                  "try again later.") from err
        return image
