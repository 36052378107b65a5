"""Servers as a baseline knows them: most by address, but the Internet and the local
network each as one peer, since which cloud host or multicast group is reached changes
all the time and says little."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

INTERNET = "the Internet"        # every server outside the site, as one peer
LOCAL = "the local network"      # every broadcast and multicast address, as one peer


@lru_cache(maxsize=65_536)
def peer(client: str, server: str) -> str:
    """The server as a baseline knows it: the Internet when it is a public address outside
    the client's /16 (plants often number their own networks with public addresses); the
    local network for a multicast or broadcast address (x.x.x.255: a /24's or wider, the
    usual plant subnets); the address itself otherwise. Which cloud host an update or a
    licence check reaches changes all the time, and which group an announcement goes to
    says little; that a control-network host reaches the Internet, or announces itself, at
    all is what matters."""
    try:
        address = ipaddress.ip_address(server)
        network = ipaddress.ip_network(f"{client}/{16 if address.version == 4 else 48}", strict=False)
    except ValueError:
        return server
    if address.is_multicast:
        return LOCAL
    if address.is_global and address not in network:
        return INTERNET
    return LOCAL if address.version == 4 and address.packed[3] == 255 else server
