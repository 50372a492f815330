"""Logging in, checking tokens and account administration, over the repositories.

Login order: rate limits (per IP, per user name) before any password is hashed; one
answer for "no such user", "wrong password" and "disabled" so names cannot be probed.
A successful login replaces the token of that user on that device, records the login
and makes the user the owner of the device (docs/api.md #1, #22).
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from pyhbb.api import devices, jobs, tokens, users
from pyhbb.api.http import ApiError
from pyhbb.api.login_limits import LoginLimiter
from pyhbb.api.passwords import MAX_PASSWORD, Passwords
from pyhbb.api.users import User
from pyhbb.store.database import Conflict, SqliteDatabase

log = logging.getLogger("pyhbb.api")

BAD_CREDENTIALS = "Wrong user name or password"
UNAUTHORIZED = "Not logged in, or the session expired; please log in again"


@dataclass(frozen=True)
class Session:
    user: User
    token_digest: bytes


@dataclass(frozen=True)
class Login:
    name: str
    password: str
    device: devices.DeviceProof
    os: str


class Accounts:
    def __init__(
        self,
        db: SqliteDatabase,
        passwords: Passwords,
        limiter: LoginLimiter,
        policy: tokens.TokenPolicy,
        clock: Callable[[], float],
    ) -> None:
        self.db = db
        self.passwords = passwords
        self.limiter = limiter
        self.policy = policy
        self.clock = clock
        self.login_results: Counter[str] = Counter()
        """ok, failed, rate_limited (client logins and console sign-ins): for the metrics."""

    async def login(self, attempt: Login, ip: str) -> tuple[str, User]:
        now = self.clock()
        user, stored = await self._check(attempt, ip, now)
        token = tokens.new_token()
        digest = tokens.token_hash(token)
        expires = self.policy.expires_at(now)
        rehash = None
        if stored is not None and self.passwords.needs_rehash(stored):
            rehash = await self.passwords.hash(attempt.password)

        def job(conn: sqlite3.Connection) -> None:
            assert user is not None
            tokens.issue(
                conn,
                user.id,
                attempt.device.device_id,
                attempt.device.uuid_text,
                digest,
                now,
                expires,
            )
            _log_login(conn, attempt, user.id, ip, now, True)
            devices.claim(conn, attempt.device, user.id)
            if rehash is not None:
                users.set_password(conn, user.id, rehash)

        await jobs.write(self.db, job)
        self.login_results["ok"] += 1
        log.info("user %r logged in from %s (device %s)", user.name, ip, attempt.device.device_id)
        return token, user

    async def _check(self, attempt: Login, ip: str, now: float) -> tuple[User, str | None]:
        """The user whose password this is, after the rate limits; else 429 / 401 (the
        failure is logged and charged to the user name)."""
        wait = self.limiter.admit(ip, attempt.name, now)
        if wait > 0:
            self.login_results["rate_limited"] += 1
            log.warning("login of %r from %s refused: too many attempts", attempt.name, ip)
            raise ApiError(f"Too many login attempts; try again in {int(wait) + 1} s", 429)
        found = await jobs.read(self.db, lambda c: users.credentials(c, attempt.name))
        stored = found[1] if found is not None else None
        ok = await self.passwords.verify(stored, attempt.password)
        user = found[0] if found is not None else None
        if not ok or user is None or user.status != users.ENABLED:
            self.limiter.failed(attempt.name, self.clock())
            self.login_results["failed"] += 1
            await jobs.write(self.db, lambda c: _log_login(c, attempt, None, ip, now, False))
            log.info("login of %r from %s failed", attempt.name, ip)
            raise ApiError(BAD_CREDENTIALS, 401)
        return user, stored

    async def sign_in(self, name: str, password: str, ip: str, where: str) -> User:
        """A web console sign-in: the same limits, checks and login log as the client's
        login (``where`` stands for the device: ``web console``), but no token."""
        attempt = Login(name, password, devices.DeviceProof("", "", None), where)
        now = self.clock()
        user, stored = await self._check(attempt, ip, now)
        rehash = None
        if stored is not None and self.passwords.needs_rehash(stored):
            rehash = await self.passwords.hash(password)

        def job(conn: sqlite3.Connection) -> None:
            _log_login(conn, attempt, user.id, ip, now, True)
            if rehash is not None:
                users.set_password(conn, user.id, rehash)

        await jobs.write(self.db, job)
        self.login_results["ok"] += 1
        log.info("user %r signed in to the web console from %s", user.name, ip)
        return user

    async def change_password(self, user: User, current: str, new: str, ip: str) -> None:
        """The user's own change: the current password is checked like a login."""
        check_password(new)
        await self._check(
            Login(user.name, current, devices.DeviceProof("", "", None), ""), ip, self.clock()
        )
        hashed = await self.passwords.hash(new)
        await jobs.write(self.db, lambda c: users.set_password(c, user.id, hashed))
        log.info("user %r changed their password", user.name)

    async def authenticate(self, authorization: str | None) -> Session:
        """The session of a ``Bearer`` token, sliding its expiry; 401 otherwise."""
        token = tokens.bearer(authorization)
        if token is None:
            raise ApiError(UNAUTHORIZED, 401)
        digest = tokens.token_hash(token)
        now = self.clock()

        def job(conn: sqlite3.Connection) -> tuple[User, float] | None:
            found = tokens.lookup(conn, digest, now)
            if found is None:
                return None
            user = users.by_id(conn, found[0])
            return None if user is None else (user, found[1])

        found = await jobs.read(self.db, job)
        if found is None:
            raise ApiError(UNAUTHORIZED, 401)
        user, used_at = found
        if self.policy.should_slide(used_at, now):
            await jobs.write(
                self.db, lambda c: tokens.slide(c, digest, now, self.policy.expires_at(now))
            )
        return Session(user, digest)

    async def logout(self, session: Session) -> None:
        await jobs.write(self.db, lambda c: tokens.revoke(c, session.token_digest))
        log.info("user %r logged out", session.user.name)

    # -- administration ---------------------------------------------------------------

    async def add_user(self, name: str, password: str, is_admin: bool) -> User:
        why = users.valid_name(name)
        if why is not None:
            raise ApiError(why)
        check_password(password)
        hashed = await self.passwords.hash(password)
        now = self.clock()
        try:
            return await jobs.write(self.db, lambda c: users.create(c, name, hashed, is_admin, now))
        except Conflict:
            raise ApiError(f"a user named {name!r} already exists", 409) from None

    async def set_password(self, name: str, password: str) -> User:
        check_password(password)
        user = await jobs.read(self.db, lambda c: users.by_name(c, name))
        if user is None:
            raise ApiError(f"no user named {name!r}", 404)
        hashed = await self.passwords.hash(password)
        await jobs.write(self.db, lambda c: users.set_password(c, user.id, hashed))
        return user

    async def set_status(self, name: str, status: int) -> User:
        user = await jobs.write(self.db, lambda c: users.set_status(c, name, status))
        if user is None:
            raise ApiError(f"no user named {name!r}", 404)
        return user


def check_password(password: str) -> None:
    if not password:
        raise ApiError("the password is empty")
    if len(password) > MAX_PASSWORD:
        raise ApiError(f"the password is longer than {MAX_PASSWORD} characters")


def _log_login(
    conn: sqlite3.Connection, attempt: Login, user_id: int | None, ip: str, now: float, ok: bool
) -> None:
    conn.execute(
        "insert into api_login_log (at, user_id, name, ip, device_id, device_uuid, os, ok) "
        "values (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            now,
            user_id,
            attempt.name[:64],
            ip,
            attempt.device.device_id,
            attempt.device.uuid_text,
            attempt.os,
            int(ok),
        ),
    )
