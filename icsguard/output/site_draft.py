"""A site file drafted from what the inventory saw, for a person to correct."""

from __future__ import annotations

import ipaddress

from icsguard.detect.site import ROLES
from icsguard.events import function_kind
from icsguard.output.inventory import Inventory


def draft_site(inventory: Inventory) -> str:
    """A site file drafted from observed traffic: roles guessed from behaviour, each /24
    seen as a zone, and the writes seen as the allowed writers. For a person to correct."""
    roles: dict[str, list[str]] = {role: [] for role in ROLES}
    for ip, asset in sorted(inventory.assets.items(), key=lambda item: _sort_key(item[0])):
        if asset.role in roles:
            roles[asset.role].append(ip)
    zones = sorted({_zone(ip) for ip in inventory.assets}, key=_sort_key)
    writes: dict[str, set[str]] = {}
    for (client, server, _port, _proto, function), comm in inventory.pairs.items():
        if comm.requests and function_kind(function) == "write":
            writes.setdefault(server, set()).add(client)
    lines = ["# icsguard site file, drafted from traffic: check every line.",
             "# Roles were guessed from behaviour; zones are the /24 networks seen.", "zones:"]
    lines += [f"  zone{n}: [{zone}]" for n, zone in enumerate(zones, 1)] or ["  {}"]
    lines.append("roles:")
    lines += [f"  {role}: [{', '.join(ips)}]" for role, ips in roles.items()]
    lines.append("# who may write to which hosts (as seen)")
    lines.append("writers:" if writes else "writers: []")
    for target, clients in sorted(writes.items(), key=lambda item: _sort_key(item[0])):
        lines.append(f"  - {{to: [{target}], from: [{', '.join(sorted(clients, key=_sort_key))}]}}")
    lines.append("# weekly windows in UTC when writes and program changes are expected")
    lines.append("maintenance: []   # e.g. - {days: [sat], start: \"02:00\", end: \"04:00\"}")
    lines.append("# ports a protocol is served on here besides its well-known one")
    lines.append("ports: {}   # e.g. {modbus: [504], opcua: [4841-4850]}")
    return "\n".join(lines) + "\n"


def _zone(ip: str) -> str:
    address = ipaddress.ip_address(ip)
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def _sort_key(text: str) -> tuple:
    try:
        network = ipaddress.ip_network(text, strict=False)
        return (network.version, int(network.network_address))
    except ValueError:
        return (9, 0)

