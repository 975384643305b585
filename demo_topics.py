"""A day of search topics to replay through the cache, for the Savings page's demo of what it saves.

The list reads like what people search their mail for: the same subjects come back, spelled
the same way (exact hits), in other words ("puppy" after "dog": semantic hits), and now and
then something new (a generation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

from app_text import explain
from semcache.cache import CacheResult, SemanticCache
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
        try:
            result = cache.get(topic)
        except SERVICE_ERRORS as exc:
            yield ReplayStep(number=number, total=total, topic=topic, result=None, error=explain(exc))
        else:
            yield ReplayStep(number=number, total=total, topic=topic, result=result, error=None)
