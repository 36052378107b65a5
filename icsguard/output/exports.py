"""Stored alerts as the exports speak them: the Alert record of DESIGN.md (JSON Lines,
CSV) and Suricata's EVE alert layout, so that SIEM pipelines built for Suricata take
icsguard's alerts as they are."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

ALERT_FIELDS = ("id", "ts", "severity", "rule", "title", "proto", "src", "dst", "detector", "mitre",
                "count", "first_ts", "last_ts", "evidence", "status")
# Suricata's scale: 1 is the most severe
EVE_SEVERITY = {"critical": 1, "high": 1, "medium": 2, "low": 3}
COMMON = frozenset(("ts", "proto", "src", "sport", "dst", "dport", "direction", "flow", "capture", "frame"))


def record(row: dict[str, Any]) -> dict[str, Any]:
    """A stored alert as the Alert record: lists decoded, storage columns dropped."""
    out = {key: row.get(key) for key in ALERT_FIELDS}
    out["mitre"] = json.loads(row.get("mitre") or "[]")
    out["evidence"] = json.loads(row.get("evidence") or "[]")
    return out


def eve(row: dict[str, Any]) -> dict[str, Any]:
    alert = record(row)
    first = alert["evidence"][0] if alert["evidence"] else {}
    app_proto = alert["proto"] or "unknown"
    out = {
        "timestamp": _eve_time(alert["first_ts"] or alert["ts"]),
        "event_type": "alert",
        "src_ip": alert["src"], "src_port": first.get("sport"),
        "dest_ip": alert["dst"], "dest_port": first.get("dport"),
        "proto": "TCP", "app_proto": app_proto,
        "flow_id": first.get("flow"),
        "alert": {
            "action": "allowed", "gid": 1, "signature_id": row.get("sid") or 0, "rev": 1,
            "signature": alert["title"], "category": f"icsguard {alert['detector']} detection",
            "severity": EVE_SEVERITY.get(alert["severity"], 3),
            "metadata": {"mitre_technique_id": alert["mitre"], "icsguard_rule": [alert["rule"]],
                         "icsguard_severity": [alert["severity"]], "icsguard_count": [str(alert["count"])],
                         "icsguard_status": [alert["status"]], "icsguard_alert_id": [str(alert["id"])]},
        },
        app_proto.replace("-", "_"): {k: v for k, v in first.items() if k not in COMMON},
    }
    return out


def _eve_time(ts: float) -> str:
    """Suricata's timestamp form: 2026-11-22T01:18:08.123456+0000."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f%z")
