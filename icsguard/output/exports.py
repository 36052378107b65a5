"""Stored alerts as the exports speak them: the Alert record of DESIGN.md (JSON Lines,
CSV) and Suricata's EVE alert layout, so that SIEM pipelines built for Suricata take
icsguard's alerts as they are."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import datetime, timezone
from typing import Any

ALERT_FIELDS = ("id", "ts", "severity", "rule", "title", "proto", "src", "dst", "detector", "category", "mitre",
                "count", "first_ts", "last_ts", "evidence", "status")
# Suricata's scale: 1 is the most severe
EVE_SEVERITY = {"critical": 1, "high": 1, "medium": 2, "low": 3}
FLOW_ID_MASK = (1 << 51) - 1
COMMON = frozenset(("ts", "proto", "src", "sport", "dst", "dport", "direction", "flow", "capture", "frame"))


def record(row: dict[str, Any]) -> dict[str, Any]:
    """A stored alert as the Alert record: lists decoded, storage columns dropped."""
    out = {key: row.get(key) for key in ALERT_FIELDS}
    out["mitre"] = json.loads(row.get("mitre") or "[]")
    out["evidence"] = json.loads(row.get("evidence") or "[]")
    return out


def eve(row: dict[str, Any]) -> dict[str, Any]:
    """Suricata's EVE alert record: ports given with the addresses they belong to, the transport
    as the packets had it, ``flow_id`` an integer as Suricata's and the Community ID beside it."""
    alert = record(row)
    first = alert["evidence"][0] if alert["evidence"] else {}
    app_proto = alert["proto"] or "unknown"
    out: dict[str, Any] = {"timestamp": _eve_time(alert["first_ts"] or alert["ts"]), "event_type": "alert"}
    if alert["detector"] == "sensor":              # the sensor's own health: an interface, not a host
        out["in_iface"] = (alert["src"] or "").removeprefix("iface ")
    else:
        out |= _endpoints(alert["src"], alert["dst"], first)
    out["proto"] = "UDP" if "udp" in (app_proto, first.get("proto")) else "TCP"
    out["app_proto"] = app_proto
    if first.get("flow"):
        out["flow_id"] = flow_id(first["flow"])
        out["community_id"] = first["flow"]
    metadata = {"icsguard_rule": [alert["rule"]], "icsguard_severity": [alert["severity"]],
                "icsguard_category": [alert["category"] or "attack"], "icsguard_detector": [alert["detector"]],
                "icsguard_count": [str(alert["count"])], "icsguard_status": [alert["status"]],
                "icsguard_alert_id": [str(alert["id"])]}
    if alert["mitre"]:
        metadata["mitre_technique_id"] = alert["mitre"]
    out["alert"] = {"action": "allowed", "gid": 1, "signature_id": row.get("sid") or 0, "rev": 1,
                    "signature": alert["title"], "category": f"icsguard {alert['category'] or 'attack'}",
                    "severity": EVE_SEVERITY.get(alert["severity"], 3), "metadata": metadata}
    fields = {k: v for k, v in first.items() if k not in COMMON}
    if app_proto == "modbus":
        out["modbus"] = _suricata_modbus(first)
    elif fields and app_proto not in ("tcp", "udp"):
        out[app_proto.replace("-", "_")] = fields
    return out


def _endpoints(src: str | None, dst: str | None, first: dict[str, Any]) -> dict[str, Any]:
    """The alert's addresses with the evidence's ports on the right sides: an alert about a
    response keeps its client as src_ip, so the response's ports are swapped back."""
    out: dict[str, Any] = {"src_ip": src, "dest_ip": dst}
    if first.get("src") == src and first.get("dst") == dst:
        sport, dport = first.get("sport"), first.get("dport")
    elif first.get("src") == dst and first.get("dst") == src:
        sport, dport = first.get("dport"), first.get("sport")
    else:
        return out
    if sport is not None:
        out["src_port"] = sport
    if dport is not None:
        out["dest_port"] = dport
    return out


def flow_id(community_id: str) -> int:
    """A 51-bit integer from the Community ID (whose hash already names the 5-tuple): Suricata's
    flow_id type and range (JSON readers lose integers past 2**53)."""
    try:
        digest = base64.b64decode(community_id.partition(":")[2] or community_id)
    except (binascii.Error, ValueError):      # not one of ours: any stable hash will do
        digest = hashlib.sha1(community_id.encode()).digest()
    return int.from_bytes(digest[:8].ljust(8, b"\0"), "big") & FLOW_ID_MASK


def _suricata_modbus(event: dict[str, Any]) -> dict[str, Any]:
    """A Modbus PDU in Suricata's modbus object (the function named as icsguard names it)."""
    pdu: dict[str, Any] = {"protocol_id": 0}
    for ours, theirs in (("transaction_id", "transaction_id"), ("unit_id", "unit_id"),
                         ("function_code", "function_raw"), ("function", "function_code")):
        if isinstance(event.get(ours), (int, str)):
            pdu[theirs] = event[ours]
    request = event.get("direction") == "request"
    address, quantity, values = event.get("address"), event.get("quantity"), event.get("values")
    if isinstance(address, int):
        if event.get("function", "").startswith("write"):
            if isinstance(values, list) and values and isinstance(values[0], int):
                pdu["write"] = {"address": address, "data": values[0]}
        elif request and isinstance(quantity, int):
            pdu["read"] = {"address": address, "quantity": quantity}
    if isinstance(event.get("exception_code"), int):
        pdu["exception"] = {"code": str(event["exception_code"]), "raw": event["exception_code"]}
    if isinstance(event.get("subfunction"), int):
        pdu["diagnostic"] = {"code": str(event["subfunction"]), "raw": event["subfunction"]}
    if isinstance(event.get("mei_type"), int):
        pdu["mei"] = {"code": str(event["mei_type"]), "raw": event["mei_type"]}
    out: dict[str, Any] = {"request" if request else "response": pdu}
    if isinstance(event.get("transaction_id"), int):
        out["id"] = event["transaction_id"]
    return out


def _eve_time(ts: float) -> str:
    """Suricata's timestamp form: 2026-11-22T01:18:08.123456+0000."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f%z")
