"""What a request touches, which exchange it belongs to, and the values a PDU states.

The baseline and the model's windows both ask these of every event, and polls repeat a
few requests all day, so the answers are worked out once per distinct request and held
by one ``Targets`` object that a run owns and hands to both detectors.
"""

from __future__ import annotations

from typing import Any, Iterator

from icsguard.bounded import made_from, remember
from icsguard.events import Event, hashable

MAX_NODES = 64             # OPC UA nodes and S7comm-plus variables of one request considered
MAX_S7_BYTES = 512         # S7 data bytes of one PDU whose values are learned (as 256 Modbus registers)
MAX_SHAPES = 50_000        # distinct requests remembered with their targets
MAX_LAYOUTS = 4096         # value layouts (a poll's registers, a read's nodes) remembered

MODBUS_TABLES = {
    "read_coils": "coil", "write_single_coil": "coil", "write_multiple_coils": "coil",
    "read_discrete_inputs": "discrete_input", "read_input_registers": "input_register",
    "read_holding_registers": "holding_register", "write_single_register": "holding_register",
    "write_multiple_registers": "holding_register", "mask_write_register": "holding_register",
    "read_write_multiple_registers": "holding_register",
}

Target = tuple[str, "int | None", "int | None"]      # (space, first, last address)


class Targets:
    """Targets and channels of events, remembered. A target depends only on fields that
    are part of the channel, so the targets of a request are looked up by its channel."""

    def __init__(self) -> None:
        self._channel_of: tuple = (None, ())     # (the latest event, its channel)
        self._targets_of: tuple = (None, ())     # (the latest event, its targets)
        self._shapes: dict[tuple, tuple] = {}    # a channel less its pair -> targets
        self._parts: dict[tuple, tuple] = {}     # channel parts made from decoded lists
        self._s7_slots: dict[tuple, tuple] = {}  # S7 values' layouts made from decoded items

    def channel(self, event: Event) -> tuple:
        """The exchange a request belongs to: same pair, function and targets (every field
        ``of`` reads is in it)."""
        if self._channel_of[0] is event:
            return self._channel_of[1]
        fields = event.fields
        items = fields.get("items")
        nodes = fields.get("node_ids")
        addresses = fields.get("addresses")
        detail = (fields.get("unit_id"), fields.get("address"), fields.get("quantity"), fields.get("szl_id"),
                  fields.get("block_type"), fields.get("block_number"), fields.get("service"),
                  fields.get("read_address"), fields.get("read_quantity"), fields.get("write_address"),
                  len(fields["write_values"]) if "write_values" in fields else None,
                  made_from(self._parts, _item_part, (items,), MAX_SHAPES) if items else None,
                  tuple(nodes[:MAX_NODES]) if nodes else None,
                  made_from(self._parts, _address_part, (addresses,), MAX_SHAPES) if addresses else None)
        key = (event.src, event.dst, event.proto, event.function, detail)
        self._channel_of = (event, key)
        return key

    def of(self, event: Event) -> tuple[Target, ...]:
        """What a request touches, as (space, first, last address): a Modbus unit's table and
        registers, an S7 area or DB and bytes, a block, an SZL; an OPC UA node or an S7comm-plus
        variable (no address: each is a space of its own)."""
        if self._targets_of[0] is not event:
            shape = self.channel(event)[2:]
            found = self._shapes.get(shape)
            if found is None:
                found = tuple(_targets(event))
                remember(self._shapes, shape, found, MAX_SHAPES)
            self._targets_of = (event, found)
        return self._targets_of[1]

    def slots(self, event: Event) -> tuple[tuple | None, Any]:
        """(layout, values): what holds each position of the values a PDU states — (unit, table,
        first register, count) for Modbus, ("node", node ids) for OPC UA, ("s7", items' DBs,
        first bytes and counts) for S7 — or (None, ()). Polls repeat a few layouts all day."""
        fields = event.fields
        if event.proto == "modbus":
            if "write_values" in fields:
                start, found = fields.get("write_address"), fields.get("write_values")
                table = "holding_register"
            else:
                start, found = fields.get("address"), fields.get("values")
                table = MODBUS_TABLES.get(event.function)
            if table is None or not isinstance(start, int) or not found:
                return None, ()
            if len(found) > 256:
                found = found[:256]
            return (fields.get("unit_id"), table, start, len(found)), found
        if event.proto == "opcua":
            nodes, found = fields.get("node_ids"), fields.get("values")
            if not nodes or not found or len(nodes) != len(found):
                return None, ()
            nodes = tuple(nodes[:MAX_NODES])
            return ("node", nodes), found[:len(nodes)]
        if event.proto == "s7comm" and not (event.function == "write_var" and event.direction == "response"):
            items = fields.get("items")         # (a write's acknowledgement repeats what was written)
            if items:
                return made_from(self._s7_slots, _s7_slots, (items,), MAX_LAYOUTS)
        return None, ()

    def values(self, event: Event) -> Iterator[tuple[tuple, float]]:
        """Numeric values the PDU states, as (what holds it, value): Modbus registers read or
        written, OPC UA node values read, written or notified, S7 data-block bytes read or
        written. Booleans and text are left out."""
        layout, found = self.slots(event)
        if layout is not None:
            for holder, value in zip(holders(layout), found):
                if value.__class__ in (int, float):
                    yield holder, value


def holders(layout: tuple) -> list[tuple]:
    """What holds each position of a layout: (unit, table, register), ("node", node id) or
    ("s7", DB, byte)."""
    if layout[0] == "node":
        return [("node", node) for node in layout[1]]
    if layout[0] == "s7":
        return [("s7", space, byte + offset) for space, byte, count in layout[1] for offset in range(count)]
    unit, table, start, count = layout
    return [(unit, table, start + offset) for offset in range(count)]


def _targets(event: Event) -> Iterator[Target]:
    fields = event.fields
    proto = event.proto
    if proto == "modbus":
        unit = fields.get("unit_id")
        if "read_address" in fields:
            yield from _span(f"unit {unit} holding_register", fields["read_address"], fields.get("read_quantity"))
            yield from _span(f"unit {unit} holding_register", fields.get("write_address"),
                             len(fields.get("write_values") or ()) or 1)
            return
        table = MODBUS_TABLES.get(event.function)
        if table is not None and fields.get("address") is not None:
            yield from _span(f"unit {unit} {table}", fields["address"], fields.get("quantity"))
    elif proto == "s7comm":
        for item in fields.get("items") or ():
            if item.get("areas"):                  # a DBREAD item (WinCC): several DB ranges in one
                for part in item["areas"]:
                    yield from _span(f"DB{part.get('db')}", part.get("byte"), part.get("length") or 1)
                continue
            area = item.get("area")
            if area is None:
                continue
            space = f"DB{item.get('db')}" if area == "DB" else str(area)
            length = item.get("length") or 1
            yield from _span(space, item.get("byte"), length) if isinstance(item.get("byte"), int) else \
                ((space, None, None),)
        if fields.get("block_type") is not None:
            yield from _span(f"block {fields['block_type']}", fields.get("block_number"), 1)
        if fields.get("szl_id") is not None:
            yield from _span("SZL", fields["szl_id"], 1)
    elif proto == "s7comm-plus":
        for address in (fields.get("addresses") or ())[:MAX_NODES]:     # a variable: its area and LID path
            area = f"DB{address['db']}" if "db" in address else f"area {address.get('access_area')}"
            yield f"variable {area} {'.'.join(map(str, address.get('lids') or ()))}", None, None
    elif proto == "opcua":
        for node in (fields.get("node_ids") or ())[:MAX_NODES]:
            yield f"node {node}", None, None


def _span(space: str, address: Any, quantity: Any) -> Iterator[tuple[str, int, int]]:
    if isinstance(address, int):
        count = quantity if isinstance(quantity, int) and quantity > 1 else 1
        yield space, address, address + min(count, 65536) - 1


def _s7_slots(items) -> tuple[tuple | None, bytes]:
    """The data-block bytes of S7 items as one run, and where each byte sits. Data blocks
    hold the numbers (setpoints, measurements); flags, inputs and outputs are bits packed in
    bytes, and a command bit's value is no range: new ones are new targets. The types are
    not on the wire (an HMI reads a DB as bytes and knows what they mean), so each byte is a
    value of its own; a big-endian number out of its range has a byte out of range too."""
    layout, hexes, room = [], [], MAX_S7_BYTES
    for item in items:
        hexed = item.get("data")
        if hexed and item.get("area") == "DB" and item.get("transport_size") != "BIT" and \
                item.get("return_code", "success") == "success":
            byte = item.get("byte")
            if byte.__class__ is int:
                count = min(len(hexed) // 2, room)
                layout.append((f"DB{item.get('db')}", byte, count))
                hexes.append(hexed[:2 * count])
                room -= count
                if not room:
                    break
    return (("s7", tuple(layout)), bytes.fromhex("".join(hexes))) if hexes else (None, b"")


def _item_part(items) -> tuple:
    return tuple((i.get("area"), i.get("db"), i.get("byte"), i.get("bit"), i.get("length"),
                  tuple((a.get("db"), a.get("byte"), a.get("length")) for a in i.get("areas") or ()))
                 for i in items)


def _address_part(addresses) -> tuple:
    return hashable(addresses[:MAX_NODES])
