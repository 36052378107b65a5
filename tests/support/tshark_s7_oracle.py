"""Wireshark as an oracle for icsguard's S7comm decoding.

Both sides are reduced to one tuple per S7comm PDU, keyed by (frame, index of the
PDU among those the frame completed): ROSCTR, PDU reference, function code,
userdata group and subfunction, item count, each item's area, DB, byte and bit,
SZL id and index, error class and code -- the project's acceptance criterion --
and the direction (Job/Ack or the userdata type), because a PDU read as the wrong
direction makes every other field meaningless. Areas are compared as codes, read
back from icsguard's names with a table of this module's own, so that a wrongly
named area shows.

Fairness rules, each because the two tools legitimately differ in what they show:

* icsguard copies its paired job's function, items and SZL id/index into the
  acknowledgement; Wireshark shows a function and an item count only where the
  parameter block has them (not in a bare Ack), item addresses only in the job, and
  an SZL id only where the answer carries one. On responses those fields are
  compared only where Wireshark shows them. icsguard's item count is its
  ``item_count``, or else its number of items.
* Counters and timers (areas C and T) are addressed by number: Wireshark shows it as
  "Number (T/C)", icsguard as the byte with bit 0.
* Variable-table items of programmer commands (Wireshark's "varstat") have an area,
  DB, byte and bit too, in other codes: they are compared as S7ANY areas. In a
  mode-transition push the subfunction byte is what Wireshark calls the current mode.
* A Read SZL answer too long for one PDU comes in parts (userdata "last data unit:
  no", then follow-up requests with method 0x12). Wireshark reassembles them and shows
  the SZL id on the last part; icsguard reads it from the first part's data and
  leaves continuations without one. Neither tool's SZL id is compared on such parts.
* A userdata parameter error code of 0 is "no error": icsguard leaves it out, so it is
  compared as absent.
* Wireshark 4.0 has no S7comm-plus dissector, and COTP connection PDUs are no S7comm:
  only icsguard's ``s7comm`` events take part.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import NamedTuple

from tests.support.tshark_oracle import Comparison, Key, as_int, compare, icsguard_events, keyed, pdml_packets

AREA_CODES = {"P": 0x80, "I": 0x81, "Q": 0x82, "M": 0x83, "DB": 0x84, "DI": 0x85, "L": 0x86, "V": 0x87,
              "C": 0x1C, "T": 0x1D, "IEC_C": 0x1E, "IEC_T": 0x1F,
              "SYSINFO": 0x03, "SYSFLAGS": 0x05, "AI": 0x06, "AO": 0x07}
S7ANY = 0x10
# Variable-table items (programmer commands) name their area in the high nibble of a
# memory-area byte (MB = 0x01, IW = 0x12, DBD = 0x73...), timers and counters whole.
VARSTAT_AREAS = {0x0: 0x83, 0x1: 0x81, 0x2: 0x82, 0x3: 0x80, 0x7: 0x84}
VARSTAT_NUMBERED = {0x54: 0x1D, 0x64: 0x1C}

# An item: (area code, DB, byte, bit) for S7ANY and variable-table addresses, ("syntax", id) for the rest.
Item = tuple


class S7Pdu(NamedTuple):
    direction: str
    rosctr: int | None
    pdu_ref: int | None
    function_code: int | None
    userdata_group: int | None
    userdata_subfunction: int | None
    item_count: int | None
    items: tuple[Item, ...]
    szl_id: int | None
    szl_index: int | None
    error_class: int | None
    error_code: int | None

    @property
    def response(self) -> bool:
        return self.direction == "response"

    def show(self) -> str:
        return " ".join(f"{name}={value}" for name, value in zip(self._fields, self)
                        if value not in (None, ())) or "-"


def _direction(rosctr: int | None, userdata_type: int | None) -> str:
    if rosctr == 7:
        return {0x4: "request", 0x7: "request", 0x8: "response", 0xB: "response"}.get(userdata_type, "notification")
    return "request" if rosctr == 1 else "response"


def _tshark_item(item: ET.Element) -> Item:
    """One ``s7comm.param.item``: an S7ANY address, a variable-table address, or another syntax."""
    shows = {field.get("name"): field.get("show") for field in item.iter("field")}

    def get(name: str) -> int | None:
        return as_int(shows.get(name))

    if get("s7comm.varstat.req.memory_area") is not None:
        memory = get("s7comm.varstat.req.memory_area")
        area = VARSTAT_NUMBERED.get(memory) or VARSTAT_AREAS.get(memory >> 4, memory)
        return area, get("s7comm.varstat.req.db_number"), get("s7comm.varstat.req.startaddress"), \
            get("s7comm.varstat.req.bitpos") or 0
    if get("s7comm.param.item.syntaxid") != S7ANY:
        return "syntax", get("s7comm.param.item.syntaxid")
    number = get("s7comm.param.item.address.number")      # counters and timers
    return (get("s7comm.param.item.area"), get("s7comm.param.item.db"),
            *((number, 0) if number is not None else (get("s7comm.param.item.address.byte"),
                                                      get("s7comm.param.item.address.bit"))))


def _tshark_pdu(proto: ET.Element) -> S7Pdu:
    """One ``<proto name="s7comm">``: the first of each field, the items in order."""
    values: dict[str, str] = {}
    for field in proto.iter("field"):
        values.setdefault(field.get("name"), field.get("show"))
    items = tuple(_tshark_item(item) for item in proto.iter("field") if item.get("name") == "s7comm.param.item")
    rosctr = as_int(values.get("s7comm.header.rosctr"))
    if rosctr == 7:
        error_code = as_int(values.get("s7comm.param.errcod")) or None
    else:
        error_code = as_int(values.get("s7comm.header.errcod"))
    multipart = values.get("s7comm.param.userdata.lastdataunit") == "0x01" or "s7comm.fragments" in values
    return S7Pdu(_direction(rosctr, as_int(values.get("s7comm.param.userdata.type"))), rosctr,
                 as_int(values.get("s7comm.header.pduref")), as_int(values.get("s7comm.param.func")),
                 as_int(values.get("s7comm.param.userdata.funcgroup")),
                 as_int(values.get("s7comm.param.userdata.subfunc") or values.get("s7comm.param.modetrans.subfunc")),
                 as_int(values.get("s7comm.param.itemcount") or values.get("s7comm.varstat.item_count")), items,
                 None if multipart else as_int(values.get("s7comm.data.userdata.szl_id")),
                 None if multipart else as_int(values.get("s7comm.data.userdata.szl_index")),
                 as_int(values.get("s7comm.header.errcls")), error_code)


def tshark_pdus(path: Path) -> dict[Key, S7Pdu]:
    """Wireshark's tuple for every S7comm PDU it dissects, from PDML, which keeps each
    PDU's items inside it."""
    pdus: dict[Key, S7Pdu] = {}
    for frame, packet in pdml_packets(path, "s7comm", "s7comm"):
        for index, proto in enumerate(packet.findall("proto[@name='s7comm']")):
            pdus[frame, index] = _tshark_pdu(proto)
    return pdus


def _item(item: dict) -> Item:
    if "area" not in item:
        return "syntax", item.get("syntax_id")
    area = item["area"]
    return AREA_CODES.get(area) or int(area, 16), item["db"], item["byte"], item["bit"]


def icsguard_pdus(events: list[dict]) -> dict[Key, S7Pdu]:
    pdus: dict[Key, S7Pdu] = {}
    for key, event in keyed(events):
        get = event.get
        items = get("items")
        pdus[key] = S7Pdu(event["direction"], get("rosctr"), get("pdu_ref"), get("function_code"),
                          get("userdata_group"), get("userdata_subfunction"),
                          get("item_count", None if items is None else len(items)),
                          # data-only items (answers and pushes nobody asked for here) are no parameter items
                          tuple(_item(item) for item in items or () if "area" in item or "syntax_id" in item),
                          get("szl_id"), get("szl_index"),
                          get("error_class"), get("error_code"))
    return pdus


def fair(tshark: S7Pdu, icsguard: S7Pdu) -> S7Pdu:
    """icsguard's tuple without what it copied from its job into a response that Wireshark does not show."""
    if not (tshark.response and icsguard.response):
        return icsguard
    return icsguard._replace(function_code=None if tshark.function_code is None else icsguard.function_code,
                             items=icsguard.items if tshark.items else (),
                             item_count=None if tshark.item_count is None else icsguard.item_count,
                             szl_id=None if tshark.szl_id is None else icsguard.szl_id,
                             szl_index=None if tshark.szl_index is None else icsguard.szl_index)


def crosscheck(path: Path) -> Comparison:
    return compare(tshark_pdus(path), icsguard_pdus(icsguard_events(path, "s7comm")), fair)
