"""Accounts for AUTH_MODE=password: sign up, sign in, sign out, sessions that expire.

Passwords are hashed with Argon2id (argon2-cffi's defaults); only the hash is stored. A session
is a random token held by the browser's session; the database keeps its SHA-256 and expiry, so
a stolen table yields no usable token and signing out (or expiry) ends it everywhere. Five wrong
passwords in a row lock the account for a minute, which makes guessing slow without letting a
stranger lock someone out for long.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Column, DateTime, Engine, ForeignKey, Index, Integer, MetaData, Table, Text, func, text

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@+-]{2,63}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 256
LOCK_AFTER = 5
LOCK_FOR = timedelta(minutes=1)


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


class AccountError(ValueError):
    """A sign-up or sign-in that cannot go ahead, with a sentence for the person."""


@dataclass(frozen=True)
class Session:
    token: str
    username: str


def normalize_username(name: str) -> str:
    return name.strip().casefold()


class Accounts:
    def __init__(self, engine: Engine, *, session_hours: float = 12.0, hasher: PasswordHasher | None = None) -> None:
        self.engine = engine
        self.session_length = timedelta(hours=session_hours)
        self.hasher = hasher or PasswordHasher()
        # A hash to check against when the name is unknown, so both answers take as long.
        self._decoy = self.hasher.hash(secrets.token_urlsafe(16))

    def sign_up(self, username: str, password: str) -> Session:
        name = normalize_username(username)
        if not USERNAME.match(name):
            raise AccountError("A user name is 3 to 64 characters: letters, digits and . _ @ + -, "
                               "starting with a letter or digit.")
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise AccountError(f"A password is at least {MIN_PASSWORD} characters long (and at most {MAX_PASSWORD}).")
        if password.casefold() == name:
            raise AccountError("The password cannot be the user name.")
        with self.engine.begin() as conn:
            made = conn.execute(text("INSERT INTO app_users (username, password_hash) VALUES (:u, :h) "
                                     "ON CONFLICT (username) DO NOTHING RETURNING username"),
                                {"u": name, "h": self.hasher.hash(password)}).first()
        if made is None:
            raise AccountError("That user name is taken; choose another.")
        return self._open_session(name)

    def sign_in(self, username: str, password: str) -> Session:
        name = normalize_username(username)
        with self.engine.connect() as conn:
            row = conn.execute(text("SELECT password_hash, locked_until > now() AS locked FROM app_users "
                                    "WHERE username = :u"), {"u": name}).first()
        if row is not None and row.locked:
            raise AccountError("Too many wrong passwords: try again in a minute.")
        try:
            self.hasher.verify(row.password_hash if row is not None else self._decoy, password[:MAX_PASSWORD])
            ok = row is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok:
            if row is not None:
                with self.engine.begin() as conn:
                    conn.execute(text("""
                        UPDATE app_users SET failed_sign_ins = failed_sign_ins + 1,
                               locked_until = CASE WHEN failed_sign_ins + 1 >= :after THEN now() + :lock END
                        WHERE username = :u"""), {"u": name, "after": LOCK_AFTER, "lock": LOCK_FOR})
            raise AccountError("That user name and password do not match an account.")
        with self.engine.begin() as conn:
            conn.execute(text("UPDATE app_users SET failed_sign_ins = 0, locked_until = NULL, "
                              "last_sign_in_at = now() WHERE username = :u"), {"u": name})
            if self.hasher.check_needs_rehash(row.password_hash):
                conn.execute(text("UPDATE app_users SET password_hash = :h WHERE username = :u"),
                             {"u": name, "h": self.hasher.hash(password)})
        return self._open_session(name)

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

    def _open_session(self, name: str) -> Session:
        token = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(text("INSERT INTO app_sessions (token_hash, username, expires_at) "
                              "VALUES (:t, :u, now() + :length)"),
                         {"t": _digest(token), "u": name, "length": self.session_length})
        return Session(token=token, username=name)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
