"""The shared pixel-art look, and the offline generator that draws with it.

Every image in the cache goes through ``pixelate``. ``EmojiPixelArtGenerator`` is the default
generator: it picks the emoji whose name is closest in meaning to the topic, renders it from the
Noto Color Emoji font and pixelates it; where no emoji fits, it draws a sprite seeded by the
topic's embedding instead. It needs no network. `PickRules` says which emoji may be picked.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Sequence

import emoji as emoji_data
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from semcache.errors import EmbeddingError, GenerationError, InvalidTopic
from semcache.interfaces import Embedder, GeneratedImage

if TYPE_CHECKING:
    from semcache.lexicon import WordNet

__all__ = [
    "GRID", "PALETTE_COLORS", "OUTPUT_SIZE", "EMOJI_FONT_CANDIDATES", "DEFAULT_MIN_SIMILARITY",
    "pixelate", "find_emoji_font", "EmojiMatch", "CatalogueStats", "PickRules", "EmojiPixelArtGenerator",
    "sprite", "sprite_projection",
]

log = logging.getLogger(__name__)

GRID = 32
"""Images are reduced to GRID x GRID cells."""
PALETTE_COLORS = 16
OUTPUT_SIZE = 256
"""Side of the final PNG in pixels (each cell becomes OUTPUT_SIZE // GRID pixels)."""


def pixelate(image: Image.Image, *, grid: int = GRID, colors: int = PALETTE_COLORS,
             size: int = OUTPUT_SIZE, background: tuple[int, int, int] = (255, 255, 255)) -> bytes:
    """Reduce ``image`` to a ``grid`` x ``grid`` image with at most ``colors`` colours, scale it
    up with nearest-neighbour to ``size`` x ``size`` and return it as PNG bytes.

    Transparent areas are flattened onto ``background`` so the palette is spent on the subject.
    """
    rgba = image.convert("RGBA")
    side = max(rgba.size)
    square = Image.new("RGBA", (side, side), background + (255,))
    square.alpha_composite(rgba, ((side - rgba.width) // 2, (side - rgba.height) // 2))
    small = square.convert("RGB").resize((grid, grid), Image.Resampling.BOX)
    quantized = small.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    big = quantized.convert("RGB").resize((size, size), Image.Resampling.NEAREST)
    out = io.BytesIO()
    big.save(out, format="PNG", optimize=True)
    return out.getvalue()


# --- the emoji catalogue ------------------------------------------------------------------------

EMOJI_FONT_CANDIDATES: tuple[Path, ...] = (
    Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"),      # Debian, Ubuntu
    Path("/usr/share/fonts/noto/NotoColorEmoji.ttf"),               # Arch
    Path("/usr/share/fonts/google-noto-color-emoji/NotoColorEmoji.ttf"),  # Fedora
    Path("/usr/share/fonts/google-noto-emoji/NotoColorEmoji.ttf"),  # older Fedora
    Path("/usr/local/share/fonts/NotoColorEmoji.ttf"),
)

EMOJI_FONT_SIZE = 109
"""Noto Color Emoji is a bitmap (CBDT) font with a single strike: 109 px is the only size it loads at."""

DEFAULT_MIN_SIMILARITY = 0.45
"""Below this cosine similarity between topic and best emoji name, a sprite is drawn instead.
Calibrated on all-MiniLM-L6-v2: clear subjects ("dog", "pizza") score 0.6-1.0, abstract office
topics ("quarterly planning") around 0.3."""

_SKIN_TONES = frozenset(chr(c) for c in range(0x1F3FB, 0x1F400))
_REGIONAL_INDICATORS = range(0x1F1E6, 0x1F200)
_CODE_ALIAS = re.compile(r"^u[0-9a-f]{4}$")  # ":u6708:"-style aliases name a code point, not a meaning
_AMBIGUOUS_FLAGS = frozenset({
    # Country flags whose names are also common words or first names, which would otherwise win
    # topics like "email from Jordan", "turkey dinner", "family reunion" or "cooking class".
    "AC", "CK", "CL", "CX", "GE", "GG", "GS", "HM", "IM", "JE", "JO", "NE", "RE", "TD", "TR",
})
_EMBED_BATCH = 512
_TYPED = "typed in the topic"
_TYPED_SCAN_CHARS = 1000
"""How much of a topic is looked at for typed emoji and place names (topics are short; this bounds the work)."""
_TYPED_MAX = 8
_KIND_SIMILARITY = 0.75
_PLACE_SIMILARITY = 0.6
"""The least similarity of the flag of a place the topic names ("weekend in Rome": 🇮🇹), so it
wins over loose matches of the topic's other words but not over a thing named as clearly."""
_PLACE_WORDS = 12
"""Words of a topic looked up as place names (in runs of one to three)."""

ERROR_LOOKING = frozenset(
    "\u274c\u274e\u26d4\U0001F6AB\u26a0\U0001F6D1\u2757\u2755\u2753\u2754\u203c\u2049\U0001F6B7\U0001F6B3"
    "\U0001F6AD\U0001F6AF\U0001F6B1\U0001F4F5\U0001F51E\u2622\u2623\U0001F4A2\u2716\U0001F198\U0001F196"
    "\u2796\U0001F645")
"""Emoji that read as an error or a refusal beside search results (cross marks, "no entry",
prohibited, warning, stop, question and exclamation marks, radioactive): never picked by meaning."""
_ERROR_WORDS = ("prohibited", "cross mark", "warning", "exclamation", "question mark", "no entry",
                "stop sign", "radioactive", "biohazard", "anger symbol", "multiply", "sos button")
_SYMBOL_WORDS = frozenset({"button", "sign", "symbol", "mark", "arrow", "square", "circle", "suit",
                           "triangle", "diamond", "keycap"})
"""The last word of the names of emoji that are signs rather than things (``club suit``,
``P button``, ``hot springs`` is a thing): they lose ``PickRules.symbol_penalty``."""
_PLACE_KINDS = frozenset({"district", "geographical_area", "country", "city", "town", "island",
                          "state", "province", "region"})
"""What WordNet files a place under (its instance's ancestors): "Paris" is an instance of a
national capital, a kind of city, of district..."""

KEYWORDS: dict[str, str] = {
    "🚀": "space|spacecraft|space travel|launch",
    "🛸": "ufo|alien spaceship|flying saucer",
    "🛰️": "satellite|space station|orbit",
    "🏡": "cottage|home|country house|holiday home",
    "🏠": "home|house|apartment|residence",
    "🏘️": "houses|neighbourhood|real estate",
    "🏢": "office|office building|apartment building|company",
    "🏨": "hotel|hotel booking|accommodation",
    "🏥": "hospital|clinic|medical",
    "🏦": "bank|banking|loan|mortgage",
    "🏫": "school|classes|teacher|pupils",
    "🏛️": "museum|government|court|classical building",
    "🏰": "castle|palace",
    "⛪": "church",
    "💒": "wedding|marriage|chapel",
    "💍": "ring|engagement|anniversary|proposal",
    "💐": "bouquet|flowers|florist",
    "🌹": "rose|romance",
    "🎂": "birthday|birthday cake|birthday party",
    "🎉": "party|celebration|congratulations|party popper",
    "🎊": "celebration|confetti",
    "🎈": "balloon|party",
    "🎁": "gift|present|wrapped gift",
    "🥳": "party|celebrate|partying",
    "🎄": "christmas|christmas tree|holidays",
    "🎅": "santa|christmas",
    "🎃": "halloween|jack-o-lantern|pumpkin",
    "👻": "ghost|halloween|spooky",
    "🐣": "easter|chick|hatching",
    "🐰": "bunny|rabbit|easter bunny",
    "🥚": "egg|easter egg",
    "🦃": "turkey|thanksgiving",
    "🎆": "fireworks|new year|new year's eve",
    "🥂": "cheers|toast|champagne|celebration",
    "💘": "valentine|valentine's day|love",
    "❤️": "love|heart|romance",
    "💌": "love letter|invitation",
    "✉️": "letter|mail|envelope",
    "📧": "email|e-mail",
    "📰": "newspaper|newsletter|news",
    "📦": "package|parcel|delivery|shipment|box",
    "🚚": "delivery|delivery truck|moving|shipping",
    "📫": "mailbox|post",
    "🧾": "receipt|invoice|bill|accounting|expenses",
    "💵": "money|cash|dollar|salary|payment|payroll",
    "💰": "money|money bag|savings|wealth|budget",
    "💸": "money transfer|spending|refund|payment",
    "💳": "credit card|card payment|card statement",
    "💶": "euro|money|payment",
    "📈": "chart|growth|stocks|investment|portfolio",
    "📊": "bar chart|report|statistics|spreadsheet|figures",
    "📉": "decline|losses",
    "📋": "clipboard|checklist|form",
    "📝": "memo|notes|writing|minutes|to do list",
    "📅": "calendar|date|appointment|schedule",
    "🗓️": "calendar|planner|schedule",
    "⏰": "alarm clock|deadline|reminder|wake up",
    "⌛": "hourglass|time running out",
    "💼": "briefcase|business|work|job|career",
    "👔": "tie|office wear|formal",
    "🤝": "handshake|agreement|deal|partnership",
    "💻": "laptop|computer|notebook",
    "📱": "mobile phone|smartphone|phone|cell phone",
    "🖨️": "printer|printing",
    "🌐": "internet|web|world wide web|network",
    "📶": "wifi|signal|internet connection|antenna bars",
    "🔑": "key|password|access|login",
    "🔒": "lock|locked|security|privacy",
    "🔧": "wrench|repair|maintenance|plumber|fix",
    "🛠️": "tools|repair|maintenance|workshop",
    "🦷": "tooth|dentist|dental",
    "🩺": "stethoscope|doctor|check-up|medical appointment",
    "💉": "syringe|vaccine|vaccination|injection|shot",
    "💊": "pill|medicine|prescription|pharmacy|drugs",
    "🏋️": "weight lifting|gym|fitness|workout",
    "💪": "muscle|strength|fitness|gym",
    "🧘": "yoga|meditation|mindfulness",
    "⚽": "soccer|football|soccer ball",
    "🎾": "tennis",
    "🏊": "swimming|swimmer|pool",
    "⛷️": "skiing|skier|ski holiday",
    "🎿": "ski|skis|skiing",
    "🏖️": "beach|seaside|vacation",
    "🏝️": "island|tropical island|holiday",
    "☀️": "sun|sunny|summer",
    "🌴": "palm tree|tropics|vacation",
    "❄️": "snow|snowflake|winter|cold",
    "☃️": "snowman|snow|winter",
    "🌧️": "rain|rainy|weather|forecast",
    "☔": "umbrella with rain|rain|rainy",
    "🎵": "music|song|concert",
    "🎤": "microphone|concert|karaoke|talk|conference",
    "🎟️": "tickets|admission|event tickets",
    "🎫": "ticket|pass|boarding pass",
    "🎬": "movie|film|cinema|clapper board",
    "🍿": "popcorn|movies|cinema",
    "📚": "books|library|reading|study",
    "📖": "book|reading|recipe book",
    "🍕": "pizza",
    "🍽️": "dinner|restaurant|meal|dining",
    "🍴": "restaurant|cutlery|lunch",
    "☕": "coffee|cafe|espresso",
    "🛒": "shopping cart|groceries|shopping|supermarket",
    "🐶": "dog|puppy|pet",
    "🐕": "dog|pet",
    "🐱": "cat|kitten|pet",
    "🐈": "cat|kitten",
    "🐎": "horse|horse riding",
    "🦁": "lion|zoo|safari",
    "🌻": "sunflower|garden|flowers",
    "🪴": "potted plant|houseplant|gardening",
    "🌱": "seedling|plants|gardening|sprout",
    "⚡": "electricity|power|lightning|energy",
    "💡": "light bulb|idea|electricity",
    "🔌": "electric plug|electricity|power",
    "✈️": "airplane|flight|air travel|plane",
    "🛫": "departure|flight|take off",
    "🚆": "train|rail|train journey",
    "🚗": "car|automobile|driving",
    "🚲": "bicycle|bike|cycling",
    "🚢": "ship|cruise|ferry",
    "🛳️": "passenger ship|cruise ship|cruise",
    "⛵": "sailboat|sailing|yacht",
    "🏕️": "camping|campsite|tent",
    "🥾": "hiking|hiking boot|trekking",
    "⛰️": "mountain|mountains|hills",
    "🎣": "fishing|fishing rod",
    "🗽": "statue of liberty|liberty",
    "🗼": "tokyo|tower",
    "🎓": "graduation|diploma|university|degree",
    "🧑‍🏫": "teacher|school|lesson",
    "🎹": "piano|keyboard|musical instrument",
    "🎸": "guitar|rock music",
    "📷": "camera|photos|photography|pictures",
    "🎮": "video game|gaming|games console",
    "⚖️": "justice|law|lawyer|legal|court",
    "🧑‍⚖️": "judge|court|lawyer",
    "⚰️": "coffin|funeral|death",
    "🕯️": "candle|memorial|funeral",
    "💇": "haircut|hair salon|hairdresser|barber",
    "✂️": "scissors|cut|haircut",
    "👶": "baby|newborn|infant",
    "🍼": "baby bottle|baby|infant",
    "👪": "family|parents|children",
    "🛂": "passport|passport control|border control|visa",
    "🗺️": "map|travel|road trip|world map",
    "🛣️": "motorway|highway|road trip",
}
"""Keywords of the most common subjects, in the manner of CLDR's annotations: what people call
the thing drawn beyond its Unicode name. Embedded beside the names and aliases when
``PickRules.keywords`` is on."""


@dataclass(frozen=True)
class PickRules:
    """Which emoji may stand for a topic (each rule can be turned off; `classic` turns all off).

    ``typed_emoji``: a topic that holds an emoji draws the first one the font can draw.
    ``flags_for_places``: a country's flag only for topics that name it or a place in it (a city:
    "trip to Paris" draws 🇫🇷, at least `_PLACE_SIMILARITY` similar; "villa" never draws Monaco's
    flag). Places are told by WordNet when it is installed, else by the country's own name.
    ``no_error_symbols``: never `ERROR_LOOKING` emoji (❌, ⛔, 🚫, ⚠...).
    ``keywords``: `KEYWORDS` embedded with each emoji's names.
    ``kinds``: an emoji named for what the topic is a kind of, one step up in WordNet ("villa"
    is a kind of house: 🏠), counts as at least `_KIND_SIMILARITY` similar.
    ``symbol_penalty``: subtracted from the similarity of signs (buttons, marks, suits, arrows)
    when choosing, so a thing, an animal or a place wins a near tie.
    """

    typed_emoji: bool = True
    flags_for_places: bool = True
    no_error_symbols: bool = True
    keywords: bool = True
    kinds: bool = True
    symbol_penalty: float = 0.08

    @classmethod
    def classic(cls) -> "PickRules":
        """The picks of the first catalogue: names and aliases only, every flag, no exclusions."""
        return cls(typed_emoji=False, flags_for_places=False, no_error_symbols=False, keywords=False,
                   kinds=False, symbol_penalty=0.0)



def find_emoji_font() -> Path | None:
    """The first installed Noto Color Emoji font from ``EMOJI_FONT_CANDIDATES``, or None."""
    return next((p for p in EMOJI_FONT_CANDIDATES if p.is_file()), None)


def _phrase(name: str) -> str:
    """":dog_face:" -> "dog face"."""
    return " ".join(name.strip(":").replace("_", " ").split())


def _flag_code(char: str) -> str | None:
    """"🇫🇷" -> "FR"; None when ``char`` is not a country flag."""
    if len(char) != 2 or not all(ord(c) in _REGIONAL_INDICATORS for c in char):
        return None
    return "".join(chr(ord(c) - _REGIONAL_INDICATORS.start + ord("A")) for c in char)


def _single_glyph_checker(font: ImageFont.FreeTypeFont) -> Callable[[str], bool]:
    """Return a test for "the font draws this emoji as one coloured glyph".

    A code point the font lacks draws as an empty .notdef (no ink height); a ZWJ sequence it
    cannot ligate draws as several glyphs side by side (wider than one).
    """
    left, _, right, _ = font.getbbox("\U0001F600")
    one_glyph = right - left

    def renders(char: str) -> bool:
        left, top, right, bottom = font.getbbox(char)
        return bottom > top and (right - left) <= one_glyph * 1.25

    return renders


@dataclass(frozen=True)
class _Catalogue:
    chars: tuple[str, ...]
    names: tuple[str, ...]
    phrases: tuple[str, ...]
    """Every phrase embedded; those of one emoji are contiguous."""
    starts: np.ndarray
    """Index in ``phrases`` of each emoji's first phrase (for np.maximum.reduceat)."""
    phrase_owner: np.ndarray
    flags: np.ndarray
    """Per emoji: a country flag."""
    errors: np.ndarray
    """Per emoji: reads as an error (`ERROR_LOOKING`, or an error word in its name)."""
    symbols: np.ndarray
    """Per emoji: a sign rather than a thing (`_SYMBOL_WORDS`)."""
    lookup: dict[str, int] | None = None
    """Phrase (as WordNet spells it) -> its first index in ``phrases``; made on first use."""

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for char, phrase in zip((self.chars[i] for i in self.phrase_owner), self.phrases):
            h.update(f"{char}\t{phrase}\n".encode())
        return h.hexdigest()


def _is_error(char: str, name: str) -> bool:
    lowered = name.lower()
    return (char.replace("\ufe0f", "") in ERROR_LOOKING or lowered.startswith("no ")
            or any(word in lowered for word in _ERROR_WORDS))


def _is_symbol(char: str, name: str) -> bool:
    words = name.lower().split()
    return bool(words) and (words[-1] in _SYMBOL_WORDS or words[0] == "keycap" or "\u20e3" in char)


def _lemma(name: str) -> str:
    """A name as WordNet spells it: "United States" -> "united_states"."""
    return "_".join(name.lower().split())


def _is_a_place(wordnet: "WordNet", sid: tuple[str, int]) -> bool:
    """Whether the synset is an instance of a city, a country, an island or another place."""
    frontier = wordnet.synset(*sid).linked({"@i"})
    seen: set[tuple[str, int]] = set()
    for _ in range(8):
        if any(word in _PLACE_KINDS for up in frontier for word in wordnet.synset(*up).words):
            return True
        seen.update(frontier)
        frontier = [up for one in frontier for up in wordnet.synset(*one).linked({"@", "@i"}) if up not in seen]
        if not frontier:
            return False
    return False


def _build_catalogue(font: ImageFont.FreeTypeFont, include_flags: bool, keywords: bool = False) -> _Catalogue:
    renders = _single_glyph_checker(font)
    fully_qualified = emoji_data.STATUS["fully_qualified"]
    chars: list[str] = []
    names: list[str] = []
    phrases: list[str] = []
    owner: list[int] = []
    starts: list[int] = []
    for char in sorted(emoji_data.EMOJI_DATA):
        data = emoji_data.EMOJI_DATA[char]
        if data.get("status") != fully_qualified or _SKIN_TONES.intersection(char):
            continue
        flag = _flag_code(char)
        if flag is not None and (not include_flags or flag in _AMBIGUOUS_FLAGS):
            continue
        if not renders(char):
            continue
        name = _phrase(data["en"])
        own: list[str] = []
        extra = KEYWORDS.get(char, KEYWORDS.get(char.replace("\ufe0f", ""), "")).split("|") if keywords else []
        for candidate in [name, *(_phrase(a) for a in data.get("alias", [])), *extra]:
            if not candidate or _CODE_ALIAS.match(candidate) or candidate.lower() in (p.lower() for p in own):
                continue
            if flag is not None and len(candidate) <= 2:  # ":it:", ":us:", ":de:" read as words
                continue
            own.append(candidate)
        starts.append(len(phrases))
        owner.extend([len(chars)] * len(own))
        phrases.extend(own)
        chars.append(char)
        names.append(name)
    if not chars:
        raise GenerationError("The emoji font renders none of the emoji in the emoji package; "
                              "install fonts-noto-color-emoji or pass the path of Noto Color Emoji.")
    return _Catalogue(tuple(chars), tuple(names), tuple(phrases),
                      np.asarray(starts, dtype=np.intp), np.asarray(owner, dtype=np.intp),
                      flags=np.asarray([_flag_code(c) is not None for c in chars]),
                      errors=np.asarray([_is_error(c, n) for c, n in zip(chars, names)]),
                      symbols=np.asarray([_is_symbol(c, n) for c, n in zip(chars, names)]))


# Built once per process and shared by every generator instance (apps may build several).
_catalogues: dict[tuple[str, bool, bool], _Catalogue] = {}
_matrices: dict[tuple[str, int, str], np.ndarray] = {}
_build_lock = threading.Lock()


@dataclass(frozen=True)
class EmojiMatch:
    """The emoji whose name is closest in meaning to a topic."""

    emoji: str
    name: str
    """Its CLDR name as a phrase, e.g. "dog face"."""
    phrase: str
    """The name or alias that matched best, e.g. "dog"."""
    similarity: float
    """Cosine similarity between the topic and ``phrase``, in [-1, 1]."""


@dataclass(frozen=True)
class CatalogueStats:
    emoji: int
    phrases: int
    seconds: float
    """Time spent making the catalogue ready in this call (0 when it already was)."""
    source: Literal["memory", "disk", "computed", "no font"]
    """Where the name embeddings came from; "no font" when there is no catalogue to make
    because this generator draws sprites only."""


class EmojiPixelArtGenerator:
    """The offline generator: the emoji that best depicts the topic, pixelated.

    Picks by meaning: every emoji's name and aliases are embedded once with ``embedder`` and the
    topic's embedding is compared by cosine similarity; an emoji counts under the best of its
    names. When the best similarity is below ``min_similarity``, or no colour emoji font is
    installed, it draws a mirrored sprite seeded by the embedding instead, so topics close in
    meaning get similar sprites. The same topic always gives the same PNG bytes.

    ``price_usd`` is what the generator says an image costs. Drawing offline is free, but this
    generator stands in for a paid image model, so it reports a paid model's price (0.04 by
    default) and the cache's savings read as they would in production. Pass 0 to count it as free.

    The catalogue embedding (about 3,000 phrases) happens lazily on the first ``generate`` or
    ``match``, once per process and embedder; call ``prepare`` to pay it up front. With
    ``cache_dir`` the matrix is also kept on disk, keyed by embedder model, dimensions, the emoji
    package version and the catalogue's content. Thread-safe.

    ``rules`` (`PickRules`) say which emoji may stand for a topic; ``variant`` n of `generate`
    draws the n-th best of them (0 is the best), for a picture different from the ones before.
    """

    name = "offline-emoji"

    def __init__(self, embedder: Embedder, *, font_path: str | os.PathLike[str] | None = None,
                 min_similarity: float = DEFAULT_MIN_SIMILARITY, price_usd: float = 0.04,
                 cache_dir: str | os.PathLike[str] | None = None, include_flags: bool = True,
                 rules: PickRules | None = None, wordnet: "WordNet | None" = None) -> None:
        """
        ``font_path``: Noto Color Emoji (or another CBDT font with a 109 px strike); None looks in
        ``EMOJI_FONT_CANDIDATES``. A path that does not exist means "draw sprites only".
        ``min_similarity``: cosine similarity in [-1, 1] (cosine distance ``1 - min_similarity``)
        an emoji name must reach; above 1 always draws sprites.
        ``include_flags``: country flags, so "trip to Paris" draws 🇫🇷. Flags whose country's name is
        also a common word or first name (Jordan, Chad, Turkey, Réunion...) are always left out.
        ``rules``: `PickRules()` by default. ``wordnet``: what tells a place (for
        ``rules.flags_for_places``); None uses WordNet from its default folder when it is there.
        """
        if not (-1.0 <= min_similarity <= 2.0):
            raise ValueError(f"min_similarity must be a cosine similarity in [-1, 1] (or up to 2 to "
                             f"disable emoji), got {min_similarity}.")
        if price_usd < 0:
            raise ValueError(f"price_usd must be 0 or more, got {price_usd}.")
        self.embedder = embedder
        self.min_similarity = float(min_similarity)
        self.price_usd = float(price_usd)
        self.include_flags = include_flags
        self.rules = rules if rules is not None else PickRules()
        self._wordnet = wordnet
        self._places: dict[str, bool] = {}
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._font_given = font_path is not None
        self.font_path: Path | None = Path(font_path) if font_path is not None else find_emoji_font()
        self._font: ImageFont.FreeTypeFont | None = None
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()  # a FreeType face must not draw from two threads at once
        self._projection: np.ndarray | None = None
        self._renders: Callable[[str], bool] | None = None

    @property
    def max_distance(self) -> float:
        """``min_similarity`` as a cosine distance, the unit the cache's threshold uses."""
        return 1.0 - self.min_similarity

    @property
    def has_font(self) -> bool:
        return self.font_path is not None and self.font_path.is_file()

    # --- public API -----------------------------------------------------------------------------

    def prepare(self) -> CatalogueStats:
        """Make the emoji catalogue ready now (load the font, embed or load every emoji name),
        so the first ``generate`` does not pay for it.

        Raises GenerationError when the font cannot be loaded or the embedder fails.
        """
        if not self.has_font:
            return CatalogueStats(0, 0, 0.0, "no font")
        started = time.perf_counter()
        catalogue, matrix, source = self._catalogue_and_matrix()
        seconds = 0.0 if source == "memory" else time.perf_counter() - started
        return CatalogueStats(len(catalogue.chars), len(catalogue.phrases), seconds, source)

    def match(self, topic: str, embedding: np.ndarray | None = None) -> EmojiMatch:
        """The emoji the rules let stand for ``topic`` that is closest in meaning (or the emoji
        typed in it), whatever its similarity."""
        return self._ranked(topic, embedding, 1, floor=None)[0]

    def pick(self, topic: str, embedding: np.ndarray | None = None, *, variant: int = 0) -> EmojiMatch | None:
        """The emoji `generate` draws for ``topic`` (its ``variant``-th best), or None for a sprite."""
        if not self.has_font:
            self._topic_vector(topic, embedding)
            return None
        ranked = self._ranked(topic, embedding, variant + 1, floor=self.min_similarity)
        return ranked[variant] if variant < len(ranked) else None

    def generate(self, topic: str, embedding: np.ndarray | None = None, *, variant: int = 0) -> GeneratedImage:
        """The picture for ``topic``; ``variant`` n > 0 draws the n-th best emoji instead of the
        best (after the last one close enough, sprites of other seeds), so each is different."""
        if variant < 0:
            raise ValueError(f"variant must be 0 or more, got {variant}.")
        vector = self._topic_vector(topic, embedding)
        if not self.has_font:
            where = f"at {self.font_path}" if self._font_given else "installed"
            return GeneratedImage(self._sprite_png(vector, variant), f"sprite (no colour emoji font {where})")
        ranked = self._ranked(topic, vector, variant + 1, floor=self.min_similarity, normalised=True)
        if variant >= len(ranked):
            if ranked or variant:
                note = f"variant {variant}: no other emoji close enough"
            else:
                best = self._ranked(topic, vector, 1, floor=None, normalised=True)[0]
                note = f"no emoji close enough: best {best.emoji} '{best.name}' at {best.similarity:.2f}"
            return GeneratedImage(self._sprite_png(vector, variant - len(ranked)), f"sprite ({note})")
        best = ranked[variant]
        png = self._emoji_png(best.emoji)
        if best.phrase == _TYPED:
            return GeneratedImage(png, f"emoji {best.emoji} (typed in the topic)")
        via = "" if best.phrase == best.name else f" via '{best.phrase}'"
        nth = f"; variant {variant}" if variant else ""
        return GeneratedImage(png, f"emoji {best.emoji} '{best.name}'{via} (similarity {best.similarity:.2f}{nth})")

    # --- meaning --------------------------------------------------------------------------------

    def _embed(self, texts: Sequence[str], what: str) -> np.ndarray:
        try:
            vectors = np.asarray(self.embedder.embed(list(texts)), dtype=np.float32)
        except EmbeddingError as e:
            raise GenerationError(f"Could not embed {what} with '{self.embedder.model}': {e}") from e
        except Exception as e:
            raise GenerationError(f"The embedder '{self.embedder.model}' failed on {what}: "
                                  f"{type(e).__name__}: {e}") from e
        if vectors.shape != (len(texts), self.embedder.dimensions) or not np.isfinite(vectors).all():
            raise GenerationError(f"The embedder '{self.embedder.model}' returned an array of shape "
                                  f"{vectors.shape} for {what}; expected ({len(texts)}, "
                                  f"{self.embedder.dimensions}) of finite numbers.")
        return vectors

    def _topic_vector(self, topic: str, embedding: np.ndarray | None) -> np.ndarray:
        if not topic or not topic.strip():
            raise InvalidTopic("The topic is empty; give a few words to draw.")
        if embedding is None:
            vector = self._embed([topic], f"the topic {topic!r}")[0]
        else:
            vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
            if vector.shape != (self.embedder.dimensions,) or not np.isfinite(vector).all():
                raise GenerationError(
                    f"The embedding given for {topic!r} has shape {np.shape(embedding)}, but the embedder "
                    f"'{self.embedder.model}' makes {self.embedder.dimensions} finite numbers; pass a "
                    f"vector from the same embedder.")
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            raise GenerationError(f"The embedding of {topic!r} is all zeros, so it has no direction to match.")
        return vector / norm

    def _ranked(self, topic: str, embedding: np.ndarray | None, n: int, *, floor: float | None,
                normalised: bool = False) -> list[EmojiMatch]:
        """Up to ``n`` emoji for ``topic``, best first: the emoji typed in it, then those the
        rules allow by meaning (with a similarity of at least ``floor``, when given)."""
        vector = embedding if normalised else self._topic_vector(topic, embedding)
        catalogue, matrix, _ = self._catalogue_and_matrix()
        out = self._typed(topic) if self.rules.typed_emoji else []
        if len(out) >= n:
            return out[:n]
        scores = matrix @ vector
        if self.rules.kinds:
            for phrase_index in self._kind_phrases(topic, catalogue):
                scores[phrase_index] = max(scores[phrase_index], _KIND_SIMILARITY)
        per_emoji = np.maximum.reduceat(scores, catalogue.starts)
        allowed = np.ones(len(catalogue.chars), dtype=bool)
        if self.rules.no_error_symbols:
            allowed &= ~catalogue.errors
        if self.rules.flags_for_places:
            places = self._places_named(topic, catalogue)
            allowed &= ~catalogue.flags
            if places:
                for index in np.flatnonzero(catalogue.flags):
                    if _lemma(catalogue.names[index]) in places:
                        allowed[index] = True
                        per_emoji[index] = max(per_emoji[index], _PLACE_SIMILARITY)
        if not allowed.any():
            allowed[:] = True
        ranking = np.where(allowed, per_emoji - self.rules.symbol_penalty * catalogue.symbols, -np.inf)
        taken = {m.emoji for m in out}
        for index in np.argsort(-ranking, kind="stable"):
            if len(out) >= n or not np.isfinite(ranking[index]):
                break
            similarity = float(per_emoji[index])
            if floor is not None and similarity < floor:
                continue  # a sign's penalty may have ranked it below one that does not reach the floor
            if catalogue.chars[index] in taken:
                continue
            start = int(catalogue.starts[index])
            end = int(catalogue.starts[index + 1]) if index + 1 < len(catalogue.starts) else len(scores)
            phrase_index = start + int(np.argmax(scores[start:end]))
            out.append(EmojiMatch(catalogue.chars[index], catalogue.names[index], catalogue.phrases[phrase_index],
                                  similarity))
        return out

    def _typed(self, topic: str) -> list[EmojiMatch]:
        """The emoji written in ``topic`` that the font draws, in order (at most a few)."""
        if self._renders is None:
            self._renders = _single_glyph_checker(self._load_font())
        out: list[EmojiMatch] = []
        for found in emoji_data.emoji_list(topic[:_TYPED_SCAN_CHARS])[:_TYPED_MAX]:
            char = found["emoji"]
            if any(m.emoji == char for m in out):
                continue
            with self._render_lock:
                draws = self._renders(char)
            if draws:
                name = _phrase(emoji_data.EMOJI_DATA.get(char, {}).get("en", "")) or char
                out.append(EmojiMatch(char, name, _TYPED, 1.0))
        return out

    def _kind_phrases(self, topic: str, catalogue: _Catalogue) -> list[int]:
        """The catalogue's phrases that name what the whole topic is a kind of, one step up in
        WordNet ("villa": house), by the topic's two most frequent noun senses."""
        wordnet = self._place_lexicon()
        text = " ".join(topic.lower().split())
        if wordnet is None or not text or len(text) > 60:
            return []
        if catalogue.lookup is None:
            index: dict[str, int] = {}
            for i, phrase in enumerate(catalogue.phrases):
                index.setdefault(_lemma(phrase), i)
            object.__setattr__(catalogue, "lookup", index)
        out = []
        for sid in wordnet.meanings(text, limit=2).get("n", []):
            for up in wordnet.synset(*sid).linked({"@"}):
                out.extend(catalogue.lookup[w] for w in wordnet.synset(*up).words if w in catalogue.lookup)
        return out

    def _places_named(self, topic: str, catalogue: _Catalogue) -> frozenset[str]:
        """The places ``topic`` names and the places they are part of, as WordNet spells them
        ("trip to Paris": paris, france, europe...); cached per topic."""
        key = " ".join(re.findall(r"[^\W\d_]+", topic.lower()[:_TYPED_SCAN_CHARS]))
        known = self._places.get(key)
        if known is None:
            known = self._find_places(key, catalogue)
            with self._lock:
                if len(self._places) >= 4096:
                    self._places.clear()
                self._places[key] = known
        return known

    def _find_places(self, words_text: str, catalogue: _Catalogue) -> frozenset[str]:
        words = words_text.split()[:_PLACE_WORDS]
        grams = [" ".join(words[i:i + size]) for size in (3, 2, 1) for i in range(len(words) - size + 1)]
        wordnet = self._place_lexicon()
        if wordnet is None:
            names = {_lemma(catalogue.names[i]) for i in np.flatnonzero(catalogue.flags)}
            return frozenset(_lemma(gram) for gram in grams if _lemma(gram) in names)
        found: set[str] = set()
        for gram in grams:
            found.update(self._wordnet_place(wordnet, gram))
        return frozenset(found)

    def _place_lexicon(self) -> "WordNet | None":
        if self._wordnet is None:
            from semcache.lexicon import WordNet

            self._wordnet = WordNet()
        if not self._wordnet.available:
            return None
        self._wordnet.load()
        return self._wordnet

    @staticmethod
    def _wordnet_place(wordnet: "WordNet", gram: str) -> set[str]:
        """The names of ``gram``'s senses that are places (instances of a city, a country...) and
        of the places each is part of; empty when it names none."""
        out: set[str] = set()
        for sid in wordnet.meanings(gram, limit=3).get("n", []):
            if not _is_a_place(wordnet, sid):
                continue
            frontier, seen = [sid], {sid}
            for _ in range(5):  # Paris, France, Europe...
                out.update(word for part in frontier for word in wordnet.synset(*part).words)
                frontier = [up for part in frontier for up in wordnet.synset(*part).linked({"#p"}) if up not in seen]
                seen.update(frontier)
        return out

    def _catalogue_and_matrix(self) -> tuple[_Catalogue, np.ndarray, Literal["memory", "disk", "computed"]]:
        font = self._load_font()
        font_key = (str(self.font_path), self.include_flags, self.rules.keywords)
        with _build_lock:
            catalogue = _catalogues.get(font_key)
            if catalogue is None:
                catalogue = _catalogues[font_key] = _build_catalogue(font, self.include_flags, self.rules.keywords)
            key = (self.embedder.model, self.embedder.dimensions, catalogue.digest)
            matrix = _matrices.get(key)
            if matrix is not None:
                return catalogue, matrix, "memory"
            matrix = self._read_cached_matrix(catalogue)
            source: Literal["disk", "computed"] = "disk"
            if matrix is None:
                matrix = self._embed_catalogue(catalogue)
                source = "computed"
                self._write_cached_matrix(catalogue, matrix)
            _matrices[key] = matrix
            return catalogue, matrix, source

    def _embed_catalogue(self, catalogue: _Catalogue) -> np.ndarray:
        started = time.perf_counter()
        parts = [self._embed(catalogue.phrases[i:i + _EMBED_BATCH], "the emoji names")
                 for i in range(0, len(catalogue.phrases), _EMBED_BATCH)]
        matrix = np.concatenate(parts)
        matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        log.info("Embedded %d emoji names with %s in %.1f s", len(catalogue.phrases), self.embedder.model,
                 time.perf_counter() - started)
        return matrix

    def _cache_file(self, catalogue: _Catalogue) -> Path | None:
        if self.cache_dir is None:
            return None
        model = re.sub(r"[^A-Za-z0-9._-]+", "-", self.embedder.model).strip("-")[:80]
        return self.cache_dir / (f"emoji-names-{model}-{self.embedder.dimensions}d-"
                                 f"emoji{emoji_data.__version__}-{catalogue.digest[:16]}.npy")

    def _read_cached_matrix(self, catalogue: _Catalogue) -> np.ndarray | None:
        path = self._cache_file(catalogue)
        if path is None or not path.is_file():
            return None
        try:
            matrix = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            log.warning("Ignoring unreadable emoji-name cache %s: %s", path, e)
            return None
        if (matrix.dtype != np.float32 or matrix.shape != (len(catalogue.phrases), self.embedder.dimensions)
                or not np.isfinite(matrix).all()):
            log.warning("Ignoring emoji-name cache %s: it does not match the catalogue", path)
            return None
        return matrix

    def _write_cached_matrix(self, catalogue: _Catalogue, matrix: np.ndarray) -> None:
        path = self._cache_file(catalogue)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".emoji-names-", suffix=".npy")
            try:
                with os.fdopen(fd, "wb") as f:
                    np.save(f, matrix, allow_pickle=False)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as e:
            # The matrix is still kept in memory; only the next process pays again.
            log.warning("Could not save the emoji-name cache to %s: %s", path, e)

    # --- drawing --------------------------------------------------------------------------------

    def _load_font(self) -> ImageFont.FreeTypeFont:
        with self._lock:
            if self._font is None:
                if not self.has_font:
                    raise GenerationError("No colour emoji font is installed; install fonts-noto-color-emoji "
                                          "or pass font_path.")
                try:
                    # From an open file: given a path that fails, Pillow would quietly load another
                    # font of the same file name from the system font folders.
                    with open(self.font_path, "rb") as file:
                        self._font = ImageFont.truetype(file, EMOJI_FONT_SIZE)
                except OSError as e:
                    raise GenerationError(
                        f"Could not load the colour emoji font {self.font_path} at {EMOJI_FONT_SIZE} px ({e}); "
                        f"it must be Noto Color Emoji, and Pillow must be built with FreeType and PNG.") from e
            return self._font

    def _emoji_png(self, char: str) -> bytes:
        font = self._load_font()
        try:
            with self._render_lock:
                left, top, right, bottom = font.getbbox(char)
                canvas = Image.new("RGBA", (right + 8, bottom + 8), (0, 0, 0, 0))
                ImageDraw.Draw(canvas).text((4, 4), char, font=font, embedded_color=True)
            box = canvas.getchannel("A").getbbox()
            if box is None:
                raise GenerationError(f"The emoji {char} rendered as an empty image; the emoji font "
                                      f"{self.font_path} may be damaged.")
            subject = canvas.crop(box)
            margin = max(subject.size) // 16
            framed = Image.new("RGBA", (subject.width + 2 * margin, subject.height + 2 * margin), (0, 0, 0, 0))
            framed.alpha_composite(subject, (margin, margin))
            return pixelate(framed)
        except GenerationError:
            raise
        except Exception as e:
            raise GenerationError(f"Could not draw the emoji {char}: {type(e).__name__}: {e}") from e

    def _sprite_png(self, vector: np.ndarray, variant: int = 0) -> bytes:
        try:
            projection = (self._sprite_projection(vector.shape[0]) if variant <= 0
                          else sprite_projection(vector.shape[0], seed=_SPRITE_SEED + variant))
            return pixelate(sprite(vector, projection))
        except Exception as e:
            raise GenerationError(f"Could not draw the sprite: {type(e).__name__}: {e}") from e

    def _sprite_projection(self, dimensions: int) -> np.ndarray:
        with self._lock:
            if self._projection is None or self._projection.shape[1] != dimensions:
                self._projection = sprite_projection(dimensions)
            return self._projection


# --- sprites --------------------------------------------------------------------------------

SPRITE_CELLS = 16
"""The sprite is SPRITE_CELLS x SPRITE_CELLS: a mirrored body with a one-cell outline margin."""
_BODY = SPRITE_CELLS - 2
_HALF = _BODY // 2
_COLOUR_PROJECTIONS = 3


_SPRITE_SEED = 0x5E3CAC4E


def sprite_projection(dimensions: int, seed: int = _SPRITE_SEED) -> np.ndarray:
    """The fixed random projection that turns an embedding into a sprite.

    RandomState's stream is frozen by NumPy, so the same seed gives the same sprites on every
    machine and NumPy version.
    """
    rows = _BODY * _HALF + _COLOUR_PROJECTIONS
    return np.random.RandomState(seed).standard_normal((rows, dimensions)).astype(np.float32)


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return round(r * 255), round(g * 255), round(b * 255)


def _grow(mask: np.ndarray) -> np.ndarray:
    """``mask`` and its 4-neighbours."""
    grown = mask.copy()
    grown[1:, :] |= mask[:-1, :]
    grown[:-1, :] |= mask[1:, :]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown


def _outside(body: np.ndarray) -> np.ndarray:
    """Empty cells reachable from the border without crossing ``body``; holes inside stay False."""
    outside = np.zeros_like(body)
    outside[0, :] = outside[-1, :] = outside[:, 0] = outside[:, -1] = True
    outside &= ~body
    while True:
        grown = _grow(outside) & ~body
        if (grown == outside).all():
            return outside
        outside = grown


def sprite(vector: np.ndarray, projection: np.ndarray) -> Image.Image:
    """A symmetric space-invader-style sprite for a unit ``vector`` (RGBA, transparent background).

    Each half-body cell is on when its random projection of the vector exceeds a threshold that
    rises towards the edges; hue and shading come from three more projections. Since each
    projection changes smoothly with the vector, nearby vectors flip few cells.
    """
    p = projection @ np.asarray(vector, dtype=np.float32)
    cells, (hue_x, hue_y, tone) = p[:-_COLOUR_PROJECTIONS].reshape(_BODY, _HALF), p[-_COLOUR_PROJECTIONS:]
    rows = np.abs(np.arange(_BODY) - (_BODY - 1) / 2) / (_BODY / 2)  # 0 at the centre row, ~1 at the edges
    cols = (_HALF - 1 - np.arange(_HALF)) / _HALF                     # 0 next to the mirror axis
    threshold = -0.1 + 1.0 * rows[:, None] ** 2 + 1.3 * cols[None, :] ** 2
    half = cells > threshold
    body = np.zeros((SPRITE_CELLS, SPRITE_CELLS), dtype=bool)
    body[1:-1, 1:-1] = np.concatenate([half, half[:, ::-1]], axis=1)
    strong = cells > threshold + 1.2
    shade = np.zeros_like(body)
    shade[1:-1, 1:-1] = np.concatenate([strong, strong[:, ::-1]], axis=1)
    shade &= body
    outside = _outside(body)
    outline = outside & _grow(body)

    hue = (np.arctan2(hue_y, hue_x) / (2 * np.pi)) % 1.0
    light = 0.72 + 0.18 * float(np.tanh(tone))
    colours = np.zeros((SPRITE_CELLS, SPRITE_CELLS, 4), dtype=np.uint8)
    colours[body] = (*_hsv(hue, 0.6, light), 255)
    colours[shade] = (*_hsv(hue + 0.06, 0.7, light - 0.22), 255)
    colours[outline] = (*_hsv(hue, 0.5, 0.18), 255)
    return Image.fromarray(colours, "RGBA").resize((OUTPUT_SIZE, OUTPUT_SIZE), Image.Resampling.NEAREST)
