"""Siemens S7comm-plus (protocol id 0x72) headers for Scapy.

S7-1200/1500 CPUs speak it. Version 3 puts a 32-byte integrity digest before the
data; the data starts with an opcode, and requests and responses then name a
function and a sequence number. The object model behind them is only partly
documented, so only the header is decoded here.
"""

from __future__ import annotations

from scapy.fields import (
    ByteEnumField,
    ByteField,
    ConditionalField,
    Field,
    FieldLenField,
    FieldListField,
    IntField,
    PacketListField,
    ShortEnumField,
    ShortField,
    StrField,
    StrLenField,
    XByteField,
    XIntField,
    XShortField,
)
from scapy.packet import Packet

PROTOCOL_ID = 0x72
VERSIONS = {0x01: "V1", 0x02: "V2", 0x03: "V3", 0xFE: "keep_alive"}
OPCODES = {0x31: "request", 0x32: "response", 0x33: "notification", 0x02: "response2"}
# The function codes seen in public captures and named alike by the public dissectors;
# 0x0590 follows the same naming but has not been seen on the wire here.
FUNCTIONS = {0x04BB: "explore", 0x04CA: "create_object", 0x04D4: "delete_object",
             0x04F2: "set_variable", 0x0524: "get_link",
             0x0542: "set_multi_variables", 0x054C: "get_multi_variables",
             0x0556: "begin_sequence", 0x0560: "end_sequence", 0x056B: "invoke",
             0x0586: "get_var_sub_streamed", 0x0590: "set_var_sub_streamed"}


MULTI_VARIABLE_FUNCTIONS = frozenset({0x0542, 0x054C})
EXPLORE = 0x04BB
DB_ACCESS_AREA = 0x8A0E0000      # access areas of data blocks: this plus the DB number


class S7PlusHeader(Packet):
    name = "S7comm-plus"
    fields_desc = [XByteField("protocol_id", PROTOCOL_ID), ByteEnumField("version", 3, VERSIONS),
                   ShortField("length", 0),
                   ConditionalField(FieldLenField("digest_length", None, fmt="B", length_of="digest"),
                                    lambda pkt: pkt.version == 3),
                   ConditionalField(StrLenField("digest", b"", length_from=lambda pkt: pkt.digest_length),
                                    lambda pkt: pkt.version == 3),
                   StrField("body", b"")]


class S7PlusOperation(Packet):
    """What follows the header (and digest) in requests, responses and notifications."""
    name = "S7comm-plus operation"
    fields_desc = [ByteEnumField("opcode", 0x31, OPCODES),
                   ConditionalField(XShortField("reserved", 0), lambda pkt: pkt.opcode != 0x33),
                   ConditionalField(ShortEnumField("function", 0, FUNCTIONS), lambda pkt: pkt.opcode != 0x33),
                   ConditionalField(XShortField("reserved2", 0), lambda pkt: pkt.opcode != 0x33),
                   ConditionalField(ShortField("seq_num", 0), lambda pkt: pkt.opcode != 0x33),
                   ConditionalField(XIntField("session_id", 0), lambda pkt: pkt.opcode == 0x31),
                   ConditionalField(XIntField("subscription_id", 0), lambda pkt: pkt.opcode == 0x33),
                   StrField("rest", b"")]


class S7PlusObjectRequest(Packet):
    """The start of a request body: transport flags, then (for most functions) the id of the
    object the request acts on."""
    name = "S7comm-plus request body"
    fields_desc = [XByteField("transport_flags", 0), IntField("object_id", 0), StrField("rest", b"")]


class VLQField(Field):
    """S7comm-plus's variable-length unsigned integer: 7 bits a byte, high bit set while
    more follow; a fifth byte, if reached, gives all eight bits."""

    def __init__(self, name, default):
        Field.__init__(self, name, default, fmt="I")

    def getfield(self, pkt, s):
        value = 0
        for index, octet in enumerate(s[:5]):
            if index == 4:
                return s[5:], (value << 8) | octet
            value = (value << 7) | (octet & 0x7F)
            if not octet & 0x80:
                return s[index + 1:], value
        raise ValueError("truncated variable-length integer")

    def addfield(self, pkt, s, val):
        groups = [val & 0x7F]
        val >>= 7
        while val:
            groups.append(0x80 | (val & 0x7F))
            val >>= 7
        return s + bytes(reversed(groups))


class S7PlusItemAddress(Packet):
    """A variable's address: the symbol's CRC, an access area (0x8A0E0000 + n is DB n),
    and a path of LIDs into it, the first being the access sub-area."""
    name = "S7comm-plus item address"
    fields_desc = [VLQField("symbol_crc", 0), VLQField("access_area", 0),
                   VLQField("lid_count", 0),
                   FieldListField("lids", [], VLQField("", 0), count_from=lambda pkt: pkt.lid_count)]

    def extract_padding(self, s):
        return b"", s


class S7PlusMultiVariables(Packet):
    """Get/SetMultiVariables request body: link or object id, then the item addresses
    (the number of fields they hold lets the decoder check itself)."""
    name = "S7comm-plus multi-variable request"
    fields_desc = [XByteField("transport_flags", 0), IntField("object_id", 0),
                   VLQField("item_count", 0), VLQField("field_count", 0),
                   PacketListField("addresses", [], S7PlusItemAddress, count_from=lambda pkt: pkt.item_count),
                   StrField("values", b"")]


class S7PlusExploreRequest(Packet):
    """Explore request body: the object explored, whether its children are included, and
    (when no filter value precedes it) the list of attribute ids asked for. An empty list
    asks for every attribute of every object returned."""
    name = "S7comm-plus explore request"
    fields_desc = [XByteField("transport_flags", 0), IntField("explore_id", 0), VLQField("request_id", 0),
                   ByteField("children", 0), ByteField("unknown", 0), ByteField("parents", 0),
                   ByteField("filtered", 0),
                   ConditionalField(VLQField("attribute_count", 0), lambda pkt: pkt.filtered == 0),
                   ConditionalField(FieldListField("attribute_ids", [], VLQField("", 0),
                                                   count_from=lambda pkt: pkt.attribute_count),
                                    lambda pkt: pkt.filtered == 0),
                   StrField("rest", b"")]
