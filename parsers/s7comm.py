"""Siemens S7comm (protocol id 0x32) for Scapy.

The header says what kind of PDU follows (ROSCTR); the parameter block's first
byte names the function (or, in UserData, the function group and subfunction);
the data block carries the values, one item per variable.
"""

from __future__ import annotations

from scapy.fields import (
    BitEnumField,
    ByteEnumField,
    ByteField,
    ConditionalField,
    FieldLenField,
    IntField,
    PacketListField,
    ShortField,
    StrField,
    StrFixedLenField,
    StrLenField,
    ThreeBytesField,
    XByteField,
    XShortField,
)
from scapy.packet import Packet

PROTOCOL_ID = 0x32
HEADER_LENGTH = 10
ACK_HEADER_LENGTH = 12

ROSCTR = {1: "job", 2: "ack", 3: "ack_data", 7: "userdata"}

FUNCTIONS = {0x00: "cpu_services", 0x04: "read_var", 0x05: "write_var", 0x1A: "request_download",
             0x1B: "download_block", 0x1C: "download_ended", 0x1D: "start_upload", 0x1E: "upload",
             0x1F: "end_upload", 0x28: "plc_control", 0x29: "plc_stop", 0xF0: "setup_communication"}

AREAS = {0x03: "SYSINFO", 0x05: "SYSFLAGS", 0x06: "AI", 0x07: "AO", 0x1C: "C", 0x1D: "T",
         0x1E: "IEC_C", 0x1F: "IEC_T", 0x80: "P", 0x81: "I", 0x82: "Q", 0x83: "M", 0x84: "DB",
         0x85: "DI", 0x86: "L", 0x87: "V"}

# Counter and timer areas address elements by number, not by byte and bit
NUMBERED_AREAS = frozenset({0x1C, 0x1D, 0x1E, 0x1F})

ITEM_TRANSPORT_SIZES = {0x01: "BIT", 0x02: "BYTE", 0x03: "CHAR", 0x04: "WORD", 0x05: "INT",
                        0x06: "DWORD", 0x07: "DINT", 0x08: "REAL", 0x09: "DATE", 0x0A: "TOD",
                        0x0B: "TIME", 0x0C: "S5TIME", 0x0F: "DATE_AND_TIME", 0x1C: "COUNTER",
                        0x1D: "TIMER", 0x1E: "IEC_TIMER", 0x1F: "IEC_COUNTER", 0x20: "HS_COUNTER"}

# Data transport sizes: for these the length field counts bits, for the rest bytes.
DATA_SIZES_IN_BITS = {0x03, 0x04, 0x05}

RETURN_CODES = {0x00: "reserved", 0x01: "hardware_error", 0x03: "access_denied",
                0x05: "invalid_address", 0x06: "data_type_not_supported",
                0x07: "data_type_inconsistent", 0x0A: "object_does_not_exist", 0xFF: "success"}

USERDATA_GROUPS = {0x0: "mode_transition", 0x1: "programmer_commands", 0x2: "cyclic_data",
                   0x3: "block_functions", 0x4: "cpu_functions", 0x5: "security",
                   0x6: "bsend_brecv", 0x7: "time_functions", 0xF: "nc_programming"}

USERDATA_TYPES = {0x0: "push", 0x4: "request", 0x8: "response", 0x3: "nc_push",
                  0x7: "nc_request", 0xB: "nc_response"}

# (group, subfunction) → canonical function name
USERDATA_FUNCTIONS = {
    (0x0, 0x00): "mode_stop", (0x0, 0x01): "mode_warm_restart", (0x0, 0x02): "mode_run",
    (0x0, 0x03): "mode_hot_restart", (0x0, 0x04): "mode_hold", (0x0, 0x06): "mode_cold_restart",
    (0x0, 0x09): "mode_run_r", (0x0, 0x0B): "mode_link_up", (0x0, 0x0C): "mode_update",
    (0x1, 0x01): "block_status", (0x1, 0x02): "variable_status", (0x1, 0x03): "output_istack",
    (0x1, 0x04): "output_bstack", (0x1, 0x05): "output_lstack", (0x1, 0x06): "time_measurement",
    (0x1, 0x07): "force_selection", (0x1, 0x08): "modify_variable", (0x1, 0x09): "force",
    (0x1, 0x0A): "breakpoint", (0x1, 0x0B): "exit_hold", (0x1, 0x0C): "memory_reset",
    (0x1, 0x0D): "disable_job", (0x1, 0x0E): "enable_job", (0x1, 0x0F): "delete_job",
    (0x1, 0x10): "read_job_list", (0x1, 0x11): "read_job", (0x1, 0x12): "replace_job",
    (0x1, 0x13): "block_status_v2", (0x1, 0x16): "flash_led",
    (0x2, 0x01): "cyclic_transfer", (0x2, 0x04): "cyclic_unsubscribe",
    (0x2, 0x05): "cyclic_change_driven", (0x2, 0x07): "cyclic_change_driven_modify",
    (0x2, 0x08): "cyclic_rdrec",
    (0x3, 0x01): "list_blocks", (0x3, 0x02): "list_blocks_of_type", (0x3, 0x03): "get_block_info",
    (0x4, 0x01): "read_szl", (0x4, 0x02): "message_service", (0x4, 0x03): "diagnostic_message",
    (0x4, 0x04): "alarm8_indication", (0x4, 0x05): "notify_indication", (0x4, 0x06): "alarm8_lock",
    (0x4, 0x07): "alarm8_unlock", (0x4, 0x08): "scan_indication", (0x4, 0x0B): "alarms_indication",
    (0x4, 0x0C): "alarmsq_indication", (0x4, 0x0D): "alarm_query", (0x4, 0x0E): "alarm_ack",
    (0x4, 0x11): "alarm_ack_indication", (0x4, 0x12): "alarm_lock_indication",
    (0x4, 0x13): "alarm_unlock_indication", (0x4, 0x16): "notify8_indication",
    (0x5, 0x01): "plc_password", (0x5, 0x02): "clear_password",
    (0x7, 0x01): "read_clock", (0x7, 0x02): "set_clock", (0x7, 0x03): "read_clock_following",
    (0x7, 0x04): "set_clock_2",
}

BLOCK_TYPES = {"08": "OB", "0A": "DB", "0B": "SDB", "0C": "FC", "0D": "SFC", "0E": "FB", "0F": "SFB"}
# Block functions name block types by one ASCII letter
BLOCK_LETTERS = {0x38: "OB", 0x41: "DB", 0x42: "SDB", 0x43: "FC", 0x44: "SFC", 0x45: "FB", 0x46: "SFB"}


class S7Header(Packet):
    name = "S7comm"
    fields_desc = [XByteField("protocol_id", PROTOCOL_ID), ByteEnumField("rosctr", 1, ROSCTR),
                   XShortField("reserved", 0), ShortField("pdu_ref", 0),
                   ShortField("param_length", 0), ShortField("data_length", 0),
                   ConditionalField(ByteField("error_class", 0), lambda pkt: pkt.rosctr in (2, 3)),
                   ConditionalField(ByteField("error_code", 0), lambda pkt: pkt.rosctr in (2, 3)),
                   StrLenField("parameter", b"", length_from=lambda pkt: pkt.param_length),
                   StrLenField("data", b"", length_from=lambda pkt: pkt.data_length)]


class S7SetupCommunication(Packet):
    name = "S7 setup communication"
    fields_desc = [XByteField("function", 0xF0), ByteField("reserved", 0),
                   ShortField("max_amq_calling", 1), ShortField("max_amq_called", 1),
                   ShortField("pdu_length", 480)]


class S7VarItem(Packet):
    """A variable specification. S7ANY (syntax id 0x10) addresses area, DB, byte and bit;
    other syntax ids (symbolic, NC, DB read of S7-400) are kept as bytes."""
    name = "S7 item"
    fields_desc = [XByteField("var_spec", 0x12), ByteField("length", 10), XByteField("syntax_id", 0x10),
                   ConditionalField(ByteEnumField("transport_size", 2, ITEM_TRANSPORT_SIZES),
                                    lambda pkt: pkt.syntax_id == 0x10),
                   ConditionalField(ShortField("count", 1), lambda pkt: pkt.syntax_id == 0x10),
                   ConditionalField(ShortField("db", 0), lambda pkt: pkt.syntax_id == 0x10),
                   ConditionalField(ByteEnumField("area", 0x84, AREAS), lambda pkt: pkt.syntax_id == 0x10),
                   ConditionalField(ThreeBytesField("address", 0), lambda pkt: pkt.syntax_id == 0x10),
                   ConditionalField(StrLenField("spec", b"", length_from=lambda pkt: max(0, pkt.length - 1)),
                                    lambda pkt: pkt.syntax_id != 0x10)]

    def extract_padding(self, s):
        return b"", s


class S7VarParameter(Packet):
    """Read Var and Write Var: the items (a response repeats only the count)."""
    name = "S7 read/write var"
    fields_desc = [XByteField("function", 0x04), FieldLenField("item_count", None, fmt="B", count_of="items"),
                   PacketListField("items", [], S7VarItem, count_from=lambda pkt: pkt.item_count)]


class S7DataItem(Packet):
    """Returned or written data of one item; an odd length is followed by a fill byte
    unless the item is the last."""
    name = "S7 data item"
    fields_desc = [ByteEnumField("return_code", 0xFF, RETURN_CODES), ByteField("transport_size", 4),
                   ShortField("length", 0),
                   # a failed item is its header alone, whatever its length says
                   StrLenField("value", b"", length_from=lambda pkt: data_bytes(pkt.transport_size, pkt.length)
                               if pkt.return_code in (0xFF, 0x00) else 0)]

    def extract_padding(self, s):
        if len(self.value) % 2 and s:
            s = s[1:]
        return b"", s


def data_bytes(transport_size: int, length: int) -> int:
    return (length + 7) // 8 if transport_size in DATA_SIZES_IN_BITS else length


class S7DataItems(Packet):
    name = "S7 data"
    fields_desc = [PacketListField("items", [], S7DataItem)]


class S7BlockTransfer(Packet):
    """Download and upload parameters: a status byte, an upload id, and for most of them
    a file name such as ``_0A00001P`` (block type, number, file system)."""
    name = "S7 block transfer"
    fields_desc = [XByteField("function", 0x1A), ByteField("status", 0), XShortField("unknown", 0),
                   ConditionalField(IntField("upload_id", 0), lambda pkt: pkt.function != 0x1F),
                   ConditionalField(XShortField("error_code", 0), lambda pkt: pkt.function == 0x1F),
                   ConditionalField(FieldLenField("filename_length", None, fmt="B", length_of="filename"),
                                    lambda pkt: pkt.function in (0x1A, 0x1B, 0x1C, 0x1D)),
                   ConditionalField(StrLenField("filename", b"", length_from=lambda pkt: pkt.filename_length),
                                    lambda pkt: pkt.function in (0x1A, 0x1B, 0x1C, 0x1D)),
                   StrField("rest", b"")]


class S7PIService(Packet):
    """PLC Control: a program invocation service name (``_INSE``, ``P_PROGRAM``...) with its arguments."""
    name = "S7 PI service"
    fields_desc = [XByteField("function", 0x28), StrFixedLenField("unknown", b"\x00" * 6 + b"\xfd", 7),
                   FieldLenField("argument_length", None, fmt="H", length_of="arguments"),
                   StrLenField("arguments", b"", length_from=lambda pkt: pkt.argument_length),
                   FieldLenField("service_length", None, fmt="B", length_of="service"),
                   StrLenField("service", b"", length_from=lambda pkt: pkt.service_length)]


class S7PLCStop(Packet):
    name = "S7 PLC stop"
    fields_desc = [XByteField("function", 0x29), StrFixedLenField("unknown", b"\x00" * 5, 5),
                   FieldLenField("service_length", None, fmt="B", length_of="service"),
                   StrLenField("service", b"", length_from=lambda pkt: pkt.service_length)]


class S7UserDataParameter(Packet):
    name = "S7 userdata parameter"
    fields_desc = [StrFixedLenField("head", b"\x00\x01\x12", 3), ByteField("length", 4),
                   XByteField("method", 0x11),
                   BitEnumField("type", 4, 4, USERDATA_TYPES), BitEnumField("group", 4, 4, USERDATA_GROUPS),
                   ByteField("subfunction", 1), ByteField("sequence", 0),
                   ConditionalField(ByteField("data_unit_ref", 0), lambda pkt: pkt.length >= 8),
                   ConditionalField(ByteField("last_data_unit", 0), lambda pkt: pkt.length >= 8),
                   ConditionalField(XShortField("error_code", 0), lambda pkt: pkt.length >= 8)]


class S7UserData(Packet):
    name = "S7 userdata data"
    fields_desc = [ByteEnumField("return_code", 0xFF, RETURN_CODES), ByteField("transport_size", 9),
                   FieldLenField("length", None, fmt="H", length_of="value"),
                   StrLenField("value", b"", length_from=lambda pkt: pkt.length)]


class S7DBReadArea(Packet):
    """One area of a DBREAD item (syntax id 0xb0, WinCC on S7-400): bytes, DB, start."""
    name = "S7 DBREAD area"
    fields_desc = [ByteField("length", 1), ShortField("db", 1), ShortField("start", 0)]

    def extract_padding(self, s):
        return b"", s


class S7DBRead(Packet):
    name = "S7 DBREAD item"
    fields_desc = [FieldLenField("area_count", None, fmt="B", count_of="areas"),
                   PacketListField("areas", [], S7DBReadArea, count_from=lambda pkt: pkt.area_count)]


class S7CyclicRequest(Packet):
    """Cyclic data subscription: how often, and which variables (Read Var item specs)."""
    name = "S7 cyclic data request"
    fields_desc = [FieldLenField("item_count", None, fmt="H", count_of="items"),
                   ByteField("timebase", 0), ByteField("interval", 1),
                   PacketListField("items", [], S7VarItem, count_from=lambda pkt: pkt.item_count)]


class S7VarTabItem(Packet):
    """An address in a variable table (monitor/modify variable): area and size in one byte
    (high nibble area, low nibble size; whole bytes for timers and counters), then a
    repetition factor — the bit number for bit addresses — the DB and the start byte."""
    name = "S7 variable table item"
    fields_desc = [XByteField("memory_area", 0), ByteField("repetition", 1),
                   ShortField("db", 0), ShortField("start", 0)]

    def extract_padding(self, s):
        return b"", s


class S7VarTabRequest(Packet):
    name = "S7 variable table request"
    fields_desc = [FieldLenField("tis_param_size", None, fmt="H", length_of="tis_params"),
                   ShortField("tis_data_size", 0),
                   StrLenField("tis_params", b"", length_from=lambda pkt: pkt.tis_param_size),
                   FieldLenField("item_count", None, fmt="H", count_of="items"),
                   PacketListField("items", [], S7VarTabItem, count_from=lambda pkt: pkt.item_count),
                   StrField("values", b"")]


class S7VarTabAnswer(Packet):
    """What a variable table returns (answers and pushes): data items after the item count."""
    name = "S7 variable table answer"
    fields_desc = [FieldLenField("tis_param_size", None, fmt="H", length_of="tis_params"),
                   ShortField("tis_data_size", 0),
                   StrLenField("tis_params", b"", length_from=lambda pkt: pkt.tis_param_size),
                   ShortField("item_count", 0), StrField("values", b"")]


VARTAB_AREAS = {0x0: "M", 0x1: "I", 0x2: "Q", 0x3: "P", 0x7: "DB"}
VARTAB_NUMBERED = {0x54: "T", 0x64: "C"}
VARTAB_SIZES = {0x0: "BIT", 0x1: "BYTE", 0x2: "WORD", 0x3: "DWORD"}


class S7SZLRequest(Packet):
    name = "S7 SZL request"
    fields_desc = [XShortField("szl_id", 0), XShortField("szl_index", 0)]


class S7SZLResponse(Packet):
    name = "S7 SZL response"
    fields_desc = [XShortField("szl_id", 0), XShortField("szl_index", 0),
                   ShortField("entry_length", 0), ShortField("entry_count", 0),
                   StrField("entries", b"")]


class S7BlockInfoRequest(Packet):
    """Get Block Info: block type (ASCII pair), number (five ASCII digits), file system."""
    name = "S7 block info request"
    fields_desc = [StrFixedLenField("block_type", b"0A", 2), StrFixedLenField("number", b"00001", 5),
                   StrFixedLenField("filesystem", b"A", 1)]


def parse_filename(name: bytes) -> tuple[str | None, int | None]:
    """``_0A00001P`` → ("DB", 1); anything else → (None, None)."""
    text = name.decode("latin-1")
    if len(text) >= 8 and text[0] == "_" and text[3:8].isdigit():
        return BLOCK_TYPES.get(text[1:3].upper(), text[1:3]), int(text[3:8])
    return None, None
