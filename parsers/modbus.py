"""Modbus/TCP application layer for Scapy.

Builds on ``scapy.contrib.modbus`` for the public function codes and adds what
it lacks: MEI 13 (CANopen general reference), other MEI types, exception
responses for any function code, and raw data for reserved and user-defined
codes (contrib drops their bytes).
"""

from __future__ import annotations

from scapy.config import conf
from scapy.contrib import modbus as contrib
from scapy.fields import ByteEnumField, FieldLenField, StrField, StrLenField, XByteField
from scapy.packet import Packet

# Scapy refuses lists longer than this by default (100); a Modbus response may hold
# 125 registers or 2000 coil bytes' worth of bits.
conf.max_list_count = max(conf.max_list_count, 2048)

MAX_ADU_LENGTH = 260          # MBAP (7) + the largest PDU (253)

FUNCTION_NAMES = {
    1: "read_coils", 2: "read_discrete_inputs", 3: "read_holding_registers",
    4: "read_input_registers", 5: "write_single_coil", 6: "write_single_register",
    7: "read_exception_status", 8: "diagnostics", 11: "get_comm_event_counter",
    12: "get_comm_event_log", 15: "write_multiple_coils", 16: "write_multiple_registers",
    17: "report_server_id", 20: "read_file_record", 21: "write_file_record",
    22: "mask_write_register", 23: "read_write_multiple_registers", 24: "read_fifo_queue",
    43: "encapsulated_interface_transport",
}
MEI_NAMES = {13: "canopen_general_reference", 14: "read_device_identification"}
USER_DEFINED = set(range(65, 73)) | set(range(100, 111))
SCHNEIDER_UMAS = 90           # reserved by the standard; Schneider's engineering protocol rides on it
KNOWN_CODES = frozenset(FUNCTION_NAMES) | USER_DEFINED | {SCHNEIDER_UMAS}
# UMAS transfers (program and memory blocks) exceed the standard's 253-byte PDU; for
# every other code a longer MBAP length is a framing error, not a big PDU.
OVERSIZED_CODES = frozenset({SCHNEIDER_UMAS})

EXCEPTION_NAMES = {
    1: "illegal_function", 2: "illegal_data_address", 3: "illegal_data_value",
    4: "server_device_failure", 5: "acknowledge", 6: "server_device_busy",
    8: "memory_parity_error", 10: "gateway_path_unavailable",
    11: "gateway_target_failed_to_respond",
}


def function_name(code: int, mei_type: int | None = None) -> str:
    if code == 43 and mei_type in MEI_NAMES:
        return MEI_NAMES[mei_type]
    if code in FUNCTION_NAMES:
        return FUNCTION_NAMES[code]
    if code in USER_DEFINED:
        return f"user_defined_{code}"
    if code == SCHNEIDER_UMAS:
        return "schneider_umas"
    return f"reserved_{code}"


class ModbusException(Packet):
    """An exception response: the function code with its top bit set, and one code."""
    name = "Modbus Exception"
    fields_desc = [XByteField("funcCode", 0x81),
                   ByteEnumField("exceptCode", 1, EXCEPTION_NAMES)]

    def extract_padding(self, s):
        return b"", s


class ModbusRawPDU(Packet):
    """A function whose body the standard does not define: kept as bytes."""
    name = "Modbus PDU (undefined body)"
    fields_desc = [XByteField("funcCode", 0), StrField("data", b"")]


class ModbusReportServerIdResponse(Packet):
    """FC 17 response. Server id, run indicator and extra data are device specific, so
    they stay one opaque string (contrib's split fails on real devices)."""
    name = "Report Server ID Response"
    fields_desc = [XByteField("funcCode", 0x11),
                   FieldLenField("byteCount", None, fmt="B", length_of="data"),
                   StrLenField("data", b"", length_from=lambda pkt: pkt.byteCount)]


class ModbusMEI(Packet):
    """Encapsulated interface transport (FC 43) for MEI types other than 14."""
    name = "Modbus Encapsulated Interface Transport"
    fields_desc = [XByteField("funcCode", 0x2B), XByteField("MEIType", 0x0D),
                   StrField("data", b"")]


def _body_class(pdu: bytes, request: bool) -> type[Packet]:
    code = pdu[0]
    if code & 0x80 and not request:
        return ModbusException
    if code == 0x2B:
        if len(pdu) > 1 and pdu[1] == 0x0E:
            return (contrib.ModbusPDU2B0EReadDeviceIdentificationRequest if request
                    else contrib.ModbusPDU2B0EReadDeviceIdentificationResponse)
        return ModbusMEI
    if code == 0x11 and not request:
        return ModbusReportServerIdResponse
    table = contrib._modbus_request_classes if request else contrib._modbus_response_classes
    return table.get(code, ModbusRawPDU)


class ModbusRequest(contrib.ModbusADURequest):
    name = "Modbus/TCP request"

    def guess_payload_class(self, payload):
        return _body_class(payload, True) if payload else Packet.guess_payload_class(self, payload)


class ModbusResponse(contrib.ModbusADUResponse):
    name = "Modbus/TCP response"

    def guess_payload_class(self, payload):
        return _body_class(payload, False) if payload else Packet.guess_payload_class(self, payload)


def expected_pdu_length(pdu: bytes, request: bool) -> int | None:
    """The PDU length the function's own fields imply, or None when it has no fixed rule.

    Scapy dissects leniently; this is how a lying byte count is caught.
    """
    code = pdu[0]
    if code & 0x80:
        return None if request else 2
    if request:
        if code in (1, 2, 3, 4, 5, 6):
            return 5
        if code in (7, 11, 12, 17):
            return 1
        if code == 22:
            return 7
        if code == 24:
            return 3
        if code in (15, 16) and len(pdu) > 5:
            return 6 + pdu[5]
        if code == 23 and len(pdu) > 9:
            return 10 + pdu[9]
        return None
    if code in (1, 2, 3, 4, 23, 12, 17) and len(pdu) > 1:
        return 2 + pdu[1]
    if code in (5, 6, 15, 16):
        return 5
    if code == 22:
        return 7
    if code == 11:
        return 5
    if code == 7:
        return 2
    return None
