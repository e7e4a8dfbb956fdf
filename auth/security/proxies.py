"""The client's address behind trusted reverse proxies: X-Forwarded-For, read from the right.

Each proxy appends the address it received a connection from, so the header's right end is
written by the proxies nearest to us and its left end by whoever sent the request: only the
part our own proxies wrote can be believed. Walking from the right, trusted hops are skipped
and the first address that is not one of ours is the client.

RFC 7239's `Forwarded` header is not read. The ingresses people run (ingress-nginx, Traefik,
Envoy, the cloud load balancers) all write X-Forwarded-For; one that maintains only that
header passes a client's own `Forwarded` through untouched, so reading it too would let any
client choose its address.
"""

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address


def parse_networks(value: object) -> list[Network]:
    """CIDR networks from a comma-separated string or a list (`10.0.0.0/8, fd00::/8`).

    A bare address is a network of one. Host bits set (`10.0.0.1/8`) are refused: such an
    entry is more often a typo than a wish to trust the whole network.
    """
    if isinstance(value, str):
        items: Iterable[object] = value.split(",")
    elif isinstance(value, list | tuple):
        items = value
    else:
        raise ValueError("a comma-separated list of CIDR networks, such as 10.0.0.0/8,fd00::/8")
    networks: list[Network] = []
    for item in items:
        if isinstance(item, IPv4Network | IPv6Network):
            networks.append(item)
            continue
        text = str(item).strip()
        if not text:
            continue
        try:
            networks.append(ip_network(text, strict=True))
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a CIDR network: {exc}") from None
    return networks


def _address(text: str) -> Address | None:
    """An address as proxies write it: bare, `[v6]`, `[v6]:port` or `v4:port`; None if not."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ip_address(text)
    except ValueError:
        return None
    # A dual-stack listener shows IPv4 peers as ::ffff:a.b.c.d; the IPv4 networks must match.
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address.version == network.version and address in network for network in trusted)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]
) -> str | None:
    """The client behind `peer`, given the request's X-Forwarded-For header values.

    The peer itself unless it is a trusted proxy. A malformed entry reached while walking the
    header means a proxy of ours wrote something we cannot read: the peer is answered, so the
    request counts against the proxy's address rather than one a client made up. When every
    hop is trusted (a request from inside), the leftmost is the client.
    """
    if peer is None:
        return None
    peer_address = _address(peer)
    if peer_address is None or not _trusted(peer_address, trusted):
        return str(peer_address) if peer_address is not None else peer
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    client = peer_address
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return str(peer_address)
        client = address
        if not _trusted(address, trusted):
            break
    return str(client)
