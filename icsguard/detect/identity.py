"""What devices say about themselves on the wire, and the alert when it changes.

An S7 CPU's SZL answers (order number, versions, names, serial, protection, mode), a Modbus
server's device identification (FC 43/14) and server id (FC 17), an OPC UA application's
URIs, names and certificate, and its BuildInfo when a client reads it: each an attribute of
the PDU's sender, kept with where and when it was seen. A model, firmware or serial different
from what the database knew is a module swapped or reflashed; a known device's identity
answered from a new MAC address is a device impersonated or replaced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from icsguard.budget import Budget
from icsguard.detect.folding import Alert, Finding, Folding, compact
from icsguard.detect.rules import signature_id
from icsguard.events import Event

# S7 cpu_info keys → attribute names
S7_ATTRIBUTES = {"order_number": "order_number", "hardware": "hardware_version", "firmware": "firmware_version",
                 "as_name": "station_name", "module_name": "module_name", "plant_id": "plant_id",
                 "serial": "serial", "module_type": "module_type", "memory_card_serial": "memory_card_serial",
                 "location": "location", "copyright": "copyright", "protection_level": "protection_level",
                 "mode_switch": "mode_switch", "operating_mode": "operating_mode"}
# Modbus device identification object ids (FC 43/14)
MODBUS_OBJECTS = {0: "vendor", 1: "product_code", 2: "firmware_version", 3: "url", 4: "product_name",
                  5: "model", 6: "application_name"}
# OPC UA Server_ServerStatus_BuildInfo children, read by node id
BUILD_INFO = {"i=2262": "product_uri", "i=2263": "vendor", "i=2261": "product_name", "i=2264": "firmware_version",
              "i=2265": "build_number", "i=2266": "build_date"}
OPCUA_FIELDS = {"application_uri": "application_uri", "application_name": "application_name",
                "product_uri": "product_uri", "certificate_subject": "certificate_subject",
                "certificate_issuer": "certificate_issuer", "certificate_sha1": "certificate_sha1",
                "certificate_sha256": "certificate_sha256", "certificate_not_before": "certificate_not_before",
                "certificate_not_after": "certificate_not_after"}
# a change in these is a different module or different firmware
WATCHED = frozenset({"order_number", "module_type", "model", "product_code", "product_name", "hardware_version",
                     "firmware_version", "serial", "certificate_sha1"})
# these name a device: answered from a new MAC, the device was replaced or is impersonated
NAMING = frozenset({"serial", "order_number", "certificate_sha1"})
MAX_VALUE = 200            # characters kept of a value from the wire
CHANGED = Finding("asset.identity_changed", "Device identity changed (module swapped or firmware changed)", "high",
                  "baseline", ("T0839", "T0848"), signature_id("asset.identity_changed"))
NEW_MAC = Finding("asset.identity_new_mac", "A known device's identity answered from a new MAC address", "high",
                  "baseline", ("T0848", "T0849"), signature_id("asset.identity_new_mac"))


@dataclass
class Sighting:
    """Where one attribute value was first seen, and when first and last."""
    proto: str
    message: str
    capture: str
    frame: int
    first_seen: float
    last_seen: float


def facts(event: Event) -> list[tuple[str, str]]:
    """The (attribute, value) pairs a PDU tells about its sender."""
    fields = event.fields
    proto = event.proto
    if proto == "modbus":                 # (almost every event: polls, which tell nothing of this)
        if "objects" not in fields and event.function != "report_server_id":
            return []
    elif proto != "opcua" and "cpu_info" not in fields:
        return []
    found: list[tuple[str, Any]] = []
    if proto == "s7comm" and isinstance(fields.get("cpu_info"), dict):
        found += [(S7_ATTRIBUTES[k], v) for k, v in fields["cpu_info"].items() if k in S7_ATTRIBUTES]
    elif proto == "modbus" and event.direction == "response" and "exception_code" not in fields:
        objects = fields.get("objects")
        if isinstance(objects, dict):
            found += [(MODBUS_OBJECTS[int(k)], v) for k, v in objects.items()
                      if str(k).isdigit() and int(k) in MODBUS_OBJECTS]
        if event.function == "report_server_id" and isinstance(fields.get("data"), str):
            found.append(("server_id", _server_id(fields["data"])))
    elif proto == "opcua":
        found += [(name, fields[key]) for key, name in OPCUA_FIELDS.items() if fields.get(key)]
        if event.function == "ReadResponse":
            nodes, values = fields.get("node_ids") or (), fields.get("values") or ()
            found += [(BUILD_INFO[n], v) for n, v in zip(nodes, values) if n in BUILD_INFO and v not in (None, "")]
    return [(name, str(value)[:MAX_VALUE]) for name, value in found if str(value).strip()]


def _server_id(data: str) -> str:
    """FC 17's answer (a server id, a run indicator 0x00/0xFF, device data, in an order devices
    choose): its text where it has some (devices put their name there), else its hex."""
    try:
        raw = bytes.fromhex(data)
    except ValueError:
        return data
    words = re.findall(r"[ -~]{3,}", raw.decode("latin-1"))
    return " ".join(w.strip() for w in words) or raw.hex()


class IdentityDetector:
    """Keeps the run's sightings for the store, and alerts when a watched attribute of a device
    takes a value other than the one known (from the database, or earlier in the run)."""
    name = "identity"

    def __init__(self, known: dict[tuple[str, str, str], set[str]] | None = None, macs: dict[str, str] | None = None,
                 hosts: dict[str, str] | None = None, muted: set | None = None, budget: Budget | None = None):
        """``known``: (ip, protocol, attribute) → values the database holds (a host answering
        two protocols may be two devices behind one address); ``macs``: ip → the MAC it was
        known by; ``hosts``: the run's own IP → MAC map, as the netstack fills it."""
        self.known = {key: set(values) for key, values in (known or {}).items()}
        self.macs = dict(macs or {})
        self.hosts = hosts if hosts is not None else {}
        self.folding = Folding(muted, budget)
        budget = budget or Budget()
        self.capacity = budget.entries("assets") * 4
        self.sightings: dict[tuple[str, str, str], Sighting] = {}
        self.changed: set[tuple[str, str, str]] = set()
        self.dropped = 0

    def feed(self, event: Event) -> list[Alert]:
        found = facts(event)
        if not found:
            return []
        closed: list[Alert] = []
        ip = event.src
        for attribute, value in found:
            key = (ip, attribute, value)
            seen = self.sightings.get(key)
            if seen is None:
                if len(self.sightings) >= self.capacity:
                    self.dropped += 1
                    continue
                seen = self.sightings[key] = Sighting(event.proto, event.function, event.capture, event.frame,
                                                      event.ts, event.ts)
                closed += self._compare(event, attribute, value)
            seen.last_seen = event.ts
            self.changed.add(key)
        if any(attribute in NAMING for attribute, _ in found):
            closed += self._check_mac(event)
        return closed

    def _compare(self, event: Event, attribute: str, value: str) -> list[Alert]:
        values = self.known.setdefault((event.src, event.proto, attribute), set())
        before = sorted(values)
        values.add(value)
        if attribute not in WATCHED or not before or value in before:
            return []
        return self.folding.add(CHANGED, event.ts, event.proto, event.src, event.dst, lambda: compact(event),
                                detail=f"{attribute} {' / '.join(before)} -> {value}")

    def _check_mac(self, event: Event) -> list[Alert]:
        mac, known = self.hosts.get(event.src), self.macs.get(event.src)
        if not mac or mac == "00:00:00:00:00:00":
            return []
        if known is None:
            self.macs[event.src] = mac
            return []
        if mac == known:
            return []
        self.macs[event.src] = mac
        return self.folding.add(NEW_MAC, event.ts, event.proto, event.src, event.dst, lambda: compact(event),
                                detail=f"{event.src} answered from {mac}, known as {known}")

    def take_changes(self) -> list[tuple[tuple[str, str, str], Sighting]]:
        """The sightings new or grown since the last call, for the store."""
        changes = [(key, self.sightings[key]) for key in self.changed]
        self.changed.clear()
        return changes

    def flush(self) -> list[Alert]:
        return self.folding.flush()
