"""Console accounts and sessions, stored in Elasticsearch; argon2id password hashes; failed-login throttling.

Sessions are server-side: the cookie carries a random token, the store keeps only its SHA-256 (a stolen
index does not yield live cookies). Disabling a user or changing a password ends every session of that user.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import threading
import time
import zoneinfo
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from elasticsearch import ConflictError, Elasticsearch, NotFoundError

from secops.console.roles import Role
from secops.ecs import iso, parse_time, utcnow

available_timezones = cache(zoneinfo.available_timezones)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 12
LANGUAGES = ("en", "zh_CN")
KW = {"type": "keyword", "ignore_above": 1024}
USER_MAPPING = {"dynamic": "strict", "properties": {
    "name": KW, "role": KW, "password_hash": {"type": "keyword", "index": False}, "disabled": {"type": "boolean"},
    "lang": KW, "timezone": KW, "created": {"type": "date"}, "updated": {"type": "date"}}}
SESSION_MAPPING = {"dynamic": "strict", "properties": {
    "user": KW, "role": KW, "csrf": {"type": "keyword", "index": False}, "created": {"type": "date"},
    "expires": {"type": "date"}, "client_ip": KW}}
_hasher = PasswordHasher()  # argon2id, the library's RFC 9106 defaults


class UserError(ValueError):
    """A refused account operation (bad name, weak password, unknown user...)."""


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    disabled: bool
    lang: str | None
    created: str
    timezone: str | None = None


@dataclass(frozen=True)
class Session:
    token_id: str
    user: str
    role: Role
    csrf: str
    expires: str
    lang: str | None = None
    timezone: str | None = None


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise UserError("user names are 1-64 characters: letters, digits and _ . @ - (not first)")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"passwords need at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise UserError("passwords are at most 1024 characters")
    return password


def check_timezone(name: str) -> str:
    """An IANA time zone name the system's tz database knows (Asia/Shanghai, UTC, Europe/Berlin...)."""
    if not isinstance(name, str) or len(name) > 64 or name not in available_timezones():
        raise UserError(f"not a known IANA time zone: {str(name)[:64]!r}")
    return name


def _token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UserStore:
    """Users (``<prefix>-console_user``) and sessions (``<prefix>-console_session``)."""

    def __init__(self, es: Elasticsearch, prefix: str, session_hours: float = 8.0) -> None:
        self.es, self.prefix = es, prefix
        self.users_index = f"{prefix}-console_user"
        self.sessions_index = f"{prefix}-console_session"
        self.session_ttl = timedelta(hours=session_hours)

    def ensure(self) -> None:
        for index, mapping in ((self.users_index, USER_MAPPING), (self.sessions_index, SESSION_MAPPING)):
            if self.es.indices.exists(index=index):  # an index made by an older version: add the new fields
                self.es.indices.put_mapping(index=index, properties=mapping["properties"])
            else:
                try:
                    self.es.indices.create(index=index, mappings=mapping,
                                           settings={"number_of_shards": 1, "auto_expand_replicas": "0-1"})
                except Exception as exc:  # created concurrently by another console process
                    if "resource_already_exists" not in str(exc):
                        raise

    # -- users -------------------------------------------------------------------------------
    def add(self, name: str, role: str, password: str) -> User:
        check_name(name)
        role_ = _role(role)
        now = iso()
        self.ensure()
        try:
            self.es.create(index=self.users_index, id=name, refresh=True, document={
                "name": name, "role": role_.value, "password_hash": _hasher.hash(check_password(password)),
                "disabled": False, "lang": None, "created": now, "updated": now})
        except ConflictError:
            raise UserError(f"user {name!r} exists") from None
        return self.get(name)

    def _source(self, name: str) -> dict[str, Any]:
        try:
            return self.es.get(index=self.users_index, id=name)["_source"]
        except NotFoundError:
            raise UserError(f"no user {name!r}") from None

    def get(self, name: str) -> User:
        s = self._source(name)
        return _user(s)

    def list(self) -> list[User]:
        if not self.es.indices.exists(index=self.users_index):
            return []
        hits = self.es.search(index=self.users_index, size=1000, sort=[{"name": "asc"}])["hits"]["hits"]
        return [_user(h["_source"]) for h in hits]

    def _update(self, name: str, **fields: Any) -> None:
        self._source(name)
        self.es.update(index=self.users_index, id=name, refresh=True, doc={**fields, "updated": iso()})

    def set_disabled(self, name: str, disabled: bool = True) -> None:
        self._update(name, disabled=disabled)
        if disabled:
            self.end_sessions(name)

    def set_password(self, name: str, password: str) -> None:
        self._update(name, password_hash=_hasher.hash(check_password(password)))
        self.end_sessions(name)

    def set_role(self, name: str, role: str) -> None:
        self._update(name, role=_role(role).value)
        self.end_sessions(name)

    def set_lang(self, name: str, lang: str) -> None:
        if lang not in LANGUAGES:
            raise UserError(f"language must be one of {', '.join(LANGUAGES)}")
        self._update(name, lang=lang)

    def set_timezone(self, name: str, timezone: str | None) -> None:
        """The user's time zone for dates in the console; None: the console's default (console.timezone)."""
        self._update(name, timezone=check_timezone(timezone) if timezone else None)

    def verify(self, name: str, password: str) -> User | None:
        """The user if the password matches and the account is enabled; None otherwise (same cost either way)."""
        try:
            src = self._source(name) if NAME_RE.match(name or "") else None
        except UserError:
            src = None
        stored = src["password_hash"] if src else _DUMMY_HASH
        try:
            ok = _hasher.verify(stored, password[:1024])
        except (VerificationError, InvalidHashError):
            ok = False
        if not (ok and src) or src["disabled"]:
            return None
        if _hasher.check_needs_rehash(stored):
            self._update(name, password_hash=_hasher.hash(password))
        return _user(src)

    # -- sessions ----------------------------------------------------------------------------
    def open_session(self, user: User, client_ip: str | None) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        now = utcnow()
        doc = {"user": user.name, "role": user.role.value, "csrf": secrets.token_urlsafe(32), "created": iso(now),
               "expires": iso(now + self.session_ttl), "client_ip": client_ip}
        self.es.index(index=self.sessions_index, id=_token_id(token), document=doc)  # read back by id: realtime
        return token, Session(_token_id(token), user.name, user.role, doc["csrf"], doc["expires"], user.lang,
                              user.timezone)

    def session(self, token: str | None) -> Session | None:
        """The live session of a cookie token, or None (unknown, expired, user disabled)."""
        if not token or len(token) > 200:
            return None
        tid = _token_id(token)
        try:
            s = self.es.get(index=self.sessions_index, id=tid)["_source"]
        except NotFoundError:
            return None
        if parse_time(s["expires"]) <= utcnow():
            self.close_session(tid)
            return None
        try:
            u = self._source(s["user"])
        except UserError:
            return None
        if u["disabled"]:
            return None
        return Session(tid, s["user"], Role(u["role"]), s["csrf"], s["expires"], u.get("lang"), u.get("timezone"))

    def close_session(self, token_id: str) -> None:
        with contextlib.suppress(NotFoundError):
            self.es.delete(index=self.sessions_index, id=token_id)

    def end_sessions(self, name: str) -> None:
        """Delete every session of a user (search + bulk delete: core nodes lack delete-by-query)."""
        if not self.es.indices.exists(index=self.sessions_index):
            return
        self.es.indices.refresh(index=self.sessions_index)  # sessions opened a moment ago
        while True:
            hits = self.es.search(index=self.sessions_index, query={"term": {"user": name}}, size=1000,
                                  source=False)["hits"]["hits"]
            if not hits:
                return
            self.es.bulk(operations=[{"delete": {"_index": self.sessions_index, "_id": h["_id"]}} for h in hits],
                         refresh=True)


def _user(src: dict[str, Any]) -> User:
    return User(src["name"], Role(src["role"]), bool(src["disabled"]), src.get("lang"), src["created"],
                src.get("timezone"))


def _role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise UserError(f"role must be one of {', '.join(r.value for r in Role)}") from None


_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class LoginThrottle:
    """Failed logins per client address and per user name in a sliding window; over the limit, refuse."""

    def __init__(self, max_failures: int = 5, window_seconds: float = 300.0) -> None:
        self.max, self.window = max_failures, window_seconds
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and now - q[0] > self.window:
            q.popleft()
        return q

    def retry_after(self, client_ip: str, name: str) -> float:
        """Seconds until a login from this address or for this name may be tried again (0: now)."""
        now = time.monotonic()
        with self._lock:
            waits = [self.window - (now - q[0]) for key in (f"ip:{client_ip}", f"user:{name}")
                     if len(q := self._recent(key, now)) >= self.max]
        return max(waits, default=0.0)

    def failed(self, client_ip: str, name: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in (f"ip:{client_ip}", f"user:{name}"):
                self._recent(key, now).append(now)
            if len(self._failures) > 100_000:  # bounded memory under a spray of names
                self._failures = {k: q for k, q in self._failures.items() if q and now - q[-1] <= self.window}

    def succeeded(self, client_ip: str, name: str) -> None:
        with self._lock:
            self._failures.pop(f"user:{name}", None)
