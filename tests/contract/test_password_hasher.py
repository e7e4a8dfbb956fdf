"""PasswordHasher: FakePasswordHasher keeps the promises of BcryptPasswordHasher.

Not part of the contract: bcrypt salts each hash, the fake's hash is the password behind a
prefix, so that unit tests can store and read hashes without hashing.
"""

from collections.abc import Iterator

import pytest

from auth.domain.passwords import BcryptPasswordHasher, PasswordHasher
from tests.unit.fakes import FakePasswordHasher

PASSWORD = "correct horse battery"
# 24 x 3 bytes: 72 bytes of UTF-8, bcrypt's limit, in only 24 characters.
EURO_72_BYTES = "\N{EURO SIGN}" * 24


class PasswordHasherContract:
    """What every PasswordHasher does."""

    @pytest.fixture
    def hasher(self) -> PasswordHasher:
        """The hasher under test (each subclass names one)."""
        raise NotImplementedError

    async def test_a_hashed_password_verifies_and_no_other_does(
        self, hasher: PasswordHasher
    ) -> None:
        hashed = await hasher.hash(PASSWORD)

        assert hashed != PASSWORD
        assert await hasher.verify(PASSWORD, hashed) is True
        assert await hasher.verify(PASSWORD + "!", hashed) is False
        assert await hasher.verify(PASSWORD.capitalize(), hashed) is False
        assert await hasher.verify(PASSWORD, await hasher.hash("another password")) is False

    async def test_nothing_verifies_without_a_hash(self, hasher: PasswordHasher) -> None:
        assert await hasher.verify(PASSWORD, None) is False
        assert await hasher.verify("", None) is False

    async def test_a_multibyte_password_of_72_bytes_verifies(self, hasher: PasswordHasher) -> None:
        assert await hasher.verify(EURO_72_BYTES, await hasher.hash(EURO_72_BYTES)) is True

    async def test_a_password_over_72_bytes_is_never_hashed_nor_verified(
        self, hasher: PasswordHasher
    ) -> None:
        # The password policy refuses such a password before it reaches the hasher.
        with pytest.raises(ValueError, match="72 bytes"):
            await hasher.hash(EURO_72_BYTES + "a")
        hashed = await hasher.hash(EURO_72_BYTES)
        assert await hasher.verify(EURO_72_BYTES + "a", hashed) is False


class TestFakePasswordHasher(PasswordHasherContract):
    """The contract on FakePasswordHasher."""

    @pytest.fixture
    def hasher(self) -> PasswordHasher:
        """A fresh fake."""
        return FakePasswordHasher()


class TestBcryptPasswordHasher(PasswordHasherContract):
    """The contract on BcryptPasswordHasher at bcrypt's lowest cost."""

    @pytest.fixture
    def hasher(self) -> Iterator[PasswordHasher]:
        """The real hasher at cost 4."""
        hasher = BcryptPasswordHasher(rounds=4, workers=2)
        yield hasher
        hasher.close()
