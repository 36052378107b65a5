"""Modbus/TCP: recognise it, frame it by MBAP length, and turn ADUs into Events."""

from __future__ import annotations

import struct
from typing import Any

from scapy.packet import Raw

from icsguard.budget import Pool
from icsguard.events import MODBUS_PORTS, sender_direction
from icsguard.parsers import modbus as layers
from icsguard.protocols.decode_cache import DecodeCache
from icsguard.protocols.framing import looks_like
from icsguard.protocols.malformed import reason
from icsguard.protocols.pairing import Outstanding, inherit

NAME = "modbus"
PORTS = MODBUS_PORTS
MAX_OUTSTANDING = 1024   # unanswered requests remembered per connection

_mbap = struct.Struct("!HHHB")


def pdu_length(data: bytes, pos: int, strict: bool = False) -> int | str:
    """MBAP framing: protocol id 0, a length that fits a Modbus PDU, a sane function code.

    Strict (hunting for a header after a gap): only function codes that real
    devices use, so that register values are not mistaken for a header.
    """
    if len(data) - pos < 8:
        if len(data) - pos >= 4 and data[pos + 2:pos + 4] != b"\x00\x00":
            return "MBAP protocol id is not 0"
        return 0
    _tid, proto, length, _unit = _mbap.unpack_from(data, pos)
    if proto:
        return f"MBAP protocol id is {proto}, not 0"
    code = data[pos + 7]
    limit = layers.MAX_ADU_LENGTH - 6 if code not in layers.OVERSIZED_CODES else 0xFFFF
    if length < 2 or length > limit:
        return f"MBAP length {length} is outside 2..{limit}"
    if strict and code & 0x7F not in layers.KNOWN_CODES:
        return f"function code {code} is not in use"
    return 6 + length


def signature(data: bytes, on_port: bool) -> bool | None:
    """MBAP frames; off port 502 only with function codes real devices use."""
    return looks_like(data, pdu_length, on_port, strict=not on_port)


def orient(pdus: list[tuple[tuple, bytes]], peer) -> tuple | None:
    """Which side is the client, judged from PDUs alone (for connections on unknown ports
    joined mid-stream). None while the PDUs seen so far do not tell."""
    for side, adu in pdus:
        pdu = adu[7:]
        if pdu[0] & 0x80:
            return peer(side)                   # only servers send exception responses
        as_request = layers.expected_pdu_length(pdu, True)
        as_response = layers.expected_pdu_length(pdu, False)
        fits_request = as_request is None or as_request == len(pdu)
        fits_response = as_response is None or as_response == len(pdu)
        if fits_request != fits_response:
            return side if fits_request else peer(side)
    first_sender: dict[bytes, tuple] = {}       # a request comes before its response
    for side, adu in pdus:
        sender = first_sender.setdefault(adu[:2], side)
        if sender != side:
            return sender
    return None


def _bits(octets, count: int | None) -> tuple:
    bits = tuple((byte >> i) & 1 for byte in octets for i in range(8))
    return bits[:count] if count is not None else bits


def normalise(adu: bytes, request: bool) -> dict[str, Any]:
    """Protocol fields of one ADU, without the transaction id (so results can be cached)."""
    pdu = adu[7:]
    packet = (layers.ModbusRequest if request else layers.ModbusResponse)(adu)
    body = packet.payload
    code = pdu[0]
    fields: dict[str, Any] = {"unit_id": adu[6], "function_code": code & 0x7F}
    get = body.getfieldval
    names = {f.name for f in body.fields_desc}
    if isinstance(body, layers.ModbusException):
        fields["exception_code"] = get("exceptCode")
        fields["function"] = layers.function_name(code & 0x7F)
        return _checked(fields, pdu, request)
    if isinstance(body, Raw):        # too short for its function's layout: keep what is there
        fields["function"] = layers.function_name(code, pdu[1] if code == 43 and len(pdu) > 1 else None)
        fields.update(_leading_fields(pdu, request))
        fields["malformed"] = f"PDU of {len(pdu)} bytes is too short for {fields['function']}"
        return fields
    mei = get("MEIType") if "MEIType" in names else None
    fields["function"] = layers.function_name(code, mei)
    if mei is not None:
        fields["mei_type"] = mei
    if code == 7:   # contrib calls FC 7's output byte "startAddr"; it is data
        if not request:
            fields["values"] = (get("startAddr"),)
        return _checked(fields, pdu, request, body)
    for source, target in _SIMPLE_FIELDS:
        if source in names:
            fields[target] = get(source)
    if "registerVal" in names:
        fields["values"] = tuple(get("registerVal"))
    elif "FIFOVal" in names:
        fields["values"] = tuple(get("FIFOVal"))
    elif "registerValue" in names:
        fields["values"] = (get("registerValue"),)
    elif "outputValue" in names:
        raw = get("outputValue")
        fields["values"] = (1 if raw == 0xFF00 else 0 if raw == 0 else raw,)
    elif code == 15 and request:
        fields["values"] = _bits(get("outputsValue"), get("quantityOutput"))
    elif code == 16 and request:
        fields["values"] = tuple(get("outputsValue"))
    elif "coilStatus" in names or "inputStatus" in names:
        fields["values"] = _bits(get("coilStatus" if "coilStatus" in names else "inputStatus"), None)
    if "writeRegistersValue" in names:
        fields["write_values"] = tuple(get("writeRegistersValue"))
    if code == 11 and not request:
        fields["values"] = (get("status"), get("eventCount"))
    if code == 12 and not request:
        fields["values"] = (get("status"), get("eventCount"), get("messageCount"), *bytes(get("event") or b""))
    if code == 8:
        fields["values"] = tuple(get("data"))
    if "data" in names and code != 8:
        fields["data"] = bytes(get("data")).hex()
    if mei == 14 and not request:
        fields["objects"] = _device_objects(body)
    if code in (20, 21):
        fields["records"] = _file_records(body)
    return _checked(fields, pdu, request, body)


_SIMPLE_FIELDS = (
    ("startAddr", "address"), ("outputAddr", "address"), ("registerAddr", "address"),
    ("refAddr", "address"), ("FIFOPointerAddr", "address"),
    ("quantity", "quantity"), ("quantityOutput", "quantity"), ("quantityRegisters", "quantity"),
    ("FIFOCount", "quantity"),
    ("subFunc", "subfunction"), ("andMask", "and_mask"), ("orMask", "or_mask"),
    ("readStartingAddr", "read_address"), ("readQuantityRegisters", "read_quantity"),
    ("writeStartingAddr", "write_address"),
)


def _leading_fields(pdu: bytes, request: bool) -> dict[str, int]:
    """Reference and count read straight from a truncated request, as far as its bytes go."""
    code = pdu[0]
    fields = {}
    if request and code in (1, 2, 3, 4, 5, 6, 15, 16, 22, 23, 24) and len(pdu) >= 3:
        fields["read_address" if code == 23 else "address"] = (pdu[1] << 8) | pdu[2]
        if code in (1, 2, 3, 4, 15, 16, 23) and len(pdu) >= 5:
            fields["read_quantity" if code == 23 else "quantity"] = (pdu[3] << 8) | pdu[4]
    return fields


_RECORD_FIELDS = (("fileNumber", "file"), ("recordNumber", "record"), ("recordLength", "length"))


def _file_records(body) -> tuple:
    """FC 20/21 sub-requests and sub-responses: file, record, length and the record data."""
    records = []
    item = body.payload
    while item.__class__.__name__.startswith(("ModbusReadFileSub", "ModbusWriteFileSub")):
        names = {f.name for f in item.fields_desc}
        record = {target: item.getfieldval(source) for source, target in _RECORD_FIELDS if source in names}
        for source in ("recordData", "recData"):
            if source in names:
                record["data"] = _register_bytes(item.getfieldval(source)).hex()
        records.append(record)
        item = item.payload
    return tuple(records)


def _register_bytes(value) -> bytes:
    """Record data as on the wire: Scapy gives it as bytes or as a list of 16-bit registers."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return b"".join((v & 0xFFFF).to_bytes(2, "big") for v in value or ())


def _device_objects(body) -> dict[int, str]:
    objects = {}
    item = body.payload
    while isinstance(item, layers.contrib.ModbusObjectId):
        value = item.getfieldval("value")
        objects[item.getfieldval("id")] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        item = item.payload
    return objects


def _checked(fields: dict, pdu: bytes, request: bool, body=None) -> dict:
    """Flag PDUs whose length disagrees with their own fields."""
    expected = layers.expected_pdu_length(pdu, request)
    if expected is not None and expected != len(pdu):
        fields["malformed"] = f"PDU is {len(pdu)} bytes but its fields describe {expected}"
    elif body is not None and body.haslayer(Raw) and not isinstance(body, (layers.ModbusRawPDU, layers.ModbusMEI)):
        fields["malformed"] = "trailing bytes after the PDU"
    return fields


class ModbusSession:
    """Decoding and request/response pairing for one Modbus/TCP connection."""

    def __init__(self, cache: DecodeCache, pool: Pool):
        self.outstanding = Outstanding(MAX_OUTSTANDING, pool)
        self.cache = cache

    def release(self) -> None:
        self.outstanding.release()

    def decode(self, adu: bytes, request: bool) -> tuple[str, str, str, int, dict[str, Any]]:
        """Protocol, direction, function, code and fields of one ADU; a response is paired with its request."""
        key = (request, adu[6:])
        decoded = self.cache.get(key)
        if decoded is None:
            fields = normalise(adu, request)
            decoded = (fields.pop("function"), fields.pop("function_code"), fields)
            self.cache.put(key, decoded)
        tid = (adu[0] << 8) | adu[1]
        function, code, fields = decoded
        if request:
            self.outstanding.ask(tid, decoded)
            return NAME, "request", function, code, {"transaction_id": tid, **fields}
        asked = self.outstanding.answer(tid)
        if asked is None or asked[1] != code:
            return NAME, "response", function, code, {"transaction_id": tid, **fields}
        return NAME, "response", asked[0], code, _paired(tid, code, fields, asked[2])


def undecodable(adu: bytes, request: bool, error: Exception) -> tuple[str, str, str, int, dict[str, Any]]:
    """What an ADU that could not be decoded still says: its unit and function."""
    code = adu[7] & 0x7F
    return NAME, sender_direction(request), layers.function_name(code), code, {
        "transaction_id": (adu[0] << 8) | adu[1], "unit_id": adu[6],
        "malformed": reason("Modbus", error)}


def _paired(tid: int, code: int, response: dict, request: dict) -> dict:
    """A response carries the addresses its request asked for, so each value is attributable."""
    paired = inherit({"transaction_id": tid, **response}, request,
                     ("address", "quantity", "read_address", "read_quantity", "mei_type"))
    if code in (1, 2) and "values" in paired and "quantity" in request:
        paired["values"] = paired["values"][:request["quantity"]]   # drop the last byte's padding bits
    if "read_address" in request and "address" not in response:
        paired["address"] = request["read_address"]
    return paired


Session = ModbusSession
