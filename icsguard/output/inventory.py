"""Who talks to whom with which functions, and what each host appears to be.

Built from Events (plus the MAC addresses the netstack saw); the store persists it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from netaddr import EUI
from netaddr.core import NotRegisteredError

from icsguard.budget import Budget
from icsguard.events import CONVERSATIONS, Event, function_kind, refused

# Functions an engineering workstation uses and an HMI rarely does: diagnostics,
# identification, program transfer, CPU control.
ENGINEERING_WORDS = ("diagnostics", "device_identification", "report_server_id", "comm_event",
                     "file_record", "user_defined", "reserved", "umas",
                     "upload", "download", "plc_", "szl", "block", "password", "mode_", "clock",
                     "memory_reset", "force", "flash_led", "explore", "create_object", "delete_object",
                     "addnodes", "deletenodes", "addreferences", "deletereferences", "historyupdate",
                     "registerserver")


@dataclass
class Communication:
    requests: int = 0
    responses: int = 0
    exceptions: int = 0
    malformed: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0


@dataclass
class Asset:
    ip: str
    mac: str | None = None
    protocols: set[str] = field(default_factory=set)
    serves: int = 0         # PDUs answered as a server
    writes: int = 0         # write requests sent as a client
    engineering: int = 0    # diagnostic / identification / program requests sent
    requests: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0

    @property
    def vendor(self) -> str | None:
        return vendor_of(self.mac) if self.mac else None

    @property
    def role(self) -> str:
        """A first guess from behaviour; the site file is where a user states the truth."""
        if self.serves and not self.requests:
            return "plc"
        if self.engineering:
            return "ews"
        if self.writes:
            return "hmi"
        if self.requests:
            return "scada"
        return "unknown"


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

    def feed(self, event: Event) -> None:
        request = event.direction == "request"
        client, server = (event.src, event.dst) if request else (event.dst, event.src)
        port = event.dport if request else event.sport
        key = (client, server, port, event.proto, event.function)
        comm = self.pairs.get(key)
        if comm is None:
            if len(self.pairs) >= self.max_pairs:
                self.dropped_pairs += 1
                return
            comm = self.pairs[key] = Communication(first_seen=event.ts)
        comm.last_seen = event.ts
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
        if event.proto in CONVERSATIONS:        # who talks to whom, but no clue to a role
            return
        self._asset(client, event, False, request)
        self._asset(server, event, True, request)

    def _asset(self, ip: str, event: Event, is_server: bool, request: bool) -> None:
        asset = self.assets.get(ip)
        if asset is None:
            if len(self.assets) >= self.max_assets:
                self.dropped_assets += 1
                return
            asset = self.assets[ip] = Asset(ip, first_seen=event.ts)
        asset.last_seen = event.ts
        asset.protocols.add(event.proto)
        self.changed_assets.add(ip)
        if is_server:
            if not request:
                asset.serves += 1
        elif request:
            asset.requests += 1
            if function_kind(event.function) == "write":
                asset.writes += 1
            function = event.function.lower()      # OPC UA services are CamelCase
            if any(word in function for word in ENGINEERING_WORDS):
                asset.engineering += 1

    def take_changes(self, hosts: dict[str, str]) -> tuple[list[tuple[tuple, Communication]], list[Asset]]:
        """The communications and assets changed since the last call, assets with the MAC
        address the netstack saw for them (IP -> MAC)."""
        pairs = [(key, self.pairs[key]) for key in self.changed_pairs]
        assets = [self.assets[ip] for ip in self.changed_assets]
        for asset in assets:
            mac = hosts.get(asset.ip)
            if mac and mac != "00:00:00:00:00:00":
                asset.mac = mac
        self.changed_pairs.clear()
        self.changed_assets.clear()
        return pairs, assets
