"""bcrypt hashing: bounded in bytes, never truncated, never on the event loop.

The password policy (length, username, commonness) is tested in test_password_policy.py.
"""

import asyncio
from collections.abc import Iterator

import pytest

from auth.domain.password_policy import MAX_PASSWORD_BYTES
from auth.domain.passwords import BcryptPasswordHasher, PasswordHasher

# 24 x 3 bytes: 72 bytes of UTF-8 in only 24 characters.
EURO_72_BYTES = "\N{EURO SIGN}" * 24


@pytest.fixture
def hasher() -> Iterator[BcryptPasswordHasher]:
    """The real hasher at bcrypt's lowest cost."""
    hasher = BcryptPasswordHasher(rounds=4, workers=2)
    yield hasher
    hasher.close()


def test_bcrypt_hasher_is_a_password_hasher(hasher: BcryptPasswordHasher) -> None:
    checked: PasswordHasher = hasher
    assert checked is hasher


async def test_a_hashed_password_verifies(hasher: BcryptPasswordHasher) -> None:
    hashed = await hasher.hash("correct horse battery")

    assert hashed.startswith("$2")
    assert "correct horse battery" not in hashed
    assert await hasher.verify("correct horse battery", hashed) is True


async def test_a_multibyte_password_of_72_bytes_verifies(hasher: BcryptPasswordHasher) -> None:
    hashed = await hasher.hash(EURO_72_BYTES)

    assert await hasher.verify(EURO_72_BYTES, hashed) is True


async def test_the_same_password_hashes_differently_each_time(
    hasher: BcryptPasswordHasher,
) -> None:
    assert await hasher.hash("correct horse battery") != await hasher.hash("correct horse battery")


async def test_a_wrong_password_does_not_verify(hasher: BcryptPasswordHasher) -> None:
    hashed = await hasher.hash("correct horse battery")

    assert await hasher.verify("correct horse battery!", hashed) is False
    assert await hasher.verify("Correct horse battery", hashed) is False


async def test_no_password_verifies_without_a_hash(hasher: BcryptPasswordHasher) -> None:
    assert await hasher.verify("correct horse battery", None) is False
    # Not even the password behind the dummy hash that the timing check uses.
    assert await hasher.verify("userbus-dummy-password", None) is False


async def test_no_password_verifies_against_an_empty_hash(hasher: BcryptPasswordHasher) -> None:
    assert await hasher.verify("userbus-dummy-password", "") is False


async def test_a_password_over_72_bytes_never_matches_even_if_it_starts_with_the_password(
    hasher: BcryptPasswordHasher,
) -> None:
    password = "p" * MAX_PASSWORD_BYTES
    hashed = await hasher.hash(password)

    assert await hasher.verify(password, hashed) is True
    assert await hasher.verify(password + "x", hashed) is False
    assert await hasher.verify(password + "p" * 100, hashed) is False


async def test_a_multibyte_password_over_72_bytes_never_matches_its_prefix(
    hasher: BcryptPasswordHasher,
) -> None:
    hashed = await hasher.hash(EURO_72_BYTES)

    assert await hasher.verify(EURO_72_BYTES + "\N{EURO SIGN}", hashed) is False


@pytest.mark.parametrize("operation", ["hash", "verify"])
async def test_hashing_runs_off_the_event_loop(operation: str) -> None:
    # rounds=8 takes tens of milliseconds: long enough to see the loop keep ticking.
    hasher = BcryptPasswordHasher(rounds=8, workers=1)
    ticks = 0
    done = False

    async def tick() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    try:
        if operation == "hash":
            await hasher.hash("correct horse battery")
        else:
            await hasher.verify("correct horse battery", None)
    finally:
        done = True
        await ticker
        hasher.close()

    assert ticks > 10


async def test_a_closed_hasher_takes_no_more_work() -> None:
    hasher = BcryptPasswordHasher(rounds=4, workers=1)

    hasher.close()

    with pytest.raises(RuntimeError):
        await hasher.hash("correct horse battery")
