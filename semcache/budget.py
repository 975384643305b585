"""The cost guard: how many new pictures one user may have made per day, and how much all of them
together may cost per day, so nobody can run up the bill by searching random topics.

A new picture is paid for before it is made: `CostGuard.reserve` counts it against the day's
row for everyone (``*``) and the user's row in one short transaction, each update conditional on
staying within its limit, so concurrent misses in any number of processes can never overshoot.
The cache reserves on the connection that claims the key, inside that claim's transaction, so a
miss never holds two pooled connections. A generation that fails before its request was sent
gives its reservation back; one that may have been billed keeps it. Hits are never counted: a
user over their limit is still served every picture already cached.

The limits are stored in ``semcache_settings`` (set from the Settings page for every process)
and fall back to the values the guard was built with; None means no limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import Connection, Engine

from semcache import store
from semcache.errors import BudgetExceeded

EVERYONE = "*"
USER_LIMIT_SETTING = "daily_images_per_user"
BUDGET_SETTING = "daily_budget_usd"


@dataclass(frozen=True)
class Limits:
    images_per_user: int | None
    budget_usd: float | None


@dataclass(frozen=True)
class Usage:
    day: date
    images: int
    spent_usd: float
    user_images: int | None
    limits: Limits


def today() -> date:
    return datetime.now(timezone.utc).date()


class CostGuard:
    """Daily limits on new pictures (see the module's docstring)."""

    def __init__(self, engine: Engine, *, images_per_user: int | None = None, budget_usd: float | None = None) -> None:
        self.engine = engine
        self.default = Limits(_check_count(images_per_user), _check_money(budget_usd))

    def limits(self, conn: Connection | None = None) -> Limits:
        """The limits in force: stored for every process, else the ones the guard was built with.
        Read on ``conn`` when given."""
        if conn is None:
            with store.connect(self.engine) as own:
                return self.limits(own)
        stored = store.settings(conn, [USER_LIMIT_SETTING, BUDGET_SETTING])
        images = stored[USER_LIMIT_SETTING] if USER_LIMIT_SETTING in stored else self.default.images_per_user
        budget = stored[BUDGET_SETTING] if BUDGET_SETTING in stored else self.default.budget_usd
        return Limits(None if images is None else int(images), None if budget is None else float(budget))

    def set_limits(self, *, images_per_user: int | None, budget_usd: float | None, actor: str | None = None) -> Limits:
        """Store both limits for every process (None: no limit)."""
        limits = Limits(_check_count(images_per_user), _check_money(budget_usd))
        with store.begin(self.engine) as conn:
            for name, value in ((USER_LIMIT_SETTING, limits.images_per_user), (BUDGET_SETTING, limits.budget_usd)):
                store.set_setting(conn, name, "null" if value is None else repr(value), actor)
        return limits

    def reserve(self, actor: str | None, price: float, *, conn: Connection | None = None) -> date:
        """Count one new picture for ``actor`` (None: nobody in particular, only the budget
        applies), or raise BudgetExceeded with a sentence for the user. Returns the day it was
        counted on, for `release`.

        With ``conn``, the reservation is made in that connection's transaction (in a savepoint:
        a refusal counts nothing and leaves the transaction usable) and holds once the caller
        commits; the usage rows stay locked until then, so keep that transaction short.
        Otherwise it is committed on a connection of its own."""
        with self._transaction(conn) as conn:
            limits = self.limits(conn)
            day = today()
            who = [EVERYONE] if actor is None else [EVERYONE, actor]
            store.add_usage_rows(conn, day, who)
            # Everyone's row first, then the user's: one order for all, so no two reservations deadlock.
            if not store.charge_everyone(conn, day, EVERYONE, price, limits.budget_usd):
                raise BudgetExceeded(
                    f"Today's budget for new pictures (${limits.budget_usd:.2f}) is used up. Pictures already made "
                    "for this or a similar topic are still shown; the budget renews at midnight UTC.")
            if actor is not None and not store.charge_user(conn, day, actor, price, limits.images_per_user):
                raise BudgetExceeded(
                    f"Your daily limit of {limits.images_per_user} new pictures is reached. Pictures already "
                    "made for this or a similar topic are still shown; the limit renews at midnight UTC.")
        return day

    def release(self, actor: str | None, price: float, day: date, *, conn: Connection | None = None) -> None:
        """Give back a reservation whose picture was never made (in ``conn``'s transaction when
        given, committed by the caller)."""
        with self._transaction(conn) as conn:
            store.refund(conn, day, [EVERYONE] if actor is None else [EVERYONE, actor], price)

    @contextmanager
    def _transaction(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is None:
            with store.begin(self.engine) as own:
                yield own
        else:
            with store.translated(), conn.begin_nested():
                yield conn

    def usage(self, actor: str | None = None) -> Usage:
        day = today()
        with store.connect(self.engine) as conn:
            rows = store.usage(conn, day, [EVERYONE] if actor is None else [EVERYONE, actor])
        everyone = rows.get(EVERYONE)
        mine = rows.get(actor) if actor is not None else None
        return Usage(day=day, images=everyone.images if everyone else 0,
                     spent_usd=float(everyone.spent_usd) if everyone else 0.0,
                     user_images=None if actor is None else (mine.images if mine else 0), limits=self.limits())


def _check_count(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"A daily picture limit is a whole number of at least 0, not {value!r}.")
    return int(value)


def _check_money(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not value >= 0:
        raise ValueError(f"A daily budget is an amount of at least 0, not {value!r}.")
    return float(value)
