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

* icsguard copies its paired job's items and SZL id/index into the acknowledgement;
  Wireshark shows item addresses only in the job, an item count only where the
  parameter block has one (not in a bare Ack), and an SZL id only where the answer
  carries one. On responses those fields are compared only where Wireshark shows them.
  icsguard's item count is its ``item_count``, or else its number of items.
* Counters and timers (areas C and T) are addressed by number: Wireshark shows it as
  "Number (T/C)", icsguard as the byte with bit 0.
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

from tshark_oracle import Comparison, Key, compare, icsguard_events, keyed, pdml_packets

AREA_CODES = {"P": 0x80, "I": 0x81, "Q": 0x82, "M": 0x83, "DB": 0x84, "DI": 0x85, "L": 0x86, "V": 0x87,
              "C": 0x1C, "T": 0x1D, "IEC_C": 0x1E, "IEC_T": 0x1F,
              "SYSINFO": 0x03, "SYSFLAGS": 0x05, "AI": 0x06, "AO": 0x07}
S7ANY = 0x10

# An item: (area code, DB, byte, bit) for S7ANY addresses, ("syntax", id) for the rest.
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


def _int(text: str | None) -> int | None:
    return int(text, 0) if text else None


def _direction(rosctr: int | None, userdata_type: int | None) -> str:
    if rosctr == 7:
        return {0x4: "request", 0x7: "request", 0x8: "response", 0xB: "response"}.get(userdata_type, "notification")
    return "request" if rosctr == 1 else "response"


def _tshark_pdu(proto: ET.Element) -> S7Pdu:
    """One ``<proto name="s7comm">``: the first of each field, the items in order."""
    values: dict[str, str] = {}
    for field in proto.iter("field"):
        values.setdefault(field.get("name"), field.get("show"))
    items = []
    for item in proto.iter("field"):
        if item.get("name") != "s7comm.param.item":
            continue
        get = {field.get("name"): field.get("show") for field in item.iter("field")}.get
        syntax = _int(get("s7comm.param.item.syntaxid"))
        number = get("s7comm.param.item.address.number")      # counters and timers
        if syntax == S7ANY:
            items.append((_int(get("s7comm.param.item.area")), _int(get("s7comm.param.item.db")),
                          *((_int(number), 0) if number else (_int(get("s7comm.param.item.address.byte")),
                                                              _int(get("s7comm.param.item.address.bit"))))))
        else:
            items.append(("syntax", syntax))
    rosctr = _int(values.get("s7comm.header.rosctr"))
    error_code = _int(values.get("s7comm.header.errcod") or values.get("s7comm.param.errcod")) or None \
        if rosctr == 7 else _int(values.get("s7comm.header.errcod"))
    multipart = values.get("s7comm.param.userdata.lastdataunit") == "0x01" or "s7comm.fragments" in values
    return S7Pdu(_direction(rosctr, _int(values.get("s7comm.param.userdata.type"))), rosctr,
                 _int(values.get("s7comm.header.pduref")), _int(values.get("s7comm.param.func")),
                 _int(values.get("s7comm.param.userdata.funcgroup")), _int(values.get("s7comm.param.userdata.subfunc")),
                 _int(values.get("s7comm.param.itemcount")), tuple(items),
                 None if multipart else _int(values.get("s7comm.data.userdata.szl_id")),
                 None if multipart else _int(values.get("s7comm.data.userdata.szl_index")),
                 _int(values.get("s7comm.header.errcls")), error_code)


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
                          tuple(_item(item) for item in items or ()), get("szl_id"), get("szl_index"),
                          get("error_class"), get("error_code"))
    return pdus


def fair(tshark: S7Pdu, icsguard: S7Pdu) -> S7Pdu:
    """icsguard's tuple without what it copied from its job into a response that Wireshark does not show."""
    if not (tshark.response and icsguard.response):
        return icsguard
    return icsguard._replace(items=icsguard.items if tshark.items else (),
                             item_count=None if tshark.item_count is None else icsguard.item_count,
                             szl_id=None if tshark.szl_id is None else icsguard.szl_id,
                             szl_index=None if tshark.szl_index is None else icsguard.szl_index)


def crosscheck(path: Path) -> Comparison:
    return compare(tshark_pdus(path), icsguard_pdus(icsguard_events(path, "s7comm")), fair)
