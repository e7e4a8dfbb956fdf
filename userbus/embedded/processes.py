"""What both embedded servers need: finding their own processes, and stopping at exit."""

import atexit
import logging
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Generic, TypeVar

import psutil

logger = logging.getLogger(__name__)

Server = TypeVar("Server")


def live_process(pid: int) -> psutil.Process | None:
    """Return the process `pid` unless it is gone or a zombie."""
    try:
        proc = psutil.Process(pid)
        # Killed orphans stay zombies where PID 1 does not reap; they hold nothing.
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.NoSuchProcess:
        return None
    return proc


def find_own_process(pid: int, name: str, cwd: Path) -> psutil.Process | None:
    """Return the live process `pid` if it is program `name` running in `cwd`."""
    proc = live_process(pid)
    try:
        # Both servers chdir into their data dir, so cwd tells ours from a reused pid.
        if proc is not None and proc.name() == name and Path(proc.cwd()) == cwd:
            return proc
    except psutil.Error:
        pass
    return None


def terminate(proc: psutil.Process, grace: float = 3.0) -> None:
    """Stop `proc` with SIGTERM, then SIGKILL if it outlives `grace` seconds."""
    try:
        proc.terminate()
        deadline = time.monotonic() + grace
        while live_process(proc.pid) is not None:
            if time.monotonic() > deadline:
                logger.warning("pid %s ignored SIGTERM; killing it", proc.pid)
                proc.kill()
                proc.wait(grace)
            time.sleep(0.05)
    except (psutil.NoSuchProcess, psutil.TimeoutExpired):
        pass


class StoppedAtExit(ABC, Generic[Server]):
    """An embedded server handle that is stopped when the interpreter exits, at the latest."""

    def __init__(self) -> None:
        self._server: Server | None = None

    @abstractmethod
    def stop(self) -> None:
        """Stop the server; does nothing if it is not running."""

    def _hold(self, server: Server) -> None:
        """Keep `server` as the running one until `stop()`."""
        atexit.register(self.stop)
        self._server = server

    def _release(self) -> Server | None:
        """Give up the running server, for `stop()` to shut down; None if there is none."""
        server, self._server = self._server, None
        if server is not None:
            atexit.unregister(self.stop)
        return server
