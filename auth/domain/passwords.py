"""Password hashing: bcrypt in a bounded thread pool, never on the event loop."""

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import bcrypt

from auth.domain.password_policy import MAX_PASSWORD_BYTES


class PasswordHasher(Protocol):
    """Hashes and checks passwords without blocking the event loop."""

    async def hash(self, password: str) -> str:
        """A salted hash of the password."""
        ...

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """Whether the password matches; with no hash, burn the same time and say no."""
        ...


class BcryptPasswordHasher:
    """bcrypt in a pool of `workers` threads: bcrypt releases the GIL, so threads scale by core.

    The pool size bounds the CPU spent on hashing, so a login flood queues here instead of
    starving cheap requests of the event loop.
    """

    def __init__(self, rounds: int, workers: int) -> None:
        self._rounds = rounds
        self._workers = workers
        # Jobs handed to the pool and not finished (running or waiting), for /metrics.
        self._in_flight = 0
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="bcrypt", initializer=_lower_priority
        )
        # Verifying against this hash costs the same as against a real one, so an unknown
        # user is indistinguishable by timing from a wrong password.
        self._dummy_hash = bcrypt.hashpw(b"userbus-dummy-password", bcrypt.gensalt(rounds))

    @property
    def waiting(self) -> int:
        """Hashing jobs queued behind busy workers (not yet started)."""
        return max(0, self._in_flight - self._workers)

    async def hash(self, password: str) -> str:
        """A salted bcrypt hash of the password."""
        loop = asyncio.get_running_loop()
        self._in_flight += 1
        try:
            hashed = await loop.run_in_executor(self._executor, self._hash_sync, password)
        finally:
            self._in_flight -= 1
        return hashed.decode("ascii")

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """Whether the password matches the hash (a dummy hash when there is none)."""
        loop = asyncio.get_running_loop()
        candidate = password.encode("utf-8")
        # No stored hash comes from a password over 72 bytes, so such a password never
        # matches; it is still checked (against the dummy) so that it costs the same time.
        can_match = bool(password_hash) and len(candidate) <= MAX_PASSWORD_BYTES
        target = password_hash.encode("ascii") if can_match and password_hash else self._dummy_hash
        self._in_flight += 1
        try:
            matches = await loop.run_in_executor(
                self._executor, bcrypt.checkpw, candidate[:MAX_PASSWORD_BYTES], target
            )
        finally:
            self._in_flight -= 1
        return matches and can_match

    def close(self) -> None:
        """Stop the worker threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _hash_sync(self, password: str) -> bytes:
        return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(self._rounds))


def _lower_priority() -> None:
    # Hashing saturates every core under a login flood; at a lower priority its threads
    # yield the CPU to the event loop and the database, so cheap requests stay fast
    # (bench/login_flood.py). Throughput is unchanged: the hashing still gets the idle CPU.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
