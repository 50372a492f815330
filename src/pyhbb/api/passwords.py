"""Account passwords: Argon2id from argon2-cffi (memory-hard), off the event loop.

Each hash takes tens of megabytes for tens of milliseconds, so at most ``concurrency``
run at once: a login flood queues here (after the rate limiter) instead of exhausting
memory. An unknown user name costs the same as a wrong password (a dummy verify), so
response times do not tell which names exist.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MAX_PASSWORD = 1024  # characters; longer input is refused before hashing


class Passwords:
    def __init__(self, hasher: PasswordHasher | None = None, concurrency: int = 2) -> None:
        self._hasher = hasher or PasswordHasher()  # the library's RFC 9106 profile
        self._slots = asyncio.Semaphore(concurrency)
        self._dummy: str | None = None

    def hash_sync(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify_sync(self, stored: str | None, password: str) -> bool:
        if stored is None:
            if self._dummy is None:
                self._dummy = self._hasher.hash("no such user")
            stored = self._dummy
            password = password + "\x00"  # never matches the dummy
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self.hash_sync, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored`` (``None``: unknown user, always False)."""
        async with self._slots:
            return await asyncio.to_thread(self.verify_sync, stored, password)
