"""OPC UA binary (OPC 10000-6) for Scapy: the transport messages, the secure channel
headers, and the service identity (type NodeId) with the common request and response headers.

Every length on the wire is checked against the bytes that are there, so a string or
array that claims 2^31 elements fails at once instead of allocating.
"""

from __future__ import annotations

import struct

from scapy.fields import Field, LEIntField, LELongField, StrField
from scapy.packet import Packet

MESSAGE_TYPES = ("HEL", "ACK", "ERR", "RHE", "OPN", "MSG", "CLO")
CHUNK_TYPES = (b"F", b"C", b"A")
HEADER_LENGTH = 8
MIN_MESSAGE = 8
MAX_MESSAGE = 16 * 1024 * 1024   # far above any negotiated chunk size; larger is not OPC UA

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


class DecodeError(ValueError):
    """Bytes that cannot be what the field says they are."""


def read_string(s: bytes) -> tuple[bytes, bytes | None]:
    """An OPC UA String or ByteString: int32 length (-1 = null), then that many bytes."""
    if len(s) < 4:
        raise DecodeError("truncated length")
    length = struct.unpack_from("<i", s)[0]
    if length == -1:
        return s[4:], None
    if length < 0 or length > len(s) - 4:
        raise DecodeError(f"string of {length} bytes in {len(s) - 4}")
    return s[4 + length:], s[4:4 + length]


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
        data = s[3:19]
        a, b, c = struct.unpack_from("<IHH", data)
        rest, text = s[19:], f"g={a:08x}-{b:04x}-{c:04x}-{data[8:10].hex()}-{data[10:].hex()}"
    else:
        raise DecodeError(f"NodeId encoding {encoding:#04x}")
    if encoding & 0x80:
        rest, uri = read_string(rest)
        text = f"nsu={(uri or b'').decode('utf-8', 'replace')};{text}"
    elif namespace:
        text = f"ns={namespace};{text}"
    if encoding & 0x40:
        if len(rest) < 4:
            raise DecodeError("truncated server index")
        rest = rest[4:]
    return rest, text


class UAStringField(Field):
    """String and ByteString: kept as bytes (None for null)."""

    def __init__(self, name):
        Field.__init__(self, name, None)

    def getfield(self, pkt, s):
        return read_string(s)

    def addfield(self, pkt, s, val):
        return s + (struct.pack("<i", -1) if val is None else struct.pack("<i", len(val)) + val)


class NodeIdField(Field):
    def __init__(self, name):
        Field.__init__(self, name, "i=0")

    def getfield(self, pkt, s):
        return read_node_id(s)


class UAHello(Packet):
    name = "OPC UA Hello"
    fields_desc = [LEIntField("version", 0), LEIntField("receive_buffer", 65536),
                   LEIntField("send_buffer", 65536), LEIntField("max_message", 0),
                   LEIntField("max_chunks", 0), UAStringField("endpoint_url")]


class UAError(Packet):
    name = "OPC UA Error"
    fields_desc = [LEIntField("error", 0), UAStringField("reason")]


class UAAsymmetricHeader(Packet):
    """OPN: the channel, its security policy, the sender's certificate, the receiver's thumbprint."""
    name = "OPC UA asymmetric security header"
    fields_desc = [LEIntField("secure_channel_id", 0), UAStringField("policy_uri"),
                   UAStringField("sender_certificate"), UAStringField("receiver_thumbprint"),
                   LEIntField("sequence_number", 0), LEIntField("request_id", 0), StrField("body", b"")]


class UASymmetricHeader(Packet):
    """MSG and CLO: the channel and token, then the sequence header."""
    name = "OPC UA symmetric security header"
    fields_desc = [LEIntField("secure_channel_id", 0), LEIntField("token_id", 0),
                   LEIntField("sequence_number", 0), LEIntField("request_id", 0), StrField("body", b"")]


class UARequestHeader(Packet):
    name = "OPC UA request header"
    fields_desc = [NodeIdField("authentication_token"), LELongField("timestamp", 0),
                   LEIntField("request_handle", 0), LEIntField("return_diagnostics", 0),
                   UAStringField("audit_entry_id"), LEIntField("timeout_hint", 0), StrField("rest", b"")]


class UAResponseHeader(Packet):
    name = "OPC UA response header"
    fields_desc = [LELongField("timestamp", 0), LEIntField("request_handle", 0),
                   LEIntField("service_result", 0), StrField("rest", b"")]
