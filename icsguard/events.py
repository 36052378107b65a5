"""The Event: one record per application PDU, spoken by every stage after the decoders.

The field names are a contract shared with rules, exports and other tools, so
they are spelled out here once; a protocol sets only the fields its PDU carries.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Mapping, NamedTuple

import orjson

PROTOCOLS = ("modbus", "s7comm", "s7comm-plus", "opcua", "cotp", "tcp", "udp")
ISO_ON_TCP = ("s7comm", "s7comm-plus", "cotp")     # one transport (TPKT and COTP on port 102)
CONVERSATIONS = ("tcp", "udp")      # one Event per new conversation: see conversations.py
MODBUS_PORTS = frozenset({502})
ISO_ON_TCP_PORTS = frozenset({102})
OPCUA_PORTS = frozenset({4840})
# the ports a controller serves on: whoever answers from one is the server of its connection
SERVER_PORTS = MODBUS_PORTS | ISO_ON_TCP_PORTS | OPCUA_PORTS


def refused(fields: Mapping[str, Any]) -> bool:
    """Whether a response says no: a Modbus exception, an S7 error, a Bad OPC UA status."""
    return (fields.get("exception_code") is not None or bool(fields.get("error_class"))
            or (fields.get("status_code") or 0) >= 0x80000000)


_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_SETTERS = ("set", "modify", "mask", "force")
_GETTERS = ("read", "get", "list", "browse", "find", "query")


@lru_cache(maxsize=4096)
def function_kind(function: str) -> str:
    """``write``, ``read`` or ``""`` (control, engineering, anything else), from the words of
    a function's name in any protocol: read_write_multiple_registers writes, setup_communication
    does not, HistoryReadRequest reads, S7comm-plus set_variable writes. The one answer to
    "is this a write?" for the baseline, the model, the inventory and the drafted site file."""
    words = [w.lower() for w in _WORDS.findall(function)]
    if "write" in words or (words and words[0] in _SETTERS):
        return "write"
    return "read" if any(w in _GETTERS for w in words) else ""


def hashable(value: Any) -> Any:
    """A value usable as a key: lists become tuples, mappings sorted tuples of items."""
    if isinstance(value, (list, tuple)):
        return tuple(hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, hashable(v)) for k, v in value.items()))
    return value


def sender_direction(from_client: bool) -> str:
    """The direction of a PDU known only by who sent it."""
    return "request" if from_client else "response"


PROTOCOL_FIELDS = frozenset({
    # why a PDU could not be decoded; set only on events that report a malformed PDU
    "malformed",
    # bytes of the PDU as framed, all its fragments (an extension beyond DESIGN's list)
    "pdu_length",
    # modbus
    "transaction_id", "unit_id", "address", "quantity", "values", "exception_code",
    "subfunction", "mei_type", "objects", "and_mask", "or_mask", "read_address",
    "read_quantity", "write_address", "write_values", "data",
    "records",   # FC 20/21 file records: an extension beyond DESIGN's list
    # s7comm
    "rosctr", "pdu_ref", "error_class", "error_code", "items", "userdata_group",
    "userdata_subfunction", "szl_id", "szl_index", "block_type", "block_number",
    "pi_service", "cpu_info",
    "item_count", "pdu_size", "max_amq_calling", "max_amq_called", "filename", "pi_arguments",
    "return_code",   # s7comm extensions beyond DESIGN's list
    # cotp (extensions): the TSAPs name the PLC's rack and slot
    "src_tsap", "dst_tsap", "rack", "slot", "tpdu_size",
    # s7comm-plus
    "version", "opcode", "seq_num", "session_id", "integrity", "object_ids",
    "addresses",   # s7comm-plus extension: item addresses of multi-variable requests
    # opcua
    "message_type", "secure_channel_id", "security_policy", "security_mode", "request_id",
    "request_handle", "status_code", "service", "node_ids", "identity_token", "endpoint_url",
    "application_uri", "certificate_sha1",
    # opcua extensions beyond DESIGN's list: the channel and certificates, per-operation
    # results, what sessions and subscriptions are, and what a login looked like
    "token_id", "sequence_number", "lifetime", "request_type", "receiver_thumbprint", "certificate_subject",
    "certificate_issuer", "certificate_self_signed", "certificate_not_before", "certificate_not_after",
    "certificate_error",
    "status_name", "results", "request_service", "attribute_ids", "targets", "browse_paths",
    "application_name", "session_name", "session_node_id", "object_node_ids", "endpoints", "servers", "user_name",
    "password_in_clear", "user_certificate_sha1", "delete_subscriptions", "subscription_id",
    "subscription_ids", "publishing_interval", "client_handles", "notification_sequence",
})


class Event(NamedTuple):
    """Common fields are attributes; protocol fields live in ``fields`` and read as
    attributes too (``event.address``), None when the PDU did not carry them.

    Immutable, and a tuple underneath because a sensor makes one per PDU.
    ``fields`` may be shared between events (decoded PDUs are cached): never mutate it.
    """
    ts: float
    proto: str
    src: str
    sport: int
    dst: str
    dport: int
    direction: str
    function: str
    function_code: int | None
    flow: str
    capture: str
    frame: int
    fields: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        if name in PROTOCOL_FIELDS:
            return self.fields.get(name)
        raise AttributeError(name)

    def get(self, name: str, default: Any = None) -> Any:
        """Any field by name, common or protocol — what rules and exports use."""
        if name in _COMMON:
            return getattr(self, name)
        return self.fields.get(name, default)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: common fields first, then the protocol fields the PDU carried."""
        out = dict(zip(COMMON_FIELDS, self))
        out.update(self.fields)
        return out

    def to_json(self) -> str:
        try:
            return orjson.dumps(self.to_dict(), option=orjson.OPT_NON_STR_KEYS).decode()
        except orjson.JSONEncodeError:     # a number past 64 bits, say, from a hostile PDU
            return json.dumps(self.to_dict(), default=str, separators=(",", ":"), ensure_ascii=False)


COMMON_FIELDS = Event._fields[:-1]
_COMMON = frozenset(COMMON_FIELDS)
