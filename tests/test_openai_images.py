"""OpenAIImageGenerator through the real openai client against FakeOpenAI on loopback."""

from __future__ import annotations

import io
import json
import time

import pytest
from PIL import Image

from fake_openai import API_KEY, FakeOpenAI, fake_openai  # noqa: F401  (fixture)
from semcache.errors import GenerationError, InvalidTopic
from semcache.interfaces import Generator
from semcache.openai_images import OpenAIImageGenerator
from semcache.pixelart import OUTPUT_SIZE, PALETTE_COLORS


def make(server: FakeOpenAI, **kwargs: object) -> OpenAIImageGenerator:
    options: dict[str, object] = {"timeout": 0.5, "max_retries": 2, "backoff_seconds": 0.01,
                                  "max_backoff_seconds": 0.05}
    options.update(kwargs)
    return OpenAIImageGenerator(API_KEY, base_url=server.base_url, **options)  # type: ignore[arg-type]


def test_happy_path_returns_a_pixelated_png(fake_openai: FakeOpenAI) -> None:
    generator = make(fake_openai)
    assert isinstance(generator, Generator)
    assert (generator.name, generator.price_usd) == ("openai gpt-image-2", 0.04)

    result = generator.generate("dog")

    assert result.detail == "openai gpt-image-2"
    image = Image.open(io.BytesIO(result.png))
    assert image.format == "PNG" and image.size == (OUTPUT_SIZE, OUTPUT_SIZE)
    assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or []) <= PALETTE_COLORS
    [request] = fake_openai.requests
    assert request.path == "/v1/images/generations"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.json["model"] == "gpt-image-2"
    assert "response_format" not in request.json
    assert request.json["prompt"] == (
        "A simple pixel-art icon of dog, 32x32 sprite style, plain background, no text.")


def test_dalle_asks_for_b64_json(fake_openai: FakeOpenAI) -> None:
    result = make(fake_openai, model="dall-e-3").generate("cat")
    assert result.detail == "openai dall-e-3"
    assert fake_openai.requests[0].json["response_format"] == "b64_json"


def test_topic_is_flattened_and_bounded(fake_openai: FakeOpenAI) -> None:
    generator = make(fake_openai, max_topic_chars=40)
    generator.generate("  red\n\nbicycle\x00 ")
    assert "of red bicycle, 32x32" in fake_openai.requests[0].json["prompt"]
    with pytest.raises(InvalidTopic):
        generator.generate("x" * 41)
    with pytest.raises(InvalidTopic):
        generator.generate(" \n ")
    assert len(fake_openai.requests) == 1


def test_custom_prompt_template_and_options(fake_openai: FakeOpenAI) -> None:
    generator = make(fake_openai, prompt_template="8-bit {topic} {sprite}", size="512x512", quality="low")
    generator.generate("castle")
    body = fake_openai.requests[0].json
    assert body["prompt"] == "8-bit castle {sprite}"
    assert (body["size"], body["quality"], body["n"]) == ("512x512", "low", 1)
    with pytest.raises(ValueError):
        make(fake_openai, prompt_template="no placeholder")


def test_rate_limit_is_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(status=429, times=1)
    assert make(fake_openai).generate("dog").png.startswith(b"\x89PNG")
    assert len(fake_openai.requests) == 2


def test_server_failure_is_a_generation_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(status=503, times=100)
    with pytest.raises(GenerationError, match=r"HTTP 503, 2 attempts") as caught:
        make(fake_openai, max_retries=1).generate("dog")
    assert len(fake_openai.requests) == 2
    assert API_KEY not in str(caught.value)


def test_timeout_is_not_retried_by_default(fake_openai: FakeOpenAI) -> None:
    fake_openai.hang_next(seconds=10, times=5)
    started = time.monotonic()
    with pytest.raises(GenerationError, match=r"within 0\.5 s"):
        make(fake_openai, max_retries=3).generate("dog")
    assert time.monotonic() - started < 1.5
    assert len(fake_openai.requests) == 1


def test_bad_key_is_a_generation_error_without_the_key() -> None:
    with FakeOpenAI(api_key="sk-the-right-one") as server:
        with pytest.raises(GenerationError, match="API key") as caught:
            make(server).generate("dog")
    assert API_KEY not in str(caught.value)


def test_non_image_payload_is_a_generation_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.image_bytes = b"this is not an image at all"
    with pytest.raises(GenerationError, match="not a readable image"):
        make(fake_openai).generate("dog")


def test_truncated_png_is_a_generation_error(fake_openai: FakeOpenAI) -> None:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(out, format="PNG")
    fake_openai.image_bytes = out.getvalue()[:60]
    with pytest.raises(GenerationError):
        make(fake_openai).generate("dog")


@pytest.mark.parametrize("payload,match", [
    ({"created": 1, "data": [{"b64_json": "!!! not base64 !!!"}]}, "base64"),
    ({"created": 1, "data": [{"url": "http://127.0.0.1:9/image.png"}]}, "URL"),
    ({"created": 1, "data": []}, "no image"),
    ({"error": "weird"}, "no image"),
])
def test_malformed_answers_are_generation_errors(fake_openai: FakeOpenAI, payload: object, match: str) -> None:
    fake_openai.invalid_next(body=json.dumps(payload).encode())
    with pytest.raises(GenerationError, match=match):
        make(fake_openai).generate("dog")


def test_needs_a_key() -> None:
    with pytest.raises(GenerationError, match="API key"):
        OpenAIImageGenerator("")
