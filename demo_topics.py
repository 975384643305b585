"""A day of search topics to replay through the cache, for the Savings page's demo of what it saves.

The list reads like what people search their mail for: the same subjects come back, spelled
the same way (exact hits), in other words ("puppy" after "dog": semantic hits), and now and
then something new (a generation).

A replay runs on a thread of the server process (`Replays`), not in a page's run: a reload, a
second tab or leaving the page changes nothing, and the page shows its progress live. The
registry is kept in memory, keyed by the user, because the replay's work itself lives in this
process: a table would outlive the thread doing the work and report a replay that nobody runs.
After a server restart a stopped stretch is forgotten and the next replay starts at the first
topic; every lookup it made is in the cache's own figures all the same.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Iterator, Literal, Sequence

from app_text import explain
from semcache.cache import CacheResult, SemanticCache
from semcache.normalize import normalize
from semcache.report import SERVICE_ERRORS

TOPICS: tuple[str, ...] = (
    # morning: the first of each subject is new
    "dog", "invoices", "trip to Paris", "house", "pizza", "birthday party", "rain", "car",
    "puppy", "invoice", "Paris vacation", "home", "coffee", "dog", "flight tickets", "meeting notes",
    "birthday", "cars", "rainy day", "doggy", "villa", "pizza delivery", "cat", "kitten",
    "invoices", "unpaid invoice", "weekend in Paris", "cottage", "espresso", "dogs", "plane tickets",
    "team meeting", "birthday cake", "used car", "rain forecast", "pizza night", "house",
    # late morning: more of the same, a few new subjects
    "beach", "beach holiday", "wedding", "wedding invitation", "tax return", "taxes", "doctor appointment",
    "dentist appointment", "bicycle", "bike", "garden", "gardening", "cats", "coffee beans", "dog",
    "Paris trip", "invoice reminder", "apartment", "flat for rent", "new car", "electric car",
    "pizza", "birthday present", "birthday gift", "thunderstorm", "umbrella", "meeting", "puppy",
    "concert tickets", "concert", "live music", "guitar", "piano lessons", "dog walking", "vet",
    "veterinarian", "kitten", "home", "house", "villa", "cottage", "cabin in the woods",
    # noon
    "lunch", "sushi", "sushi restaurant", "Tokyo", "trip to Tokyo", "Japan vacation", "ramen",
    "pizza", "pasta", "Italian restaurant", "trip to Rome", "Rome vacation", "Paris", "Eiffel Tower",
    "invoices", "receipts", "receipt", "expense report", "expenses", "budget", "salary", "payslip",
    "job offer", "job interview", "interview", "resume", "CV", "new job", "promotion",
    "birthday party", "party", "christmas", "christmas tree", "christmas presents", "new year",
    "fireworks", "snow", "snowfall", "skiing", "ski trip", "mountains", "hiking", "hiking trip",
    # afternoon: mostly repeats now
    "dog", "dogs", "puppy", "doggy", "cat", "cats", "kitten", "invoice", "invoices", "unpaid invoice",
    "car", "cars", "used car", "car repair", "mechanic", "car insurance", "insurance", "house insurance",
    "home", "house", "apartment", "moving house", "moving boxes", "trip to Paris", "Paris vacation",
    "flight", "flight tickets", "plane tickets", "airport", "hotel booking", "hotel", "suitcase",
    "rain", "rainy day", "umbrella", "weather", "sunny day", "beach", "swimming", "swimming pool",
    "coffee", "espresso", "tea", "birthday", "birthday cake", "cake", "chocolate cake", "cookies",
    # evening
    "pizza night", "pizza delivery", "burger", "dinner", "dinner reservation", "wine", "red wine",
    "beer", "football", "soccer", "soccer match", "tennis", "running", "marathon", "gym",
    "laptop", "new laptop", "computer", "phone", "smartphone", "phone bill", "internet bill",
    "electricity bill", "bills", "invoices", "dog", "home", "trip to Paris", "pizza", "birthday",
)


@dataclass(frozen=True)
class ReplayStep:
    """One replayed topic: its number (from 1), and the result or, when the lookup failed, why."""

    number: int
    total: int
    topic: str
    result: CacheResult | None
    error: str | None

    @property
    def fraction(self) -> float:
        return self.number / self.total if self.total else 1.0


def pick(count: int, start: int = 0, topics: Sequence[str] = TOPICS) -> list[str]:
    """``count`` topics in order from ``start``, going round the list as often as needed."""
    return [topics[(start + i) % len(topics)] for i in range(max(0, count))]


def replay(cache: SemanticCache, topics: Sequence[str]) -> Iterator[ReplayStep]:
    """Look each topic up through ``cache.get``, in order. A failed lookup (a service down, a
    generator error) is reported in its step and the replay carries on."""
    total = len(topics)
    for number, topic in enumerate(topics, start=1):
        yield look_up(cache, topic, number, total)


def look_up(cache: SemanticCache, topic: str, number: int, total: int) -> ReplayStep:
    try:
        result = cache.get(topic)
    except SERVICE_ERRORS as exc:
        return ReplayStep(number=number, total=total, topic=topic, result=None, error=explain(exc))
    return ReplayStep(number=number, total=total, topic=topic, result=result, error=None)


# ---------------------------------------------------------------------- replays off the page's run

State = Literal["running", "stopping", "stopped", "finished"]


@dataclass(frozen=True)
class Mark:
    """The replay's own figures after its ``number``-th lookup (for its line, lookup by lookup)."""

    number: int
    hit_rate: float
    spent_usd: float
    saved_usd: float


@dataclass(frozen=True)
class Progress:
    """Where one user's replay stands. ``topics`` is what it looks up: the chosen stretch of
    `TOPICS` without the topics whose picture was cached before it began (those would be hits
    that say nothing of what the cache saves); ``skipped`` counts them. Its hit rate counts
    only the hits served by pictures it made itself; hits from pictures cached earlier (a
    paraphrase of an earlier search) are ``earlier_hits``, apart."""

    topics: tuple[str, ...]
    skipped: tuple[str, ...]
    first: int
    """The stretch's first topic, an index into `TOPICS`."""
    stretch: int
    """How many topics of `TOPICS` the stretch covers (skipped ones included)."""
    done: int = 0
    exact: int = 0
    semantic: int = 0
    generated: int = 0
    errors: int = 0
    earlier_hits: int = 0
    spent_usd: float = 0.0
    saved_usd: float = 0.0
    state: State = "running"
    last: ReplayStep | None = None
    last_error: str | None = None
    marks: tuple[Mark, ...] = ()
    made: frozenset[str] = frozenset()
    """The keys of the pictures this replay made."""
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def total(self) -> int:
        return len(self.topics)

    @property
    def active(self) -> bool:
        return self.state in ("running", "stopping")

    @property
    def own_hits(self) -> int:
        return self.exact + self.semantic - self.earlier_hits

    @property
    def hit_rate(self) -> float | None:
        """Hits served by pictures this replay made, over its lookups that such a hit or a new
        picture answered; None before the first."""
        answered = self.own_hits + self.generated
        return self.own_hits / answered if answered else None

    @property
    def next_start(self) -> int:
        """Where the next stretch begins in `TOPICS`."""
        return (self.first + self.stretch) % len(TOPICS)


class ReplayBusy(Exception):
    """This user's replay is still running; only one at a time."""


class Replays:
    """Every user's replay in this server process: at most one running per user, on threads of
    its own (``workers`` of them, so that long replays never hold up the pictures of searches).
    A replay stops after its current lookup when asked, and resumes from its next topic."""

    def __init__(self, workers: int = 2) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._runs: dict[str, Progress] = {}
        self._stop: dict[str, threading.Event] = {}
        self._next: dict[str, int] = {}
        self._futures: dict[str, Future] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="replay")

    def progress(self, user: str) -> Progress | None:
        with self._lock:
            return self._runs.get(user)

    def next_start(self, user: str) -> int:
        """The index into `TOPICS` of the next stretch's first topic."""
        with self._lock:
            return self._next.get(user, 0)

    def start(self, user: str, cache: SemanticCache, count: int) -> Progress:
        """Plan the next ``count`` topics from where this user's last stretch ended, leaving
        out those already cached, and look them up in the background. Raises `ReplayBusy`
        while this user's replay runs, and `SERVICE_ERRORS` when the cache cannot be read."""
        with self._lock:
            if user in self._runs and self._runs[user].active:
                raise ReplayBusy("A replay is running already: stop it first, or wait for it to finish.")
            first = self._next.get(user, 0)
        stretch = pick(count, first)
        cached = already_cached(cache, stretch)
        topics = tuple(topic for topic in stretch if normalize(topic) not in cached)
        # Only the first sight of a cached topic is left out and said; its repeats are left out too.
        skipped = tuple(dict.fromkeys(topic for topic in stretch if normalize(topic) in cached))
        run = Progress(topics=topics, skipped=skipped, first=first, stretch=len(stretch),
                       state="running" if topics else "finished")
        return self._launch(user, cache, run)

    def resume(self, user: str, cache: SemanticCache) -> Progress:
        """Carry on with a stopped replay from its next topic."""
        with self._lock:
            run = self._runs.get(user)
            if run is None or run.state != "stopped":
                raise ReplayBusy("There is no stopped replay to resume.")
            run = replace(run, state="running")
        return self._launch(user, cache, run)

    def stop(self, user: str) -> bool:
        """Ask the user's replay to stop after its current lookup; False when none runs."""
        with self._lock:
            run = self._runs.get(user)
            if run is None or not run.active:
                return False
            self._runs[user] = replace(run, state="stopping")
            self._stop[user].set()
            return True

    def wait(self, user: str, timeout: float | None = None) -> Progress | None:
        """Block until the user's replay is no longer running (for tests and the command line)."""
        with self._lock:
            future = self._futures.get(user)
        if future is not None:
            future.result(timeout)
        return self.progress(user)

    def wait_for_step(self, user: str, timeout: float | None = None) -> Progress | None:
        """Block until the user's replay has made its next lookup (or ended, or ``timeout``)."""
        with self._changed:
            self._changed.wait(timeout)
            return self._runs.get(user)

    def forget(self) -> None:
        """Stop every replay and forget them all (the next stretch starts at the first topic)."""
        with self._lock:
            for event in self._stop.values():
                event.set()
            futures = list(self._futures.values())
        for future in futures:
            future.result()
        with self._lock:
            self._runs.clear()
            self._stop.clear()
            self._next.clear()
            self._futures.clear()

    def _launch(self, user: str, cache: SemanticCache, run: Progress) -> Progress:
        with self._lock:
            if user in self._runs and self._runs[user].active:
                raise ReplayBusy("A replay is running already: stop it first, or wait for it to finish.")
            self._runs[user] = run
            self._next[user] = run.next_start
            stop = self._stop[user] = threading.Event()
            if run.active:
                self._futures[user] = self._pool.submit(self._run, user, cache, stop)
        return run

    def _run(self, user: str, cache: SemanticCache, stop: threading.Event) -> None:
        failure = None
        try:
            while True:
                with self._lock:
                    run = self._runs[user]
                if run.done >= run.total or stop.is_set():
                    break
                step = look_up(cache, run.topics[run.done], run.done + 1, run.total)
                with self._lock:
                    self._runs[user] = after(self._runs[user], step)
                    self._changed.notify_all()
        except Exception as exc:  # not a service outage (those are steps): stop, and say why
            failure = f"The replay stopped: {exc}"
            raise
        finally:
            with self._lock:
                run = self._runs[user]
                self._runs[user] = replace(run, state="finished" if run.done >= run.total else "stopped",
                                           last_error=failure or run.last_error)
                self._changed.notify_all()

def after(run: Progress, step: ReplayStep) -> Progress:
    """``run`` with ``step`` counted."""
    result = step.result
    changes: dict = {"done": step.number, "last": step}
    if result is None:
        changes.update(errors=run.errors + 1, last_error=step.error)
    elif result.kind == "generated":
        changes.update(made=run.made | {result.key}, generated=run.generated + 1, spent_usd=run.spent_usd + result.cost_spent_usd)
    else:
        changes[result.kind] = getattr(run, result.kind) + 1
        changes["saved_usd"] = run.saved_usd + result.cost_saved_usd
        if result.served_key not in run.made:
            changes["earlier_hits"] = run.earlier_hits + 1
    counted = replace(run, **changes)
    mark = Mark(number=step.number, hit_rate=counted.hit_rate or 0.0, spent_usd=counted.spent_usd,
                saved_usd=counted.saved_usd)
    return replace(counted, marks=run.marks + (mark,))


def already_cached(cache: SemanticCache, topics: Sequence[str]) -> set[str]:
    """The keys among ``topics`` that have a cached picture now."""
    from semcache import CacheAdmin

    admin = CacheAdmin(cache)
    return {key for key in dict.fromkeys(normalize(topic) for topic in topics) if admin.entry(key) is not None}


REPLAYS = Replays()
"""This server process's replays (kept across page runs, reloads and tabs)."""
