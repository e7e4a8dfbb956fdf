"""The peer of the /users/me benchmark: fastapi-users 15, as its docs' full example sets it up.

The example (SQLAlchemy + JWT, "Full example" in the fastapi-users documentation) with two
changes a benchmark needs: PostgreSQL instead of SQLite (its own database, through asyncpg)
and bcrypt at cost 12 as its only password hasher, as userbus hashes. Its engine keeps
SQLAlchemy's default pool, as the example does. It is installed into a virtualenv of its own,
so that neither project's dependencies constrain the other's.
"""

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from _common import free_port
from registration import PASSWORD

PEER_REQUIREMENTS = ["fastapi-users[sqlalchemy]==15.*", "uvicorn[standard]", "asyncpg"]
DEFAULT_VENV = Path("/tmp/userbus-bench-peer-venv")

PEER_APP = '''\
"""fastapi-users' full example (SQLAlchemy + JWT) on PostgreSQL, bcrypt cost 12."""

import os
import uuid
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin, schemas
from fastapi_users.authentication import AuthenticationBackend, BearerTransport, JWTStrategy
from fastapi_users.db import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from fastapi_users.password import PasswordHelper
from pwdlib import PasswordHash
from pwdlib.hashers.bcrypt import BcryptHasher
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

SECRET = os.environ["PEER_SECRET"]
engine = create_async_engine(os.environ["PEER_DATABASE_URL"])
session_maker = async_sessionmaker(engine, expire_on_commit=False)
passwords = PasswordHelper(PasswordHash((BcryptHasher(rounds=12),)))


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    pass


class UserRead(schemas.BaseUser[uuid.UUID]):
    pass


class UserCreate(schemas.BaseUserCreate):
    pass


class UserUpdate(schemas.BaseUserUpdate):
    pass


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    reset_password_token_secret = SECRET
    verification_token_secret = SECRET


async def get_async_session():
    async with session_maker() as session:
        yield session


async def get_user_db(session=Depends(get_async_session)):
    yield SQLAlchemyUserDatabase(session, User)


async def get_user_manager(user_db=Depends(get_user_db)):
    yield UserManager(user_db, passwords)


def get_jwt_strategy():
    return JWTStrategy(secret=SECRET, lifetime_seconds=3600)


auth_backend = AuthenticationBackend(
    name="jwt",
    transport=BearerTransport(tokenUrl="auth/jwt/login"),
    get_strategy=get_jwt_strategy,
)
fastapi_users = FastAPIUsers[User, uuid.UUID](get_user_manager, [auth_backend])
current_active_user = fastapi_users.current_user(active=True)


@asynccontextmanager
async def lifespan(app):
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)
app.include_router(fastapi_users.get_auth_router(auth_backend), prefix="/auth/jwt", tags=["auth"])
app.include_router(
    fastapi_users.get_register_router(UserRead, UserCreate), prefix="/auth", tags=["auth"]
)
app.include_router(fastapi_users.get_reset_password_router(), prefix="/auth", tags=["auth"])
app.include_router(fastapi_users.get_verify_router(UserRead), prefix="/auth", tags=["auth"])
app.include_router(
    fastapi_users.get_users_router(UserRead, UserUpdate), prefix="/users", tags=["users"]
)


@app.get("/authenticated-route")
async def authenticated_route(user: User = Depends(current_active_user)):
    return {"message": f"Hello {user.email}!"}
'''


async def wait_answering(base_url: str, process: asyncio.subprocess.Process, log: Path) -> None:
    """Poll the peer's /docs (the example has no health route) until it answers 200."""
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=base_url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                text = await asyncio.to_thread(log.read_text, errors="replace")
                raise RuntimeError(f"the peer exited with {process.returncode}:\n{text}")
            try:
                if (await client.get("/docs")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the peer did not answer within 60 s")


async def _run(*command: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}:\n{out.decode()}")
    return out.decode()


async def ensure_peer_venv(venv: Path) -> str:
    """A virtualenv holding the pinned peer (made once, reused); its fastapi-users version."""
    python = venv / "bin" / "python"
    stamp = venv / "userbus-bench-requirements.txt"
    wanted = "\n".join(PEER_REQUIREMENTS)
    if not (python.exists() and stamp.exists() and stamp.read_text() == wanted):
        print(f"installing the peer into {venv} ({', '.join(PEER_REQUIREMENTS)})", flush=True)
        await _run(sys.executable, "-m", "venv", "--clear", str(venv))
        await _run(str(python), "-m", "pip", "install", "--quiet", *PEER_REQUIREMENTS)
        stamp.write_text(wanted)
    script = (
        "import importlib.metadata as m; print(m.version('fastapi-users'), m.version('fastapi'))"
    )
    return (await _run(str(python), "-c", script)).strip()


@asynccontextmanager
async def peer_server(venv: Path, database_url: str, work_dir: Path) -> AsyncIterator[str]:
    """The peer in one uvicorn process on a free port; its base URL once it answers."""
    (work_dir / "peer_app.py").write_text(PEER_APP)
    port = free_port()
    env = {
        **os.environ,
        "PEER_DATABASE_URL": database_url.replace("postgresql://", "postgresql+asyncpg://", 1),
        "PEER_SECRET": os.urandom(24).hex(),
    }
    log_path = work_dir / "peer.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            str(venv / "bin" / "python"), "-m", "uvicorn", "peer_app:app",
            "--host", "127.0.0.1", "--port", str(port),
            "--no-access-log", "--log-level", "warning",
            env=env, cwd=work_dir, stdout=log, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        await wait_answering(base_url, process, log_path)
        yield base_url
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


async def peer_token(base_url: str, email: str) -> str:
    """Register `email` with the peer and log in: its bearer access token."""
    async with httpx.AsyncClient(base_url=base_url, timeout=120.0) as client:
        registered = await client.post(
            "/auth/register", json={"email": email, "password": PASSWORD}
        )
        if registered.status_code != 201:
            raise RuntimeError(f"peer register answered {registered.status_code}")
        login = await client.post("/auth/jwt/login", data={"username": email, "password": PASSWORD})
        if login.status_code != 200:
            raise RuntimeError(f"peer login answered {login.status_code}: {login.text}")
        token: str = login.json()["access_token"]
        return token
