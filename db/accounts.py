"""Accounts for AUTH_MODE=password: sign up, sign in, sign out, sessions that expire, and the
administrators' accounts.

Passwords are hashed with Argon2id (argon2-cffi's defaults); only the hash is stored. A session
is a random token held by the browser (in an HttpOnly cookie, see `session_cookie`); the
database keeps its SHA-256 and expiry, so a stolen table yields no usable token and signing out
(or expiry) ends it everywhere. A sign-in for the cookie yields a one-time code instead, which
the app's endpoint redeems for the session within a minute (``redeem``): so the token itself
never passes through the page.

Five wrong passwords in a row lock a name for a minute, which makes guessing slow without
letting a stranger lock someone out for long. Every attempt claims its place in that count with
one conditional UPDATE before its password is checked, so any number of simultaneous attempts
gets at most five checks; a right password then clears the count. A name with no account is
counted the same way (in ``app_sign_in_failures``, forgotten an hour after its last wrong
attempt), so it costs as few password checks and answers like an account would.

Sign-ups are limited per hour, in total and per client address, counted under one advisory lock
so that simultaneous sign-ups never overshoot; the names in ADMIN_USERS cannot be signed up for.
Administrators' accounts are made with ``python -m db.accounts create-admin NAME`` or, on the
app's first start, from ADMIN_PASSWORD_FILE; ``create-user NAME`` makes others' when sign-up is off.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sys
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Column, Connection, DateTime, Engine, ForeignKey, Index, Integer, MetaData, Table, Text, func, text

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@+-]{2,63}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 256
LOCK_AFTER = 5
LOCK_FOR = timedelta(minutes=1)
UNKNOWN_NAME_KEPT = timedelta(hours=1)
"""How long the wrong attempts at a name with no account are remembered after the last one."""
SIGNUP_WINDOW = timedelta(hours=1)
GRANT_LIFETIME = timedelta(minutes=1)
"""How long a one-time sign-in code may wait to be redeemed for its session."""
MAX_GRANT_CODE = 128
_SIGNUP_LOCK = 727_274_007  # one sign-up at a time is counted against the limits


metadata = MetaData()

users = Table(
    "app_users", metadata,
    Column("username", Text, primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_sign_in_at", DateTime(timezone=True)),
    Column("failed_sign_ins", Integer, nullable=False, server_default="0"),
    Column("locked_until", DateTime(timezone=True)),
)

sessions = Table(
    "app_sessions", metadata,
    Column("token_hash", Text, primary_key=True),
    Column("username", Text, ForeignKey("app_users.username", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("app_sessions_expires_at_idx", "expires_at"),
    Index("app_sessions_username_idx", "username"),
)

sign_in_failures = Table(
    "app_sign_in_failures", metadata,
    Column("username", Text, primary_key=True),
    Column("failed_sign_ins", Integer, nullable=False, server_default="0"),
    Column("locked_until", DateTime(timezone=True)),
    Column("last_failed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("app_sign_in_failures_last_failed_at_idx", "last_failed_at"),
)

signups = Table(
    "app_signups", metadata,
    Column("username", Text, ForeignKey("app_users.username", ondelete="CASCADE"), primary_key=True),
    Column("client", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("app_signups_created_at_idx", "created_at"),
    Index("app_signups_client_idx", "client", "created_at"),
)


session_grants = Table(
    "app_session_grants", metadata,
    Column("code_hash", Text, primary_key=True),
    Column("username", Text, ForeignKey("app_users.username", ondelete="CASCADE"), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("app_session_grants_expires_at_idx", "expires_at"),
    Index("app_session_grants_username_idx", "username"),
)


class AccountError(ValueError):
    """A sign-up or sign-in that cannot go ahead, with a sentence for the person."""


@dataclass(frozen=True)
class Session:
    token: str
    """The session's token; with ``one_time``, a code that `Accounts.redeem` turns into the
    session once, within GRANT_LIFETIME."""
    username: str
    one_time: bool = False


def normalize_username(name: str) -> str:
    return name.strip().casefold()


LOCKED = "Too many wrong passwords: try again in a minute."
NO_MATCH = "That user name and password do not match an account."


class Accounts:
    def __init__(self, engine: Engine, *, session_hours: float = 12.0, hasher: PasswordHasher | None = None,
                 admins: Iterable[str] = (), signups_per_hour: int | None = None,
                 signups_per_client_per_hour: int | None = None) -> None:
        """``admins``: names nobody may sign up for (ADMIN_USERS). ``signups_per_hour`` and
        ``signups_per_client_per_hour``: how many accounts may be created in any hour, in total
        and from one client address; None: no limit."""
        self.engine = engine
        self.session_length = timedelta(hours=session_hours)
        self.hasher = hasher or PasswordHasher()
        self.admins = frozenset(normalize_username(name) for name in admins)
        self.signups_per_hour = signups_per_hour
        self.signups_per_client_per_hour = signups_per_client_per_hour
        # A hash to check against when the name is unknown, so both answers take as long.
        self._decoy = self.hasher.hash(secrets.token_urlsafe(16))

    # ------------------------------------------------------------------ signing up

    def sign_up(self, username: str, password: str, *, client: str | None = None, one_time: bool = False) -> Session:
        """A new account and its first session (with ``one_time``, a code for it, as `sign_in`).
        ``client`` is the address the request came from, when known: it is counted for an hour
        against the per-client limit."""
        name = self._checked(username, password)
        if name in self.admins:
            raise AccountError("That user name is reserved; choose another.")
        password_hash = self.hasher.hash(password)
        with self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _SIGNUP_LOCK})
            conn.execute(text("DELETE FROM app_signups WHERE created_at <= now() - :window"),
                         {"window": SIGNUP_WINDOW})
            counts = conn.execute(text(
                "SELECT count(*) AS total, count(*) FILTER (WHERE client = :client) AS from_client "
                "FROM app_signups WHERE created_at > now() - :window"),
                {"client": client, "window": SIGNUP_WINDOW}).one()
            if self.signups_per_hour is not None and counts.total >= self.signups_per_hour:
                raise AccountError("Too many accounts were created in the last hour; try again later.")
            if (client and self.signups_per_client_per_hour is not None
                    and counts.from_client >= self.signups_per_client_per_hour):
                raise AccountError("Too many accounts were created from your network address in the last hour; "
                                   "try again later.")
            made = conn.execute(text("INSERT INTO app_users (username, password_hash) VALUES (:u, :h) "
                                     "ON CONFLICT (username) DO NOTHING RETURNING username"),
                                {"u": name, "h": password_hash}).first()
            if made is None:
                raise AccountError("That user name is taken; choose another.")
            conn.execute(text("INSERT INTO app_signups (username, client) VALUES (:u, :c)"),
                         {"u": name, "c": client})
            conn.execute(text("DELETE FROM app_sign_in_failures WHERE username = :u"), {"u": name})
        return self._grant(name) if one_time else self._open_session(name)

    # ------------------------------------------------------------------ administrators

    def create_account(self, username: str, password: str, *, replace: bool = False) -> bool:
        """An account made by whoever runs the server (an administrator's, when ADMIN_USERS
        names it), not counted against the sign-up limits. An existing account is left alone,
        or with ``replace`` given this password (its sessions end and its lock is lifted). True
        when the account was made or changed."""
        name = self._checked(username, password)
        password_hash = self.hasher.hash(password)
        with self.engine.begin() as conn:
            made = conn.execute(text("INSERT INTO app_users (username, password_hash) VALUES (:u, :h) "
                                     "ON CONFLICT (username) DO NOTHING RETURNING username"),
                                {"u": name, "h": password_hash}).first()
            if made is None:
                if not replace:
                    return False
                conn.execute(text("UPDATE app_users SET password_hash = :h, failed_sign_ins = 0, "
                                  "locked_until = NULL WHERE username = :u"), {"u": name, "h": password_hash})
                conn.execute(text("DELETE FROM app_sessions WHERE username = :u"), {"u": name})
                conn.execute(text("DELETE FROM app_session_grants WHERE username = :u"), {"u": name})
            conn.execute(text("DELETE FROM app_sign_in_failures WHERE username = :u"), {"u": name})
        return True

    def create_admin_from_file(self, username: str, password_file: Path) -> bool:
        """On first start: the account ``username`` with the password in the first line of
        ``password_file``, if no account of that name exists (the file is not read then)."""
        name = normalize_username(username)
        with self.engine.connect() as conn:
            if conn.execute(text("SELECT 1 FROM app_users WHERE username = :u"), {"u": name}).first():
                return False
        try:
            lines = Path(password_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise AccountError(f"ADMIN_PASSWORD_FILE cannot be read ({exc.__class__.__name__}).") from exc
        return self.create_account(name, lines[0] if lines else "")

    # ------------------------------------------------------------------ signing in and out

    def sign_in(self, username: str, password: str, *, one_time: bool = False) -> Session:
        """A new session for the right password. With ``one_time`` no session is opened yet: the
        returned token is a one-time code that `redeem` turns into the session (the app's cookie
        endpoint does, so that the session's token is only ever in the cookie)."""
        name = normalize_username(username)
        password_hash = self._claim_attempt(name)
        try:
            self.hasher.verify(password_hash or self._decoy, password[:MAX_PASSWORD])
            ok = password_hash is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok:
            raise AccountError(NO_MATCH)
        with self.engine.begin() as conn:
            conn.execute(text("UPDATE app_users SET failed_sign_ins = 0, locked_until = NULL, "
                              "last_sign_in_at = now() WHERE username = :u"), {"u": name})
            if self.hasher.check_needs_rehash(password_hash):
                conn.execute(text("UPDATE app_users SET password_hash = :h WHERE username = :u"),
                             {"u": name, "h": self.hasher.hash(password)})
        return self._grant(name) if one_time else self._open_session(name)

    def _claim_attempt(self, name: str) -> str | None:
        """Count this attempt as a wrong one before its password is checked (a right one clears
        the count afterwards): the account's password hash, None for a name with no account.
        Raises while the name is locked, an account or not."""
        params = {"u": name, "after": LOCK_AFTER, "lock": LOCK_FOR, "kept": UNKNOWN_NAME_KEPT}
        with self.engine.begin() as conn:
            claimed = conn.execute(text("""
                UPDATE app_users SET failed_sign_ins = failed_sign_ins + 1,
                       locked_until = CASE WHEN failed_sign_ins + 1 >= :after THEN now() + :lock END
                WHERE username = :u AND (locked_until IS NULL OR locked_until <= now())
                RETURNING password_hash"""), params).first()
            if claimed is not None:
                return claimed.password_hash
            if conn.execute(text("SELECT 1 FROM app_users WHERE username = :u"), params).first():
                raise AccountError(LOCKED)
            conn.execute(text("DELETE FROM app_sign_in_failures WHERE last_failed_at < now() - :kept "
                              "AND (locked_until IS NULL OR locked_until < now())"), params)
            counted = conn.execute(text("""
                INSERT INTO app_sign_in_failures AS f (username, failed_sign_ins, locked_until)
                VALUES (:u, 1, CASE WHEN 1 >= :after THEN now() + :lock END)
                ON CONFLICT (username) DO UPDATE SET failed_sign_ins = f.failed_sign_ins + 1,
                       locked_until = CASE WHEN f.failed_sign_ins + 1 >= :after THEN now() + :lock END,
                       last_failed_at = now()
                WHERE f.locked_until IS NULL OR f.locked_until <= now()
                RETURNING f.failed_sign_ins"""), params).first()
        if counted is None:
            raise AccountError(LOCKED)
        return None

    def user(self, token: str | None) -> str | None:
        """Whose session ``token`` is, while it lasts; None for unknown or expired tokens."""
        if not token:
            return None
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT username FROM app_sessions WHERE token_hash = :t AND expires_at > now()"),
                                {"t": _digest(token)}).scalar()

    def sign_out(self, token: str | None) -> None:
        if token:
            with self.engine.begin() as conn:
                conn.execute(text("DELETE FROM app_sessions WHERE token_hash = :t OR expires_at < now()"),
                             {"t": _digest(token)})

    def _checked(self, username: str, password: str) -> str:
        name = normalize_username(username)
        if not USERNAME.match(name):
            raise AccountError("A user name is 3 to 64 characters: letters, digits and . _ @ + -, "
                               "starting with a letter or digit.")
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise AccountError(f"A password is at least {MIN_PASSWORD} characters long (and at most {MAX_PASSWORD}).")
        if password.casefold() == name:
            raise AccountError("The password cannot be the user name.")
        return name

    def redeem(self, code: str | None) -> Session | None:
        """The session a one-time sign-in code stands for, opened now; None for a code that is
        unknown, used already or older than GRANT_LIFETIME. A code works once, however many
        requests bring it at the same time."""
        if not code or len(code) > MAX_GRANT_CODE:
            return None
        with self.engine.begin() as conn:
            granted = conn.execute(text("DELETE FROM app_session_grants WHERE code_hash = :c "
                                        "RETURNING username, expires_at > now() AS live"),
                                   {"c": _digest(code)}).first()
            if granted is None or not granted.live:
                return None
            return self._open_session(granted.username, conn)

    def _open_session(self, name: str, conn: Connection | None = None) -> Session:
        token = secrets.token_urlsafe(32)
        with _transaction(self.engine, conn) as conn:
            conn.execute(text("INSERT INTO app_sessions (token_hash, username, expires_at) "
                              "VALUES (:t, :u, now() + :length)"),
                         {"t": _digest(token), "u": name, "length": self.session_length})
        return Session(token=token, username=name)

    def _grant(self, name: str) -> Session:
        code = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(text("DELETE FROM app_session_grants WHERE expires_at < now()"))
            conn.execute(text("INSERT INTO app_session_grants (code_hash, username, expires_at) "
                              "VALUES (:c, :u, now() + :life)"),
                         {"c": _digest(code), "u": name, "life": GRANT_LIFETIME})
        return Session(token=code, username=name, one_time=True)


def _transaction(engine: Engine, conn: Connection | None):
    """``conn``'s transaction when given, else a new one."""
    return nullcontext(conn) if conn is not None else engine.begin()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ---------------------------------------------------------------------- command line


def _read_password(name: str) -> str:
    """The new password from standard input: asked twice at a terminal, else its first line."""
    import getpass

    if sys.stdin.isatty():
        password = getpass.getpass(f"Password for {name}: ")
        if getpass.getpass("The same password again: ") != password:
            raise AccountError("The two passwords differ.")
        return password
    return sys.stdin.readline().rstrip("\r\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m db.accounts create-admin NAME [--replace]`` (a name listed in ADMIN_USERS) and
    ``create-user NAME [--replace]`` (any other name, for when sign-up is off): an account, with
    the password read from standard input (never from the command line)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m db.accounts", description="Accounts made by the server's operator.")
    commands = parser.add_subparsers(dest="command", required=True)
    for command, what in (("create-admin", "the account of a name listed in ADMIN_USERS"),
                          ("create-user", "the account of a user who is not an administrator")):
        create = commands.add_parser(command, help=f"make {what}")
        create.add_argument("name")
        create.add_argument("--replace", action="store_true",
                            help="if the account exists, give it this password and end its sessions")
    args = parser.parse_args(argv)

    import services
    from settings import get_settings

    settings = get_settings()
    name = normalize_username(args.name)
    if args.command == "create-admin" and name not in settings.admins:
        print(f"{name} is not in ADMIN_USERS, so its account would not be an administrator's: add it to "
              "ADMIN_USERS (for the app and for this command), then run this again.", file=sys.stderr)
        return 1
    if args.command == "create-user" and name in settings.admins:
        print(f"{name} is in ADMIN_USERS: make its account with create-admin.", file=sys.stderr)
        return 1
    try:
        password = _read_password(name)
        accounts = Accounts(services.build_engine(settings), session_hours=settings.session_hours)
        changed = accounts.create_account(name, password, replace=args.replace)
    except AccountError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (EOFError, KeyboardInterrupt):
        print("No password given; nothing was changed.", file=sys.stderr)
        return 1
    if not changed:
        print(f"An account named {name} exists already; nothing was changed. Run again with --replace to give "
              "it this password (its sessions end).", file=sys.stderr)
        return 1
    who = "The administrator" if name in settings.admins else "The user"
    print(f"{who} {name} can sign in with this password now.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
