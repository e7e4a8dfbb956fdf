"""Kafka URLs: `kafka://host:port[,host:port]` names a cluster by its bootstrap servers."""

KAFKA_SCHEME = "kafka://"


def kafka_servers(url: str) -> list[str]:
    """The bootstrap servers of a `kafka://host:port[,host:port]` URL."""
    if not url.startswith(KAFKA_SCHEME):
        raise ValueError("a Kafka URL starts with kafka://")
    hosts = url.removeprefix(KAFKA_SCHEME).rstrip("/")
    servers = [server.strip() for server in hosts.split(",") if server.strip()]
    if not servers or any(":" not in server for server in servers):
        raise ValueError("a Kafka URL lists host:port pairs: kafka://host:9092[,host2:9092]")
    return servers
