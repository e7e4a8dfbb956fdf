"""Access-token verifications/s on one core, as a downstream service does it from a cached JWKS."""

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
from _common import setup_process, show, show_load, show_ratio, show_text

from auth.domain.model import User
from auth.security.tokens import (
    LEEWAY,
    Algorithm,
    TokenService,
    generate_private_key_pem,
)
from auth.security.tokens import token_service as configured_token_service
from auth.settings import AuthSettings
from consumers.jwks import REQUIRED_CLAIMS, JwksVerifier

ISSUER = AUDIENCE = "userbus"
JWKS_URL = "http://auth.invalid/.well-known/jwks.json"
# Verifies a slice of tokens, raising on the first it rejects.
VerifySlice = Callable[[list[str]], None]

PLAIN = "PyJWT: PyJWK by kid, jwt.decode"
VERIFIER = "JwksVerifier.verify (consumers/jwks.py)"
RAW = "raw jwt.decode (same key object)"
SIGNATURE = "bare signature check"
SERVICE = "TokenService.verify (the API's own)"
# Issue 11: the downstream verifier at no less than 0.8 of raw PyJWT verify, same run.
TARGET = 0.8


def token_service(algorithm: Algorithm) -> TokenService:
    """The auth service's token service, configured as in production but for a fresh key."""
    settings = AuthSettings(
        _env_file=None,
        database_url="postgresql://unused/unused",
        environment="test",
        jwt_algorithm=algorithm,
        jwt_private_key=generate_private_key_pem(algorithm).decode(),
    )
    return configured_token_service(settings)


def tokens(service: TokenService, count: int) -> list[str]:
    """`count` access tokens of distinct users and sessions, as the API issues them."""
    now = datetime.now(UTC)
    issued = []
    for index in range(count):
        user = User.register(
            username=f"user_{index}", email=f"user_{index}@example.com", password_hash="", now=now
        )
        issued.append(service.issue(user, session_id=user.id, now=now).token)
    return issued


def plain_pyjwt(jwks: dict[str, Any]) -> VerifySlice:
    """A downstream service with PyJWT alone: the cached JWK named by the token's `kid`, then
    jwt.decode with that key's algorithm only, checking audience, issuer, expiry and claims."""
    by_kid = {key.key_id: key for key in jwt.PyJWKSet.from_dict(jwks).keys}

    def verify(issued: list[str]) -> None:
        for token in issued:
            key = by_kid[jwt.get_unverified_header(token)["kid"]]
            jwt.decode(
                token,
                key,
                algorithms=[key.algorithm_name],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=LEEWAY,
                options={"require": REQUIRED_CLAIMS},
            )

    return verify


def jwks_verifier(jwks: dict[str, Any], loop: asyncio.AbstractEventLoop) -> VerifySlice:
    """The toolkit's JwksVerifier, its key set fetched once (from a stub) and then cached."""
    http = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda _: httpx.Response(200, json=jwks))
    )
    verifier = JwksVerifier(JWKS_URL, issuer=ISSUER, audience=AUDIENCE, http=http)

    async def verify_all(issued: list[str]) -> None:
        for token in issued:
            await verifier.verify(token)

    def verify(issued: list[str]) -> None:
        loop.run_until_complete(verify_all(issued))

    return verify


def raw_decode(jwks: dict[str, Any]) -> VerifySlice:
    """The baseline: jwt.decode with the same key object and checks, no header or key lookup."""
    key = jwt.PyJWKSet.from_dict(jwks).keys[0]
    algorithms = [key.algorithm_name]

    def verify(issued: list[str]) -> None:
        for token in issued:
            jwt.decode(
                token,
                key.key,
                algorithms=algorithms,
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=LEEWAY,
                options={"require": REQUIRED_CLAIMS},
            )

    return verify


def bare_signature(jwks: dict[str, Any]) -> VerifySlice:
    """The floor: the `cryptography` signature check alone, no JWT parsing or claims."""
    key = jwt.PyJWKSet.from_dict(jwks).keys[0]
    algorithm = key.Algorithm

    def verify(issued: list[str]) -> None:
        for token in issued:
            signing_input, _, signature = token.encode().rpartition(b".")
            if not algorithm.verify(signing_input, key.key, jwt.utils.base64url_decode(signature)):
                raise jwt.InvalidSignatureError("bad signature")

    return verify


def token_service_verify(service: TokenService) -> VerifySlice:
    """The auth service's own check, which every authenticated request to the API makes."""

    def verify(issued: list[str]) -> None:
        for token in issued:
            service.verify(token)

    return verify


def measure(
    algorithm: Algorithm, args: argparse.Namespace, loop: asyncio.AbstractEventLoop
) -> None:
    """Alternate slices of tokens between the ways of verifying; print rates and ratios."""
    service = token_service(algorithm)
    jwks = service.jwks()  # what GET /.well-known/jwks.json answers
    issued = tokens(service, args.tokens)
    ways: dict[str, VerifySlice] = {
        PLAIN: plain_pyjwt(jwks),
        VERIFIER: jwks_verifier(jwks, loop),
        RAW: raw_decode(jwks),
        SIGNATURE: bare_signature(jwks),
        SERVICE: token_service_verify(service),
    }
    for verify in ways.values():
        verify(issued[:100])  # each must accept the tokens; warms caches (and fetches the JWKS)
    wall = dict.fromkeys(ways, 0.0)
    cpu = dict.fromkeys(ways, 0.0)
    for _ in range(args.repeats):
        # Slices alternate between the ways, so a change in the machine's speed or in other
        # processes' load weighs on every way alike.
        for start in range(0, args.tokens, args.slice):
            part = issued[start : start + args.slice]
            for name, verify in ways.items():
                started, cpu_started = time.perf_counter(), time.thread_time()
                verify(part)
                wall[name] += time.perf_counter() - started
                cpu[name] += time.thread_time() - cpu_started
    # Per CPU second of this thread: time that other processes took from the core is left
    # out; the share line says how much there was.
    rates = {name: args.tokens * args.repeats / total for name, total in cpu.items()}
    show_text(f"{algorithm} token size", f"{len(issued[0])} bytes")
    show_text(f"{algorithm} CPU time / wall time", f"{sum(cpu.values()) / sum(wall.values()):.3f}")
    for name, rate in rates.items():
        show(f"{algorithm} {name}", rate, "verifications/CPU-s", 0)
    ratio = rates[VERIFIER] / rates[RAW]
    show_ratio(f"{algorithm} JwksVerifier / raw jwt.decode", ratio, ">= 0.8", ratio >= TARGET)
    show_ratio(f"{algorithm} JwksVerifier / bare signature", rates[VERIFIER] / rates[SIGNATURE])
    show_ratio(f"{algorithm} PyJWT by kid / raw jwt.decode", rates[PLAIN] / rates[RAW])
    show_ratio(f"{algorithm} raw jwt.decode / bare signature", rates[RAW] / rates[SIGNATURE])


def main(args: argparse.Namespace) -> None:
    """Measure EdDSA (the default) and RS256 on one core."""
    if hasattr(os, "sched_setaffinity"):
        # One core, so the figure is per core and does not move between cores mid-run.
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        show_text("pinned to core", str(core))
    show_text("tokens, turns, slice", f"{args.tokens}, {args.repeats}, {args.slice}")
    show_text("PyJWT", jwt.__version__)
    show_load("at start")
    loop = asyncio.new_event_loop()
    try:
        for algorithm in args.algorithms:
            measure(algorithm, args, loop)
    finally:
        loop.close()
    show_load("at end")


def parse_args() -> argparse.Namespace:
    """This benchmark's options (it needs no database and no Redis)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--tokens", type=int, default=5000, help="distinct tokens per turn (default: 5000)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="turns over all the tokens (default: 3)"
    )
    parser.add_argument(
        "--slice", type=int, default=250, help="tokens per alternating slice (default: 250)"
    )
    parser.add_argument(
        "--algorithms",
        nargs="+",
        choices=["EdDSA", "RS256"],
        default=["EdDSA", "RS256"],
        help="default: EdDSA RS256",
    )
    return parser.parse_args()


if __name__ == "__main__":
    setup_process()
    main(parse_args())
