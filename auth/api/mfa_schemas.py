"""Request and response bodies of sessions and the TOTP second factor."""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import segno
from pydantic import BaseModel, ConfigDict, Field

from auth.api.schemas import GivenPassword, OpaqueToken, TokenOut
from auth.domain.sessions import SessionInfo
from auth.service_layer.authentication import TokenPair
from auth.service_layer.mfa import Enrolment
from auth.service_layer.mfa_challenges import MfaChallenge

# A TOTP code (six digits) or a recovery code (XXXX-XXXX-XXXX-XXXX; dashes, spaces and case
# do not matter).
MfaCode = Annotated[
    str,
    Field(
        min_length=6,
        max_length=40,
        pattern=r"^[0-9A-Za-z -]+$",
        description="a 6-digit TOTP code, or one of the recovery codes",
        examples=["123456"],
    ),
]
TotpCode = Annotated[
    str, Field(pattern=r"^[0-9]{6}$", description="the 6-digit code the app shows")
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MfaChallengeOut(BaseModel):
    """A login of an account with a second factor: send a code with the challenge next."""

    mfa_required: Literal[True] = True
    challenge: str = Field(description="for POST /auth/mfa/verify, with a TOTP or recovery code")
    expires_in: int = Field(description="seconds the challenge stays valid")


def login_out(result: TokenPair | MfaChallenge) -> TokenOut | MfaChallengeOut:
    """A login's answer: the token pair, or the challenge of a two-step login."""
    if isinstance(result, MfaChallenge):
        return MfaChallengeOut(challenge=result.challenge, expires_in=result.expires_in)
    return TokenOut(
        access_token=result.access_token,
        refresh_token=result.refresh_token,
        expires_in=result.expires_in,
    )


class MfaVerifyRequest(_Request):
    """The second step of a login: the challenge, and a code from the app or a recovery code."""

    challenge: OpaqueToken
    code: MfaCode


class TotpEnrolmentOut(BaseModel):
    """A pending TOTP secret: add it to an authenticator app, then confirm with a code."""

    secret: str = Field(description="base32, for typing into the app by hand")
    otpauth_uri: str = Field(description="otpauth://totp/... (RFC 6238 key URI)")
    qr_svg: str = Field(description="the URI as a QR code: an SVG data URI for an <img src>")

    @classmethod
    def of(cls, enrolment: Enrolment) -> "TotpEnrolmentOut":
        """The enrolment with its QR code drawn."""
        qr = segno.make(enrolment.otpauth_uri, error="m").svg_data_uri(scale=4)
        return cls(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri, qr_svg=qr)


class TotpConfirmRequest(_Request):
    """The first code from the app, proving it holds the secret."""

    code: TotpCode


class RecoveryCodesRequest(_Request):
    """A current code from the app (not a recovery code): new ones need the device."""

    code: TotpCode


class RecoveryCodesOut(BaseModel):
    """Ten single-use codes for when the app is lost: shown this once, stored only hashed."""

    recovery_codes: list[str]


class TotpDisableRequest(_Request):
    """Turning TOTP off takes the password and a TOTP or recovery code."""

    password: GivenPassword
    code: MfaCode


class SessionOut(BaseModel):
    """A live session: `last_used_at` is its login or latest refresh."""

    id: UUID
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    client_address: str | None
    user_agent: str | None
    current: bool = Field(description="whether the token of this request belongs to it")

    @classmethod
    def of(cls, session: SessionInfo, current: UUID | None) -> "SessionOut":
        """The session as listed, marked current when it is the caller's own."""
        return cls(
            id=session.id,
            created_at=session.created_at,
            last_used_at=session.last_used_at,
            expires_at=session.expires_at,
            client_address=session.client_address,
            user_agent=session.user_agent,
            current=session.id == current,
        )


class SessionList(BaseModel):
    """Live sessions, the most recently used first."""

    sessions: list[SessionOut]
