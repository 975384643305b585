"""The offline pixel-art generator, with the real local embedding model and the real emoji font."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
from PIL import Image

from semcache import pixelart
from semcache.errors import EmbeddingError, GenerationError
from semcache.interfaces import Generator
from semcache.pixelart import EmojiPixelArtGenerator, PickRules, find_emoji_font, pixelate

FONT = find_emoji_font()


from semcache.embedders import LocalEmbedder as LocalMiniLM


class BrokenEmbedder:
    model = "broken"
    dimensions = 384

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise EmbeddingError("The embedding server did not answer within 5 s.")


@pytest.fixture(scope="module")
def embedder(local_embedder) -> LocalMiniLM:
    return local_embedder


@pytest.fixture(scope="module")
def font() -> Path:
    if FONT is None:
        reason = ("No colour emoji font is installed (looked in "
                  f"{', '.join(map(str, pixelart.EMOJI_FONT_CANDIDATES))}); apt-get install fonts-noto-color-emoji.")
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return FONT


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("emoji-cache")


@pytest.fixture(scope="module")
def generator(embedder: LocalMiniLM, font: Path, cache_dir: Path) -> EmojiPixelArtGenerator:
    return EmojiPixelArtGenerator(embedder, font_path=font, cache_dir=cache_dir)


def decode(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return image


def colours(image: Image.Image) -> int:
    return len(image.convert("RGB").getcolors(maxcolors=1 << 16) or ())


def agreement(a: bytes, b: bytes, tolerance: int = 48) -> float:
    """Share of pixels whose colours differ by at most ``tolerance`` in every channel."""
    pa = np.asarray(decode(a).convert("RGB"), dtype=np.int16)
    pb = np.asarray(decode(b).convert("RGB"), dtype=np.int16)
    return float((np.abs(pa - pb).max(axis=2) <= tolerance).mean())


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


# --- emoji by meaning ----------------------------------------------------------------------------

@pytest.mark.parametrize(("topic", "expected"), [
    ("dog", ("dog",)),
    ("house", ("house",)),
    ("rocket", ("rocket",)),
    ("cat", ("cat",)),
    ("pizza", ("pizza",)),
    ("car", ("automobile", "car")),
    ("birthday", ("birthday",)),
    ("rain", ("rain",)),
    ("money", ("money", "dollar", "banknote", "coin")),
    ("invoice", ("receipt", "money", "dollar", "ledger")),
    ("trip to Paris", ("France",)),
])
def test_obvious_topics_pick_a_fitting_emoji(generator: EmojiPixelArtGenerator, topic: str,
                                              expected: tuple[str, ...]) -> None:
    match = generator.match(topic)
    assert any(word.lower() in match.name.lower() for word in expected), match
    assert match.similarity >= generator.min_similarity


def test_emoji_image_is_a_small_palette_png(generator: EmojiPixelArtGenerator) -> None:
    image = generator.generate("dog")
    assert image.detail.startswith("emoji ") and "dog" in image.detail
    picture = decode(image.png)
    assert picture.size == (256, 256)
    assert colours(picture) <= 16
    assert "A" not in picture.getbands()


def test_same_topic_same_bytes(generator: EmojiPixelArtGenerator, embedder: LocalMiniLM) -> None:
    first = generator.generate("rocket")
    assert generator.generate("rocket") == first
    assert generator.generate("rocket", embedder.embed(["rocket"])[0]) == first
    assert generator.generate("house").png != first.png


def test_given_embedding_is_used(generator: EmojiPixelArtGenerator, embedder: LocalMiniLM) -> None:
    assert "cat" in generator.match("dog", embedder.embed(["cat"])[0]).name


def test_satisfies_the_generator_protocol(generator: EmojiPixelArtGenerator) -> None:
    assert isinstance(generator, Generator)
    assert generator.name == "offline-emoji"
    assert generator.price_usd == 0.04
    assert generator.max_distance == pytest.approx(1 - generator.min_similarity)


def test_catalogue_is_cached_on_disk(generator: EmojiPixelArtGenerator, embedder: LocalMiniLM, font: Path,
                                     cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pixelart, "_matrices", {})  # another test may have embedded it in this process
    generator.prepare()
    stats = generator.prepare()
    assert stats.emoji > 1000 and stats.phrases >= stats.emoji
    assert stats.source == "memory" and stats.seconds == 0
    [saved] = cache_dir.glob("emoji-names-all-MiniLM-L6-v2-384d-*.npy")
    assert f"emoji{pixelart.emoji_data.__version__}" in saved.name

    monkeypatch.setattr(pixelart, "_matrices", {})  # as in a new process
    again = EmojiPixelArtGenerator(embedder, font_path=font, cache_dir=cache_dir)
    assert again.prepare().source == "disk"
    assert again.generate("pizza") == generator.generate("pizza")


def test_concurrent_first_use_gives_one_answer(embedder: LocalMiniLM, font: Path, cache_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    generator_ready = EmojiPixelArtGenerator(embedder, font_path=font, cache_dir=cache_dir)
    generator_ready.prepare()  # the matrix is on disk
    monkeypatch.setattr(pixelart, "_catalogues", {})
    monkeypatch.setattr(pixelart, "_matrices", {})
    fresh = EmojiPixelArtGenerator(embedder, font_path=font, cache_dir=cache_dir)
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(fresh.generate("house").png)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and len(set(results)) == 1
    assert len(pixelart._matrices) == 1


# --- sprites ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sprites(embedder: LocalMiniLM, tmp_path_factory: pytest.TempPathFactory) -> EmojiPixelArtGenerator:
    missing = tmp_path_factory.mktemp("no-font") / "NotoColorEmoji.ttf"
    return EmojiPixelArtGenerator(embedder, font_path=missing)


def test_sprite_when_the_font_is_missing(sprites: EmojiPixelArtGenerator) -> None:
    assert sprites.prepare().source == "no font"
    image = sprites.generate("dog")
    assert image.detail.startswith("sprite (no colour emoji font at ")
    picture = decode(image.png)
    assert picture.size == (256, 256) and colours(picture) <= 16
    assert sprites.generate("dog") == image


def test_sprite_when_no_emoji_is_close_enough(embedder: LocalMiniLM, font: Path, cache_dir: Path) -> None:
    strict = EmojiPixelArtGenerator(embedder, font_path=font, cache_dir=cache_dir, min_similarity=1.5)
    image = strict.generate("dog")
    assert image.detail.startswith("sprite (no emoji close enough: best ")
    assert decode(image.png).size == (256, 256)
    assert strict.generate("dog") == image


def test_close_embeddings_give_similar_sprites(sprites: EmojiPixelArtGenerator, embedder: LocalMiniLM) -> None:
    dog, puppy, taxes = embedder.embed(["dog", "puppy", "tax return"])
    rng = np.random.default_rng(7)
    nudged = unit(dog + 0.2 * rng.standard_normal(dog.shape) / np.sqrt(dog.size))
    unrelated = unit(rng.standard_normal(dog.shape))

    def png(v: np.ndarray) -> bytes:
        return sprites.generate("topic", v).png

    close = [agreement(png(dog), png(puppy)), agreement(png(dog), png(nudged))]
    far = [agreement(png(dog), png(taxes)), agreement(png(dog), png(unrelated))]
    assert min(close) > max(far) + 0.15, (close, far)


# --- errors ---------------------------------------------------------------------------------------

def test_embedding_of_the_wrong_size_is_refused(sprites: EmojiPixelArtGenerator) -> None:
    with pytest.raises(GenerationError, match="384"):
        sprites.generate("dog", np.ones(768, dtype=np.float32))


def test_embedder_failure_becomes_a_generation_error(tmp_path: Path) -> None:
    broken = EmojiPixelArtGenerator(BrokenEmbedder(), font_path=tmp_path / "none.ttf")
    with pytest.raises(GenerationError, match="did not answer"):
        broken.generate("dog")


def test_unloadable_font_is_a_generation_error(embedder: LocalMiniLM, tmp_path: Path) -> None:
    fake = tmp_path / "NotoColorEmoji.ttf"
    fake.write_bytes(b"not a font")
    with pytest.raises(GenerationError, match="Could not load the colour emoji font"):
        EmojiPixelArtGenerator(embedder, font_path=fake).generate("dog")


# --- the shared pixelation step -----------------------------------------------------------------

def test_pixelate_flattens_transparency() -> None:
    image = Image.new("RGBA", (100, 50), (0, 0, 0, 0))
    image.paste((200, 20, 20, 255), (40, 10, 60, 40))
    picture = decode(pixelate(image))
    assert picture.size == (256, 256)
    assert "A" not in picture.getbands()
    rgb = picture.convert("RGB")
    assert rgb.getpixel((2, 2)) == (255, 255, 255)
    assert rgb.getpixel((128, 128)) == (200, 20, 20)
    assert colours(picture) <= 16


# --- which emoji may stand for a topic ------------------------------------------------------------

@pytest.fixture(scope="module")
def classic(embedder: LocalMiniLM, font: Path, emoji_cache_dir: Path) -> EmojiPixelArtGenerator:
    """The picks before the rules: names and aliases only, every flag, nothing excluded."""
    return EmojiPixelArtGenerator(embedder, font_path=font, cache_dir=emoji_cache_dir, rules=PickRules.classic())


def is_flag(char: str) -> bool:
    return len(char) == 2 and all(0x1F1E6 <= ord(c) < 0x1F200 for c in char)


def test_the_reported_misfits_are_fixed_and_the_classic_rules_still_make_them(
        generator: EmojiPixelArtGenerator, classic: EmojiPixelArtGenerator) -> None:
    assert classic.match("villa").emoji == "🇲🇨"
    assert classic.match("🐶").emoji == "❌"
    assert classic.match("spaceship").emoji == "🛳️"
    assert generator.match("villa").emoji in {"🏠", "🏡", "🏘️"}
    assert generator.match("🐶").emoji == "🐶"
    assert generator.match("spaceship").emoji in {"🚀", "🛸", "🛰️"}


def test_flags_only_for_the_places_a_topic_names(generator: EmojiPixelArtGenerator) -> None:
    assert generator.match("trip to Paris").emoji == "🇫🇷"
    assert generator.match("conference in Madrid").emoji in {"🇪🇸", "🎤"}
    assert generator.match("new york").emoji in {"🇺🇸", "🗽", "🏙️"}  # never New Zealand's
    for topic in ("villa", "turkey dinner", "jordan almonds", "casino night", "new year", "wool sweater"):
        pick = generator.match(topic)
        assert not is_flag(pick.emoji), (topic, pick)


def test_nothing_that_reads_as_an_error(generator: EmojiPixelArtGenerator, classic: EmojiPixelArtGenerator) -> None:
    assert classic.match("warning").emoji in pixelart.ERROR_LOOKING | {"⚠️"}
    for topic in ("warning", "x", "no", "stop", "error report", "cancelled order", "forbidden", "question"):
        pick = generator.match(topic)
        assert pick.emoji.replace("\ufe0f", "") not in pixelart.ERROR_LOOKING, (topic, pick)


def test_an_emoji_typed_in_the_topic_is_drawn(generator: EmojiPixelArtGenerator) -> None:
    image = generator.generate("🎂 party")
    assert image.detail == "emoji 🎂 (typed in the topic)"
    assert image.png == generator.generate("🎂").png
    assert generator.pick("party 🐈 and 🐶").emoji == "🐈"
    assert generator.pick("✈ to rome").emoji in {"✈", "✈️"}
    assert generator.match("x" * 5000 + "🐶").emoji != "🐶"  # only the start of a long topic is read


def test_signs_lose_a_near_tie_to_things(generator: EmojiPixelArtGenerator, classic: EmojiPixelArtGenerator) -> None:
    assert classic.match("book club").emoji == "♣️"
    assert generator.match("book club").emoji != "♣️"


def test_variants_are_the_next_best_emoji_then_sprites(generator: EmojiPixelArtGenerator) -> None:
    pngs = [generator.generate("dog", variant=n) for n in range(4)]
    assert pngs[0] == generator.generate("dog")
    assert len({image.png for image in pngs}) == 4
    assert all(image.detail.startswith("emoji ") for image in pngs), [p.detail for p in pngs]
    assert "variant 2" in pngs[2].detail
    picks = [generator.pick("dog", variant=n) for n in range(4)]
    assert [p.emoji for p in picks] == [image.detail.split()[1] for image in pngs]
    last = generator.generate("dog", variant=500)
    assert last.detail.startswith("sprite (variant 500")
    assert last.png != generator.generate("dog", variant=501).png
    with pytest.raises(ValueError):
        generator.generate("dog", variant=-1)


def test_the_labelled_topics_mostly_get_an_acceptable_picture(generator: EmojiPixelArtGenerator,
                                                             classic: EmojiPixelArtGenerator) -> None:
    from benchmarks.pictures import HOLDOUT, TOPICS, read_topics, score

    topics = read_topics(TOPICS)
    assert len(topics) == 100
    now, before = score(generator, topics), score(classic, topics)
    assert now["acceptable"] >= 90 and before["acceptable"] <= 70, (now["acceptable"], before["acceptable"])
    held_out = read_topics(HOLDOUT)
    assert score(generator, held_out)["acceptable_rate"] > score(classic, held_out)["acceptable_rate"]
