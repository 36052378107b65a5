"""Values as an analyst writes them: UTC times, S7 addresses as STEP 7 does (``DB1.DBB0[16]``),
OPC UA security policies by their short name, lists as lists, never Python reprs."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

# Event fields that count or route messages and say nothing of what they do
BOOKKEEPING = frozenset(("transaction_id", "pdu_ref", "rosctr", "request_handle", "request_id", "sequence_number",
                         "token_id", "secure_channel_id", "message_type", "service", "pdu_length", "function_code"))
SIZE_LETTER = {"BIT": "X", "BYTE": "B", "CHAR": "B", "WORD": "W", "INT": "W", "DWORD": "D", "DINT": "D",
               "REAL": "D"}
DATA_SHOWN = 32            # hex digits of an item's data in a table; the JSON has them all
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def utc_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def clock(ts: float) -> str:
    """Time of day with milliseconds, UTC: enough to line PDUs up in a table."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def endpoint(ip: str | None, port: int | None = None) -> str:
    """``10.0.0.1:502``, ``[fe80::1]:547``: an IPv6 address is bracketed when a port follows."""
    if ip is None:
        return "-"
    if port is None:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def policy_name(uri: str) -> str:
    """``http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256`` → ``Basic256Sha256``."""
    return uri.rpartition("#")[2] or uri


def s7_address(item: dict[str, Any]) -> str:
    """An S7 item in STEP 7 notation: DB1.DBX2.3, DB1.DBB0[16], MW10, I0.1, T5, C3[2]."""
    area, size = item.get("area"), str(item.get("transport_size", ""))
    start, bit, length = item.get("byte", 0), item.get("bit", 0), item.get("length", 1)
    count = f"[{length}]" if isinstance(length, int) and length > 1 else ""
    if area in ("C", "T", "IEC_C", "IEC_T"):
        return f"{area}{start}{count}"
    letter = SIZE_LETTER.get(size, "B")
    if area in ("DB", "DI"):
        place = f"{area}{item.get('db', 0)}.{area}{letter}{start}"
    elif area in ("I", "Q", "M", "P", "L", "V", "PI", "PQ"):
        place = f"{area}{start}" if letter == "X" else f"{area}{letter}{start}"
    else:
        return f"{area} byte {start}{count}"
    return (f"{place}.{bit}" if letter == "X" else place) + count


def _s7_item(item: dict[str, Any]) -> str:
    if "areas" in item:
        return "+".join(s7_address(a) for a in item["areas"])
    if "area" not in item:
        return text(item)
    out = s7_address(item)
    code = item.get("return_code")
    if code not in (None, "success"):
        out += f" ({code})"
    data = item.get("data")
    if data:
        out += "=" + (data if len(data) <= DATA_SHOWN else f"{data[:DATA_SHOWN]}…({len(data) // 2} bytes)")
    return out


def text(value: Any) -> str:
    """A field's value in plain words: lists joined, booleans as true/false, nothing quoted."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ", ".join(text(v) for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k}={text(v)}" for k, v in value.items())
    return str(value)


def field(name: str, value: Any) -> str:
    if name == "items" and isinstance(value, (list, tuple)):
        return ", ".join(_s7_item(v) if isinstance(v, dict) else text(v) for v in value)
    if name == "security_policy" and isinstance(value, str):
        return policy_name(value)
    if name == "endpoints" and isinstance(value, (list, tuple)):
        return ", ".join(f"{policy_name(e.get('security_policy', '?'))}/{e.get('security_mode', '?')}"
                         for e in value if isinstance(e, dict))
    if isinstance(value, (list, tuple)) and len(value) > 1:
        return f"[{text(value)}]"
    return text(value)


def details(fields: dict[str, Any]) -> str:
    """What a PDU does, for a table: ``items=DB1.DBB0[16]``, ``node_ids=ns=2;s=Pump1.Speed``."""
    return " ".join(f"{k}={field(k, v)}" for k, v in fields.items() if k not in BOOKKEEPING)


def json_cell(value: Any) -> str:
    """A value for a CSV cell: JSON for lists and objects, true/false, empty for none."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value             # a spreadsheet would run it as a formula: text from the wire stays text
    return str(value)
