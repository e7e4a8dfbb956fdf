"""The password policy: length in characters and bytes, no username or email inside, not common."""

import secrets

import pytest

from auth.domain.password_policy import (
    COMMON_PASSWORDS_FILE,
    MAX_PASSWORD_BYTES,
    MIN_PASSWORD_CHARS,
    common_passwords,
    password_problem,
)

TOO_SHORT = "the password must have at least 8 characters"
TOO_LONG = "the password must be at most 72 bytes in UTF-8"
HAS_USERNAME = "the password must not contain the username"
HAS_EMAIL = "the password must not contain the part of the email address before the @"
TOO_COMMON = "the password is too common"

# 24 x 3 bytes: 72 bytes of UTF-8 in only 24 characters.
EURO_72_BYTES = "\N{EURO SIGN}" * 24


def test_a_password_of_7_characters_is_too_short() -> None:
    assert password_problem("abcdefg") == TOO_SHORT


def test_characters_not_bytes_count_towards_the_minimum() -> None:
    # 7 characters are 21 bytes, still too short.
    assert password_problem("\N{EURO SIGN}" * (MIN_PASSWORD_CHARS - 1)) == TOO_SHORT


@pytest.mark.parametrize(
    "password",
    ["abcdefgh", "a" * MAX_PASSWORD_BYTES, EURO_72_BYTES[:8], EURO_72_BYTES, "é" * 36],
    ids=[
        "8-chars",
        "72-ascii-bytes",
        "8-multibyte-chars",
        "72-bytes-in-24-chars",
        "72-bytes-e-acute",
    ],
)
def test_passwords_from_8_characters_up_to_72_bytes_are_accepted(password: str) -> None:
    assert password_problem(password) is None


@pytest.mark.parametrize(
    "password",
    ["a" * 73, EURO_72_BYTES + "a", "é" * 36 + "a", "é€" * 25],
    ids=["73-ascii-bytes", "73-bytes-in-25-chars", "73-bytes-in-37-chars", "125-bytes-in-50-chars"],
)
def test_passwords_over_72_bytes_are_refused_however_few_characters(password: str) -> None:
    assert password_problem(password) == TOO_LONG


@pytest.mark.parametrize(
    ("password", "username"),
    [
        ("alice_smith", "alice_smith"),
        ("Alice_Smith", "alice_smith"),
        ("my-name-is-ALICE-99", "Alice"),
        ("bob-the-builder-7", "bob"),
    ],
    ids=["equal", "equal-other-case", "contained-other-case", "3-char-username"],
)
def test_a_password_holding_the_username_is_refused(password: str, username: str) -> None:
    assert password_problem(password, username=username) == HAS_USERNAME


@pytest.mark.parametrize(
    ("password", "email"),
    [
        ("carol.jones", "carol.jones@example.com"),
        ("CAROL.JONES-2024!", "Carol.Jones@example.com"),
        ("xx-Dan-xx-9", "dan@example.com"),
    ],
    ids=["equal", "contained-other-case", "3-char-local-part"],
)
def test_a_password_holding_the_email_local_part_is_refused(password: str, email: str) -> None:
    assert password_problem(password, email=email) == HAS_EMAIL


def test_short_usernames_and_local_parts_are_ignored() -> None:
    assert password_problem("al-is-great-77", username="al", email="al@example.com") is None


def test_only_the_local_part_of_the_email_is_checked() -> None:
    assert password_problem("love-example.com-9", email="dave@example.com") is None


def test_without_username_or_email_only_the_other_rules_apply() -> None:
    assert password_problem("alice_smith") is None


@pytest.mark.parametrize(
    "password",
    [
        "password",
        "12345678",
        "iloveyou",
        "sunshine1",
        "password1",
        "Password123",
        "PASSWORD",
        "ILoveYou",
        "trustno1",
        "qwertyuiop",
    ],
)
def test_common_passwords_are_refused_whatever_their_case(password: str) -> None:
    assert password.lower() in common_passwords()
    assert password_problem(password) == TOO_COMMON


def test_common_entries_shorter_than_8_characters_fail_on_length_first() -> None:
    assert "123456" in common_passwords()
    assert password_problem("123456") == TOO_SHORT


def test_the_username_is_reported_before_commonness() -> None:
    assert password_problem("password", username="pass") == HAS_USERNAME


@pytest.mark.parametrize(
    "password",
    ["correct horse battery staple 42", "Tr0ub4dour&3-xkcd-not-really", secrets.token_urlsafe(24)],
    ids=["passphrase", "mixed", "random"],
)
def test_a_strong_password_passes(password: str) -> None:
    assert password_problem(password, username="alice", email="alice@example.com") is None


@pytest.mark.parametrize(
    "password",
    [
        "Xy7!ab",
        "zq" * 37,
        "my-name-is-alice-99",
        "Carol.Jones-2024",
        "sunshine1",
    ],
    ids=["short", "long", "username", "email", "common"],
)
def test_the_reason_never_contains_the_password(password: str) -> None:
    reason = password_problem(password, username="alice", email="carol.jones@example.com")
    assert reason is not None
    assert password.casefold() not in reason.casefold()


def test_the_bundled_list_has_the_10000_most_common_passwords_in_lowercase() -> None:
    passwords = common_passwords()
    assert len(passwords) >= 10_000
    assert all(entry == entry.lower() and entry.strip() == entry for entry in passwords)
    assert not any(entry.startswith("#") for entry in passwords)


def test_the_bundled_list_names_its_source_and_license() -> None:
    first_line = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()[0]
    assert first_line.startswith("#")
    assert "zxcvbn" in first_line
    assert "MIT" in first_line


def test_the_list_is_loaded_once_per_process() -> None:
    common_passwords.cache_clear()
    for password in ["password", "correct horse battery staple", "sunshine1"]:
        password_problem(password)
    assert common_passwords.cache_info().misses == 1
    assert common_passwords() is common_passwords()
