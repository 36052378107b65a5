"""Wireshark as an oracle for icsguard's OPC UA binary decoding.

Both sides are reduced to one tuple per OPC UA message, keyed by (frame, index of
the message among those the frame completed): message type, secure channel id,
request id, sequence number, service type NodeId (numeric), request handle and status code -- the
service result of a response, the error code of an ERR message -- and, on OPN
messages, the security policy URI.

Fairness rules, each because the two tools legitimately differ in what they show:

* Wireshark's OPC UA dissector is registered on TCP port 4840 only, and OPC UA has
  no preference for other ports: servers elsewhere get ``-d tcp.port==N,opcua``.
  The ports come from SERVER_PORTS, read off the captures (the port that answers
  HEL with ACK), not from icsguard, which finds OPC UA on any port by its headers.

* Where the sequence header is encrypted (an OPN under a policy other than None, a
  MSG or CLO under SignAndEncrypt), Wireshark reads its ciphertext as the request id;
  icsguard shows no request id (nor sequence number) there. Both are compared only where
  icsguard read a service, that is where the sequence header was in clear.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from tests.support.tshark_oracle import (
    Comparison,
    Key,
    as_int,
    capture_name,
    compare,
    icsguard_events,
    keyed,
    pdml_packets,
)

# OPC UA servers on other ports, by "<folder>/<file>".
SERVER_PORTS = {
    "traces/open62541_client-server_mainloop-not-localhost-non-standard-port.pcap": {48010},
    "opcua/opc-ua-ap-method-wireshark-freeze.pcap": {12001},
    "opcua-security-research/auto_capture_20251026_014839.pcap": {4841},
    "opcua-security-research/nodeopcua_20251026_025314.pcap": {4841},
    "opcua-security-research/nodeopcua_test_20251026_024950.pcap": {4841},
    "opcua-security-research/freeopcua_20251026_025314.pcap": {4842},
    "opcua-security-research/freeopcua_test_20251026_024724.pcap": {4842},
    "opcua-security-research/freeopcua_test_20251026_024950.pcap": {4842},
    "opcua-security-research/test_freeopcua.pcap": {4843},
    "anssi_scenario/plaintext_test.pcap": {4850},
    "anssi_scenario/scenario_baseline_none.pcap": {4850},
}


class UaMessage(NamedTuple):
    message_type: str | None
    secure_channel_id: int | None
    request_id: int | None
    sequence_number: int | None
    service: int | None             # the service type NodeId's numeric identifier
    request_handle: int | None
    status_code: int | None         # ServiceResult of a response, Error of an ERR
    security_policy: str | None     # OPN only

    def show(self) -> str:
        return " ".join(f"{name}={value}" for name, value in zip(self._fields, self) if value is not None) or "-"


def decode_as(path: Path) -> tuple[str, ...]:
    """tshark options that dissect this capture's OPC UA servers on ports other than 4840."""
    return tuple(arg for port in sorted(SERVER_PORTS.get(capture_name(path), ()))
                 for arg in ("-d", f"tcp.port=={port},opcua"))


def _tshark_message(proto) -> UaMessage:
    """One ``<proto name="opcua">``: the first of each field (the request or response header
    comes before the service's body, which may repeat some names)."""
    values: dict[str, str] = {}
    for field in proto.iter("field"):
        values.setdefault(field.get("name"), field.get("show"))
    kind = values.get("opcua.transport.type")
    return UaMessage(kind, as_int(values.get("opcua.transport.scid")), as_int(values.get("opcua.security.rqid")),
                     as_int(values.get("opcua.security.seq")),
                     as_int(values.get("opcua.servicenodeid.numeric")), as_int(values.get("opcua.RequestHandle")),
                     as_int(values.get("opcua.transport.error" if kind == "ERR" else "opcua.ServiceResult")),
                     values.get("opcua.security.spu") if kind == "OPN" else None)


def tshark_messages(path: Path) -> dict[Key, UaMessage]:
    """Wireshark's tuple for every OPC UA message it dissects, from PDML, which keeps
    each message's fields inside it."""
    messages: dict[Key, UaMessage] = {}
    for frame, packet in pdml_packets(path, "opcua", "opcua", *decode_as(path)):
        for index, proto in enumerate(packet.findall("proto[@name='opcua']")):
            messages[frame, index] = _tshark_message(proto)
    return messages


def icsguard_messages(events: list[dict]) -> dict[Key, UaMessage]:
    messages: dict[Key, UaMessage] = {}
    for key, event in keyed(events):
        get = event.get
        messages[key] = UaMessage(get("message_type"), get("secure_channel_id"), get("request_id"), get("sequence_number"),
                                  get("function_code"), get("request_handle"), get("status_code"),
                                  get("security_policy"))
    return messages


def fair(tshark: UaMessage, icsguard: UaMessage) -> UaMessage:
    """icsguard's tuple with Wireshark's request id where neither read a service (the id
    is ciphertext there)."""
    if icsguard.service is None and tshark.service is None and icsguard.message_type in ("OPN", "MSG", "CLO"):
        icsguard = icsguard._replace(request_id=tshark.request_id, sequence_number=tshark.sequence_number)
    return icsguard


def crosscheck(path: Path) -> Comparison:
    # in process: OPC UA captures are many and small, so starting icsguard would dominate
    return compare(tshark_messages(path), icsguard_messages(icsguard_events(path, "opcua", in_process=True)), fair)
