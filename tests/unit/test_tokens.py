"""Access tokens: what they claim, who can verify them, and the forgeries they refuse."""

import base64
import hashlib
import hmac
import json
import os
import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import SecretStr, ValidationError

from auth.domain.errors import NotAuthenticatedError
from auth.domain.model import User
from auth.security import tokens as tokens_module
from auth.security.tokens import (
    LEEWAY,
    Algorithm,
    SigningKey,
    TokenService,
    generate_private_key_pem,
    load_previous_public_keys,
    load_signing_key,
)
from auth.settings import AuthSettings

ALGORITHMS: list[Algorithm] = ["EdDSA", "RS256"]
ISSUER = "userbus-test"
AUDIENCE = "userbus-test-clients"
TTL = timedelta(minutes=15)
DATABASE_URL = "postgresql://x@localhost/db"

_pems: dict[Algorithm, bytes] = {}
_keys: dict[bytes, SigningKey] = {}
_spare: dict[tuple[Algorithm, int], SigningKey] = {}


def pem_of(algorithm: Algorithm) -> bytes:
    """One generated key per algorithm for the whole module: RSA keys are slow to make."""
    if algorithm not in _pems:
        _pems[algorithm] = generate_private_key_pem(algorithm)
    return _pems[algorithm]


def key_of(pem: bytes) -> SigningKey:
    """The private key of a PEM, loaded once (checking an RSA key on load is slow too)."""
    if pem not in _keys:
        key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(key, SigningKey)
        _keys[pem] = key
    return _keys[pem]


def spare_key(algorithm: Algorithm, index: int) -> SigningKey:
    """The index-th extra key of an algorithm (for rotation), generated once per module."""
    if (algorithm, index) not in _spare:
        _spare[algorithm, index] = key_of(generate_private_key_pem(algorithm))
    return _spare[algorithm, index]


def service_for(key: SigningKey, algorithm: Algorithm, **changes: Any) -> TokenService:
    options: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "ttl": TTL}
    options.update(changes)
    return TokenService(key, algorithm=algorithm, **options)


@pytest.fixture(params=ALGORITHMS)
def algorithm(request: pytest.FixtureRequest) -> Algorithm:
    value: Algorithm = request.param
    return value


@pytest.fixture
def key(algorithm: Algorithm) -> SigningKey:
    return key_of(pem_of(algorithm))


@pytest.fixture
def tokens(key: SigningKey, algorithm: Algorithm) -> TokenService:
    return service_for(key, algorithm)


@pytest.fixture
def user() -> User:
    return User.register(
        username="alice",
        email="alice@example.com",
        password_hash="fake$pw",
        now=datetime.now(UTC),
        role="admin",
    )


@pytest.fixture(autouse=True)
def no_userbus_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the test alone, never from this machine's USERBUS_* variables."""
    for name in list(os.environ):
        if name.startswith("USERBUS_"):
            monkeypatch.delenv(name)


def settings(**values: Any) -> AuthSettings:
    return AuthSettings(database_url=DATABASE_URL, _env_file=None, **values)


def valid_claims(user: User, **changes: Any) -> dict[str, Any]:
    """The claims of a token we would issue; `None` removes a claim."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(user.id),
        "username": user.username,
        "role": user.role,
        "iat": now,
        "exp": now + TTL,
        "jti": "a-token-id",
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_token(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """An HS256 token built by hand: PyJWT refuses to use a public key as an HMAC secret."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = b64(json.dumps(claims, default=lambda value: int(value.timestamp())).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def test_an_issued_token_verifies_to_the_users_principal(tokens: TokenService, user: User) -> None:
    issued = tokens.issue(user)

    principal = tokens.verify(issued.token)

    assert (principal.user_id, principal.username, principal.role) == (user.id, "alice", "admin")
    assert issued.expires_in == int(TTL.total_seconds())


def test_an_issued_token_carries_the_standard_claims(tokens: TokenService, user: User) -> None:
    now = datetime.now(UTC).replace(microsecond=0)

    claims = jwt.decode(tokens.issue(user, now=now).token, options={"verify_signature": False})

    assert set(claims) >= {"iss", "aud", "sub", "username", "role", "iat", "exp", "jti"}
    assert (claims["iss"], claims["aud"], claims["sub"]) == (ISSUER, AUDIENCE, str(user.id))
    assert claims["iat"] == int(now.timestamp())
    assert claims["exp"] == int((now + TTL).timestamp())


def test_every_token_gets_its_own_id(tokens: TokenService, user: User) -> None:
    first = jwt.decode(tokens.issue(user).token, options={"verify_signature": False})
    second = jwt.decode(tokens.issue(user).token, options={"verify_signature": False})

    assert first["jti"] != second["jti"]


def test_a_session_id_travels_in_the_sid_claim_and_back(tokens: TokenService, user: User) -> None:
    session_id = uuid.uuid4()

    issued = tokens.issue(user, session_id=session_id)

    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert claims["sid"] == str(session_id)
    assert tokens.verify(issued.token).session_id == session_id


def test_a_token_without_a_session_has_no_sid(tokens: TokenService, user: User) -> None:
    issued = tokens.issue(user)

    assert "sid" not in jwt.decode(issued.token, options={"verify_signature": False})
    assert tokens.verify(issued.token).session_id is None


def test_a_token_signed_by_a_previous_key_still_verifies_and_both_keys_are_published(
    algorithm: Algorithm, user: User
) -> None:
    old_key, new_key = spare_key(algorithm, 0), spare_key(algorithm, 1)
    old = service_for(old_key, algorithm)
    rotated = service_for(new_key, algorithm, previous_public_keys=[old_key.public_key()])
    session_id = uuid.uuid4()

    principal = rotated.verify(old.issue(user, session_id=session_id).token)

    assert (principal.user_id, principal.session_id) == (user.id, session_id)
    assert [jwk["kid"] for jwk in rotated.jwks()["keys"]] == [rotated.kid, old.kid]
    assert rotated.kid != old.kid
    assert jwt.get_unverified_header(rotated.issue(user).token)["kid"] == rotated.kid
    assert not {"d", "p", "q"} & {name for jwk in rotated.jwks()["keys"] for name in jwk}


def test_a_token_of_a_key_neither_current_nor_previous_is_refused(
    algorithm: Algorithm, user: User
) -> None:
    old_key, new_key, stranger_key = (spare_key(algorithm, i) for i in range(3))
    rotated = service_for(new_key, algorithm, previous_public_keys=[old_key.public_key()])
    stranger = service_for(stranger_key, algorithm)
    forged_kid = jwt.encode(
        valid_claims(user),
        stranger_key,
        algorithm=algorithm,
        headers={"kid": service_for(old_key, algorithm).kid},
    )

    with pytest.raises(NotAuthenticatedError, match="unknown key"):
        rotated.verify(stranger.issue(user).token)
    with pytest.raises(NotAuthenticatedError):
        rotated.verify(forged_kid)


def test_the_previous_key_does_not_verify_tokens_of_the_new_one(
    algorithm: Algorithm, user: User
) -> None:
    old_key, new_key = spare_key(algorithm, 0), spare_key(algorithm, 1)
    rotated = service_for(new_key, algorithm, previous_public_keys=[old_key.public_key()])

    with pytest.raises(NotAuthenticatedError):
        service_for(old_key, algorithm).verify(rotated.issue(user).token)


def test_the_token_header_names_the_key_published_in_the_jwks(
    tokens: TokenService, user: User, algorithm: Algorithm
) -> None:
    header = jwt.get_unverified_header(tokens.issue(user).token)

    (published,) = tokens.jwks()["keys"]
    assert header["kid"] == published["kid"] == tokens.kid
    assert header["alg"] == published["alg"] == algorithm
    assert published["use"] == "sig"


def test_the_jwks_holds_no_private_key_material(tokens: TokenService) -> None:
    (published,) = tokens.jwks()["keys"]

    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(published)


def test_another_service_verifies_tokens_with_the_published_jwk_alone(
    tokens: TokenService, user: User, algorithm: Algorithm
) -> None:
    (published,) = tokens.jwks()["keys"]
    public_key = jwt.PyJWK(published).key

    claims = jwt.decode(
        tokens.issue(user).token, public_key, algorithms=[algorithm], audience=AUDIENCE
    )

    assert claims["sub"] == str(user.id)


def test_the_same_key_gets_the_same_kid_on_every_instance(
    key: SigningKey, algorithm: Algorithm
) -> None:
    assert service_for(key, algorithm).kid == service_for(key, algorithm, issuer="other").kid


def test_a_token_built_like_ours_verifies(
    tokens: TokenService, key: SigningKey, algorithm: Algorithm, user: User
) -> None:
    # The control for the forgeries below: each differs from this token in one way only.
    token = jwt.encode(valid_claims(user), key, algorithm=algorithm, headers={"kid": tokens.kid})

    assert tokens.verify(token).user_id == user.id


def test_an_expired_token_is_refused(tokens: TokenService, user: User) -> None:
    long_ago = datetime.now(UTC) - TTL - LEEWAY - timedelta(seconds=5)
    token = tokens.issue(user, now=long_ago).token

    with pytest.raises(NotAuthenticatedError):
        tokens.verify(token)


def test_a_token_expired_within_the_clock_leeway_is_still_accepted(
    tokens: TokenService, user: User
) -> None:
    just_expired = datetime.now(UTC) - TTL - LEEWAY / 2
    token = tokens.issue(user, now=just_expired).token

    assert tokens.verify(token).user_id == user.id


@pytest.mark.parametrize(
    "other",
    [{"audience": "another-audience"}, {"issuer": "another-issuer"}],
    ids=["wrong-audience", "wrong-issuer"],
)
def test_a_token_for_another_audience_or_from_another_issuer_is_refused(
    key: SigningKey, algorithm: Algorithm, tokens: TokenService, user: User, other: dict[str, str]
) -> None:
    token = service_for(key, algorithm, **other).issue(user).token

    with pytest.raises(NotAuthenticatedError):
        tokens.verify(token)


def test_an_unsigned_alg_none_token_is_refused(tokens: TokenService, user: User) -> None:
    token = jwt.encode(valid_claims(user), "", algorithm="none", headers={"kid": tokens.kid})

    with pytest.raises(NotAuthenticatedError):
        tokens.verify(token)


def test_an_alg_none_token_with_a_signature_part_is_refused(
    tokens: TokenService, user: User
) -> None:
    token = jwt.encode(valid_claims(user), "", algorithm="none", headers={"kid": tokens.kid})

    with pytest.raises(NotAuthenticatedError):
        tokens.verify(token + b64(b"anything"))


@pytest.mark.parametrize("encoding", ["pem", "jwk-x-or-n"])
def test_an_hs256_token_keyed_with_our_public_key_is_refused(
    tokens: TokenService, key: SigningKey, user: User, encoding: str
) -> None:
    if encoding == "pem":
        secret = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        (published,) = tokens.jwks()["keys"]
        secret = published.get("x", published.get("n", "")).encode()
    token = hs256_token(valid_claims(user), secret, tokens.kid)

    with pytest.raises(NotAuthenticatedError):
        tokens.verify(token)


def test_a_token_signed_by_another_key_under_our_kid_is_refused(
    tokens: TokenService, algorithm: Algorithm, user: User
) -> None:
    impostor = key_of(generate_private_key_pem(algorithm))
    token = jwt.encode(
        valid_claims(user), impostor, algorithm=algorithm, headers={"kid": tokens.kid}
    )

    with pytest.raises(NotAuthenticatedError):
        tokens.verify(token)


def test_a_token_of_another_key_with_its_own_kid_is_refused(
    tokens: TokenService, algorithm: Algorithm, user: User
) -> None:
    other_algorithm: Algorithm = "RS256" if algorithm == "EdDSA" else "EdDSA"
    other = service_for(key_of(pem_of(other_algorithm)), other_algorithm)

    with pytest.raises(NotAuthenticatedError, match="unknown key"):
        tokens.verify(other.issue(user).token)


@pytest.mark.parametrize("garbage", ["", "garbage", "a.b.c", "....", "eyJhbGciOiJFZERTQSJ9.e30."])
def test_garbage_is_refused(tokens: TokenService, garbage: str) -> None:
    with pytest.raises(NotAuthenticatedError):
        tokens.verify(garbage)


@pytest.mark.parametrize("claim", ["jti", "exp", "iat", "sub", "iss", "aud", "username", "role"])
def test_a_signed_token_missing_a_claim_is_refused(
    tokens: TokenService, key: SigningKey, algorithm: Algorithm, user: User, claim: str
) -> None:
    claims = valid_claims(user, **{claim: None})
    token = jwt.encode(claims, key, algorithm=algorithm, headers={"kid": tokens.kid})

    with pytest.raises(NotAuthenticatedError):
        tokens.verify(token)


def test_a_signed_token_whose_subject_is_not_a_user_id_is_refused(
    tokens: TokenService, key: SigningKey, algorithm: Algorithm, user: User
) -> None:
    claims = valid_claims(user, sub="alice")
    token = jwt.encode(claims, key, algorithm=algorithm, headers={"kid": tokens.kid})

    with pytest.raises(NotAuthenticatedError):
        tokens.verify(token)


def test_a_tampered_payload_is_refused(tokens: TokenService, user: User) -> None:
    header, _, signature = tokens.issue(user).token.split(".")
    claims = valid_claims(user, role="admin", username="mallory")
    payload = b64(json.dumps(claims, default=lambda value: int(value.timestamp())).encode())

    with pytest.raises(NotAuthenticatedError):
        tokens.verify(f"{header}.{payload}.{signature}")


@pytest.mark.parametrize("algorithm_name", ALGORITHMS)
def test_the_signing_key_is_read_from_the_settings(algorithm_name: Algorithm) -> None:
    pem = pem_of(algorithm_name)

    key = load_signing_key(
        settings(jwt_algorithm=algorithm_name, jwt_private_key=SecretStr(pem.decode()))
    )

    assert service_for(key, algorithm_name).kid == service_for(key_of(pem), algorithm_name).kid


@pytest.mark.parametrize("algorithm_name", ALGORITHMS)
def test_the_signing_key_is_read_from_a_file(algorithm_name: Algorithm, tmp_path: Path) -> None:
    path = tmp_path / "signing.pem"
    path.write_bytes(pem_of(algorithm_name))

    key = load_signing_key(settings(jwt_algorithm=algorithm_name, jwt_private_key_file=path))

    expected = service_for(key_of(pem_of(algorithm_name)), algorithm_name).kid
    assert service_for(key, algorithm_name).kid == expected


@pytest.mark.parametrize("algorithm_name", ALGORITHMS)
def test_previous_public_keys_are_read_from_their_files(
    algorithm_name: Algorithm, tmp_path: Path, user: User
) -> None:
    old_key = spare_key(algorithm_name, 0)
    path = tmp_path / "old.pub.pem"
    path.write_bytes(
        old_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    keys = load_previous_public_keys(
        settings(jwt_algorithm=algorithm_name, jwt_previous_public_key_files=[path])
    )

    rotated = service_for(spare_key(algorithm_name, 1), algorithm_name, previous_public_keys=keys)
    assert rotated.verify(service_for(old_key, algorithm_name).issue(user).token).user_id == user.id


def test_a_previous_public_key_of_another_algorithm_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.pub.pem"
    path.write_bytes(
        spare_key("RS256", 0)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    with pytest.raises(ValueError, match="EdDSA"):
        load_previous_public_keys(
            settings(jwt_algorithm="EdDSA", jwt_previous_public_key_files=[path])
        )


@pytest.mark.parametrize(("key_algorithm", "configured"), [("EdDSA", "RS256"), ("RS256", "EdDSA")])
def test_a_key_that_does_not_fit_the_algorithm_is_refused(
    key_algorithm: Algorithm, configured: Algorithm
) -> None:
    pem = pem_of(key_algorithm)

    with pytest.raises(ValueError, match="does not fit"):
        load_signing_key(
            settings(jwt_algorithm=configured, jwt_private_key=SecretStr(pem.decode()))
        )


def test_development_without_a_key_generates_one_in_the_data_dir_and_reuses_it(
    tmp_path: Path,
) -> None:
    development = settings(environment="development", data_dir=tmp_path / "data")

    first = service_for(load_signing_key(development), "EdDSA")
    second = service_for(load_signing_key(development), "EdDSA")

    assert first.kid == second.kid
    assert development.generated_key_file.parent == tmp_path / "data"
    assert stat.S_IMODE(development.generated_key_file.stat().st_mode) == 0o600


def test_a_generated_key_is_never_readable_by_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    development = settings(environment="development", data_dir=tmp_path)
    key_file = development.generated_key_file
    modes_while_writing: list[int] = []
    generate = tokens_module.generate_private_key_pem

    def spy(algorithm: Any) -> bytes:
        # The key is about to be written: whatever file exists now must already be private.
        if key_file.exists():
            modes_while_writing.append(stat.S_IMODE(key_file.stat().st_mode))
        return generate(algorithm)

    monkeypatch.setattr(tokens_module, "generate_private_key_pem", spy)
    previous_umask = os.umask(0o022)
    try:
        load_signing_key(development)
    finally:
        os.umask(previous_umask)

    assert [mode for mode in modes_while_writing if mode & 0o077] == []
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_production_without_a_key_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="required in production"):
        settings(environment="production", data_dir=tmp_path)


def test_production_with_a_key_file_starts(tmp_path: Path) -> None:
    path = tmp_path / "signing.pem"
    path.write_bytes(pem_of("EdDSA"))

    production = settings(environment="production", jwt_private_key_file=path)

    assert isinstance(load_signing_key(production), type(key_of(pem_of("EdDSA"))))
