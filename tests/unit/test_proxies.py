"""The X-Forwarded-For walk: trusted hops skipped from the right, anything odd answers the peer."""

import pytest

from auth.security.proxies import client_address, parse_networks

TRUSTED = parse_networks("10.0.0.0/8, fd00::/8, 192.0.2.10")


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        # Untrusted peers: the header is never read.
        ("203.0.113.5", ["198.51.100.1"], "203.0.113.5"),
        ("2001:db8::1", ["198.51.100.1"], "2001:db8::1"),
        # One trusted proxy: the address it appended.
        ("10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.2", ["spoofed, 198.51.100.1"], "198.51.100.1"),
        ("10.0.0.2", ["198.51.100.1:4711"], "198.51.100.1"),
        ("10.0.0.2", ["[2001:db8::9]:4711"], "2001:db8::9"),
        ("10.0.0.2", ["2001:DB8:0::9"], "2001:db8::9"),
        # Chains: every trusted hop skipped, also a single trusted address.
        ("10.0.0.2", ["198.51.100.1, 192.0.2.10, 10.3.3.3"], "198.51.100.1"),
        ("fd00::2", ["198.51.100.1", "fd00::3"], "198.51.100.1"),
        # A dual-stack listener's form of an IPv4 peer.
        ("::ffff:10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        # Everything trusted: a request from inside, the leftmost hop.
        ("10.0.0.2", ["10.4.4.4, 10.5.5.5"], "10.4.4.4"),
        # No header, an empty one or garbage where the walk reaches: the proxy itself.
        ("10.0.0.2", [], "10.0.0.2"),
        ("10.0.0.2", [""], "10.0.0.2"),
        ("10.0.0.2", ["198.51.100.1, unknown"], "10.0.0.2"),
        ("10.0.0.2", ["198.51.100.1,"], "10.0.0.2"),
        ("10.0.0.2", ["[2001:db8::9"], "10.0.0.2"),
        # Garbage left of the client is the client's own business.
        ("10.0.0.2", ["<script>, 198.51.100.1"], "198.51.100.1"),
        # Peers that are no address at all (a test client's name) are answered as they are.
        ("testclient", ["198.51.100.1"], "testclient"),
        (None, ["198.51.100.1"], None),
    ],
)
def test_the_client_is_the_first_untrusted_hop_from_the_right(
    peer: str | None, header: list[str], expected: str | None
) -> None:
    assert client_address(peer, header, TRUSTED) == expected


def test_nothing_trusted_means_the_peer() -> None:
    assert client_address("127.0.0.1", ["198.51.100.1"], []) == "127.0.0.1"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("10.0.0.1/8", "has host bits set"),
        ("10.0.0.0/33", "not a CIDR network"),
        ("proxy.internal", "not a CIDR network"),
        (42, "comma-separated"),
    ],
)
def test_a_bad_network_is_refused_with_what_is_wrong(value: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_networks(value)


def test_networks_come_from_a_string_or_a_list() -> None:
    assert parse_networks(" 10.0.0.0/8 ,, ::1 ") == parse_networks(["10.0.0.0/8", "::1"])
    assert [str(n) for n in parse_networks("::1")] == ["::1/128"]
