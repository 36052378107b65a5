"""OPC UA binary (OPC 10000-6) for Scapy: the transport messages, the secure channel
headers, the request and response headers, and the bodies of the services a monitor
needs to see into (sessions, discovery, read/write, browse, call, subscriptions).

A structure is a declarative list of fields, as in Scapy's contrib layers. Every
length on the wire is checked against the bytes that are there, so a string or array
claiming 2^31 elements fails at once instead of allocating, and nesting (variants in
variants, diagnostic infos in diagnostic infos) stops at MAX_DEPTH.
"""

from __future__ import annotations

import functools
import struct
from datetime import datetime, timedelta, timezone
from typing import Any

from scapy.fields import ByteField, Field, LEIntField, LELongField, LESignedIntField, StrField
from scapy.packet import Packet

MESSAGE_TYPES = ("HEL", "ACK", "ERR", "RHE", "OPN", "MSG", "CLO")
CHUNK_TYPES = (b"F", b"C", b"A")
HEADER_LENGTH = 8
MIN_MESSAGE = 8
MAX_MESSAGE = 16 * 1024 * 1024   # far above any negotiated chunk size; larger is not OPC UA
MAX_DEPTH = 8                    # variants / diagnostic infos nested deeper than this are malformed
MAX_KEPT = 256                   # elements kept of one array value; the rest are read, not kept

# Binary encoding ids of the standard services (OPC 10000-4 / the NodeSet), request and response.
SERVICES = {
    397: "ServiceFault", 410: "TestStackRequest", 413: "TestStackResponse",
    416: "TestStackExRequest", 419: "TestStackExResponse",
    422: "FindServersRequest", 425: "FindServersResponse",
    12208: "FindServersOnNetworkRequest", 12209: "FindServersOnNetworkResponse",
    428: "GetEndpointsRequest", 431: "GetEndpointsResponse",
    437: "RegisterServerRequest", 440: "RegisterServerResponse",
    12211: "RegisterServer2Request", 12212: "RegisterServer2Response",
    446: "OpenSecureChannelRequest", 449: "OpenSecureChannelResponse",
    452: "CloseSecureChannelRequest", 455: "CloseSecureChannelResponse",
    461: "CreateSessionRequest", 464: "CreateSessionResponse",
    467: "ActivateSessionRequest", 470: "ActivateSessionResponse",
    473: "CloseSessionRequest", 476: "CloseSessionResponse",
    479: "CancelRequest", 482: "CancelResponse",
    488: "AddNodesRequest", 491: "AddNodesResponse",
    494: "AddReferencesRequest", 497: "AddReferencesResponse",
    500: "DeleteNodesRequest", 503: "DeleteNodesResponse",
    506: "DeleteReferencesRequest", 509: "DeleteReferencesResponse",
    527: "BrowseRequest", 530: "BrowseResponse", 533: "BrowseNextRequest", 536: "BrowseNextResponse",
    554: "TranslateBrowsePathsToNodeIdsRequest", 557: "TranslateBrowsePathsToNodeIdsResponse",
    560: "RegisterNodesRequest", 563: "RegisterNodesResponse",
    566: "UnregisterNodesRequest", 569: "UnregisterNodesResponse",
    615: "QueryFirstRequest", 618: "QueryFirstResponse", 621: "QueryNextRequest", 624: "QueryNextResponse",
    631: "ReadRequest", 634: "ReadResponse", 664: "HistoryReadRequest", 667: "HistoryReadResponse",
    673: "WriteRequest", 676: "WriteResponse", 700: "HistoryUpdateRequest", 703: "HistoryUpdateResponse",
    712: "CallRequest", 715: "CallResponse",
    751: "CreateMonitoredItemsRequest", 754: "CreateMonitoredItemsResponse",
    763: "ModifyMonitoredItemsRequest", 766: "ModifyMonitoredItemsResponse",
    769: "SetMonitoringModeRequest", 772: "SetMonitoringModeResponse",
    775: "SetTriggeringRequest", 778: "SetTriggeringResponse",
    781: "DeleteMonitoredItemsRequest", 784: "DeleteMonitoredItemsResponse",
    787: "CreateSubscriptionRequest", 790: "CreateSubscriptionResponse",
    793: "ModifySubscriptionRequest", 796: "ModifySubscriptionResponse",
    799: "SetPublishingModeRequest", 802: "SetPublishingModeResponse",
    826: "PublishRequest", 829: "PublishResponse", 832: "RepublishRequest", 835: "RepublishResponse",
    841: "TransferSubscriptionsRequest", 844: "TransferSubscriptionsResponse",
    847: "DeleteSubscriptionsRequest", 850: "DeleteSubscriptionsResponse",
}


SECURITY_MODES = {1: "None", 2: "Sign", 3: "SignAndEncrypt"}
TOKEN_TYPES = {0: "anonymous", 1: "username", 2: "x509", 3: "issued"}
# ExtensionObject encoding ids of the user identity tokens
IDENTITY_TOKENS = {321: "anonymous", 324: "username", 327: "x509", 940: "issued"}
DATA_CHANGE_NOTIFICATION, EVENT_NOTIFICATION_LIST = 811, 916
_EPOCH = datetime(1601, 1, 1, tzinfo=timezone.utc)
_MAX_TICKS = 2650467743999999999   # 9999-12-31: beyond it a DateTime means "no time"


class DecodeError(ValueError):
    """Bytes that cannot be what the field says they are."""


def _need(s: bytes, n: int, what: str) -> None:
    if len(s) < n:
        raise DecodeError(f"truncated {what}")


def read_string(s: bytes) -> tuple[bytes, bytes | None]:
    """An OPC UA String or ByteString: int32 length (-1 = null), then that many bytes."""
    _need(s, 4, "length")
    length = struct.unpack_from("<i", s)[0]
    if length == -1:
        return s[4:], None
    if length < 0 or length > len(s) - 4:
        raise DecodeError(f"string of {length} bytes in {len(s) - 4}")
    return s[4 + length:], s[4:4 + length]


def read_text(s: bytes) -> tuple[bytes, str | None]:
    s, raw = read_string(s)
    return s, None if raw is None else raw.decode("utf-8", "replace")


def read_node_id(s: bytes) -> tuple[bytes, str]:
    """A NodeId (or ExpandedNodeId) in its text form: ``i=631``, ``ns=2;s=Pump1.Speed``..."""
    if not s:
        raise DecodeError("truncated NodeId")
    encoding = s[0]
    kind = encoding & 0x0F
    if kind == 0 and len(s) >= 2:
        rest, namespace, text = s[2:], 0, f"i={s[1]}"
    elif kind == 1 and len(s) >= 4:
        rest, namespace, text = s[4:], s[1], f"i={struct.unpack_from('<H', s, 2)[0]}"
    elif kind == 2 and len(s) >= 7:
        namespace, identifier = struct.unpack_from("<HI", s, 1)
        rest, text = s[7:], f"i={identifier}"
    elif kind in (3, 5) and len(s) >= 3:
        namespace = struct.unpack_from("<H", s, 1)[0]
        rest, raw = read_string(s[3:])
        value = raw or b""
        text = f"s={value.decode('utf-8', 'replace')}" if kind == 3 else f"b={value.hex()}"
    elif kind == 4 and len(s) >= 19:
        namespace = struct.unpack_from("<H", s, 1)[0]
        rest, text = s[19:], f"g={_guid(s[3:19])}"
    else:
        raise DecodeError(f"NodeId encoding {encoding:#04x}")
    if encoding & 0x80:
        rest, uri = read_string(rest)
        text = f"nsu={(uri or b'').decode('utf-8', 'replace')};{text}"
    elif namespace:
        text = f"ns={namespace};{text}"
    if encoding & 0x40:
        _need(rest, 4, "server index")
        rest = rest[4:]
    return rest, text


_NODE_ID_SIZES = {0: 2, 1: 4, 2: 7, 4: 19}


def node_id_size(s: bytes) -> int | None:
    """How many bytes the plain NodeId at the start of ``s`` takes, without reading it;
    None when it is not one (or is cut short)."""
    if not s:
        return None
    size = _NODE_ID_SIZES.get(s[0])
    if size is None and s[0] in (3, 5) and len(s) >= 7:
        size = 7 + max(struct.unpack_from("<i", s, 3)[0], 0)
    return size if size is not None and size <= len(s) else None


def _guid(data: bytes) -> str:
    a, b, c = struct.unpack_from("<IHH", data)
    return f"{a:08x}-{b:04x}-{c:04x}-{data[8:10].hex()}-{data[10:16].hex()}"


def to_datetime(ticks: int) -> str | None:
    """100 ns ticks since 1601 as ISO 8601; 0 and the maximum mean "no time"."""
    if ticks <= 0 or ticks >= _MAX_TICKS:
        return None
    return (_EPOCH + timedelta(microseconds=ticks // 10)).isoformat()


def read_qualified_name(s: bytes) -> tuple[bytes, str]:
    _need(s, 2, "QualifiedName")
    namespace = struct.unpack_from("<H", s)[0]
    s, name = read_text(s[2:])
    return s, f"{namespace}:{name or ''}" if namespace else (name or "")


def read_localized_text(s: bytes) -> tuple[bytes, str | None]:
    _need(s, 1, "LocalizedText")
    mask, s, text = s[0], s[1:], None
    if mask & 0x01:
        s, _locale = read_string(s)
    if mask & 0x02:
        s, text = read_text(s)
    return s, text


def read_extension_object(s: bytes) -> tuple[bytes, tuple[str, bytes | None]]:
    """(type NodeId, encoded body): bodies are decoded only where a service needs them."""
    if s[:3] == b"\0\0\0":             # none at all: every header's additional header
        return s[3:], ("i=0", None)
    s, type_id = read_node_id(s)
    _need(s, 1, "ExtensionObject encoding")
    encoding, s = s[0], s[1:]
    if encoding == 0:
        return s, (type_id, None)
    if encoding not in (1, 2):
        raise DecodeError(f"ExtensionObject encoding {encoding}")
    s, body = read_string(s)
    return s, (type_id, body)


def read_diagnostic_info(s: bytes, depth: int = 0) -> tuple[bytes, None]:
    """Skipped: it explains a status, and the status is what is kept."""
    if s[:1] == b"\0":                   # the usual: no diagnostics
        return s[1:], None
    if depth > MAX_DEPTH:
        raise DecodeError(f"DiagnosticInfo nested deeper than {MAX_DEPTH}")
    _need(s, 1, "DiagnosticInfo")
    mask, s = s[0], s[1:]
    skip = 4 * bin(mask & 0x0F).count("1")
    _need(s, skip, "DiagnosticInfo")
    s = s[skip:]
    if mask & 0x10:
        s, _ = read_string(s)
    if mask & 0x20:
        _need(s, 4, "inner StatusCode")
        s = s[4:]
    if mask & 0x40:
        s, _ = read_diagnostic_info(s, depth + 1)
    return s, None


def _scalar(fmt: str):
    size = struct.calcsize(fmt)

    def read(s: bytes, depth: int = 0):
        _need(s, size, "value")
        return s[size:], struct.unpack_from(fmt, s)[0]
    return read


def _read_bytestring(s: bytes, depth: int = 0):
    s, raw = read_string(s)
    return s, None if raw is None else raw.hex()


def _read_datetime(s: bytes, depth: int = 0):
    _need(s, 8, "DateTime")
    return s[8:], to_datetime(struct.unpack_from("<q", s)[0])


def _read_guid(s: bytes, depth: int = 0):
    _need(s, 16, "Guid")
    return s[16:], _guid(s)


def _read_extension_object(s: bytes, depth: int = 0):
    s, (type_id, _body) = read_extension_object(s)
    return s, {"type_id": type_id}


def _read_diagnostic_info(s: bytes, depth: int = 0):
    return read_diagnostic_info(s, depth + 1)


def _depth_free(reader):
    return lambda s, depth=0: reader(s)


def read_variant(s: bytes, depth: int = 0) -> tuple[bytes, Any]:
    """A Variant as a JSON-ready value: scalars as themselves, arrays as lists (the first
    MAX_KEPT elements kept), bytes as hex, NodeIds and times as text."""
    scalar = _FIXED_SCALARS.get(s[0]) if s else None
    if scalar is not None:                # the usual polling value: one unpack, no slicing twice
        layout, convert = scalar
        end = 1 + layout.size
        if len(s) < end:
            raise DecodeError("truncated value")
        value = layout.unpack_from(s, 1)[0]
        return s[end:], convert(value) if convert else value
    if depth > MAX_DEPTH:
        raise DecodeError(f"Variant nested deeper than {MAX_DEPTH}")
    _need(s, 1, "Variant")
    mask, s = s[0], s[1:]
    type_id = mask & 0x3F
    if type_id == 0:
        return s, None
    reader = VARIANT_TYPES.get(type_id)
    if reader is None:
        raise DecodeError(f"Variant type {type_id}")
    if not mask & 0x80:
        return reader(s, depth)
    s, values = read_array(s, lambda b: reader(b, depth))
    if mask & 0x40:
        s, _dimensions = read_array(s, _read_int32)
    return s, values


def read_data_value(s: bytes, depth: int = 0, times: bool = False) -> tuple[bytes, dict[str, Any]]:
    """Value and status; the timestamps only when asked (``times``). A service's own
    DataValues (read results, written values, notifications) step over them: the capture
    has the time, and reading them would cost more than the rest of a polling response.
    A DataValue that is itself a value (in a Variant) keeps them: they are its data."""
    if depth > MAX_DEPTH:
        raise DecodeError(f"DataValue nested deeper than {MAX_DEPTH}")
    _need(s, 1, "DataValue")
    mask, s = s[0], s[1:]
    out: dict[str, Any] = {}
    if mask & 0x01:
        s, out["value"] = read_variant(s, depth)
    if mask & 0x02:
        if len(s) < 4:
            raise DecodeError("truncated status code")
        out["status_code"] = int.from_bytes(s[:4], "little")
        s = s[4:]
    if not times:
        skip = 8 * bool(mask & 0x04) + 2 * bool(mask & 0x10) + 8 * bool(mask & 0x08) + 2 * bool(mask & 0x20)
        return _skip(s, skip, "DataValue timestamps"), out
    if mask & 0x04:
        s, out["source_timestamp"] = _read_datetime(s)
    if mask & 0x10:
        s = _skip(s, 2, "picoseconds")
    if mask & 0x08:
        s, out["server_timestamp"] = _read_datetime(s)
    if mask & 0x20:
        s = _skip(s, 2, "picoseconds")
    return s, out


def _skip(s: bytes, n: int, what: str) -> bytes:
    _need(s, n, what)
    return s[n:]


def read_array(s: bytes, element) -> tuple[bytes, list | None]:
    """An int32 count (-1 = null) then the elements. Every element takes at least one
    byte, so a count beyond the bytes left is a lie caught before any work is done."""
    _need(s, 4, "array length")
    count = struct.unpack_from("<i", s)[0]
    s = s[4:]
    if count in (0, -1):
        return s, None if count else []
    if count < 0 or count > len(s):
        raise DecodeError(f"array of {count} elements in {len(s)} bytes")
    values = []
    for n in range(count):
        s, value = element(s)
        if n < MAX_KEPT:
            values.append(value)
    return s, values


def _read_boolean(s: bytes, depth: int = 0):
    _need(s, 1, "Boolean")
    return s[1:], s[0] != 0


def _skip_string(s: bytes):
    """Steps over a String without keeping it: how secrets are passed by."""
    return read_string(s)[0], None


_read_int32, _read_uint32 = _scalar("<i"), _scalar("<I")
VARIANT_TYPES = {
    1: _read_boolean, 2: _scalar("<b"), 3: _scalar("<B"), 4: _scalar("<h"), 5: _scalar("<H"),
    6: _read_int32, 7: _read_uint32, 8: _scalar("<q"), 9: _scalar("<Q"), 10: _scalar("<f"), 11: _scalar("<d"),
    12: _depth_free(read_text), 13: _read_datetime, 14: _read_guid, 15: _read_bytestring,
    16: _depth_free(read_text), 17: _depth_free(read_node_id), 18: _depth_free(read_node_id),
    19: _read_uint32, 20: _depth_free(read_qualified_name), 21: _depth_free(read_localized_text),
    22: _read_extension_object, 23: lambda s, depth=0: read_data_value(s, depth + 1, times=True),
    24: lambda s, depth=0: read_variant(s, depth + 1), 25: _read_diagnostic_info,
}


# Variant encoding bytes of fixed-size scalars (no array bit): their layout, and a conversion
_FIXED_SCALARS = {type_id: (struct.Struct(fmt), convert) for type_id, fmt, convert in (
    (1, "<B", bool), (2, "<b", None), (3, "<B", None), (4, "<h", None), (5, "<H", None), (6, "<i", None),
    (7, "<I", None), (8, "<q", None), (9, "<Q", None), (10, "<f", None), (11, "<d", None), (19, "<I", None))}


class UAField(Field):
    """A field read by one of the readers above (decode only: icsguard never writes OPC UA)."""
    __slots__ = ("reader",)

    def __init__(self, name, reader):
        Field.__init__(self, name, None)
        self.reader = reader

    def getfield(self, pkt, s):
        return self.reader(s)

    def addfield(self, pkt, s, val):
        raise NotImplementedError("OPC UA fields are decoded, never built")


def _fields_reader(fields):
    """One function reading a list of fields into a dict. Runs of fixed-size integer fields
    are read with a single struct unpack: headers are mostly such runs, and this is the
    per-message cost of every OPC UA message."""
    steps = []
    for field in fields:
        fixed = type(field).getfield is Field.getfield and type(field).m2i is Field.m2i
        if fixed and steps and isinstance(steps[-1], tuple):
            names, fmt = steps[-1]
            steps[-1] = (names + (field.name,), fmt + field.fmt[1:])
        elif fixed:
            steps.append(((field.name,), "<" + field.fmt[1:]))
        else:
            steps.append(field)
    steps = [_fixed_step(*step) if isinstance(step, tuple) else
             _rest_step(step.name) if type(step) is StrField else _field_step(step) for step in steps]

    def read(s: bytes):
        out: dict[str, Any] = {}
        for step in steps:
            s = step(s, out)
        return s, out
    return read


def _fixed_step(names: tuple[str, ...], fmt: str):
    layout = struct.Struct(fmt)
    size = layout.size

    if len(names) == 1:
        name = names[0]

        def step(s: bytes, out: dict) -> bytes:
            if len(s) < size:
                raise DecodeError(f"truncated {name}")
            out[name] = layout.unpack_from(s)[0]
            return s[size:]
        return step

    def step(s: bytes, out: dict) -> bytes:
        if len(s) < size:
            raise DecodeError(f"truncated {names[0]}")
        out.update(zip(names, layout.unpack_from(s)))
        return s[size:]
    return step


def _rest_step(name: str):
    """A trailing StrField: whatever follows (a message's body after its headers)."""
    def step(s: bytes, out: dict) -> bytes:
        out[name] = s
        return b""
    return step


def _field_step(field):
    name = field.name
    read = field.reader if isinstance(field, UAField) else lambda s: field.getfield(None, s)

    def step(s: bytes, out: dict) -> bytes:
        s, out[name] = read(s)
        return s
    return step


class Struct(UAField):
    """A nested structure: its fields decoded into a dict."""
    __slots__ = ()

    def __init__(self, name, fields):
        UAField.__init__(self, name, _fields_reader(fields))


class Array(UAField):
    """An array of an element field (a Struct, or a single-value field)."""
    __slots__ = ()

    def __init__(self, name, element):
        read = element.reader if isinstance(element, UAField) else lambda s: element.getfield(None, s)
        UAField.__init__(self, name, lambda s: read_array(s, read))


def _reader_field(reader, doc):
    """A field class for one reader: ``String("endpoint_url")`` reads like Scapy's own fields."""
    return type(doc, (UAField,), {"__slots__": (), "__init__": lambda self, name: UAField.__init__(self, name, reader)})


String = _reader_field(read_text, "String")
ByteString = _reader_field(read_string, "ByteString")
NodeId = _reader_field(read_node_id, "NodeId")
Boolean = _reader_field(_read_boolean, "Boolean")
Double = _reader_field(_scalar("<d"), "Double")
DateTime = _reader_field(_read_datetime, "DateTime")
QualifiedName = _reader_field(read_qualified_name, "QualifiedName")
LocalizedText = _reader_field(read_localized_text, "LocalizedText")
Variant = _reader_field(read_variant, "Variant")
DataValue = _reader_field(read_data_value, "DataValue")
ExtensionObject = _reader_field(read_extension_object, "ExtensionObject")
DiagnosticInfos = _reader_field(lambda s: read_array(s, read_diagnostic_info), "DiagnosticInfos")


class UInt32(LEIntField):
    def __init__(self, name):
        LEIntField.__init__(self, name, 0)


class Int32(LESignedIntField):
    def __init__(self, name):
        LESignedIntField.__init__(self, name, 0)


StatusCode = UInt32


class UAHello(Packet):
    name = "OPC UA Hello"
    fields_desc = [LEIntField("version", 0), LEIntField("receive_buffer", 65536),
                   LEIntField("send_buffer", 65536), LEIntField("max_message", 0),
                   LEIntField("max_chunks", 0), ByteString("endpoint_url")]


class UAError(Packet):
    name = "OPC UA Error"
    fields_desc = [LEIntField("error", 0), ByteString("reason")]


class UAAsymmetricHeader(Packet):
    """OPN: the channel, its security policy, the sender's certificate, the receiver's thumbprint."""
    name = "OPC UA asymmetric security header"
    fields_desc = [LEIntField("secure_channel_id", 0), ByteString("policy_uri"),
                   ByteString("sender_certificate"), ByteString("receiver_thumbprint"),
                   LEIntField("sequence_number", 0), LEIntField("request_id", 0), StrField("body", b"")]


class UASymmetricHeader(Packet):
    """MSG and CLO: the channel and token, then the sequence header."""
    name = "OPC UA symmetric security header"
    fields_desc = [LEIntField("secure_channel_id", 0), LEIntField("token_id", 0),
                   LEIntField("sequence_number", 0), LEIntField("request_id", 0), StrField("body", b"")]


class UARequestHeader(Packet):
    name = "OPC UA request header"
    fields_desc = [NodeId("authentication_token"), LELongField("timestamp", 0),
                   LEIntField("request_handle", 0), LEIntField("return_diagnostics", 0),
                   String("audit_entry_id"), LEIntField("timeout_hint", 0),
                   ExtensionObject("additional_header"), StrField("body", b"")]


class UAResponseHeader(Packet):
    name = "OPC UA response header"
    fields_desc = [LELongField("timestamp", 0), LEIntField("request_handle", 0),
                   LEIntField("service_result", 0), UAField("service_diagnostics", read_diagnostic_info),
                   Array("string_table", String("")), ExtensionObject("additional_header"),
                   StrField("body", b"")]


# --- the structures service bodies are made of (OPC 10000-4, clause 7) ---

APPLICATION_DESCRIPTION = [
    String("application_uri"), String("product_uri"), LocalizedText("application_name"),
    Int32("application_type"), String("gateway_server_uri"), String("discovery_profile_uri"),
    Array("discovery_urls", String(""))]
USER_TOKEN_POLICY = [String("policy_id"), Int32("token_type"), String("issued_token_type"),
                     String("issuer_endpoint_url"), String("security_policy_uri")]
ENDPOINT_DESCRIPTION = [
    String("endpoint_url"), Struct("server", APPLICATION_DESCRIPTION), ByteString("server_certificate"),
    Int32("security_mode"), String("security_policy_uri"),
    Array("user_identity_tokens", Struct("", USER_TOKEN_POLICY)), String("transport_profile_uri"),
    ByteField("security_level", 0)]
SIGNATURE_DATA = [String("algorithm"), ByteString("signature")]
SIGNED_SOFTWARE_CERTIFICATE = [ByteString("certificate_data"), ByteString("signature")]
READ_VALUE_ID = [NodeId("node_id"), UInt32("attribute_id"), String("index_range"),
                 QualifiedName("data_encoding")]
NOTIFICATION_MESSAGE = [UInt32("sequence_number"), DateTime("publish_time"),
                        Array("notification_data", ExtensionObject(""))]
RELATIVE_PATH_ELEMENT = [NodeId("reference_type_id"), Boolean("is_inverse"), Boolean("include_subtypes"),
                         QualifiedName("target_name")]
REFERENCE_DESCRIPTION = [NodeId("reference_type_id"), Boolean("is_forward"), NodeId("node_id"),
                         QualifiedName("browse_name"), LocalizedText("display_name"), Int32("node_class"),
                         NodeId("type_definition")]
BROWSE_RESULT = [StatusCode("status_code"), ByteString("continuation_point"),
                 Array("references", Struct("", REFERENCE_DESCRIPTION))]

@functools.cache
def _packet_reader(cls: type[Packet]):
    return _fields_reader(cls.fields_desc)


def dissect(cls: type[Packet], data: bytes) -> dict[str, Any]:
    """The fields of one of the layers here, read straight into a dict: the same declarative
    field list as the Scapy packet, without building one — a sensor's hot path, where an OPC UA
    message costs two packets' construction otherwise."""
    return _packet_reader(cls)(data)[1]


class UABody(Packet):
    """A service body after its request or response header. Bodies may be followed by
    a signature and padding, so bytes left over are not an error."""

    def default_payload_class(self, payload):
        return Packet


# the bodies of the identity tokens and notifications carried in ExtensionObjects

class UserNameIdentityToken(UABody):
    """The password after the user name is stepped over, never read into a value."""
    fields_desc = [String("policy_id"), String("user_name"), UAField("password", _skip_string),
                   String("encryption_algorithm")]


class X509IdentityToken(UABody):
    fields_desc = [String("policy_id"), ByteString("certificate_data")]


class DataChangeNotification(UABody):
    fields_desc = [Array("monitored_items", Struct("", [UInt32("client_handle"), DataValue("value")]))]


class EventNotificationList(UABody):
    fields_desc = [Array("events", Struct("", [UInt32("client_handle"), Array("event_fields", Variant(""))]))]


class OpenSecureChannelRequest(UABody):
    fields_desc = [UInt32("client_protocol_version"), Int32("request_type"), Int32("security_mode"),
                   ByteString("client_nonce"), UInt32("requested_lifetime")]


class OpenSecureChannelResponse(UABody):
    fields_desc = [UInt32("server_protocol_version"),
                   Struct("security_token", [UInt32("channel_id"), UInt32("token_id"), DateTime("created_at"),
                                             UInt32("revised_lifetime")]),
                   ByteString("server_nonce")]


class GetEndpointsRequest(UABody):
    fields_desc = [String("endpoint_url"), Array("locale_ids", String("")), Array("profile_uris", String(""))]


class GetEndpointsResponse(UABody):
    fields_desc = [Array("endpoints", Struct("", ENDPOINT_DESCRIPTION))]


class FindServersRequest(UABody):
    fields_desc = [String("endpoint_url"), Array("locale_ids", String("")), Array("server_uris", String(""))]


class FindServersResponse(UABody):
    fields_desc = [Array("servers", Struct("", APPLICATION_DESCRIPTION))]


class CreateSessionRequest(UABody):
    fields_desc = [Struct("client_description", APPLICATION_DESCRIPTION), String("server_uri"),
                   String("endpoint_url"), String("session_name"), ByteString("client_nonce"),
                   ByteString("client_certificate"), Double("requested_session_timeout"),
                   UInt32("max_response_message_size")]


class CreateSessionResponse(UABody):
    fields_desc = [NodeId("session_id"), NodeId("authentication_token"), Double("revised_session_timeout"),
                   ByteString("server_nonce"), ByteString("server_certificate"),
                   Array("server_endpoints", Struct("", ENDPOINT_DESCRIPTION)),
                   Array("server_software_certificates", Struct("", SIGNED_SOFTWARE_CERTIFICATE)),
                   Struct("server_signature", SIGNATURE_DATA), UInt32("max_request_message_size")]


class ActivateSessionRequest(UABody):
    fields_desc = [Struct("client_signature", SIGNATURE_DATA),
                   Array("client_software_certificates", Struct("", SIGNED_SOFTWARE_CERTIFICATE)),
                   Array("locale_ids", String("")), ExtensionObject("user_identity_token")]


class ActivateSessionResponse(UABody):
    fields_desc = [ByteString("server_nonce"), Array("results", StatusCode("")), DiagnosticInfos("diagnostic_infos")]


class CloseSessionRequest(UABody):
    fields_desc = [Boolean("delete_subscriptions")]


class ReadRequest(UABody):
    fields_desc = [Double("max_age"), Int32("timestamps_to_return"),
                   Array("nodes_to_read", Struct("", READ_VALUE_ID))]


class ReadResponse(UABody):
    fields_desc = [Array("results", DataValue("")), DiagnosticInfos("diagnostic_infos")]


class HistoryReadRequest(UABody):
    fields_desc = [ExtensionObject("history_read_details"), Int32("timestamps_to_return"),
                   Boolean("release_continuation_points"),
                   Array("nodes_to_read", Struct("", [NodeId("node_id"), String("index_range"),
                                                      QualifiedName("data_encoding"),
                                                      ByteString("continuation_point")]))]


class WriteRequest(UABody):
    fields_desc = [Array("nodes_to_write", Struct("", [NodeId("node_id"), UInt32("attribute_id"),
                                                       String("index_range"), DataValue("value")]))]


class StatusResults(UABody):
    """The response of every service that answers with one status per operation."""
    fields_desc = [Array("results", StatusCode("")), DiagnosticInfos("diagnostic_infos")]


class BrowseRequest(UABody):
    fields_desc = [Struct("view", [NodeId("view_id"), DateTime("timestamp"), UInt32("view_version")]),
                   UInt32("requested_max_references_per_node"),
                   Array("nodes_to_browse", Struct("", [NodeId("node_id"), Int32("browse_direction"),
                                                        NodeId("reference_type_id"), Boolean("include_subtypes"),
                                                        UInt32("node_class_mask"), UInt32("result_mask")]))]


class BrowseNextRequest(UABody):
    fields_desc = [Boolean("release_continuation_points"), Array("continuation_points", ByteString(""))]


class BrowseResponse(UABody):
    """BrowseResponse and BrowseNextResponse alike."""
    fields_desc = [Array("results", Struct("", BROWSE_RESULT)), DiagnosticInfos("diagnostic_infos")]


class TranslateBrowsePathsToNodeIdsRequest(UABody):
    fields_desc = [Array("browse_paths", Struct("", [
        NodeId("starting_node"), Array("elements", Struct("", RELATIVE_PATH_ELEMENT))]))]


class TranslateBrowsePathsToNodeIdsResponse(UABody):
    fields_desc = [Array("results", Struct("", [
        StatusCode("status_code"),
        Array("targets", Struct("", [NodeId("target_id"), UInt32("remaining_path_index")]))])),
        DiagnosticInfos("diagnostic_infos")]


class RegisterNodesRequest(UABody):
    fields_desc = [Array("nodes_to_register", NodeId(""))]


class AddNodesRequest(UABody):
    fields_desc = [Array("nodes_to_add", Struct("", [
        NodeId("parent_node_id"), NodeId("reference_type_id"), NodeId("requested_new_node_id"),
        QualifiedName("browse_name"), Int32("node_class"), ExtensionObject("node_attributes"),
        NodeId("type_definition")]))]


class DeleteNodesRequest(UABody):
    fields_desc = [Array("nodes_to_delete", Struct("", [NodeId("node_id"), Boolean("delete_target_references")]))]


class CallRequest(UABody):
    fields_desc = [Array("methods_to_call", Struct("", [NodeId("object_id"), NodeId("method_id"),
                                                        Array("input_arguments", Variant(""))]))]


class CallResponse(UABody):
    fields_desc = [Array("results", Struct("", [
        StatusCode("status_code"), Array("input_argument_results", StatusCode("")),
        DiagnosticInfos("input_argument_diagnostic_infos"), Array("output_arguments", Variant(""))])),
        DiagnosticInfos("diagnostic_infos")]


class CreateSubscriptionRequest(UABody):
    fields_desc = [Double("requested_publishing_interval"), UInt32("requested_lifetime_count"),
                   UInt32("requested_max_keep_alive_count"), UInt32("max_notifications_per_publish"),
                   Boolean("publishing_enabled"), ByteField("priority", 0)]


class CreateSubscriptionResponse(UABody):
    fields_desc = [UInt32("subscription_id"), Double("revised_publishing_interval"),
                   UInt32("revised_lifetime_count"), UInt32("revised_max_keep_alive_count")]


class CreateMonitoredItemsRequest(UABody):
    fields_desc = [UInt32("subscription_id"), Int32("timestamps_to_return"),
                   Array("items_to_create", Struct("", [
                       Struct("item_to_monitor", READ_VALUE_ID), Int32("monitoring_mode"),
                       Struct("requested_parameters", [UInt32("client_handle"), Double("sampling_interval"),
                                                       ExtensionObject("filter"), UInt32("queue_size"),
                                                       Boolean("discard_oldest")])]))]


class CreateMonitoredItemsResponse(UABody):
    fields_desc = [Array("results", Struct("", [
        StatusCode("status_code"), UInt32("monitored_item_id"), Double("revised_sampling_interval"),
        UInt32("revised_queue_size"), ExtensionObject("filter_result")])), DiagnosticInfos("diagnostic_infos")]


class DeleteSubscriptionsRequest(UABody):
    fields_desc = [Array("subscription_ids", UInt32(""))]


class PublishRequest(UABody):
    fields_desc = [Array("subscription_acknowledgements",
                         Struct("", [UInt32("subscription_id"), UInt32("sequence_number")]))]


class PublishResponse(UABody):
    fields_desc = [UInt32("subscription_id"), Array("available_sequence_numbers", UInt32("")),
                   Boolean("more_notifications"), Struct("notification_message", NOTIFICATION_MESSAGE),
                   Array("results", StatusCode("")), DiagnosticInfos("diagnostic_infos")]


class RepublishRequest(UABody):
    fields_desc = [UInt32("subscription_id"), UInt32("retransmit_sequence_number")]


class RepublishResponse(UABody):
    fields_desc = [Struct("notification_message", NOTIFICATION_MESSAGE)]


# service encoding id -> its body; services not listed are identified but not opened
BODIES: dict[int, type[UABody]] = {
    446: OpenSecureChannelRequest, 449: OpenSecureChannelResponse,
    428: GetEndpointsRequest, 431: GetEndpointsResponse, 422: FindServersRequest, 425: FindServersResponse,
    461: CreateSessionRequest, 464: CreateSessionResponse,
    467: ActivateSessionRequest, 470: ActivateSessionResponse, 473: CloseSessionRequest,
    631: ReadRequest, 634: ReadResponse, 664: HistoryReadRequest,
    673: WriteRequest, 676: StatusResults,
    527: BrowseRequest, 530: BrowseResponse, 533: BrowseNextRequest, 536: BrowseResponse,
    554: TranslateBrowsePathsToNodeIdsRequest, 557: TranslateBrowsePathsToNodeIdsResponse,
    560: RegisterNodesRequest, 488: AddNodesRequest, 500: DeleteNodesRequest, 503: StatusResults,
    712: CallRequest, 715: CallResponse,
    787: CreateSubscriptionRequest, 790: CreateSubscriptionResponse,
    751: CreateMonitoredItemsRequest, 754: CreateMonitoredItemsResponse,
    847: DeleteSubscriptionsRequest, 850: StatusResults,
    826: PublishRequest, 829: PublishResponse, 832: RepublishRequest, 835: RepublishResponse,
}
