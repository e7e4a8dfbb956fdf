"""Embedded PostgreSQL and Valkey for `userbus dev`, safe to restart after a crash."""

from dataclasses import dataclass
from pathlib import Path

from userbus.embedded.postgres import EmbeddedPostgres
from userbus.embedded.valkey import EmbeddedValkey

__all__ = ["EmbeddedPostgres", "EmbeddedServers", "EmbeddedUrls", "EmbeddedValkey"]


@dataclass(frozen=True)
class EmbeddedUrls:
    """Connection URLs of the embedded servers."""

    database_url: str
    redis_url: str


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
