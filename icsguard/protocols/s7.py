"""Siemens S7 over ISO-on-TCP: recognise TPKT/COTP, frame by TPKT length, reassemble COTP
data units, and turn COTP, S7comm and S7comm-plus PDUs into Events."""

from __future__ import annotations

import re
from typing import Any

from icsguard.bounded import made_from
from icsguard.budget import Pool
from icsguard.events import ISO_ON_TCP_PORTS, sender_direction
from icsguard.parsers import s7comm as s7
from icsguard.parsers import s7comm_plus as s7p
from icsguard.parsers import tpkt_cotp as iso
from icsguard.protocols.decode_cache import DecodeCache
from icsguard.protocols.framing import looks_like
from icsguard.protocols.malformed import MalformedPDU, reason, require
from icsguard.protocols.pairing import Outstanding, inherit

NAME = "s7comm"
PORTS = ISO_ON_TCP_PORTS
MAX_UNIT_BYTES = 64 * 1024       # a reassembled COTP data unit; S7 PDUs are at most ~1 KiB (S7-1500: 8 KiB)
MAX_OUTSTANDING = 256            # unanswered jobs remembered per connection
MAX_PAIRED = 4096                # (job items, answer items) pairings remembered
CONNECTION_HEADERS = {"CR": 6, "CC": 6, "DR": 6, "DC": 5}   # type, two references, class or reason (not DC)
USERDATA_PARAMETER = 8           # head, length, method, type and group, subfunction, sequence
S7PLUS_OPERATION = {0x31: 13, 0x33: 5}     # opcode to sequence number (and session id); 9 for others
VARTAB_HEADER = 6                # parameter and data sizes, (the parameters), the item count
VARTAB_ITEM = 6

_paired_items: dict[tuple, tuple] = {}
_BLOCK_SPEC = re.compile(rb"([0-9A-F]{2})(\d{5})([PAB])")
_PI_SERVICE = re.compile(rb"P_PROGRAM|_[A-Z][A-Z0-9_]{3,8}")


def pdu_length(data: bytes, pos: int, strict: bool = False) -> int | str:
    """TPKT framing: version 3, reserved 0, a length that holds at least a COTP header."""
    if len(data) - pos < 4:
        if len(data) - pos >= 1 and data[pos] != 3:
            return f"TPKT version is {data[pos]}, not 3"
        return 0
    if data[pos] != 3 or data[pos + 1] != 0:
        return f"TPKT version/reserved are {data[pos]}/{data[pos + 1]}, not 3/0"
    length = (data[pos + 2] << 8) | data[pos + 3]
    if length < 7:
        return f"TPKT length {length} cannot hold a COTP header"
    if strict:
        if len(data) - pos < 6:
            return 0
        if data[pos + 4] + 5 > length or data[pos + 5] >> 4 not in iso.PDU_TYPES:
            return "COTP header does not fit its TPKT"
    return length


def signature(data: bytes, on_port: bool) -> bool | None:
    """TPKT + COTP, judged strictly even on port 102 (other ISO-on-TCP users share it)."""
    return looks_like(data, pdu_length, on_port, strict=True)


def orient(pdus: list[tuple[tuple, bytes]], peer) -> tuple | None:
    """The client sends COTP connection requests and S7 jobs; the server confirms and acknowledges."""
    for side, pdu in pdus:
        cotp_type = pdu[5] >> 4 if len(pdu) > 5 else None
        if cotp_type == 0xE:
            return side
        if cotp_type == 0xD:
            return peer(side)
        body = _cotp_payload(pdu)
        if body[:1] == b"\x32" and len(body) > 1:
            if body[1] == 1:
                return side
            if body[1] in (2, 3):
                return peer(side)
        if body[:1] == b"\x72" and len(body) > 4:
            opcode = body[4 + (1 + body[4] if body[1] == 3 else 0):][:1]
            if opcode == b"\x31":
                return side
            if opcode in (b"\x32", b"\x33"):
                return peer(side)
    return None


def undecodable(tpdu: bytes, from_client: bool, error: Exception) -> tuple:
    """What a TPDU that could not be decoded still says: which protocol it carries. (A data
    unit of several fragments is named by its last one.)"""
    direction = sender_direction(from_client)
    cotp_type = tpdu[5] >> 4 if len(tpdu) > 5 else None
    if cotp_type not in (0xF, 0x1):
        return "cotp", direction, "malformed", cotp_type, {"malformed": reason("COTP", error)}
    unit = _cotp_payload(tpdu)
    if unit[:1] == b"\x72":
        return "s7comm-plus", direction, "malformed", None, {"malformed": reason("S7comm-plus", error)}
    pdu_ref = (unit[4] << 8) | unit[5] if len(unit) >= 6 else None
    return "s7comm", direction, "malformed", None, {"pdu_ref": pdu_ref, "malformed": reason("S7comm", error)}


def _cotp_payload(tpdu: bytes) -> bytes:
    return tpdu[5 + tpdu[4]:] if len(tpdu) > 4 else b""


class S7Session:
    """One ISO-on-TCP connection: COTP data units per direction, S7 job/ack pairing."""

    def __init__(self, cache: DecodeCache, pool: Pool):
        self.cache = cache
        self.pool = pool
        self.units: dict[bool, list[bytes]] = {True: [], False: []}    # COTP fragments held, per direction
        self.jobs = Outstanding(MAX_OUTSTANDING, pool)           # pdu_ref → (function, code, fields) of the job
        self.plus_requests = Outstanding(MAX_OUTSTANDING, pool)  # seq_num → object ids the request addressed

    def release(self) -> None:
        for from_client in self.units:
            self._drop_fragments(from_client)
        self.jobs.release()
        self.plus_requests.release()

    def _drop_fragments(self, from_client: bool) -> None:
        fragments = self.units[from_client]
        self.pool.give(sum(map(len, fragments)))
        fragments.clear()

    def decode(self, tpdu: bytes, from_client: bool) -> tuple | None:
        """(proto, direction, function, code, fields) of a TPKT frame, or None for a COTP
        fragment that does not end a data unit yet."""
        cotp_type = tpdu[5] >> 4 if len(tpdu) > 5 else None
        if cotp_type not in (0xF, 0x1):
            return self._cotp(tpdu, from_client)
        eot = len(tpdu) > 6 and tpdu[6] & 0x80
        fragments = self.units[from_client]
        payload = _cotp_payload(tpdu)
        if not eot:
            if not self.pool.take(len(payload)):
                self._drop_fragments(from_client)
                return ("cotp", sender_direction(from_client), "data", 0xF,
                        {"malformed": "COTP fragments dropped: the memory budget for held bytes is spent"})
            fragments.append(payload)
            if sum(map(len, fragments)) > MAX_UNIT_BYTES:
                self._drop_fragments(from_client)
                return ("cotp", sender_direction(from_client), "data", 0xF,
                        {"malformed": f"COTP data unit longer than {MAX_UNIT_BYTES} bytes"})
            return None
        if fragments:
            unit = b"".join(fragments) + payload
            self._drop_fragments(from_client)
        else:
            unit = payload
        if unit[:1] == b"\x32":
            return self._s7comm(unit, from_client)
        if unit[:1] == b"\x72":
            return self._s7plus(unit, from_client)
        # another ISO application on the same transport (IEC 61850 MMS, for one): not S7,
        # and not malformed either
        return "cotp", sender_direction(from_client), "data", 0xF, {}

    def _cotp(self, tpdu: bytes, from_client: bool) -> tuple:
        """A COTP PDU other than data: a connection's request and confirm repeat byte for byte
        (the same TSAPs each time a client connects), so their decoding is kept."""
        key = ("cotp", from_client, tpdu)
        decoded = self.cache.get(key)
        if decoded is None:
            decoded = self._cotp_fields(tpdu, from_client)
            self.cache.put(key, decoded)
        proto, direction, function, code, fields = decoded
        return proto, direction, function, code, dict(fields)

    @staticmethod
    def _cotp_fields(tpdu: bytes, from_client: bool) -> tuple:
        header_length, code = tpdu[4], tpdu[5] >> 4
        kind = iso.PDU_TYPES.get(code, f"type_{code:x}")
        least = CONNECTION_HEADERS.get(kind, 1)
        if not least <= header_length <= len(tpdu) - 5:
            return "cotp", sender_direction(from_client), iso.PDU_NAMES.get(kind, kind.lower()), code, \
                {"malformed": f"COTP {kind} header length {header_length} does not fit "
                              f"({least} to {len(tpdu) - 5} bytes here)"}
        cotp = iso.cotp_class(code)(tpdu[4:5 + header_length])
        fields: dict[str, Any] = {}
        if isinstance(cotp, iso.COTPConnection):
            for parameter in cotp.parameters:
                if not isinstance(parameter, iso.COTPParameter) or len(parameter.value) != parameter.length:
                    break          # user data, not parameters (an RDP connection request's cookie)
                name = iso.PARAMETERS.get(parameter.code)
                if name in ("src_tsap", "dst_tsap"):
                    fields[name] = parameter.value.hex()
                elif name == "tpdu_size" and parameter.value:
                    size_code = parameter.value[0]
                    if size_code in iso.TPDU_SIZE_CODES:
                        fields["tpdu_size"] = 1 << size_code
                    else:
                        fields["malformed"] = f"TPDU size code {size_code:#04x} is not one of ISO 8073's (0x07-0x0d)"
            rack_slot = iso.tsap_rack_slot(bytes.fromhex(fields.get("dst_tsap", "")))
            if rack_slot and kind in ("CR", "CC"):
                fields["rack"], fields["slot"] = rack_slot
        function = iso.PDU_NAMES.get(kind, kind.lower())
        return "cotp", sender_direction(from_client), function, cotp.pdu_type, fields

    def _s7comm(self, unit: bytes, from_client: bool) -> tuple:
        key = (from_client, unit[:4], unit[6:])           # the PDU reference varies; the rest repeats
        decoded = self.cache.get(key)
        if decoded is None:
            decoded = _s7comm_fields(unit)
            self.cache.put(key, decoded)
        direction, function, code, fields, szl = decoded
        pdu_ref = (unit[4] << 8) | unit[5] if len(unit) >= 6 else None
        fields = {"pdu_ref": pdu_ref, **fields}
        if direction == "request":
            self.jobs.ask(pdu_ref, (function, code, fields))
        elif direction == "response":
            job_function, job_code, job = self.jobs.answer(pdu_ref) or (None, None, None)
            if szl and not (job and "szl_id" not in job and fields.get("rosctr") == 7):
                fields.update(_szl_fields(szl))     # not the continuation of an earlier answer
            if job is not None:
                fields = _paired(fields, job)
                if function == "ack":               # a bare Ack (an error) answers its job's function
                    function, code = job_function, job_code
        return "s7comm", direction, function, code, fields

    def _s7plus(self, unit: bytes, from_client: bool) -> tuple:
        direction, function, code, fields = _s7plus_fields(unit)
        seq = fields.get("seq_num")
        if seq is not None and direction == "request":
            self.plus_requests.ask(seq, fields.get("object_ids"))
        elif seq is not None and direction == "response":
            asked = self.plus_requests.answer(seq)
            if asked and "object_ids" not in fields:
                fields["object_ids"] = asked
        return "s7comm-plus", direction, function, code, fields


def _s7comm_fields(unit: bytes) -> tuple[str, str, int | None, dict[str, Any], bytes | None]:
    """Direction, function, code and fields of one S7comm PDU (without the PDU reference), and
    the SZL data of a Read SZL answer, which only the pairing can tell a first part from a
    continuation."""
    require(unit, s7.ACK_HEADER_LENGTH if unit[1:2] in (b"\x02", b"\x03") else s7.HEADER_LENGTH, "S7comm header")
    header = s7.S7Header(unit)
    rosctr = header.rosctr
    fields: dict[str, Any] = {"rosctr": rosctr}
    expected = (s7.ACK_HEADER_LENGTH if rosctr in (2, 3) else s7.HEADER_LENGTH) \
        + header.param_length + header.data_length
    if len(unit) < expected:
        fields["malformed"] = f"S7comm PDU of {len(unit)} bytes announces {expected}"
    if rosctr in (2, 3):
        fields["error_class"] = header.error_class
        fields["error_code"] = header.error_code
    parameter, data = bytes(header.parameter), bytes(header.data)
    if rosctr == 7:
        return _userdata(parameter, data, fields)
    if rosctr not in (1, 2, 3):
        fields.setdefault("malformed", f"unknown ROSCTR {rosctr}")
        return "request", f"rosctr_{rosctr}", None, fields, None
    direction = "request" if rosctr == 1 else "response"
    if not parameter:
        return direction, "ack" if rosctr == 2 else "unknown", None, fields, None
    code = parameter[0]
    function = s7.FUNCTIONS.get(code, f"function_{code:#04x}")
    try:
        _function_fields(code, rosctr, parameter, data, fields)
    except Exception as exc:    # a broken parameter block still names its function
        fields["malformed"] = f"{function} parameters do not parse " \
                              f"({exc if isinstance(exc, MalformedPDU) else type(exc).__name__})"
        service = _PI_SERVICE.search(parameter) if code in (0x28, 0x29) else None
        if service:                 # a PLC still runs a malformed _DELE: keep what it asked for
            fields["pi_service"] = service.group().decode()
    return direction, function, code, fields, None


def _function_fields(code: int, rosctr: int, parameter: bytes, data: bytes, fields: dict) -> None:
    if code in (0x04, 0x05):
        _var_items(code, rosctr, parameter, data, fields)
    elif code == 0xF0:
        setup = s7.S7SetupCommunication(parameter)
        fields.update(pdu_size=setup.pdu_length, max_amq_calling=setup.max_amq_calling,
                      max_amq_called=setup.max_amq_called)
    elif 0x1A <= code <= 0x1F and rosctr == 1:
        transfer = s7.S7BlockTransfer(parameter)
        if transfer.getfieldval("filename"):
            name = bytes(transfer.filename)
            fields["filename"] = name.decode("latin-1")
            fields["block_type"], fields["block_number"] = s7.parse_filename(name)
    elif code == 0x28 and rosctr == 1:
        service = s7.S7PIService(parameter)
        fields["pi_service"] = bytes(service.service).decode("latin-1")
        arguments = bytes(service.arguments)
        block = _BLOCK_SPEC.search(arguments)
        if block:
            fields["block_type"] = s7.BLOCK_TYPES.get(block.group(1).decode(), block.group(1).decode())
            fields["block_number"] = int(block.group(2))
        if arguments:
            fields["pi_arguments"] = arguments.decode("latin-1")
    elif code == 0x29 and rosctr == 1:
        fields["pi_service"] = bytes(s7.S7PLCStop(parameter).service).decode("latin-1")


def _whole_items(specs: list) -> list:
    """Item specifications, every one of them whole."""
    if any(not isinstance(spec, s7.S7VarItem) or spec.length + 2 != len(spec) for spec in specs):
        raise MalformedPDU("an item specification is cut short")
    return specs


def _item_spec(spec) -> dict[str, Any]:
    """A Read/Write Var (or cyclic) item specification as Event item fields."""
    if spec.syntax_id == 0x10:
        numbered = spec.area in s7.NUMBERED_AREAS     # counters and timers: the address is their number
        return {"area": s7.AREAS.get(spec.area, f"{spec.area:#04x}"), "db": spec.db,
                "byte": spec.address if numbered else spec.address >> 3,
                "bit": 0 if numbered else spec.address & 7,
                "transport_size": s7.ITEM_TRANSPORT_SIZES.get(spec.transport_size, spec.transport_size),
                "length": spec.count}
    item: dict[str, Any] = {"syntax_id": spec.syntax_id, "spec": bytes(spec.spec).hex()}
    if spec.syntax_id == 0xB0:                         # DBREAD: several DB ranges in one item
        item["areas"] = tuple({"area": "DB", "db": a.db, "byte": a.start, "length": a.length}
                              for a in s7.S7DBRead(bytes(spec.spec)).areas)
    return item


def _data_items(data: bytes, with_return_code: bool) -> list[dict[str, Any]]:
    found = s7.S7DataItems(data).items
    if found and not isinstance(found[-1], s7.S7DataItem):
        raise MalformedPDU("a data item is cut short")
    return [{"return_code": s7.RETURN_CODES.get(d.return_code, d.return_code), "data": bytes(d.value).hex()}
            if with_return_code else {"data": bytes(d.value).hex()} for d in found]


def _var_items(code: int, rosctr: int, parameter: bytes, data: bytes, fields: dict) -> None:
    """Read/Write Var: the addressed items, and the data or return codes that go with them."""
    var = s7.S7VarParameter(parameter)
    items = [_item_spec(spec) for spec in _whole_items(var.items)]
    count = var.item_count
    if code == 0x05 and rosctr == 3:           # write response: one return code per item
        results = [{"return_code": s7.RETURN_CODES.get(b, b)} for b in data[:count]]
    else:
        results = _data_items(data, rosctr == 3) if data else []
    if items and results:
        items = [dict(item, **result) for item, result in zip(items, results)]
    fields["items"] = tuple(items or results)
    present = len(items) if rosctr == 1 else len(results)
    if present != count:
        fields["malformed"] = f"{count} items announced, {present} present"


def _vartab_items(value: bytes) -> tuple[list[dict[str, Any]], int]:
    """Monitor/modify variable requests: the addresses, and for a modify the values written."""
    require(value, VARTAB_HEADER + int.from_bytes(value[:2], "big"), "variable table request")
    table = s7.S7VarTabRequest(value)
    if any(not isinstance(item, s7.S7VarTabItem) or len(item) != VARTAB_ITEM for item in table.items):
        raise MalformedPDU("a variable table item is cut short")
    items = []
    for item in table.items:
        area = item.memory_area
        numbered = s7.VARTAB_NUMBERED.get(area)
        size = area & 0x0F
        items.append({"area": numbered or s7.VARTAB_AREAS.get(area >> 4, f"{area:#04x}"), "db": item.db,
                      "byte": item.start, "bit": item.repetition if size == 0 and not numbered else 0,
                      "transport_size": s7.VARTAB_SIZES.get(size, size)})
    values = bytes(table.values)
    if values:
        items = [dict(item, **result) for item, result in zip(items, _data_items(values, False))]
    return items, table.item_count


def _userdata(parameter: bytes, data: bytes, fields: dict) -> tuple:
    if len(parameter) >= 4 and parameter[3] + 4 > len(parameter):
        # Step 7's mode-transition push announces more parameter bytes than it sends
        parameter = parameter[:3] + bytes([len(parameter) - 4]) + parameter[4:]
    require(parameter, USERDATA_PARAMETER + (4 if parameter[3:4] >= b"\x08" else 0), "UserData parameters")
    param = s7.S7UserDataParameter(parameter)
    group, sub, kind = param.group, param.subfunction, param.type
    fields.update(userdata_group=group, userdata_subfunction=sub)
    if param.length >= 8 and param.error_code:
        fields["error_code"] = param.error_code
    direction = {0x4: "request", 0x7: "request", 0x8: "response", 0xB: "response"}.get(kind, "notification")
    function = s7.USERDATA_FUNCTIONS.get((group, sub), f"userdata_{group}_{sub}")
    body = s7.S7UserData(data) if len(data) >= 4 else None
    value = bytes(body.value) if body is not None else b""
    szl = None
    if group == 0x4 and sub == 0x01 and len(value) >= 4:
        if direction == "request" and param.method == 0x11:     # method 0x12 asks for the next part
            request = s7.S7SZLRequest(value)
            fields["szl_id"], fields["szl_index"] = request.szl_id, request.szl_index
        elif direction == "response":
            szl = value
    elif group == 0x2 and sub in (0x01, 0x05, 0x07) and len(value) >= 2:
        if direction == "request":
            cyclic = s7.S7CyclicRequest(value)
            items, count = [_item_spec(spec) for spec in _whole_items(cyclic.items)], cyclic.item_count
        else:
            items, count = _data_items(value[2:], True), int.from_bytes(value[:2], "big")
        fields["items"], fields["item_count"] = tuple(items), count
    elif group == 0x1 and sub in (0x02, 0x08) and len(value) >= 6:
        if direction == "request":
            items, count = _vartab_items(value)
        else:
            require(value, VARTAB_HEADER + int.from_bytes(value[:2], "big"), "variable table answer")
            answer = s7.S7VarTabAnswer(value)
            items, count = _data_items(bytes(answer.values), True), answer.item_count
        fields["items"], fields["item_count"] = tuple(items), count
    elif group == 0x3 and sub == 0x02 and direction == "request" and len(value) >= 2:
        fields["block_type"] = s7.BLOCK_LETTERS.get(value[1], f"{value[1]:#04x}")
    elif group == 0x3 and sub == 0x03 and direction == "request" and len(value) >= 8:
        info = s7.S7BlockInfoRequest(value)
        fields["block_type"] = s7.BLOCK_TYPES.get(bytes(info.block_type).decode("latin-1"))
        number = bytes(info.number)
        fields["block_number"] = int(number) if number.isdigit() else None
    if body is not None and body.return_code not in (0xFF, 0x00) and direction != "request":
        fields["return_code"] = s7.RETURN_CODES.get(body.return_code, body.return_code)
    return direction, function, None, fields, szl


SZL_HEADER = 8        # SZL id, index, record length, record count


def _szl_fields(value: bytes) -> dict[str, Any]:
    if len(value) < SZL_HEADER:
        fields: dict[str, Any] = {"szl_id": int.from_bytes(value[:2], "big")} if len(value) >= 2 else {}
        fields["malformed"] = f"SZL answer of {len(value)} bytes, shorter than its {SZL_HEADER}-byte header"
        return fields
    szl = s7.S7SZLResponse(value)
    fields: dict[str, Any] = {"szl_id": szl.szl_id, "szl_index": szl.szl_index}
    info = _cpu_info(szl)
    if info:
        fields["cpu_info"] = info
    return fields


# SZL 0x001C component identification: record index → what the text is
COMPONENT_NAMES = {1: "as_name", 2: "module_name", 3: "plant_id", 4: "copyright", 5: "serial",
                   7: "module_type", 8: "memory_card_serial", 0xB: "location"}
COMPONENT_RECORD = 34
# The order records come in when a list gives no record size (python-snap7's server does that)
COMPONENT_ORDER = (1, 2, 3, 4, 5, 7, 8, 9, 10, 11)
# SZL 0x0132/0x0232 index 4: protection levels and the mode switch; 0x0424: the CPU's mode
PROTECTION_INDEX = 4
MODE_SWITCH = {1: "RUN", 2: "RUN-P", 3: "STOP", 4: "MRES"}
CPU_MODES = {1: "STOP (update)", 2: "STOP (memory reset)", 3: "STOP (self initialization)", 4: "STOP (internal)",
             5: "STARTUP (complete restart)", 7: "STARTUP (restart)", 8: "RUN", 0xA: "HOLD", 0xD: "DEFECT"}


def _cpu_info(szl) -> dict[str, str]:
    """Identity of a CPU from SZL 0x0011 (order number, versions) and 0x001C (names, serial)."""
    entries = bytes(szl.entries)
    kind = szl.szl_id & 0xFF
    size, count = szl.entry_length, szl.entry_count
    if kind == 0x1C and not size:
        size, count = COMPONENT_RECORD, len(entries) // COMPONENT_RECORD
    if not size:
        return {}
    info = {}
    for n in range(min(count, len(entries) // size)):
        entry = entries[n * size:(n + 1) * size]
        index = int.from_bytes(entry[:2], "big")
        if kind == 0x1C and size >= COMPONENT_RECORD:
            name = COMPONENT_NAMES.get(index or (COMPONENT_ORDER[n] if n < len(COMPONENT_ORDER) else 0))
            text = entry[2:34].split(b"\x00")[0].decode("latin-1").strip()
            if name and text:
                info[name] = text
        elif kind == 0x11 and size >= 22:
            order = entry[2:22].split(b"\x00")[0].decode("latin-1").strip()
            if index == 1 and order:
                info["order_number"] = order
            version = entry[24:28]
            if index in (6, 7) and len(version) == 4 and version[0] == ord("V"):
                info["hardware" if index == 6 else "firmware"] = f"V{version[1]}.{version[2]}.{version[3]}"
        elif kind == 0x32 and index == PROTECTION_INDEX and size >= 10:
            key, assigned, valid, switch = (int.from_bytes(entry[i:i + 2], "big") for i in (2, 4, 6, 8))
            info.update(protection_level=str(valid), protection_key_level=str(key),
                        protection_password_level=str(assigned), mode_switch=MODE_SWITCH.get(switch, str(switch)))
        elif kind == 0x24 and size >= 4:
            mode = entry[3] & 0x0F
            info["operating_mode"] = CPU_MODES.get(mode, f"{mode:#x}")
    return info


def _paired(response: dict, job: dict) -> dict:
    """An acknowledgement carries what its job addressed: items, SZL id, block."""
    paired = dict(response)
    job_items, items = job.get("items"), response.get("items")
    if job_items and items is not None:
        # a poll's repeated answer to its repeated job pairs once (both come from the decode cache)
        paired["items"] = made_from(_paired_items, _pair_items, (job_items, items), MAX_PAIRED)
    elif job_items:
        paired["items"] = job_items
    return inherit(paired, job, ("szl_id", "szl_index", "block_type", "block_number", "pi_service", "filename"))


def _pair_items(job_items: tuple, items: tuple) -> tuple:
    return tuple(dict(asked, **{k: v for k, v in got.items() if k not in asked})
                 for asked, got in zip(job_items, items)) + tuple(items[len(job_items):])


def _s7plus_fields(unit: bytes) -> tuple[str, str, int | None, dict[str, Any]]:
    header = s7p.S7PlusHeader(unit)
    fields: dict[str, Any] = {"version": header.version, "integrity": bool(header.getfieldval("digest"))}
    body = bytes(header.body)
    if header.version == 0xFE or not body:
        return "notification", "keep_alive", None, fields
    require(body, S7PLUS_OPERATION.get(body[0], 9), "S7comm-plus operation header")
    operation = s7p.S7PlusOperation(body)
    opcode = operation.opcode
    fields["opcode"] = opcode
    direction = {0x31: "request", 0x32: "response", 0x02: "response"}.get(opcode, "notification")
    if opcode == 0x33:
        fields["object_ids"] = (operation.subscription_id,)
        return direction, "notification", None, fields
    if opcode not in s7p.OPCODES:        # seen in ordinary TIA Portal sessions: unknown, not malformed
        return direction, f"unknown_opcode_{opcode:#04x}", None, fields
    code = operation.function
    fields["seq_num"] = operation.seq_num
    if opcode == 0x31:
        fields["session_id"] = operation.session_id
        rest = bytes(operation.rest)
        if len(rest) >= 5:
            fields["object_ids"] = (s7p.S7PlusObjectRequest(rest).object_id,)
        if code in s7p.MULTI_VARIABLE_FUNCTIONS:
            addresses = _s7plus_addresses(rest)
            if addresses:
                fields["addresses"] = addresses
        elif code == s7p.EXPLORE:
            attributes = _explore_attributes(rest)
            if attributes is not None:
                fields["attribute_ids"] = attributes
    return direction, s7p.FUNCTIONS.get(code, f"function_{code:#06x}"), code, fields


def _explore_attributes(rest: bytes) -> tuple | None:
    """The attribute ids an Explore request asks for — empty when it asks for all of them,
    which is how TIA Portal reads whole blocks, code included — or None when a filter value
    precedes the list or the body does not parse."""
    try:
        request = s7p.S7PlusExploreRequest(rest)
    except Exception:      # a body this decoder does not understand is left undecoded
        return None
    if request.filtered != 0 or max(request.children, request.unknown, request.parents) > 1:
        return None
    return tuple(request.attribute_ids)


def _s7plus_addresses(rest: bytes) -> tuple:
    """Item addresses of a Get/SetMultiVariables request, sent in clear in every version;
    kept only when they add up to the field count the request announces."""
    try:
        request = s7p.S7PlusMultiVariables(rest)
    except Exception:      # a body this decoder does not understand is left undecoded
        return ()
    addresses = request.addresses
    if not addresses or request.field_count != sum(3 + a.lid_count for a in addresses):
        return ()
    out = []
    for a in addresses:
        address = {"symbol_crc": a.symbol_crc, "access_area": a.access_area, "lids": tuple(a.lids)}
        if a.access_area & 0xFFFF0000 == s7p.DB_ACCESS_AREA:
            address["db"] = a.access_area & 0xFFFF
        out.append(address)
    return tuple(out)


Session = S7Session
