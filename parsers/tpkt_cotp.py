"""ISO transport over TCP for Scapy: COTP (ISO 8073 class 0), as carried by TPKT (RFC 1006).

TPKT is only a version byte and a length, which the framer reads directly. S7comm
and S7comm-plus ride in COTP DT TPDUs; the connection TPDUs carry the TSAPs that
name the PLC's rack and slot.
"""

from __future__ import annotations

from scapy.fields import (
    BitEnumField,
    BitField,
    ByteEnumField,
    ByteField,
    ConditionalField,
    FieldLenField,
    PacketListField,
    StrLenField,
    XShortField,
)
from scapy.packet import Packet

PDU_TYPES = {0x1: "ED", 0x2: "EA", 0x5: "RJ", 0x6: "AK", 0x7: "ER",
             0x8: "DR", 0xC: "DC", 0xD: "CC", 0xE: "CR", 0xF: "DT"}
PDU_NAMES = {"CR": "connection_request", "CC": "connection_confirm", "DR": "disconnect_request",
             "DC": "disconnect_confirm", "DT": "data", "ED": "expedited_data",
             "AK": "data_ack", "EA": "expedited_data_ack", "RJ": "reject", "ER": "tpdu_error"}
TPDU_SIZE_CODES = range(0x07, 0x0E)     # ISO 8073: 2**7 to 2**13 bytes
PARAMETERS = {0xC0: "tpdu_size", 0xC1: "src_tsap", 0xC2: "dst_tsap", 0xC4: "checksum",
              0xC6: "additional_options", 0xC7: "alternative_classes", 0x85: "ack_time",
              0xC3: "version", 0xC5: "protection", 0x88: "reassignment_time"}


class COTPParameter(Packet):
    name = "COTP parameter"
    fields_desc = [ByteEnumField("code", 0xC1, PARAMETERS),
                   FieldLenField("length", None, fmt="B", length_of="value"),
                   StrLenField("value", b"", length_from=lambda pkt: pkt.length)]

    def extract_padding(self, s):
        return b"", s


def _parameters_length(pkt) -> int:
    return max(0, pkt.length - 6)


class COTPConnection(Packet):
    """CR, CC, DR and DC: references, class or reason, then parameters (TSAPs, TPDU size)."""
    name = "COTP connection"
    fields_desc = [ByteField("length", None),
                   BitEnumField("pdu_type", 0xE, 4, PDU_TYPES), BitField("credit", 0, 4),
                   XShortField("dst_ref", 0), XShortField("src_ref", 0),
                   ConditionalField(ByteField("class_or_reason", 0), lambda pkt: pkt.length >= 6),
                   PacketListField("parameters", [], COTPParameter, length_from=_parameters_length)]


class COTPData(Packet):
    """DT (and ED): the EOT bit says whether this TPDU ends the user's PDU."""
    name = "COTP data"
    fields_desc = [ByteField("length", 2),
                   BitEnumField("pdu_type", 0xF, 4, PDU_TYPES), BitField("credit", 0, 4),
                   BitField("eot", 1, 1), BitField("tpdu_number", 0, 7)]


class COTPOther(Packet):
    """AK, EA, RJ, ER: header fields kept as bytes; they carry no user data."""
    name = "COTP control"
    fields_desc = [ByteField("length", None),
                   BitEnumField("pdu_type", 0x6, 4, PDU_TYPES), BitField("credit", 0, 4),
                   StrLenField("header", b"", length_from=lambda pkt: max(0, pkt.length - 1))]


def cotp_class(pdu_type: int) -> type[Packet]:
    if pdu_type in (0xE, 0xD, 0x8, 0xC):
        return COTPConnection
    if pdu_type in (0xF, 0x1):
        return COTPData
    return COTPOther


def tsap_rack_slot(tsap: bytes) -> tuple[int, int] | None:
    """S7 destination TSAPs are (connection type, rack << 5 | slot)."""
    if len(tsap) != 2:
        return None
    return tsap[1] >> 5, tsap[1] & 0x1F
