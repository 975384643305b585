"""What WordNet knows about two topic words: the same word, synonyms, one a kind of the other,
opposites, or different things.

Short topics are where a small embedding model is weakest: it places "wife" near "husband" and
"hot" near "cold", because they turn up in the same sentences. WordNet (Princeton's lexical
database, Debian's ``wordnet-base`` package) says what the model cannot: that they are opposites
or merely neighbours. The cache asks it about single words and WordNet's multi-word entries
("hot dog", "tax return"); for anything else it answers "unknown" and the embedding decides.

The database files are read directly (the index files once, synsets on demand by their byte
offset), so there is nothing to install beyond the data.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path

DEFAULT_PATH = Path("/usr/share/wordnet")
POS = ("n", "v", "a", "r")
_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
# Endings taken off (and put on) to find an inflected word's base form, per part of speech.
_SUFFIXES = {
    "n": [("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
          ("men", "man"), ("ies", "y")],
    "v": [("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"),
          ("ing", "")],
    "a": [("er", ""), ("est", ""), ("er", "e"), ("est", "e")],
    "r": [],
}
_HYPERNYM = frozenset({"@", "@i"})
_RELATED = frozenset({"&", "+", "^", "\\", "="})
"""Similar-to (adjective clusters), derivation, also-see, pertainym, attribute."""


class Relation(str, Enum):
    SAME = "same"          # one word, another form of it ("dogs", "dog")
    SYNONYM = "synonym"    # they share a meaning ("car", "automobile")
    KIND = "kind"          # one is a kind of the other, a few steps apart ("puppy", "animal")
    DIRECT_KIND = "direct kind"  # one is a kind of the other, one step apart ("villa", "house"; "puppy", "dog")
    RELATED = "related"    # WordNet links them directly (adjective clusters, derivations)
    SIBLING = "sibling"    # two kinds of one thing ("vodka", "gin"), or one adjective cluster
    ANTONYM = "antonym"    # opposites ("hot", "cold")
    DISTINCT = "distinct"  # both known, no link: different things ("cat", "dog")
    UNKNOWN = "unknown"    # at least one is not a WordNet word: the embedding decides
    ALIGNED = "aligned"    # two phrases of the same words, in another order or form ("paris trip", "trip to paris")
    CONTRAST = "contrast"  # two phrases that differ in opposites or two kinds of one thing ("summer vacation", "winter vacation")
    PARTIAL = "partial"    # two phrases that share words and differ in others, not judged ("hotel booking", "flight booking")


@dataclass(frozen=True)
class Synset:
    pos: str
    offset: int
    words: tuple[str, ...]
    pointers: tuple[tuple[str, str, int], ...]
    """(symbol, part of speech, offset) of each link to another synset."""

    @property
    def id(self) -> tuple[str, int]:
        return (self.pos, self.offset)

    def linked(self, symbols: Iterable[str]) -> list[tuple[str, int]]:
        wanted = set(symbols)
        return [(_pos(pos), offset) for symbol, pos, offset in self.pointers if symbol in wanted]


def _pos(pos: str) -> str:
    return "a" if pos == "s" else pos


class WordNet:
    """Read-only access to a WordNet 3.0 database folder (``index.*``, ``data.*``, ``*.exc``).

    ``senses``: how many of a word's meanings (most frequent first) count when two words are
    compared; rare meanings ("dog" as a contemptible man) would otherwise make synonyms of words
    nobody confuses. ``depth``: how many "is a kind of" steps apart two words may be.

    ``main_senses``: synonyms count only through the parts of speech a word is mostly used in
    (by the sense counts of ``cntlist.rev``), and only where both words share one: "mother" and
    "father" share a rarely used verb ("beget") but are nouns first, and as nouns they are
    opposites. Two kinds of one thing that inherit an opposition ("boyfriend", a man;
    "girlfriend", a woman) are opposites too.
    """

    def __init__(self, path: str | Path = DEFAULT_PATH, *, senses: int = 3, depth: int = 3,
                 main_senses: bool = True) -> None:
        self.path = Path(path)
        self.senses = senses
        self.depth = depth
        self.main_senses = main_senses
        self._counts: dict[str, dict[str, int]] = {}
        self._index: dict[str, dict[str, tuple[int, ...]]] | None = None
        self._exceptions: dict[str, dict[str, tuple[str, ...]]] = {}
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()
        self.synset = lru_cache(maxsize=65536)(self._read_synset)
        # Words recur across phrases ("party" in every party): their verdicts are kept.
        self.relation = lru_cache(maxsize=65536)(self.relation)  # type: ignore[method-assign]
        self.one_kind = lru_cache(maxsize=65536)(self.one_kind)  # type: ignore[method-assign]
        self.main_pos = lru_cache(maxsize=65536)(self.main_pos)  # type: ignore[method-assign]

    @property
    def available(self) -> bool:
        return all((self.path / f"{kind}.{name}").is_file() for name in _FILES.values()
                   for kind in ("index", "data"))

    def load(self) -> None:
        """Read the index and exception lists (about a second, once per process)."""
        if self._index is not None:
            return
        with self._lock:
            if self._index is not None:
                return
            if not self.available:
                raise FileNotFoundError(f"No WordNet database in {self.path} (Debian package wordnet-base).")
            index: dict[str, dict[str, tuple[int, ...]]] = {}
            for pos, name in _FILES.items():
                entries: dict[str, tuple[int, ...]] = {}
                with open(self.path / f"index.{name}", encoding="utf-8") as f:
                    for line in f:
                        if line.startswith(" "):
                            continue  # the licence at the top of the file
                        fields = line.split()
                        count = int(fields[2])
                        entries[fields[0]] = tuple(int(x) for x in fields[len(fields) - count:])
                index[pos] = entries
                exceptions: dict[str, tuple[str, ...]] = {}
                exc = self.path / f"{name}.exc"
                if exc.is_file():
                    for line in exc.read_text(encoding="utf-8").splitlines():
                        fields = line.split()
                        if len(fields) >= 2:
                            exceptions[fields[0]] = tuple(fields[1:])
                self._exceptions[pos] = exceptions
                self._fds[pos] = os.open(self.path / f"data.{name}", os.O_RDONLY)
            self._counts = _sense_counts(self.path / "cntlist.rev")
            self._index = index

    # ------------------------------------------------------------------ words

    def base_forms(self, word: str) -> dict[str, list[str]]:
        """The dictionary forms of ``word`` per part of speech: "mice" -> {"n": ["mouse"]}."""
        self.load()
        assert self._index is not None
        lemma = _lemma(word)
        out: dict[str, list[str]] = {}
        for pos in POS:
            entries = self._index[pos]
            found = [lemma] if lemma in entries else []
            for base in self._exceptions[pos].get(lemma, ()):
                if base in entries and base not in found:
                    found.append(base)
            for suffix, ending in _SUFFIXES[pos]:
                if lemma.endswith(suffix) and len(lemma) > len(suffix):
                    base = lemma[: len(lemma) - len(suffix)] + ending
                    if base in entries and base not in found:
                        found.append(base)
            if found:
                out[pos] = found
        return out

    def known(self, word: str) -> bool:
        return bool(self.base_forms(word))

    def meanings(self, word: str, limit: int | None = None) -> dict[str, list[tuple[str, int]]]:
        """Synset ids of ``word`` per part of speech, the ``limit`` most frequent of each form."""
        limit = self.senses if limit is None else limit
        assert self._index is not None or not self.available
        out: dict[str, list[tuple[str, int]]] = {}
        for pos, forms in self.base_forms(word).items():
            ids: list[tuple[str, int]] = []
            for form in forms:
                for offset in self._index[pos][form][:limit]:  # type: ignore[index]
                    if (pos, offset) not in ids:
                        ids.append((pos, offset))
            out[pos] = ids
        return out

    def main_pos(self, word: str) -> frozenset[str]:
        """The parts of speech ``word`` is mostly used in: those with at least half the tagged
        uses of its most used one ("mother": nouns, not verbs). Every part of speech it has when
        WordNet counted none of its uses."""
        forms = self.base_forms(word)
        counts: dict[str, int] = {}
        for pos, bases in forms.items():
            counts[pos] = sum(self._counts.get(base, {}).get(pos, 0) for base in bases)
        top = max(counts.values(), default=0)
        if top == 0:
            return frozenset(forms)
        return frozenset(pos for pos, count in counts.items() if 2 * count >= top)

    def _read_synset(self, pos: str, offset: int) -> Synset:
        line = os.pread(self._fds[pos], 16384, offset).split(b"\n", 1)[0].decode("utf-8")
        fields = line.split(" | ", 1)[0].split()
        count = int(fields[3], 16)
        words = tuple(_lemma(w.split("(")[0]) for w in fields[4:4 + 2 * count:2])
        at = 4 + 2 * count
        n_pointers = int(fields[at])
        pointers = tuple((fields[at + 1 + 4 * i], fields[at + 3 + 4 * i], int(fields[at + 2 + 4 * i]))
                         for i in range(n_pointers))
        return Synset(pos=pos, offset=offset, words=words, pointers=pointers)

    def _ancestors(self, ids: Iterable[tuple[str, int]]) -> set[tuple[str, int]]:
        """``ids`` and their hypernyms up to ``depth`` steps."""
        seen = set(ids)
        frontier = list(seen)
        for _ in range(self.depth):
            frontier = [up for sid in frontier for up in self.synset(*sid).linked(_HYPERNYM) if up not in seen]
            seen.update(frontier)
        return seen

    def _neighbourhood(self, ids: Iterable[tuple[str, int]], symbols: frozenset[str]) -> set[tuple[str, int]]:
        return {other for sid in ids for other in self.synset(*sid).linked(symbols)}

    # ------------------------------------------------------------------ two words

    def relation(self, a: str, b: str) -> Relation:
        """How WordNet relates the phrases ``a`` and ``b`` (case-folded keys)."""
        if not self.available:
            return Relation.UNKNOWN
        forms_a, forms_b = self.base_forms(a), self.base_forms(b)
        if not forms_a or not forms_b:
            return Relation.UNKNOWN
        for pos in forms_a.keys() & forms_b.keys():
            if set(forms_a[pos]) & set(forms_b[pos]):
                return Relation.SAME
        senses_a, senses_b = self.meanings(a), self.meanings(b)
        flat_a = {sid for ids in senses_a.values() for sid in ids}
        flat_b = {sid for ids in senses_b.values() for sid in ids}
        if self.main_senses:
            shared = self.main_pos(a) & self.main_pos(b)
            if {sid for sid in flat_a if sid[0] in shared} & {sid for sid in flat_b if sid[0] in shared}:
                return Relation.SYNONYM
        elif flat_a & flat_b:
            return Relation.SYNONYM
        # Opposites, directly or through the head of an adjective cluster ("scorching" ~ "hot" ! "cold").
        heads_a = flat_a | self._neighbourhood(flat_a, frozenset({"&"}))
        heads_b = flat_b | self._neighbourhood(flat_b, frozenset({"&"}))
        if self._neighbourhood(heads_a, frozenset({"!"})) & heads_b:
            return Relation.ANTONYM
        if self._ancestors(flat_a) & flat_b or self._ancestors(flat_b) & flat_a:
            if self.main_senses and (self._parents(flat_a, 1) & flat_b or self._parents(flat_b, 1) & flat_a):
                return Relation.DIRECT_KIND
            return Relation.KIND
        if self._neighbourhood(flat_a, _RELATED) & flat_b or self._neighbourhood(flat_b, _RELATED) & flat_a:
            return Relation.RELATED
        parents_a = self._neighbourhood(flat_a, _HYPERNYM | {"&"})
        parents_b = self._neighbourhood(flat_b, _HYPERNYM | {"&"})
        if parents_a & parents_b or parents_a & flat_b or parents_b & flat_a:
            if self.main_senses and self._opposite_kinds(flat_a, flat_b):
                return Relation.ANTONYM
            return Relation.SIBLING
        return Relation.DISTINCT

    def used(self, word: str) -> bool:
        """Whether WordNet's sense counts saw ``word`` (any form of it) used at least once."""
        return any(self._counts.get(base, {}).get(pos, 0) for pos, bases in self.base_forms(word).items()
                   for base in bases)

    def one_kind(self, a: str, b: str, *, senses: int = 2, depth: int = 2) -> bool:
        """Two different members of one small kind, which no picture of one shows: two seasons,
        cities, meals, sports or vehicles. Both words are nouns first, neither is a kind of the
        other, and one of the ``senses`` most frequent meanings of each has the same parent
        (within ``depth`` steps, "is a kind of" or "is an instance of") as one of the other's."""
        if not self.available or "n" not in self.main_pos(a) or "n" not in self.main_pos(b):
            return False
        ids_a = set(self.meanings(a, senses).get("n", []))
        ids_b = set(self.meanings(b, senses).get("n", []))
        if not ids_a or not ids_b or ids_a & ids_b:
            return False
        up_a, up_b = self._parents(ids_a, depth), self._parents(ids_b, depth)
        if up_a & ids_b or up_b & ids_a:
            return False
        return bool(up_a & up_b)

    def _parents(self, ids: Iterable[tuple[str, int]], depth: int) -> set[tuple[str, int]]:
        seen: set[tuple[str, int]] = set()
        frontier = list(ids)
        for _ in range(depth):
            frontier = [up for sid in frontier for up in self.synset(*sid).linked(_HYPERNYM) if up not in seen]
            seen.update(frontier)
        return seen

    def _opposite_kinds(self, a: set[tuple[str, int]], b: set[tuple[str, int]]) -> bool:
        """Whether one of ``a``'s kinds is the opposite of one of ``b``'s ("man", "woman")."""
        up_a, up_b = self._ancestors(a), self._ancestors(b)
        return bool(self._neighbourhood(up_a, frozenset({"!"})) & up_b)


def _sense_counts(path: Path) -> dict[str, dict[str, int]]:
    """How often each word was tagged in each part of speech (``cntlist.rev``: sense key, sense
    number, count); empty when the file is missing."""
    counts: dict[str, dict[str, int]] = {}
    if not path.is_file():
        return counts
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) != 3 or "%" not in fields[0]:
                continue
            lemma, rest = fields[0].split("%", 1)
            pos = _SENSE_TYPES.get(rest[:1])
            if pos is not None:
                per_pos = counts.setdefault(lemma, {})
                per_pos[pos] = per_pos.get(pos, 0) + int(fields[2])
    return counts


_SENSE_TYPES = {"1": "n", "2": "v", "3": "a", "4": "r", "5": "a"}


def _lemma(word: str) -> str:
    """WordNet's spelling of a phrase: lower case, words joined by underscores."""
    return "_".join(word.lower().split())
