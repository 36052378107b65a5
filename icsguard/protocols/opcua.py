"""OPC UA binary: recognise it, frame it by message size, reassemble chunks, and turn
messages into Events: the secure channel's posture (policy, mode, certificates), the
service, and — where the body is readable — what it touches: node ids, written and read
values, identities (never a password), endpoints offered. Responses are paired with
their requests by request id, so a ReadResponse names the nodes it answers."""

from __future__ import annotations

import functools
import hashlib
from typing import Any, Callable

from cryptography import x509

from icsguard.bounded import remember
from icsguard.budget import Pool
from icsguard.events import OPCUA_PORTS, sender_direction
from icsguard.parsers import opcua as ua
from icsguard.parsers.opcua_status import status_name
from icsguard.protocols.decode_cache import DecodeCache
from icsguard.protocols.framing import looks_like
from icsguard.protocols.malformed import reason
from icsguard.protocols.pairing import Outstanding, inherit

NAME = "opcua"
PORTS = OPCUA_PORTS
MAX_CHUNKS = 64                  # chunks held for one message before it is given up
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_OUTSTANDING = 1024           # requests awaiting their response, per connection
MAX_HANDLES = 10_000             # monitored items remembered per connection
MAX_CACHED_BODY = 1024           # polling messages are small; large ones rarely repeat
SYMMETRIC_BODY = ua.HEADER_LENGTH + 16   # a MSG/CLO chunk's body: after header, channel, token, sequence header

KINDS = {t.encode(): t for t in ua.MESSAGE_TYPES}
FINAL, ABORT = ord("F"), ord("A")
DIRECTIONS = {code: "request" if name.endswith("Request") else "response" for code, name in ua.SERVICES.items()}
TRANSPORT_NAMES = {"HEL": "Hello", "ACK": "Acknowledge", "ERR": "Error", "RHE": "ReverseHello",
                   "OPN": "OpenSecureChannel", "CLO": "CloseSecureChannel", "MSG": "SecureMessage"}


def pdu_length(data: bytes, pos: int, strict: bool = False) -> int | str:
    """The 8-byte message header: a known type, a chunk type, a size that fits OPC UA."""
    if len(data) - pos < ua.HEADER_LENGTH:
        if len(data) - pos >= 3 and data[pos:pos + 3] not in KINDS:
            return "not an OPC UA message type"
        return 0
    if data[pos:pos + 3] not in KINDS:
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


def undecodable(message: bytes, from_client: bool, error: Exception) -> tuple:
    """What a message that could not be decoded still says: its type."""
    kind = KINDS[message[:3]]
    return (NAME, sender_direction(from_client), TRANSPORT_NAMES[kind], None,
            {"message_type": kind, "malformed": f"{kind} does not parse: {error}" if isinstance(error, ua.DecodeError)
             else f"{reason(kind, error)}: {error}"})


class UASession:
    """One OPC UA connection: chunks per direction, the channel's policy and mode, the
    requests awaiting answers, and the node behind each monitored item's client handle."""

    def __init__(self, cache: DecodeCache, pool: Pool):
        self.cache = cache
        self.pool = pool
        self.chunks: dict[bool, list[bytes]] = {True: [], False: []}    # chunks held, per direction
        self.policy: str | None = None
        self.mode: str | None = None
        self.pending = Outstanding(MAX_OUTSTANDING, pool)     # request id -> (service, its fields)
        self.handles: dict[int, str] = {}

    def release(self) -> None:
        for from_client in self.chunks:
            self._drop_chunks(from_client)
        self.pending.release()

    def _drop_chunks(self, from_client: bool) -> None:
        held = self.chunks[from_client]
        self.pool.give(sum(map(len, held)))
        held.clear()

    def decode(self, message: bytes, from_client: bool) -> tuple | None:
        kind = KINDS[message[:3]]
        chunk = message[3]
        if chunk != FINAL and kind in ("MSG", "CLO"):
            held = self.chunks[from_client]
            if chunk == ABORT:
                self._drop_chunks(from_client)
                return None
            if not self.pool.take(len(message)):
                self._drop_chunks(from_client)
                return (NAME, sender_direction(from_client), TRANSPORT_NAMES[kind], None,
                        {"message_type": kind, "malformed": "chunks dropped: the memory budget for held bytes is spent"})
            held.append(message)
            if len(held) > MAX_CHUNKS or sum(map(len, held)) > MAX_MESSAGE_BYTES:
                self._drop_chunks(from_client)
                return (NAME, sender_direction(from_client), TRANSPORT_NAMES[kind], None,
                        {"message_type": kind, "malformed": "message of too many chunks"})
            return None
        held = self.chunks[from_client]
        if held and kind in ("MSG", "CLO"):
            first = held[0]
            # the first chunk's headers, then every chunk's body after its own headers
            message = first + b"".join(c[SYMMETRIC_BODY:] for c in held[1:]) + message[SYMMETRIC_BODY:]
            self._drop_chunks(from_client)
        return self._decode(kind, message, from_client)

    def _decode(self, kind: str, message: bytes, from_client: bool) -> tuple:
        fields: dict[str, Any] = {"message_type": kind}
        body = message[ua.HEADER_LENGTH:]
        function = TRANSPORT_NAMES[kind]
        if kind in ("HEL", "RHE"):
            url = ua.dissect(ua.UAHello, body)["endpoint_url"] if kind == "HEL" else None
            if url:
                fields["endpoint_url"] = url.decode("utf-8", "replace")
            return NAME, "request" if kind == "HEL" else "notification", function, None, fields
        if kind == "ACK":
            return NAME, "response", function, None, fields
        if kind == "ERR":
            error = ua.dissect(ua.UAError, body)["error"]
            fields.update(status_code=error, status_name=status_name(error))
            return NAME, "response", function, None, fields
        if kind == "OPN":
            header = ua.dissect(ua.UAAsymmetricHeader, body)
            self.policy = (header["policy_uri"] or b"").decode("utf-8", "replace")
            self.mode = "None" if self.policy.endswith("#None") else None
            fields.update(secure_channel_id=header["secure_channel_id"], security_policy=self.policy,
                          sequence_number=header["sequence_number"], request_id=header["request_id"])
            if header["sender_certificate"]:
                fields.update(certificate_fields(header["sender_certificate"]))
            if header["receiver_thumbprint"]:
                fields["receiver_thumbprint"] = header["receiver_thumbprint"].hex()
        else:
            header = ua.dissect(ua.UASymmetricHeader, body)
            fields.update(secure_channel_id=header["secure_channel_id"], token_id=header["token_id"],
                          sequence_number=header["sequence_number"], request_id=header["request_id"])
        service = _service(header["body"], self.mode == "None")
        if service is None:   # encrypted: the headers are all there is (the sequence header is ciphertext)
            del fields["request_id"], fields["sequence_number"]
            if kind != "OPN" and self.policy and self.mode is None:
                self.mode = "SignAndEncrypt"
            if self.mode:
                fields["security_mode"] = self.mode
            return NAME, sender_direction(from_client), function, None, fields
        code, name, rest = service
        direction = DIRECTIONS.get(code) or sender_direction(from_client)
        fields["service"] = name
        fields.update(self._service_fields(code, name, direction, rest))
        if kind != "OPN" and self.policy and self.mode is None and "malformed" not in fields:
            self.mode = "Sign"                    # a readable body under a real policy is signed only
        if self.mode and "security_mode" not in fields:
            fields["security_mode"] = self.mode
        self._pair(name, direction, header["request_id"], fields)
        return NAME, direction, name, code, fields

    def _service_fields(self, code: int, name: str, direction: str, rest: bytes) -> dict[str, Any]:
        """The request or response header, then the body's fields. Cached, because polling
        repeats itself: by every byte but the header's timestamp and handle (after a
        request's authentication token; first thing in a response)."""
        varying = ua.node_id_size(rest) if direction == "request" else 0
        key = (code, rest[:varying], rest[varying + 12:]) \
            if varying is not None and varying + 12 <= len(rest) <= MAX_CACHED_BODY else None
        fields = self.cache.get(key) if key else None
        if fields is None:
            fields = self._parse_service(code, name, direction, rest)
            if key:
                self.cache.put(key, fields)
        elif "request_handle" in fields:
            fields = {**fields, "request_handle": int.from_bytes(rest[varying + 8:varying + 12], "little")}
        return fields

    def _parse_service(self, code: int, name: str, direction: str, rest: bytes) -> dict[str, Any]:
        try:
            if direction == "request":
                header = ua.dissect(ua.UARequestHeader, rest)
                fields = {"request_handle": header["request_handle"]}
            else:
                header = ua.dissect(ua.UAResponseHeader, rest)
                result = header["service_result"]
                fields = {"request_handle": header["request_handle"], "status_code": result,
                          "status_name": status_name(result)}
        except Exception as exc:  # a service header that does not parse is the anomaly: the service is known
            return {"malformed": f"{name} header does not parse: {exc}"}
        body_class = ua.BODIES.get(code)
        if body_class is not None:
            try:
                fields.update(SERVICE_FIELDS.get(name, _nothing)(ua.dissect(body_class, header["body"])))
            except Exception as exc:  # so is a body that does not: its header is known
                fields["malformed"] = f"{name} body does not parse: {exc}"
        return fields

    def _pair(self, name: str, direction: str, request_id: int, fields: dict[str, Any]) -> None:
        """Requests leave what their responses should name; responses take it back."""
        if direction == "request":
            self.pending.ask(request_id, (name, fields))     # event fields never change later
            return
        asked, request = self.pending.answer(request_id) or (None, None)
        if request:
            inherit(fields, request, INHERITED)
        if name == "ServiceFault" and asked:
            fields["request_service"] = asked
        handles = fields.get("client_handles")
        if asked == "CreateMonitoredItemsRequest" and handles and fields.get("node_ids"):
            for handle, node_id in zip(handles, fields["node_ids"]):
                remember(self.handles, handle, node_id, MAX_HANDLES)
        elif handles and name in ("PublishResponse", "RepublishResponse"):
            fields["node_ids"] = [self.handles.get(h) for h in handles]


def _service(payload: bytes, clear: bool) -> tuple[int, str, bytes] | None:
    """The service type NodeId of a clear body. A signed-only body is clear too: it is
    recognised by starting with a known service's encoding id. (Service ids are numeric
    NodeIds of namespace 0, nearly always in the four-byte encoding: read without text.)"""
    encoding = payload[0] if payload else None
    if encoding == 1 and len(payload) >= 4 and payload[1] == 0:
        code, rest = payload[2] | payload[3] << 8, payload[4:]
    elif encoding == 0 and len(payload) >= 2:
        code, rest = payload[1], payload[2:]
    elif encoding == 2 and len(payload) >= 7 and payload[1:3] == b"\0\0":
        code, rest = int.from_bytes(payload[3:7], "little"), payload[7:]
    else:
        return None
    name = ua.SERVICES.get(code)
    if name is None:
        return None if not clear else (code, f"service_{code}", rest)
    return code, name, rest


@functools.lru_cache(maxsize=256)
def certificate_fields(der: bytes) -> dict[str, Any]:
    """Thumbprint, subject, issuer and validity of a certificate (the first, if a chain)."""
    leaf = der[:_der_length(der)]
    fields: dict[str, Any] = {"certificate_sha1": hashlib.sha1(leaf).hexdigest()}
    try:
        cert = x509.load_der_x509_certificate(leaf)
        fields.update(certificate_subject=cert.subject.rfc4514_string(),
                      certificate_issuer=cert.issuer.rfc4514_string(),
                      certificate_self_signed=cert.subject == cert.issuer,
                      certificate_not_before=cert.not_valid_before_utc.isoformat(),
                      certificate_not_after=cert.not_valid_after_utc.isoformat())
    except ValueError:
        fields["certificate_error"] = "not a DER X.509 certificate"
    return fields


def _der_length(der: bytes) -> int:
    """The length of the DER element at the start (a whole certificate), or all of it."""
    if len(der) < 2 or der[0] != 0x30:
        return len(der)
    if der[1] < 0x80:
        return 2 + der[1]
    count = der[1] & 0x7F
    if not 0 < count <= 4 or len(der) < 2 + count:
        return len(der)
    return 2 + count + int.from_bytes(der[2:2 + count], "big")


# --- from a decoded body to Event fields, per service ---

def _nothing(body) -> dict[str, Any]:
    return {}


def _results(statuses) -> dict[str, Any]:
    return {"results": [status_name(code) for code in statuses]} if statuses else {}


def _values(data_values) -> list:
    return [value.get("value") for value in data_values or ()]


def _endpoint(endpoint: dict) -> dict[str, Any]:
    return {"endpoint_url": endpoint["endpoint_url"], "security_policy": endpoint["security_policy_uri"],
            "security_mode": ua.SECURITY_MODES.get(endpoint["security_mode"], endpoint["security_mode"]),
            "token_types": [ua.TOKEN_TYPES.get(t["token_type"], t["token_type"])
                            for t in endpoint["user_identity_tokens"] or ()],
            "security_level": endpoint["security_level"]}


def _server(description: dict) -> dict[str, Any]:
    return {"application_uri": description["application_uri"],
            "application_name": description["application_name"],
            "discovery_urls": description["discovery_urls"] or []}


def _open_request(body) -> dict[str, Any]:
    return {"security_mode": ua.SECURITY_MODES.get(body["security_mode"], body["security_mode"]),
            "request_type": {0: "issue", 1: "renew"}.get(body["request_type"], body["request_type"]),
            "lifetime": body["requested_lifetime"]}


def _open_response(body) -> dict[str, Any]:
    token = body["security_token"]
    return {"token_id": token["token_id"], "lifetime": token["revised_lifetime"]}


def _create_session_request(body) -> dict[str, Any]:
    client = body["client_description"]
    fields = {"endpoint_url": body["endpoint_url"], "application_uri": client["application_uri"],
              "application_name": client["application_name"], "session_name": body["session_name"]}
    if body["client_certificate"]:
        fields.update(certificate_fields(body["client_certificate"]))
    return fields


def _create_session_response(body) -> dict[str, Any]:
    fields = {"session_node_id": body["session_id"],
              "endpoints": [_endpoint(e) for e in body["server_endpoints"] or ()]}
    if body["server_certificate"]:
        fields.update(certificate_fields(body["server_certificate"]))
    return fields


def _activate_session_request(body) -> dict[str, Any]:
    type_id, token = body["user_identity_token"]
    kind = ua.IDENTITY_TOKENS.get(int(type_id[2:])) if type_id.startswith("i=") else None
    if kind is None:
        return {"identity_token": f"unknown {type_id}"} if token else {"identity_token": "anonymous"}
    fields: dict[str, Any] = {"identity_token": kind}
    if kind == "username" and token:
        decoded = ua.dissect(ua.UserNameIdentityToken, token)
        fields["user_name"] = decoded["user_name"]
        fields["password_in_clear"] = not decoded["encryption_algorithm"]
    elif kind == "x509" and token:
        certificate = ua.dissect(ua.X509IdentityToken, token)["certificate_data"]
        if certificate:
            fields["user_certificate_sha1"] = certificate_fields(certificate)["certificate_sha1"]
    return fields


def _read_request(body) -> dict[str, Any]:
    nodes = body["nodes_to_read"] or ()
    return {"node_ids": [n["node_id"] for n in nodes], "attribute_ids": [n["attribute_id"] for n in nodes]}


def _read_response(body) -> dict[str, Any]:
    return {"values": _values(body["results"]),
            **_results([v.get("status_code", 0) for v in body["results"] or ()])}


def _write_request(body) -> dict[str, Any]:
    nodes = body["nodes_to_write"] or ()
    return {"node_ids": [n["node_id"] for n in nodes], "attribute_ids": [n["attribute_id"] for n in nodes],
            "values": _values(n["value"] for n in nodes)}


def _browse_response(body) -> dict[str, Any]:
    results = body["results"] or ()
    return {"targets": [r["node_id"] for result in results for r in result["references"] or ()],
            **_results([r["status_code"] for r in results])}


def _translate_request(body) -> dict[str, Any]:
    paths = body["browse_paths"] or ()
    return {"node_ids": [p["starting_node"] for p in paths],
            "browse_paths": ["/" + "/".join(e["target_name"] for e in p["elements"] or ()) for p in paths]}


def _translate_response(body) -> dict[str, Any]:
    results = body["results"] or ()
    return {"targets": [t["target_id"] for r in results for t in r["targets"] or ()],
            **_results([r["status_code"] for r in results])}


def _call_request(body) -> dict[str, Any]:
    calls = body["methods_to_call"] or ()
    return {"object_node_ids": [c["object_id"] for c in calls], "node_ids": [c["method_id"] for c in calls],
            "values": [c["input_arguments"] or [] for c in calls]}


def _call_response(body) -> dict[str, Any]:
    results = body["results"] or ()
    return {"values": [r["output_arguments"] or [] for r in results],
            **_results([r["status_code"] for r in results])}


def _monitored_items_request(body) -> dict[str, Any]:
    items = body["items_to_create"] or ()
    return {"subscription_id": body["subscription_id"],
            "node_ids": [i["item_to_monitor"]["node_id"] for i in items],
            "attribute_ids": [i["item_to_monitor"]["attribute_id"] for i in items],
            "client_handles": [i["requested_parameters"]["client_handle"] for i in items]}


def _notifications(message: dict) -> dict[str, Any]:
    """The values a notification message carries, by the client handle that names their node."""
    handles, values = [], []
    for type_id, data in message["notification_data"] or ():
        if not data:
            continue
        if type_id == f"i={ua.DATA_CHANGE_NOTIFICATION}":
            for item in ua.dissect(ua.DataChangeNotification, data)["monitored_items"] or ():
                handles.append(item["client_handle"])
                values.append(item["value"].get("value"))
        elif type_id == f"i={ua.EVENT_NOTIFICATION_LIST}":
            for event in ua.dissect(ua.EventNotificationList, data)["events"] or ():
                handles.append(event["client_handle"])
                values.append(event["event_fields"] or [])
    fields: dict[str, Any] = {"notification_sequence": message["sequence_number"]}
    if handles:
        fields.update(client_handles=handles, values=values)
    return fields


SERVICE_FIELDS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "OpenSecureChannelRequest": _open_request,
    "OpenSecureChannelResponse": _open_response,
    "GetEndpointsRequest": lambda body: {"endpoint_url": body["endpoint_url"]},
    "GetEndpointsResponse": lambda body: {"endpoints": [_endpoint(e) for e in body["endpoints"] or ()]},
    "FindServersRequest": lambda body: {"endpoint_url": body["endpoint_url"]},
    "FindServersResponse": lambda body: {"servers": [_server(s) for s in body["servers"] or ()]},
    "CreateSessionRequest": _create_session_request,
    "CreateSessionResponse": _create_session_response,
    "ActivateSessionRequest": _activate_session_request,
    "ActivateSessionResponse": lambda body: _results(body["results"]),
    "CloseSessionRequest": lambda body: {"delete_subscriptions": body["delete_subscriptions"]},
    "ReadRequest": _read_request,
    "ReadResponse": _read_response,
    "HistoryReadRequest": lambda body: {"node_ids": [n["node_id"] for n in body["nodes_to_read"] or ()]},
    "WriteRequest": _write_request,
    "WriteResponse": lambda body: _results(body["results"]),
    "BrowseRequest": lambda body: {"node_ids": [n["node_id"] for n in body["nodes_to_browse"] or ()]},
    "BrowseResponse": _browse_response,
    "BrowseNextResponse": _browse_response,
    "TranslateBrowsePathsToNodeIdsRequest": _translate_request,
    "TranslateBrowsePathsToNodeIdsResponse": _translate_response,
    "RegisterNodesRequest": lambda body: {"node_ids": list(body["nodes_to_register"] or ())},
    "AddNodesRequest": lambda body: {"node_ids": [n["requested_new_node_id"] for n in body["nodes_to_add"] or ()]},
    "DeleteNodesRequest": lambda body: {"node_ids": [n["node_id"] for n in body["nodes_to_delete"] or ()]},
    "DeleteNodesResponse": lambda body: _results(body["results"]),
    "CallRequest": _call_request,
    "CallResponse": _call_response,
    "CreateSubscriptionRequest": lambda body: {"publishing_interval": body["requested_publishing_interval"]},
    "CreateSubscriptionResponse": lambda body: {"subscription_id": body["subscription_id"],
                                                "publishing_interval": body["revised_publishing_interval"]},
    "CreateMonitoredItemsRequest": _monitored_items_request,
    "CreateMonitoredItemsResponse": lambda body: _results([r["status_code"] for r in body["results"] or ()]),
    "DeleteSubscriptionsRequest": lambda body: {"subscription_ids": list(body["subscription_ids"] or ())},
    "DeleteSubscriptionsResponse": lambda body: _results(body["results"]),
    "PublishResponse": lambda body: {"subscription_id": body["subscription_id"],
                                     **_notifications(body["notification_message"])},
    "RepublishRequest": lambda body: {"subscription_id": body["subscription_id"],
                                      "notification_sequence": body["retransmit_sequence_number"]},
    "RepublishResponse": lambda body: _notifications(body["notification_message"]),
}
# what a response takes over from its request
INHERITED = ("node_ids", "object_node_ids", "attribute_ids", "client_handles", "subscription_id",
             "identity_token", "user_name", "browse_paths")

Session = UASession
