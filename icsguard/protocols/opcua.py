"""OPC UA binary: recognise it, frame it by message size, reassemble chunks, and turn
messages into Events with their secure-channel and service identity."""

from __future__ import annotations

import hashlib
from typing import Any

from icsguard.events import sender_direction
from icsguard.parsers import opcua as ua
from icsguard.protocols.decode_cache import DecodeCache
from icsguard.protocols.framing import looks_like

NAME = "opcua"
PORTS = frozenset({4840})
MAX_CHUNKS = 64                  # chunks held for one message before it is given up
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
SYMMETRIC_BODY = ua.HEADER_LENGTH + 16   # a MSG/CLO body: after header, channel, token, sequence header

_TYPES = frozenset(t.encode() for t in ua.MESSAGE_TYPES)
TRANSPORT_NAMES = {"HEL": "Hello", "ACK": "Acknowledge", "ERR": "Error", "RHE": "ReverseHello",
                   "OPN": "OpenSecureChannel", "CLO": "CloseSecureChannel", "MSG": "SecureMessage"}


def pdu_length(data: bytes, pos: int, strict: bool = False) -> int | str:
    """The 8-byte message header: a known type, a chunk type, a size that fits OPC UA."""
    if len(data) - pos < ua.HEADER_LENGTH:
        if len(data) - pos >= 3 and data[pos:pos + 3] not in _TYPES:
            return "not an OPC UA message type"
        return 0
    if data[pos:pos + 3] not in _TYPES:
        return f"message type {data[pos:pos + 3]!r} is not OPC UA"
    if data[pos + 3:pos + 4] not in ua.CHUNK_TYPES:
        return f"chunk type {data[pos + 3:pos + 4]!r} is not F, C or A"
    size = int.from_bytes(data[pos + 4:pos + 8], "little")
    if size < ua.MIN_MESSAGE or size > ua.MAX_MESSAGE:
        return f"message size {size} is not plausible"
    return size


def signature(data: bytes, on_port: bool) -> bool | None:
    return looks_like(data, pdu_length, on_port, strict=True)


def orient(pdus: list[tuple[tuple, bytes]], peer) -> tuple | None:
    """Clients say Hello and open channels; servers acknowledge."""
    for side, pdu in pdus:
        kind = pdu[:3]
        if kind in (b"HEL", b"OPN", b"CLO"):
            return side
        if kind in (b"ACK", b"ERR", b"RHE"):
            return peer(side)
    return None


class UASession:
    """One OPC UA connection: chunks per direction and the channel's security policy."""

    def __init__(self, cache: DecodeCache):
        self.cache = cache
        self.chunks: dict[bool, list[bytes]] = {True: [], False: []}
        self.policy: str | None = None

    def decode(self, message: bytes, from_client: bool) -> tuple | None:
        kind = message[:3].decode()
        chunk = message[3:4]
        if kind in ("MSG", "CLO") and chunk != b"F":
            held = self.chunks[from_client]
            if chunk == b"A":
                held.clear()
                return None
            held.append(message)
            if len(held) > MAX_CHUNKS or sum(map(len, held)) > MAX_MESSAGE_BYTES:
                held.clear()
                return (NAME, sender_direction(from_client), TRANSPORT_NAMES[kind], None,
                        {"message_type": kind, "malformed": "message of too many chunks"})
            return None
        held = self.chunks[from_client]
        if held and kind in ("MSG", "CLO"):
            first = held[0]
            # the first chunk's headers, then every chunk's body after its own headers
            message = first + b"".join(c[SYMMETRIC_BODY:] for c in held[1:]) + message[SYMMETRIC_BODY:]
            held.clear()
        try:
            return self._decode(kind, message, from_client)
        except (ua.DecodeError, ValueError, IndexError) as exc:
            return (NAME, sender_direction(from_client), TRANSPORT_NAMES[kind], None,
                    {"message_type": kind, "malformed": f"{kind} does not parse: {exc}"})

    def _decode(self, kind: str, message: bytes, from_client: bool) -> tuple:
        fields: dict[str, Any] = {"message_type": kind}
        body = message[ua.HEADER_LENGTH:]
        function = TRANSPORT_NAMES[kind]
        if kind in ("HEL", "RHE"):
            hello = ua.UAHello(body) if kind == "HEL" else None
            if hello is not None and hello.endpoint_url:
                fields["endpoint_url"] = hello.endpoint_url.decode("utf-8", "replace")
            return NAME, "request" if kind == "HEL" else "notification", function, None, fields
        if kind == "ACK":
            return NAME, "response", function, None, fields
        if kind == "ERR":
            error = ua.UAError(body)
            fields["status_code"] = error.error
            return NAME, "response", function, None, fields
        if kind == "OPN":
            header = ua.UAAsymmetricHeader(body)
            policy = (header.policy_uri or b"").decode("utf-8", "replace")
            self.policy = policy
            fields.update(secure_channel_id=header.secure_channel_id, security_policy=policy,
                          request_id=header.request_id)
            if header.sender_certificate:
                fields["certificate_sha1"] = hashlib.sha1(header.sender_certificate).hexdigest()
            payload = bytes(header.body)
            clear = policy.endswith("#None")
        else:
            header = ua.UASymmetricHeader(body)
            fields.update(secure_channel_id=header.secure_channel_id, request_id=header.request_id)
            if self.policy:
                fields["security_policy"] = self.policy
            payload = bytes(header.body)
            clear = self.policy is None or self.policy.endswith("#None")
        service = _service(payload, clear)
        if service is None:                       # encrypted: the headers are all there is
            return NAME, sender_direction(from_client), function, None, fields
        code, name, rest = service
        fields["service"] = name
        direction = "response" if name.endswith("Response") or name == "ServiceFault" else "request"
        header_fields = _service_header(rest, direction)
        fields.update(header_fields)
        return NAME, direction, name, code, fields


def _service(payload: bytes, clear: bool) -> tuple[int, str, bytes] | None:
    """The service type NodeId of a clear body. A signed-only body is clear too: it is
    recognised by starting with a known service's encoding id."""
    try:
        rest, node = ua.read_node_id(payload)
    except ua.DecodeError:
        return None
    if not node.startswith("i="):
        return None
    code = int(node[2:])
    name = ua.SERVICES.get(code)
    if name is None:
        return None if not clear else (code, f"service_{code}", rest)
    return code, name, rest


def _service_header(rest: bytes, direction: str) -> dict[str, Any]:
    try:
        if direction == "request":
            header = ua.UARequestHeader(rest)
            return {"request_handle": header.request_handle}
        header = ua.UAResponseHeader(rest)
        return {"request_handle": header.request_handle, "status_code": header.service_result}
    except (ua.DecodeError, ValueError, IndexError):
        return {"malformed": "service header does not parse"}


Session = UASession
