"""Whether a cached phrase may answer a topic: the cache's decision, beyond the raw distance.

The embedding distance alone is a weak judge of short topics: all-MiniLM-L6-v2 puts "wife" 0.13
from "husband" and "hot" 0.48 from "cold", but "house" 0.66 from "villa". The `Matcher` adds three
switchable techniques on top of the distance:

- ``lemmas`` (the exact path): a topic and an entry with the same dictionary form ("invoices",
  "invoice"; "mice", "mouse") are one key, served without embedding anything.
- ``lexicon`` (a second look at the nearest candidates): WordNet's relation between the two
  phrases scales the distance before it is held to the threshold. Opposites are never served;
  synonyms and "a kind of" pairs count as closer (one step apart, "villa" and "house", closer
  still); two things WordNet knows but does not link
  count as a little further. Phrases WordNet does not know are judged by the distance alone.
- ``phrases`` (with ``lexicon``): two multi-word topics are aligned word by word
  (`semcache.phrases`): phrases that differ in opposites or in two members of one kind
  ("summer vacation", "winter vacation") are never served; the same words in another order or
  form count as closer still than synonyms; phrases that share words and differ in others
  ("hotel booking", "flight booking") count as further than their distance, which the shared
  words shrink; anything else keeps the phrase's distance.

The cache (`SemanticCache.get`), its preview (`SemanticCache.neighbours`) and the threshold
evaluation (`semcache.eval`) all decide through one `Matcher`, so what the evaluation reports is
what users get.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from semcache.errors import InvalidThreshold
from semcache.lexicon import Relation, WordNet
from semcache.phrases import content_words, is_phrase, judge, letter_apart

_PHRASE_JUDGED = frozenset({Relation.UNKNOWN, Relation.SIBLING, Relation.DISTINCT})
"""What WordNet says of two whole phrases that a word-by-word look may say better: nothing, or
that they are different things ("cat food", "dog food")."""

DEFAULT_THRESHOLD = 0.31
"""The threshold of a space until a product owner sets one: chosen on the realistic topic pairs of
``benchmarks/data/topics-dev.tsv`` for the local model and this decision (docs/benchmarks.md)."""

EXACT = "exact"
"""The relation of a topic served on the exact path (the same key, or the same dictionary form)."""


@dataclass(frozen=True)
class Weights:
    """How much each WordNet relation scales the cosine distance; None: never served."""

    synonym: float = 0.5
    kind: float = 0.7
    direct_kind: float = 0.47
    """One step apart: "a villa is a house", "a puppy is a dog"."""
    related: float = 0.7
    sibling: float = 1.0
    distinct_penalty: float = 0.05
    """Added (not multiplied) for two words WordNet knows but does not link: "dog" and "cat"."""
    aligned: float = 0.3
    """Two phrases of the same words, in another order or form: "paris trip", "trip to paris"."""
    partial: float = 1.6
    """Two phrases that share words and differ in others nothing judges: "hotel booking", "flight
    booking". The words they share pull their embeddings together (all-MiniLM-L6-v2 puts these
    0.32 apart, nearer than "house" and "villa"), so the distance counts for more."""

    def score(self, relation: Relation, distance: float) -> float:
        if relation is Relation.SAME:
            return 0.0
        if relation is Relation.ANTONYM or relation is Relation.CONTRAST:
            return math.inf
        if relation is Relation.DISTINCT:
            return distance + self.distinct_penalty
        factor = {Relation.SYNONYM: self.synonym, Relation.ALIGNED: self.aligned, Relation.KIND: self.kind,
                  Relation.DIRECT_KIND: self.direct_kind, Relation.RELATED: self.related,
                  Relation.SIBLING: self.sibling, Relation.PARTIAL: self.partial}.get(relation, 1.0)
        return distance * factor

    @property
    def stretch(self) -> float:
        """How far beyond the threshold (as a multiple) a candidate can still be served."""
        return 1.0 / min(self.word_factor, self.aligned, self.partial)

    @property
    def word_stretch(self) -> float:
        """The stretch for two keys that cannot be aligned word by word (two single words, neither
        a misspelling of the other; two phrases of different numbers of content words)."""
        return 1.0 / min(self.word_factor, self.partial)

    @property
    def word_factor(self) -> float:
        return min(self.synonym, self.kind, self.direct_kind, self.related, self.sibling, 1.0)


@dataclass(frozen=True)
class Match:
    """The cache's verdict on serving the entry ``entry_key`` for the topic ``query_key``."""

    relation: str
    """``exact``, a `Relation` value, or ``unknown`` when only the distance was used."""
    distance: float
    """Cosine distance between the two phrases' embeddings (0.0 on the exact path)."""
    score: float
    """What is held to the threshold: the distance as the relation scales it; inf: never."""

    def serves(self, threshold: float) -> bool:
        """Served at ``threshold``? At 0 only the exact path serves, as the setting promises."""
        if self.relation == EXACT:
            return True
        return threshold > 0 and self.score <= threshold


@dataclass
class Matcher:
    """The decision shared by lookups, previews and evaluations. See the module's docstring.

    ``wordnet``: the database both techniques read, or None. ``lemmas``: dictionary forms on the
    exact path. ``lexicon``: the second look at candidates. ``phrases``: the second look word by
    word for multi-word topics (needs ``lexicon``). Without the WordNet files the matcher
    decides by distance alone and says so in `describe`.
    """

    wordnet: WordNet | None = None
    lemmas: bool = True
    lexicon: bool = True
    phrases: bool = True
    weights: Weights = field(default_factory=Weights)
    cache_size: int = 50_000

    def __post_init__(self) -> None:
        self.missing = None
        if self.wordnet is not None and not self.wordnet.available:
            self.missing = str(self.wordnet.path)
            self.wordnet = None
        self._relations: OrderedDict[tuple[str, str], Relation] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def plain(cls) -> "Matcher":
        """Distance alone: no dictionary forms, no second look."""
        return cls(wordnet=None, lemmas=False, lexicon=False, phrases=False)

    @property
    def uses_lexicon(self) -> bool:
        return self.lexicon and self.wordnet is not None

    @property
    def uses_phrases(self) -> bool:
        return self.phrases and self.uses_lexicon

    @property
    def uses_lemmas(self) -> bool:
        return self.lemmas and self.wordnet is not None

    @property
    def stretch(self) -> float:
        """The farthest reach beyond the threshold of any candidate (as a multiple)."""
        if not self.uses_lexicon:
            return 1.0
        return self.weights.stretch if self.uses_phrases else self.weights.word_stretch

    def stretch_for(self, query_key: str, entry_key: str) -> float:
        """The reach for one pair of keys, found without WordNet. Only keys with as many content
        words (a single word: a misspelling of the other) can be aligned word by word; for the
        others the smaller word stretch holds, and a far candidate is not judged at all."""
        if not self.uses_phrases:
            return self.stretch
        if is_phrase(query_key) or is_phrase(entry_key):
            could_align = len(content_words(query_key)) == len(content_words(entry_key))
        else:
            could_align = letter_apart(query_key, entry_key)
        return self.weights.stretch if could_align else self.weights.word_stretch

    def canonical(self, key: str) -> str:
        """The key's dictionary form for the exact path: each word a noun in its singular form
        ("trips to paris" -> "trip to paris"); words WordNet lists as they are stay unchanged."""
        if not self.uses_lemmas:
            return key
        assert self.wordnet is not None
        words = []
        for word in key.split(" "):
            forms = self.wordnet.base_forms(word) if len(word) > 3 else {}
            nouns = forms.get("n", [])
            words.append(word if not nouns or word in {f for fs in forms.values() for f in fs} else nouns[0])
        return " ".join(words)

    def relation(self, query_key: str, entry_key: str) -> Relation:
        if not self.uses_lexicon:
            return Relation.UNKNOWN
        pair = (query_key, entry_key)
        with self._lock:
            found = self._relations.get(pair)
            if found is not None:
                self._relations.move_to_end(pair)
                return found
        found = self.wordnet.relation(query_key, entry_key)  # type: ignore[union-attr]
        if self.phrases and found in _PHRASE_JUDGED:
            found = judge(query_key, entry_key, self.wordnet) or found
        with self._lock:
            self._relations[pair] = found
            if len(self._relations) > self.cache_size:
                self._relations.popitem(last=False)
        return found

    def match(self, query_key: str, entry_key: str, distance: float | None) -> Match:
        """The verdict for two normalised keys and the cosine distance of their embeddings
        (None when only the exact path is being asked about)."""
        if query_key == entry_key or self.canonical(query_key) == self.canonical(entry_key):
            return Match(EXACT, 0.0, 0.0)
        if distance is None:
            return Match(Relation.UNKNOWN.value, math.inf, math.inf)
        distance = float(distance)
        if not self.uses_lexicon:
            return Match(Relation.UNKNOWN.value, distance, distance)
        relation = self.relation(query_key, entry_key)
        return Match(relation.value, distance, self.weights.score(relation, distance))

    def describe(self) -> dict:
        """What the Settings page shows about the decision."""
        return {
            "lemmas": self.uses_lemmas,
            "lexicon": self.uses_lexicon,
            "missing_wordnet": self.missing,
            "weights": self.weights if self.uses_lexicon else None,
        }


ENTRY_LOOSEN_CAP = 0.10
"""How far above the space's threshold an entry's own threshold may ever loosen."""


@dataclass(frozen=True)
class EntryEvidence:
    """What one cached entry learned from verdicts on its serves ("wrong match", "good match",
    bans), as its row keeps it: scores are distances as the matcher counted them."""

    right: int = 0
    wrong: int = 0
    right_score: float | None = None
    """The largest score at which it was served rightly, below every wrong one."""
    wrong_score: float | None = None
    """The smallest score at which it was served wrongly."""

    @classmethod
    def of(cls, row: object) -> "EntryEvidence":
        """From a row with ``serves_right, serves_wrong, right_score, wrong_score``."""
        return cls(int(row.serves_right or 0), int(row.serves_wrong or 0), row.right_score, row.wrong_score)

    def false_serve_bound(self) -> float | None:
        """The upper end of the 95% Wilson interval of this entry's share of wrong serves; None
        before any verdict."""
        from semcache.eval import wilson  # the evaluation imports this module

        interval = wilson(self.wrong, self.right + self.wrong)
        return None if interval is None else interval[1]


def check_error_bound(value: object) -> float:
    """A share of wrong serves in [0, 1] as a float, or InvalidThreshold."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise InvalidThreshold(f"The error bound is a share of wrong pictures between 0 and 1, not {value!r}.")
    return float(value)


def entry_threshold(threshold: float, evidence: EntryEvidence, error_bound: float,
                    cap: float = ENTRY_LOOSEN_CAP) -> float:
    """The threshold one entry is held to, from the space's ``threshold`` and what it learned
    (the idea of vCache, arXiv 2502.03771: a threshold per entry under an error bound).

    It tightens to just below the smallest score of a wrong serve: that one and anything as far
    are never served again. It loosens to its largest confirmed-good score only while the upper
    end of the Wilson interval of its share of wrong serves stays within ``error_bound``, and
    never more than ``cap`` above ``threshold``. With no verdicts it is ``threshold``; at 0 the
    exact path alone serves, as everywhere."""
    if threshold <= 0:
        return threshold
    own = threshold
    if evidence.right_score is not None and evidence.right_score > threshold:
        bound = evidence.false_serve_bound()
        if bound is not None and bound <= error_bound:
            own = min(float(evidence.right_score), threshold + cap)
    if evidence.wrong_score is not None and own >= evidence.wrong_score:
        own = math.nextafter(float(evidence.wrong_score), -math.inf)
    return own
