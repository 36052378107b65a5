"""Who talks to whom with which functions, and what each host appears to be.

Built from Events (plus the MAC addresses the netstack saw); the store persists it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

from netaddr import EUI
from netaddr.core import NotRegisteredError

from icsguard.bounded import remember
from icsguard.budget import Budget
from icsguard.events import CONVERSATIONS, SERVER_PORTS, Event, function_kind, refused

# Functions an engineering workstation uses and an HMI rarely does: diagnostics,
# identification, program transfer, CPU control.
ENGINEERING_WORDS = ("diagnostics", "device_identification", "report_server_id", "comm_event",
                     "file_record", "user_defined", "reserved", "umas",
                     "upload", "download", "plc_", "szl", "block", "password", "mode_", "clock",
                     "memory_reset", "force", "flash_led", "explore", "create_object", "delete_object",
                     "addnodes", "deletenodes", "addreferences", "deletereferences", "historyupdate",
                     "registerserver")
CONTROLLER_PORTS = SERVER_PORTS - {4840}     # S7 and Modbus: served by controllers; OPC UA by PCs too
GATEWAY_IPS = 3       # a MAC in front of this many IPs is a router's or a gateway's, not theirs


@dataclass(slots=True)
class Communication:
    requests: int = 0
    responses: int = 0
    exceptions: int = 0
    malformed: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0


@dataclass(slots=True)
class Asset:
    ip: str
    mac: str | None = None
    protocols: set[str] = field(default_factory=set)
    serves: int = 0         # PDUs sent as the server of a connection (answers, and an S7 PLC's download jobs)
    served_ports: set[int] = field(default_factory=set)
    writes: int = 0         # write requests sent as a client
    engineering: int = 0    # diagnostic / identification / program requests sent
    requests: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    gateway_mac: str | None = None     # the MAC it was seen behind, a gateway's shared by many IPs
    controller_identity: bool = False  # it answered as a controller: an S7 CPU's SZL, Modbus device identification

    @property
    def vendor(self) -> str | None:
        if self.gateway_mac:
            return f"behind gateway {self.gateway_mac} ({vendor_of(self.gateway_mac) or 'vendor unknown'})"
        return vendor_of(self.mac) if self.mac else None

    @property
    def role(self) -> str:
        """A first guess from behaviour; the site file is where a user states the truth. A host
        answering on an S7 or Modbus port is a controller whatever else it does (a PLC polled
        and polling, a PLC taking a download); one serving OPC UA only while it polls others
        is a SCADA server or gateway, guessed from what it asks."""
        if self.controller_identity or self.served_ports & CONTROLLER_PORTS or (self.serves and not self.requests):
            return "plc"
        if self.engineering:
            return "ews"
        if self.writes:
            return "hmi"
        if self.requests:
            return "scada"
        return "unknown"


@lru_cache(maxsize=4096)
def is_engineering(function: str) -> bool:
    function = function.lower()      # OPC UA services are CamelCase
    return any(word in function for word in ENGINEERING_WORDS)


@lru_cache(maxsize=4096)
def vendor_of(mac: str) -> str | None:
    """The organisation registered for the MAC's OUI (IEEE registry shipped with netaddr)."""
    try:
        eui = EUI(mac)
        if eui.words[0] & 0x02:          # locally administered: no vendor
            return None
        return eui.oui.registration().org
    except (NotRegisteredError, ValueError, IndexError):
        return None


class Inventory:
    def __init__(self, budget: Budget | None = None) -> None:
        """``budget``: how many communications and assets are kept; beyond, new ones are
        counted as dropped (what was kept is already in the store)."""
        budget = budget or Budget()
        self.max_pairs = budget.entries("pairs")
        self.max_assets = budget.entries("assets")
        self.dropped_assets = 0
        # (client, server, server port, proto, function) → Communication
        self.pairs: dict[tuple, Communication] = {}
        self.assets: dict[str, Asset] = {}
        self.dropped_pairs = 0
        self.changed_pairs: set[tuple] = set()     # since the last take_changes()
        self.changed_assets: set[str] = set()
        self.parties: dict[tuple, tuple] = {}      # communication -> see _parties

    def feed(self, event: Event) -> None:
        request = event.direction == "request"
        from_client = _sent_by_client(event)
        client, server = (event.src, event.dst) if from_client else (event.dst, event.src)
        port = event.dport if from_client else event.sport
        key = (client, server, port, event.proto, event.function)
        parties = self.parties.get(key)
        if parties is None:
            parties = self._parties(key, event)
            if parties is None:
                return
        comm, client_asset, server_asset, writes, engineering = parties
        ts = event.ts
        comm.last_seen = ts
        self.changed_pairs.add(key)
        fields = event.fields
        if "malformed" in fields:
            comm.malformed += 1
        if request:
            comm.requests += 1
        else:
            comm.responses += 1
            if refused(fields):
                comm.exceptions += 1
        if client_asset is None:        # a conversation (who talks to whom, but no clue to a role), or no room
            return
        client_asset.last_seen = server_asset.last_seen = ts
        self.changed_assets.add(client)
        self.changed_assets.add(server)
        if not from_client:
            server_asset.serves += 1
            server_asset.served_ports.add(port)
            if ("cpu_info" in fields or "objects" in fields) and event.proto in ("s7comm", "modbus"):
                server_asset.controller_identity = True
        elif request:
            client_asset.requests += 1
            client_asset.writes += writes
            client_asset.engineering += engineering

    def _parties(self, key: tuple, event: Event) -> tuple | None:
        """A communication's record, its client's and server's assets and what a request of
        its function counts as (a write, engineering), made when it is first seen; None when
        the budget has no room for the communication, no assets when it has none for one of
        them (both counted as dropped)."""
        client, server, port, proto, function = key
        comm = self.pairs.get(key)
        if comm is None:
            if len(self.pairs) >= self.max_pairs:
                self.dropped_pairs += 1
                return None
            comm = self.pairs[key] = Communication(first_seen=event.ts)
        if proto in CONVERSATIONS:
            parties = (comm, None, None, 0, 0)
        else:
            client_asset, server_asset = self._asset(client, event), self._asset(server, event)
            if client_asset is None or server_asset is None:
                return comm, None, None, 0, 0        # counted, not remembered: asked again next time
            client_asset.protocols.add(proto)
            server_asset.protocols.add(proto)
            parties = (comm, client_asset, server_asset, int(function_kind(function) == "write"),
                       int(is_engineering(function)))
        remember(self.parties, key, parties, self.max_pairs)
        return parties

    def _asset(self, ip: str, event: Event) -> Asset | None:
        asset = self.assets.get(ip)
        if asset is None:
            if len(self.assets) >= self.max_assets:
                self.dropped_assets += 1
                return None
            asset = self.assets[ip] = Asset(ip, first_seen=event.ts)
        return asset

    def take_changes(self, hosts: dict[str, str]) -> tuple[list[tuple[tuple, Communication]], list[Asset]]:
        """The communications and assets changed since the last call, assets with the MAC
        address the netstack saw for them (IP -> MAC)."""
        pairs = [(key, self.pairs[key]) for key in self.changed_pairs]
        shared = Counter(hosts.values())
        for ip, asset in self.assets.items():     # a MAC newly shared may turn hosts seen before
            mac = hosts.get(ip)
            if not mac or mac == "00:00:00:00:00:00":
                continue
            if shared[mac] >= GATEWAY_IPS:
                if asset.gateway_mac != mac:
                    asset.gateway_mac, asset.mac = mac, None
                    self.changed_assets.add(ip)
            elif asset.mac != mac and asset.gateway_mac is None:
                asset.mac = mac
                self.changed_assets.add(ip)
        assets = [self.assets[ip] for ip in self.changed_assets]
        self.changed_pairs.clear()
        self.changed_assets.clear()
        return pairs, assets


def _sent_by_client(event: Event) -> bool:
    """Whether the client of the connection sent this PDU: the end on a controller's port is the
    server (an S7 PLC sends download jobs from port 102), else the one that asked."""
    from_port, to_port = event.sport in SERVER_PORTS, event.dport in SERVER_PORTS
    if from_port != to_port:
        return to_port
    return event.direction == "request"
