"""Two multi-word topics word by word: which words they share, and whether the words that differ
change the picture.

The embedding of a phrase is dominated by the words two phrases share: all-MiniLM-L6-v2 puts
"summer vacation" 0.26 from "winter vacation", nearer than many phrasings of one trip. So the
words of the two phrases are aligned first (the same word, its dictionary form, a typo of it, a
synonym), and the words left over are judged with WordNet:

- an opposite ("hot weather", "cold weather"), another member of one small kind (two seasons,
  two cities, two meals, two sports, two vehicles) or another adjective of one cluster ("red
  dress", "blue dress") changes the picture: never served;
- every word aligned ("paris trip", "trip to paris"; "car insurance", "auto insurance"): the same
  words in another order or form, which counts as the synonyms it is;
- a word on each side that none of this judges (another head, "birthday party" / "birthday
  celebration"; "hotel booking" / "flight booking"): the phrases differ in part, and their
  distance, which the words they share pull together, counts for more (`Relation.PARTIAL`);
- anything else (words more on one side only, "birthday" / "birthday party"): the phrase's
  distance decides, as it would without this.

A misspelt word aligns with the word it misspells ("sumer vacation"), and two single words, one a
misspelling of the other ("vacaton", "vacation"), count as aligned too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from semcache.lexicon import Relation

STOPWORDS = frozenset(
    "a an the to of for from with without in on at by into about and or my our your his her their its "
    "me us you them this that these those is are was were be re fwd fw".split())
"""Words that do not change a small picture of the topic."""

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_ALIGNING = frozenset({Relation.SAME, Relation.SYNONYM})
_UNLINKED = frozenset({Relation.SIBLING, Relation.DISTINCT})


@dataclass(frozen=True)
class Alignment:
    """The content words of two phrases: the pairs aligned, and those left on either side."""

    aligned: tuple[tuple[str, str], ...]
    only_a: tuple[str, ...]
    only_b: tuple[str, ...]


def content_words(key: str) -> list[str]:
    """The words of a normalised key that a picture could show: no stop words, no possessive
    ending ("daughter's" -> "daughter")."""
    out = []
    for word in _WORD.findall(key):
        word = re.sub(r"['’]s$", "", word)
        if word and word not in STOPWORDS:
            out.append(word)
    return out


def is_phrase(key: str) -> bool:
    return len(key.split()) > 1


def letter_apart(a: str, b: str) -> bool:
    """One letter added, dropped, changed or two swapped, in words of four letters or more."""
    if min(len(a), len(b)) < 4 or abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1:]


def misspelt(wordnet, a: str, b: str) -> bool:
    """Whether one of two words is a misspelling of the other: a letter apart, and one of them
    unknown to WordNet ("recipt") or a word nobody is counted using that WordNet does not link to
    the other ("sumer", "summer"); two words a letter apart that WordNet links are two words
    ("hostel" is a kind of "hotel")."""
    if not letter_apart(a, b):
        return False
    if not (wordnet.base_forms(a) and wordnet.base_forms(b)):
        return True
    used = getattr(wordnet, "used", None)
    if used is None or (used(a) and used(b)):
        return False
    return wordnet.relation(a, b) in _UNLINKED


def align(a: list[str], b: list[str], wordnet) -> Alignment:
    """Each word of ``a`` paired with the first free word of ``b`` that is the same word, another
    form of it, a typo of it, or its synonym (cheapest test first)."""
    free = list(b)
    aligned, only_a = [], []
    for word in a:
        found = next((other for other in free if other == word), None)
        if found is None:
            found = next((other for other in free if misspelt(wordnet, word, other)), None)
        if found is None:
            found = next((other for other in free if wordnet.relation(word, other) in _ALIGNING), None)
        if found is None:
            only_a.append(word)
        else:
            free.remove(found)
            aligned.append((word, found))
    return Alignment(tuple(aligned), tuple(only_a), tuple(free))


def judge(query_key: str, entry_key: str, wordnet) -> Relation | None:
    """The relation of two phrases from their words, or None when this has nothing to say
    (nothing in common to align by): see the module's docstring. Two single words are judged
    only for a misspelling ("vacaton", "vacation": aligned)."""
    if not (is_phrase(query_key) or is_phrase(entry_key)):
        return Relation.ALIGNED if misspelt(wordnet, query_key, entry_key) else None
    a, b = content_words(query_key), content_words(entry_key)
    if not a or not b:
        return None
    alignment = align(a, b, wordnet)
    if not alignment.aligned:
        return None
    if not alignment.only_a and not alignment.only_b:
        return Relation.ALIGNED
    if not alignment.only_a or not alignment.only_b:
        return Relation.UNKNOWN  # words added on one side: a narrower topic of the same thing
    if len(alignment.only_a) > 2 or len(alignment.only_b) > 2:
        return Relation.PARTIAL
    one_kind = getattr(wordnet, "one_kind", None)
    main_pos = getattr(wordnet, "main_pos", None)
    for x in alignment.only_a:
        for y in alignment.only_b:
            relation = wordnet.relation(x, y)
            if relation is Relation.ANTONYM:
                return Relation.CONTRAST
            if relation in _UNLINKED and one_kind is not None and one_kind(x, y):
                return Relation.CONTRAST
            if relation is Relation.SIBLING and main_pos is not None and main_pos(x) == {"a"} == main_pos(y):
                return Relation.CONTRAST  # two of one cluster of adjectives: "red", "blue"
    return Relation.PARTIAL
