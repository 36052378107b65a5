"""The site file: what the plant is — zones, asset roles, who may write to which PLCs,
maintenance windows, the ports its protocols run on — so that rules can say "a write from
a host that is not an HMI" without naming an address. Rules refer to its groups by name:
``$hmi``, ``$control``, ``$maintenance``, ``$ports``.

    zones:       {control: [10.10.0.0/24]}
    roles:       {plc: [10.10.0.2], hmi: [10.10.0.10], ews: [], historian: [], scada: []}
    writers:     [{to: [$plc], from: [$hmi, $ews]}]
    maintenance: [{days: [sat], start: "02:00", end: "04:00"}]     # UTC
    ports:       {modbus: [504, 505], opcua: [4841-4850]}
    conduits:    [{between: [control, dmz], protocols: [opcua]}]   # protocols omitted: any
    control_zones: [control]           # omitted: every zone is a control zone
    allowed_services: [dns, ntp]       # IT services allowed inside control zones
    known_hosts: [10.10.0.250]         # hosts that are neither of the roles but belong
    pki_required: true                 # OPC UA certificates must come from a CA

The last five serve ``icsguard scan``: which zones may talk industrial protocols to each other,
which IT services a control zone may carry, which hosts are known assets, and whether
self-signed certificates fail.

``ports`` names the ports each protocol is served on here besides its well-known ones
(the rules keep those): ``$ports`` holds for a port the site gives the event's protocol.
S7comm, S7comm-plus and COTP share one transport, so a port given for any of them is one
for all three.

``icsguard site init CAPTURE...`` drafts one from the traffic for the user to correct.
"""

from __future__ import annotations

import ipaddress
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netaddr import AddrFormatError, IPSet

from icsguard.detect import yamlfile
from icsguard.detect.yamlfile import FileError
from icsguard.events import ISO_ON_TCP, PROTOCOLS

ROLES = ("plc", "hmi", "ews", "historian", "scada")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SITE_KEYS = ("zones", "roles", "writers", "maintenance", "ports", "conduits", "control_zones", "allowed_services",
             "known_hosts", "pki_required")
MAINTENANCE = "maintenance"          # the group name of the maintenance windows
PORTS = "ports"                      # the group name of the site's ports for the event's protocol
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_PORT_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")     # "505" or "4841-4850"


@dataclass(frozen=True)
class Window:
    """A weekly maintenance window in UTC; ``end`` before ``start`` runs past midnight."""
    days: frozenset[int]            # 0 = Monday
    start: int                      # minutes after midnight
    end: int

    def contains(self, ts: float) -> bool:
        t = time.gmtime(ts)
        minute = t.tm_hour * 60 + t.tm_min
        if self.start <= self.end:
            return t.tm_wday in self.days and self.start <= minute < self.end
        if minute >= self.start:
            return t.tm_wday in self.days
        return (t.tm_wday - 1) % 7 in self.days and minute < self.end


@dataclass
class Site:
    groups: dict[str, IPSet] = field(default_factory=dict)       # roles and zones
    writers: list[tuple[IPSet, IPSet]] = field(default_factory=list)   # (targets, who may write)
    windows: list[Window] = field(default_factory=list)
    ports: dict[str, frozenset[int]] = field(default_factory=dict)    # protocol -> its ports here
    conduits: list[tuple[frozenset[str], frozenset[str] | None]] = field(default_factory=list)  # (zones, protocols)
    control_zones: tuple[str, ...] = ()      # the zone names; none given: every zone
    allowed_services: frozenset[str] = frozenset()
    known_hosts: IPSet = field(default_factory=IPSet)
    pki_required: bool = False
    path: str = ""
    zone_names: tuple[str, ...] = ()

    def zone_of(self, ip: str) -> str | None:
        return next((name for name in self.zone_names if ip in self.groups[name]), None)

    def conduit_allows(self, zone_a: str, zone_b: str, proto: str) -> bool:
        return any({zone_a, zone_b} <= zones and (protocols is None or proto in protocols)
                   for zones, protocols in self.conduits)

    def is_known(self, ip: str) -> bool:
        return ip in self.known_hosts or any(ip in self.groups[role] for role in ROLES)

    def group(self, name: str) -> IPSet | None:
        return self.groups.get(name)

    def has_port(self, proto: str, port: int) -> bool:
        """Whether the site says ``proto`` is served on ``port`` (beyond its well-known ports)."""
        return port in self.ports.get(proto, ())

    def in_maintenance(self, ts: float) -> bool:
        return any(window.contains(ts) for window in self.windows)

    def may_write(self, src: str, dst: str) -> bool:
        """Whether the site lets ``src`` write to ``dst``; a target no entry names is not
        policed (True), since the file says nothing about it."""
        entries = [allowed for targets, allowed in self.writers if dst in targets]
        return not entries or any(src in allowed for allowed in entries)


def load_site(path: str | Path) -> Site:
    document = yamlfile.load(path)
    if document is None:
        document = yamlfile.Mapping()
    if not isinstance(document, yamlfile.Mapping):
        raise FileError(path, None, "a site file is a mapping of zones, roles, writers, maintenance and ports")
    for key in document:
        if key not in SITE_KEYS:
            raise FileError(path, document.line_of(key), f"unknown key {key!r} (known: {', '.join(SITE_KEYS)})")
    site = Site(path=str(path))
    for section in ("zones", "roles"):
        entries = document.get(section) or {}
        if not isinstance(entries, dict):
            raise FileError(path, document.line_of(section), f"{section} must map names to address lists")
        for name, addresses in entries.items():
            line = entries.line_of(name)
            if section == "roles" and name not in ROLES:
                raise FileError(path, line, f"unknown role {name!r} (roles: {', '.join(ROLES)})")
            if name in site.groups or name in (MAINTENANCE, PORTS):
                raise FileError(path, line, f"the name {name!r} is used twice")
            site.groups[str(name)] = _addresses(path, line, addresses, {})
    site.zone_names = tuple(str(name) for name in (document.get("zones") or {}))
    for role in ROLES:
        site.groups.setdefault(role, IPSet())
    for number, entry in enumerate(document.get("writers") or [], 1):
        line = getattr(entry, "line", document.line_of("writers"))
        if not isinstance(entry, dict) or set(entry) != {"to", "from"}:
            raise FileError(path, line, f"writers entry {number} needs exactly 'to' and 'from'")
        site.writers.append((_addresses(path, line, entry["to"], site.groups),
                             _addresses(path, line, entry["from"], site.groups)))
    for number, entry in enumerate(document.get("maintenance") or [], 1):
        site.windows.append(_window(path, getattr(entry, "line", document.line_of("maintenance")), number, entry))
    site.ports = _ports(path, document)
    _scan_keys(path, document, site)
    return site


def _scan_keys(path, document, site: Site) -> None:
    """The keys ``icsguard scan`` reads: conduits, control zones, allowed IT services, other
    known hosts and whether OPC UA needs CA-issued certificates."""
    for number, entry in enumerate(document.get("conduits") or [], 1):
        line = getattr(entry, "line", document.line_of("conduits"))
        if not isinstance(entry, dict) or "between" not in entry or not set(entry) <= {"between", "protocols"}:
            raise FileError(path, line, f"conduit {number} needs 'between' (two zones) and optional 'protocols'")
        zones = entry["between"]
        if not isinstance(zones, list) or len(zones) != 2 or any(z not in site.zone_names for z in zones):
            raise FileError(path, line, f"conduit {number}: 'between' names two of the zones "
                                        f"({', '.join(site.zone_names) or 'none given'})")
        protocols = entry.get("protocols")
        if protocols is not None and (not isinstance(protocols, list) or any(p not in PROTOCOLS for p in protocols)):
            raise FileError(path, line, f"conduit {number}: protocols are a list of {', '.join(PROTOCOLS)}")
        site.conduits.append((frozenset(map(str, zones)), frozenset(protocols) if protocols is not None else None))
    control = document.get("control_zones") or []
    if not isinstance(control, list) or any(z not in site.zone_names for z in control):
        raise FileError(path, document.line_of("control_zones"), "control_zones is a list of the zones' names")
    site.control_zones = tuple(map(str, control)) or site.zone_names
    services = document.get("allowed_services") or []
    if not isinstance(services, list):
        raise FileError(path, document.line_of("allowed_services"), "allowed_services is a list of service names")
    site.allowed_services = frozenset(map(str, services))
    site.known_hosts = _addresses(path, document.line_of("known_hosts"), document.get("known_hosts"), site.groups)
    pki = document.get("pki_required", False)
    if not isinstance(pki, bool):
        raise FileError(path, document.line_of("pki_required"), "pki_required is true or false")
    site.pki_required = pki


def _ports(path, document) -> dict[str, frozenset[int]]:
    """``ports``: protocol -> ports and ranges ("4841-4850"), checked entry by entry."""
    entries = document.get("ports") or {}
    if not isinstance(entries, dict):
        raise FileError(path, document.line_of("ports"), "ports must map protocols to lists of ports")
    ports: dict[str, set[int]] = {}
    for proto, values in entries.items():
        line = entries.line_of(proto)
        if proto not in PROTOCOLS:
            raise FileError(path, line, f"ports: unknown protocol {proto!r} (protocols: {', '.join(PROTOCOLS)})")
        values = values if isinstance(values, list) else [values]
        found = ports.setdefault(proto, set())
        for value in values:
            found.update(_port_values(path, line, proto, value))
    family = set().union(*(ports.get(proto, set()) for proto in ISO_ON_TCP))
    if family:
        for proto in ISO_ON_TCP:
            ports[proto] = family
    return {proto: frozenset(values) for proto, values in ports.items()}


def _port_values(path, line: int, proto: str, value: Any) -> range:
    if isinstance(value, int) and not isinstance(value, bool):
        low = high = value
    else:
        match = _PORT_RANGE.match(str(value))
        if not match:
            raise FileError(path, line, f"ports: {proto}: {value!r} is not a port or a range like 4841-4850")
        low, high = int(match[1]), int(match[2] or match[1])
    if not 1 <= low <= high <= 65535:
        raise FileError(path, line, f"ports: {proto}: {value!r} is not a port (1-65535) or a rising range of them")
    return range(low, high + 1)


def _addresses(path, line: int, values: Any, groups: dict[str, IPSet]) -> IPSet:
    """Addresses, networks and (where groups are given) ``$group`` names, as one set."""
    if values is None:
        return IPSet()
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list):
        raise FileError(path, line, f"expected a list of addresses, not {values!r}")
    result = IPSet()
    for value in values:
        text = str(value)
        if text.startswith("$"):
            if text[1:] not in groups:
                raise FileError(path, line, f"unknown group {text} (known: {', '.join(sorted(groups)) or 'none'})")
            result |= groups[text[1:]]
            continue
        try:
            ipaddress.ip_network(text, strict=False)
            result.add(text)
        except (ValueError, AddrFormatError):
            raise FileError(path, line, f"{text!r} is not an IP address or network") from None
    return result


def _window(path, line: int, number: int, entry: Any) -> Window:
    if not isinstance(entry, dict) or not {"start", "end"} <= set(entry) <= {"days", "start", "end"}:
        raise FileError(path, line, f"maintenance window {number} needs 'start' and 'end' (and optional 'days')")
    minutes = []
    for key in ("start", "end"):
        match = _TIME.match(str(entry[key]))
        if not match:
            raise FileError(path, line, f"maintenance window {number}: {key} {entry[key]!r} is not HH:MM")
        minutes.append(int(match[1]) * 60 + int(match[2]))
    days = entry.get("days") or list(DAYS)
    if isinstance(days, str):
        days = [days]
    unknown = [d for d in days if str(d).lower()[:3] not in DAYS]
    if unknown:
        raise FileError(path, line, f"maintenance window {number}: unknown day {unknown[0]!r}")
    return Window(frozenset(DAYS.index(str(d).lower()[:3]) for d in days), *minutes)
