"""`userbus api` as it starts in production: HTTPS of its own, refusals with one clear line.

The refusals need no server: settings are checked before anything opens, so each run ends
within the interpreter's start-up time.
"""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from auth.security.tokens import generate_private_key_pem
from tests.conftest import TEST_BCRYPT_ROUNDS, free_port, unique_username
from tests.tls import make_certificates

pytestmark = [pytest.mark.integration, pytest.mark.redis]

GOOD_URL = "postgresql://userbus:Zq8-not-a-placeholder@db.internal:5432/userbus"


def rsa_pem(bits: int) -> bytes:
    """An RSA private key of `bits` bits, PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def userbus(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `userbus ...` with only these USERBUS_* variables; its exit code and output."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("USERBUS_")}
    return subprocess.run(
        [sys.executable, "-m", "userbus", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def production(tmp_path: Path) -> dict[str, str]:
    """Production settings that pass: a strong EdDSA key, a database URL with a real password."""
    key = tmp_path / "jwt.pem"
    key.write_bytes(generate_private_key_pem("EdDSA"))
    return {
        "USERBUS_ENVIRONMENT": "production",
        "USERBUS_DATABASE_URL": GOOD_URL,
        "USERBUS_JWT_PRIVATE_KEY_FILE": str(key),
    }


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused start writes: no traceback, exit code 2."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("userbus: configuration error: ")
    return line


@pytest.mark.parametrize(
    ("variable", "url", "placeholder"),
    [
        ("USERBUS_DATABASE_URL", "postgresql://postgres:postgres@db:5432/userbus", "postgres"),
        ("USERBUS_DATABASE_URL", "postgresql://userbus:userbus@postgres:5432/userbus", "userbus"),
        ("USERBUS_REDIS_URL", "redis://:changeme@valkey:6379/1", "changeme"),
        ("USERBUS_REDIS_URL", "rediss://default:Password@cache:6380/0", "Password"),
    ],
)
def test_a_placeholder_password_stops_the_start(
    production: dict[str, str], tmp_path: Path, variable: str, url: str, placeholder: str
) -> None:
    line = refusal(userbus(["api"], {**production, variable: url}, tmp_path))

    assert f"{variable} holds a placeholder password ({placeholder!r})" in line
    assert "production needs real secrets" in line


def test_a_placeholder_secret_from_a_file_stops_the_start(
    production: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "smtp").write_text("secret\n")
    env = {**production, "USERBUS_SMTP_HOST": "mail", "USERBUS_SMTP_USERNAME": "u"}
    env["USERBUS_SMTP_PASSWORD_FILE"] = str(tmp_path / "smtp")

    line = refusal(userbus(["api"], env, tmp_path))

    assert "USERBUS_SMTP_PASSWORD is a placeholder password" in line


def test_the_relay_and_the_consumers_refuse_them_too(
    production: dict[str, str], tmp_path: Path
) -> None:
    env = {**production, "USERBUS_DATABASE_URL": "postgresql://u:password@db/x"}
    for command in (["relay"], ["consume", "profiles"], ["migrate"]):
        line = refusal(userbus(command, env, tmp_path))
        assert "USERBUS_DATABASE_URL holds a placeholder password ('password')" in line


def test_a_weak_rsa_key_stops_the_start(production: dict[str, str], tmp_path: Path) -> None:
    weak = tmp_path / "weak.pem"
    weak.write_bytes(rsa_pem(1024))
    env = {**production, "USERBUS_JWT_ALGORITHM": "RS256"}

    line = refusal(userbus(["api"], {**env, "USERBUS_JWT_PRIVATE_KEY_FILE": str(weak)}, tmp_path))

    assert "USERBUS_JWT_PRIVATE_KEY_FILE: the JWT private key has 1024 bits; RS256 needs" in line


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (None, "USERBUS_JWT_PRIVATE_KEY or USERBUS_JWT_PRIVATE_KEY_FILE is required in production"),
        ("missing.pem", "USERBUS_JWT_PRIVATE_KEY_FILE: [Errno 2] No such file or directory"),
        ("garbage.pem", "USERBUS_JWT_PRIVATE_KEY_FILE: the JWT private key is no unencrypted PEM"),
    ],
)
def test_no_usable_key_stops_the_start(
    production: dict[str, str], tmp_path: Path, key: str | None, problem: str
) -> None:
    (tmp_path / "garbage.pem").write_text("not a key")
    env = dict(production)
    del env["USERBUS_JWT_PRIVATE_KEY_FILE"]
    if key is not None:
        env["USERBUS_JWT_PRIVATE_KEY_FILE"] = str(tmp_path / key)

    assert problem in refusal(userbus(["api"], env, tmp_path))


def test_bad_trusted_proxies_stop_the_start(production: dict[str, str], tmp_path: Path) -> None:
    env = {**production, "USERBUS_TRUSTED_PROXIES": "10.0.0.0/8, 10.1.1.1/16"}

    line = refusal(userbus(["api"], env, tmp_path))

    assert "USERBUS_TRUSTED_PROXIES" in line
    assert "'10.1.1.1/16' is not a CIDR network: 10.1.1.1/16 has host bits set" in line


def test_one_tls_file_alone_is_a_usage_error(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)

    result = userbus(["api", "--ssl-certfile", str(certificates.server_cert)], {}, tmp_path)

    assert result.returncode == 2
    assert "--ssl-certfile and --ssl-keyfile go together" in result.stderr


async def test_production_serves_https_of_its_own_and_believes_no_forwarded_header(
    database_url: str, key_file: Path, redis_url: str, tmp_path: Path
) -> None:
    certificates = make_certificates(tmp_path)
    port = free_port()
    env = {
        "USERBUS_ENVIRONMENT": "production",
        "USERBUS_DATABASE_URL": database_url,
        "USERBUS_JWT_PRIVATE_KEY_FILE": str(key_file),
        "USERBUS_BCRYPT_ROUNDS": str(TEST_BCRYPT_ROUNDS),
        "USERBUS_REDIS_URL": redis_url,
        "USERBUS_REDIS_KEY_PREFIX": f"test:{unique_username()}",
        "USERBUS_LOGIN_LIMIT_PER_ADDRESS": "2",
        "USERBUS_DATA_DIR": str(tmp_path),
        "USERBUS_LOG_LEVEL": "WARNING",
    }
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("USERBUS_")}
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "userbus", "api", "--port", str(port),
            "--ssl-certfile", str(certificates.server_cert),
            "--ssl-keyfile", str(certificates.server_key),
            env={**clean, **env}, cwd=tmp_path, stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    base = f"https://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(
            base_url=base, verify=certificates.client_context(), timeout=10
        ) as client:
            deadline = time.monotonic() + 60
            while True:
                assert process.returncode is None, log.read_text()
                try:
                    health = await client.get("/healthz")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the API did not answer over HTTPS"
                    await asyncio.sleep(0.1)
            # uvicorn would believe X-Forwarded-For from 127.0.0.1 by default; `userbus api`
            # turns that off and no proxy is trusted here, so all count as 127.0.0.1.
            statuses = [
                (
                    await client.post(
                        "/auth/login",
                        json={"username": unique_username(), "password": "wrong one"},
                        headers={"X-Forwarded-For": f"198.51.100.{n}"},
                    )
                ).status_code
                for n in range(3)
            ]
        async with httpx.AsyncClient(timeout=5) as plain:
            with pytest.raises(httpx.TransportError):
                await plain.get(f"http://127.0.0.1:{port}/healthz")
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), timeout=15)

    assert health.status_code == 200
    assert statuses == [401, 401, 429]


def test_a_key_of_the_wrong_kind_given_inline_stops_the_start(
    production: dict[str, str], tmp_path: Path
) -> None:
    env = dict(production)
    del env["USERBUS_JWT_PRIVATE_KEY_FILE"]
    env["USERBUS_JWT_PRIVATE_KEY"] = generate_private_key_pem("EdDSA").decode()
    env["USERBUS_JWT_ALGORITHM"] = "RS256"

    line = refusal(userbus(["api"], env, tmp_path))

    assert "USERBUS_JWT_PRIVATE_KEY: the JWT private key does not fit the algorithm RS256" in line
