"""The second factor's rules: which TOTP steps are accepted, and the shape of recovery codes."""

from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from auth.domain.mfa import (
    RECOVERY_CODE_COUNT,
    STEP_SECONDS,
    matching_step,
    new_recovery_codes,
    new_totp_secret,
    normalise_recovery_code,
    provisioning_uri,
)

NOW = datetime(2026, 12, 3, 12, 0, 10, tzinfo=UTC)


def code_at(secret: str, moment: datetime) -> str:
    """What an authenticator app shows at `moment`."""
    return pyotp.TOTP(secret).at(moment)


@pytest.mark.parametrize("steps", [-1, 0, 1])
def test_a_code_of_the_step_before_now_or_after_is_accepted(steps: int) -> None:
    secret = new_totp_secret()
    code = code_at(secret, NOW + timedelta(seconds=steps * STEP_SECONDS))
    current = pyotp.TOTP(secret).timecode(NOW)

    assert matching_step(secret, code, now=NOW, after=None) == current + steps


@pytest.mark.parametrize("steps", [-3, -2, 2, 3])
def test_a_code_further_away_is_refused(steps: int) -> None:
    secret = new_totp_secret()
    code = code_at(secret, NOW + timedelta(seconds=steps * STEP_SECONDS))

    assert matching_step(secret, code, now=NOW, after=None) is None


def test_a_step_not_later_than_the_last_accepted_one_is_refused() -> None:
    secret = new_totp_secret()
    code = code_at(secret, NOW)
    step = matching_step(secret, code, now=NOW, after=None)
    assert step is not None

    assert matching_step(secret, code, now=NOW, after=step) is None
    assert matching_step(secret, code, now=NOW, after=step - 1) == step


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12 34 5x"])
def test_what_is_not_six_digits_is_no_totp_code(code: str) -> None:
    assert matching_step(new_totp_secret(), code, now=NOW, after=None) is None


def test_spaces_inside_a_code_do_not_matter() -> None:
    secret = new_totp_secret()
    code = code_at(secret, NOW)
    assert matching_step(secret, f"{code[:3]} {code[3:]}", now=NOW, after=None) is not None


def test_recovery_codes_are_ten_distinct_80_bit_codes_in_groups_of_four() -> None:
    codes = new_recovery_codes()

    assert len(codes) == RECOVERY_CODE_COUNT == 10
    assert len(set(codes)) == 10
    for code in codes:
        groups = code.split("-")
        assert [len(g) for g in groups] == [4, 4, 4, 4]
        assert set(code) - {"-"} <= set("ABCDEFGHJKLMNPQRSTUVWXYZ23456789")  # 32 symbols


def test_a_recovery_code_is_read_in_any_case_with_or_without_dashes() -> None:
    assert normalise_recovery_code("abcd-efgh 2345-6789") == "ABCDEFGH23456789"


def test_the_secret_has_160_bits_and_the_uri_names_issuer_and_account() -> None:
    secret = new_totp_secret()
    uri = provisioning_uri(secret, account="alice", issuer="userbus")

    assert len(secret) == 32  # base32: 5 bits a character
    assert uri.startswith("otpauth://totp/userbus:alice?")
    assert f"secret={secret}" in uri
