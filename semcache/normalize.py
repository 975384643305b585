"""How a topic phrase becomes the cache's exact key."""

from __future__ import annotations

import math
import numbers
import unicodedata

from semcache.errors import InvalidThreshold, InvalidTopic


def clean(topic: str) -> str:
    """The phrase as a person typed it, minus control characters, lone surrogates (which no
    database or service accepts) and extra whitespace: what is stored, shown and sent to a
    generator."""
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cs") else ch for ch in topic)
    return " ".join(text.split())


def normalize(topic: str) -> str:
    """NFKC, control characters and lone surrogates to spaces, case-folded, whitespace collapsed
    and trimmed.

    "  Trip to\tPARIS " and "trip to paris" share one key. The key is only ever a database value,
    never part of a path or a query string.
    """
    return clean(unicodedata.normalize("NFKC", topic)).casefold()


def topic_key(topic: object, max_chars: int) -> str:
    """The normalised key of ``topic``, or InvalidTopic with a sentence saying what to fix."""
    if not isinstance(topic, str):
        raise InvalidTopic(f"A topic must be text, not {type(topic).__name__}.")
    if len(topic) > max_chars * 4:
        raise InvalidTopic(f"That topic is {len(topic):,} characters long; use at most {max_chars}.")
    key = normalize(topic)
    if not any(unicodedata.category(ch)[0] in "LNPS" for ch in key):  # nothing visible: "", "\u200b"
        raise InvalidTopic("The topic is empty: type a word or a short phrase, such as \"dog\".")
    if len(key) > max_chars:
        raise InvalidTopic(f"That topic is {len(key):,} characters long; use at most {max_chars}.")
    return key


def check_threshold(value: object) -> float:
    """A cosine distance in [0, 2] as a float, or InvalidThreshold."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidThreshold(f"The threshold is a cosine distance between 0 and 2, not {value!r}.")
    number = float(value)
    if math.isnan(number) or not 0.0 <= number <= 2.0:
        raise InvalidThreshold(
            f"The threshold is a cosine distance between 0 (exact matches only) and 2; got {value!r}.")
    return number
