"""The part of Suricata's EVE JSON schema that icsguard's records use, for jsonschema.

Transcribed (names and types only) from the schema Suricata publishes in its source tree,
``etc/schema.json`` (OISF/suricata, August 2026): the top-level fields, ``alert``, ``modbus``
and the ``stats`` counters icsguard fills. As there, no other key is admitted, except the
application-layer objects of protocols Suricata has no parser for (``s7comm``, ``s7comm_plus``,
``cotp``, ``opcua``): icsguard's extensions, as a new parser adds its own key to that schema.
"""

from __future__ import annotations

STRINGS = {"type": "array", "minItems": 1, "items": {"type": "string"}}
INTEGER = {"type": "integer"}
STRING = {"type": "string"}


def _object(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "additionalProperties": False, "properties": properties, "required": list(required)}


_CODE = _object({"code": STRING, "raw": INTEGER})
_MODBUS_PDU = _object({
    "access_type": STRING, "category": STRING, "data": STRING, "diagnostic": _CODE, "error_flags": STRING,
    "exception": _CODE, "function_code": STRING, "function_raw": INTEGER, "mei": _CODE, "protocol_id": INTEGER,
    "read": _object({"address": INTEGER, "quantity": INTEGER}),
    "transaction_id": INTEGER, "unit_id": INTEGER,
    "write": _object({"address": INTEGER, "data": INTEGER}),
})
_EXTENSION = {"type": "object"}

ALERT = _object({
    "timestamp": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+[+\-]\d+$"},
    "event_type": {"const": "alert"},
    "src_ip": STRING, "src_port": INTEGER, "dest_ip": STRING, "dest_port": INTEGER, "in_iface": STRING,
    "proto": STRING, "app_proto": STRING, "flow_id": INTEGER, "community_id": STRING,
    "alert": _object({
        "action": STRING, "category": STRING, "gid": INTEGER, "rev": INTEGER, "severity": INTEGER,
        "signature": STRING, "signature_id": INTEGER,
        "metadata": {"type": "object", "additionalProperties": True,
                     "properties": {name: STRINGS for name in ("signature_severity", "tag", "deployment")}},
    }, ("action", "signature", "signature_id", "severity")),
    "modbus": _object({"id": INTEGER, "request": _MODBUS_PDU, "response": _MODBUS_PDU}),
    **{name: _EXTENSION for name in ("s7comm", "s7comm_plus", "cotp", "opcua")},
}, ("timestamp", "event_type", "proto", "alert"))

STATS = _object({
    "timestamp": ALERT["properties"]["timestamp"],
    "event_type": {"const": "stats"},
    "stats": _object({
        "uptime": INTEGER,
        "capture": _object({"kernel_packets": INTEGER, "kernel_drops": INTEGER, "kernel_ifdrops": INTEGER}),
        "decoder": _object({"pkts": INTEGER, "bytes": INTEGER}),
        "tcp": _object({"reassembly_gap": INTEGER}),
        "detect": _object({"alert": INTEGER}),
    }, ("uptime",)),
}, ("timestamp", "event_type", "stats"))
