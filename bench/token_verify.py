"""Access-token verifications/s on one core, as a downstream service does it from a cached JWKS."""

import argparse
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from _common import setup_process, show, show_load, show_ratio, show_text

from auth.domain.model import User
from auth.security.tokens import (
    LEEWAY,
    Algorithm,
    TokenService,
    generate_private_key_pem,
    load_signing_key,
)
from auth.settings import AuthSettings

ISSUER = AUDIENCE = "userbus"
REQUIRED = ["exp", "iat", "sub", "iss", "aud", "jti"]
Verify = Callable[[str], dict[str, Any]]


def token_service(algorithm: Algorithm) -> TokenService:
    """The auth service's token service, configured as in production but for a fresh key."""
    settings = AuthSettings(
        _env_file=None,
        database_url="postgresql://unused/unused",
        environment="test",
        jwt_algorithm=algorithm,
        jwt_private_key=generate_private_key_pem(algorithm).decode(),
    )
    return TokenService(
        load_signing_key(settings),
        algorithm=settings.jwt_algorithm,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=timedelta(seconds=settings.access_token_ttl_seconds),
    )


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


def downstream_verifier(jwks: dict[str, Any]) -> Verify:
    """What a downstream service does per request: pick the cached JWK by `kid`, then decode
    with its algorithm only, checking audience, issuer, expiry and the required claims."""
    keys = jwt.PyJWKSet.from_dict(jwks)
    by_kid = {key.key_id: key for key in keys.keys}

    def verify(token: str) -> dict[str, Any]:
        key = by_kid[jwt.get_unverified_header(token)["kid"]]
        return jwt.decode(
            token,
            key,
            algorithms=[key.algorithm_name],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=LEEWAY,
            options={"require": REQUIRED},
        )

    return verify


def raw_verifier(jwks: dict[str, Any]) -> Verify:
    """The baseline: jwt.decode with the same key object and checks, no header or key lookup."""
    key = jwt.PyJWKSet.from_dict(jwks).keys[0]
    algorithms = [key.algorithm_name]

    def verify(token: str) -> dict[str, Any]:
        return jwt.decode(
            token,
            key.key,
            algorithms=algorithms,
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=LEEWAY,
            options={"require": REQUIRED},
        )

    return verify


def signature_verifier(jwks: dict[str, Any]) -> Verify:
    """The floor: the bare signature check of the `cryptography` key, no JWT parsing at all."""
    key = jwt.PyJWKSet.from_dict(jwks).keys[0]
    algorithm = key.Algorithm

    def verify(token: str) -> dict[str, Any]:
        signing_input, _, signature = token.encode().rpartition(b".")
        if not algorithm.verify(signing_input, key.key, jwt.utils.base64url_decode(signature)):
            raise jwt.InvalidSignatureError("bad signature")
        return {}

    return verify


def service_verifier(service: TokenService) -> Verify:
    """The auth service's own check (TokenService.verify), for comparison."""

    def verify(token: str) -> dict[str, Any]:
        principal = service.verify(token)
        return {"sub": principal.user_id}

    return verify


def seconds(verify: Verify, issued: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (this thread's) to verify every token once."""
    started, cpu_started = time.perf_counter(), time.thread_time()
    for token in issued:
        verify(token)
    return time.perf_counter() - started, time.thread_time() - cpu_started


def measure(algorithm: Algorithm, args: argparse.Namespace) -> None:
    """Alternate turns of each way of verifying; print each one's rate and the ratios."""
    service = token_service(algorithm)
    jwks = service.jwks()  # what GET /.well-known/jwks.json answers, fetched once and cached
    issued = tokens(service, args.tokens)
    ways: dict[str, Verify] = {
        "downstream (cached JWKS, PyJWK)": downstream_verifier(jwks),
        "raw jwt.decode (same key object)": raw_verifier(jwks),
        "bare signature check": signature_verifier(jwks),
        "TokenService.verify (the API's own)": service_verifier(service),
    }
    for verify in ways.values():
        # Every way must accept every token (and warms up caches and code paths).
        for token in issued[:100]:
            verify(token)
    wall = dict.fromkeys(ways, 0.0)
    cpu = dict.fromkeys(ways, 0.0)
    for _ in range(args.repeats):
        # Slices of a few hundred tokens alternate between the ways, so a change in the
        # machine's speed or in other processes' load weighs on every way alike.
        for start in range(0, args.tokens, args.slice):
            for name, verify in ways.items():
                spent_wall, spent_cpu = seconds(verify, issued[start : start + args.slice])
                wall[name] += spent_wall
                cpu[name] += spent_cpu
    # Rates per CPU second of this thread: time other processes took from the core is left out
    # (the share line says how much that was).
    rates = {name: args.tokens * args.repeats / total for name, total in cpu.items()}
    share = sum(cpu.values()) / sum(wall.values())
    show_text(f"{algorithm} token size", f"{len(issued[0])} bytes")
    show_text(f"{algorithm} CPU time / wall time", f"{share:.3f}")
    for name, rate in rates.items():
        show(f"{algorithm} {name}", rate, "verifications/CPU-s", 0)
    downstream = rates["downstream (cached JWKS, PyJWK)"]
    show_ratio(
        f"{algorithm} downstream / raw jwt.decode",
        downstream / rates["raw jwt.decode (same key object)"],
    )
    show_ratio(
        f"{algorithm} downstream / bare signature check", downstream / rates["bare signature check"]
    )


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
    for algorithm in args.algorithms:
        measure(algorithm, args)
    show_load("at end")


def parse_args() -> argparse.Namespace:
    """This benchmark's options (it needs no database and no Redis)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--tokens", type=int, default=5000, help="distinct tokens per turn (default: 5000)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="alternating turns of each way (default: 3)"
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
