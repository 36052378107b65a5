"""Real S7comm peers on loopback: a python-snap7 server and client, recorded with tcpdump.

The S7 counterpart of peers.py, whose ``record`` it uses. python-snap7 3.x is a
pure Python S7 stack; captures made here hold what it really puts on the wire,
including the requests its server refuses and the odd frames its client sends,
so parsers are tested against a real stack rather than hand-built frames.

Typical use::

    transcript = capture("s7.pcap", reads_and_writes, port=102)

Each scenario opens one connection and returns its *transcript*: a list of
JSON-ready dicts, the first for the connection and then one per client call.

Every entry has ``call`` (the python-snap7 method, or "connect"), ``error``
(None, or "ExceptionType: message" when the server refused) and ``pdus``: the
S7 PDUs the call put on the wire and got back, in order, each
``{"from": "client"|"server", "rosctr", "pdu_ref", "function", "group",
"subfunction", "error"}`` (``function`` is the first parameter byte of job and
ack-data PDUs; ``group``/``subfunction`` are set for user data; ``error`` is
the ack/ack-data header's error class and code as one int).
Other keys, by call (result keys only when ``error`` is None):

- connect: rack, slot, local_tsap, remote_tsap, pdu_size (negotiated), client_host, client_port
- db_read, db_write, read_area, write_area: area (S7 area code), area_name, db (None
  outside DBs), start (byte, or element for CT/TM), bit (None unless bit access),
  size (elements), word_len (S7 transport size), data (hex written or read)
- read_multi_vars, write_multi_vars: items, a list of the area keys above
- read_szl: szl_id, szl_index; szl_data (hex, after the SZL id and index)
- read_szl_list: szl_data, szl_ids
- get_cpu_info: module_type, serial_number, as_name, module_name, copyright
- get_order_code: order_code, version ("V1.V2.V3")
- get_cp_info: max_pdu_length, max_connections, max_mpi_rate, max_bus_rate
- get_protection: sch_schal, sch_par, sch_rel, bart_sch, anl_sch
- get_cpu_state: cpu_state
- get_plc_datetime, set_plc_datetime: datetime (ISO 8601)
- list_blocks: blocks ({"OB": count, ...})
- list_blocks_of_type, get_block_info, upload, full_upload, download, delete:
  block_type (code), block_type_name, then max_count and block_numbers, or
  block_number and block_info / data (hex) and size
- set_session_password: password; compress, copy_ram_to_rom: timeout (ms)
"""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import snap7.client
from snap7.client import Client
from snap7.connection import ISOTCPConnection
from snap7.error import S7ProtocolError
from snap7.server import Server
from snap7.type import Area, Block, SrvArea, WordLen

from tests.support.peers import CLIENT_HOST, HOST, record

S7_PORT = 102
RACK, SLOT = 0, 1

# Initial contents of every area the server holds, keyed (area name, index).
# DB1 is longer than one 480-byte PDU can carry, so reading it all takes several.
INITIAL_AREAS: dict[tuple[str, int], bytes] = {
    ("DB", 1): bytes(index % 256 for index in range(1024)),
    ("DB", 2): bytes(range(0xC0, 0x100)),
    ("MK", 0): bytes(range(0x80, 0xA0)),
    ("PE", 0): bytes(range(0x10, 0x20)),
    ("PA", 0): bytes(16),
    ("CT", 0): b"".join(count.to_bytes(2, "big") for count in range(16)),   # 16 counters
    ("TM", 0): b"".join((0x1000 + t).to_bytes(2, "big") for t in range(16)),  # 16 timers
}
# One polling cycle for the bench: (area, db, start byte, size).
POLL_CYCLE = (
    (Area.DB, 1, 0, 16),
    (Area.DB, 1, 100, 4),
    (Area.DB, 2, 0, 8),
    (Area.MK, 0, 0, 8),
    (Area.PE, 0, 0, 4),
)


# --------------------------------------------------------------------------- #
# Server
# --------------------------------------------------------------------------- #
def initial_areas() -> list[dict]:
    """INITIAL_AREAS in transcript terms: area (S7 code), area_name, db, data (hex)."""
    return [{"area": int(Area[name]), "area_name": name, "db": index if name == "DB" else None,
             "data": data.hex()} for (name, index), data in INITIAL_AREAS.items()]


def start_server(port: int = S7_PORT) -> Server:
    """A python-snap7 server on HOST:``port`` holding fresh copies of INITIAL_AREAS.

    ``start_to`` binds HOST only (``start`` would listen on 0.0.0.0). Port 0
    picks a free one, see ``.port``. Stop it with ``.stop()`` or a ``with`` block.
    """
    server = Server(log=False)
    for (name, index), data in INITIAL_AREAS.items():
        server.register_area(SrvArea[name], index, bytearray(data))
    server.start_to(HOST, port)
    server.port = server.server_socket.getsockname()[1]
    return server


# --------------------------------------------------------------------------- #
# Client
# --------------------------------------------------------------------------- #
def _pdu(sender: str, pdu: bytes) -> dict:
    """The S7 header fields that identify ``pdu`` in a capture."""
    rosctr = pdu[1]
    header_length = 12 if rosctr in (2, 3) else 10
    params = pdu[header_length:header_length + int.from_bytes(pdu[6:8], "big")]
    user_data = rosctr == 7 and len(params) >= 7
    return {
        "from": sender,
        "rosctr": rosctr,
        "pdu_ref": int.from_bytes(pdu[4:6], "big"),
        "function": params[0] if params and rosctr != 7 else None,
        "group": params[5] & 0x0F if user_data else None,
        "subfunction": params[6] if user_data else None,
        "error": int.from_bytes(pdu[10:12], "big") if header_length == 12 else None,
    }


class _Connection(ISOTCPConnection):
    """ISO-on-TCP from ``source`` (CLIENT_HOST) that appends every S7 PDU it carries to ``trace``."""

    def __init__(self, *args, trace: list[dict] | None, source: str = CLIENT_HOST, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.trace = trace
        self.source = source

    def _tcp_connect(self) -> None:
        self.socket = socket.create_connection((self.host, self.port), self.timeout,
                                               source_address=(self.source, 0))
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as python-snap7 does

    def send_data(self, data: bytes) -> None:
        super().send_data(data)
        if self.trace is not None:
            self.trace.append(_pdu("client", data))

    def receive_data(self) -> bytes:
        data = super().receive_data()
        if self.trace is not None:
            self.trace.append(_pdu("server", data))
        return data


_CONNECT_LOCK = threading.Lock()


class _Client(Client):
    """python-snap7's client, connecting from ``source`` (default CLIENT_HOST) and tracing
    PDUs into ``trace``."""

    def __init__(self, trace: list[dict] | None = None, source: str = CLIENT_HOST) -> None:
        super().__init__()
        self.trace = trace
        self.source = source

    def _connect(self, address: str, rack: int, slot: int, tcp_port: int) -> Client:
        # python-snap7 has no source-address option and creates its connection
        # inside _connect, so the class is swapped for the length of that call.
        connection = functools.partial(_Connection, trace=self.trace, source=self.source)
        with _CONNECT_LOCK, mock.patch.object(snap7.client, "ISOTCPConnection", connection):
            return super()._connect(address, rack, slot, tcp_port)


def _word_len(area: Area, bit: int | None) -> WordLen:
    """The word length python-snap7 uses for ``area`` (BIT when a bit is given)."""
    if bit is not None:
        return WordLen.Bit
    return {Area.CT: WordLen.Counter, Area.TM: WordLen.Timer}.get(area, WordLen.Byte)


def _area_fields(area: Area, db: int, start: int, size: int, bit: int | None = None,
                 data: bytes | None = None) -> dict:
    """An area access as transcript keys; ``data`` (written or read) only when given."""
    fields = {"area": int(area), "area_name": area.name, "db": db if area is Area.DB else None,
              "start": start, "bit": bit, "size": size, "word_len": int(_word_len(area, bit))}
    return fields if data is None else {**fields, "data": data.hex()}


def _text(value: bytes) -> str:
    return value.rstrip(b"\x00").decode("latin-1")


def _block_fields(block_type: Block, **fields) -> dict:
    return {"block_type": int(block_type), "block_type_name": block_type.name, **fields}


class Session:
    """One client connection from ``source`` to HOST:``port`` and the transcript of what it did.
    ``source`` may be any loopback address (127.0.0.0/8), to play several hosts."""

    def __init__(self, port: int, rack: int = RACK, slot: int = SLOT, source: str = CLIENT_HOST) -> None:
        self._trace: list[dict] = []
        self.client = _Client(self._trace, source)
        self.client.connect(HOST, rack, slot, port)
        client_host, client_port = self.client.connection.socket.getsockname()
        self.transcript = [{
            "call": "connect", "rack": rack, "slot": slot,
            "local_tsap": self.client.local_tsap, "remote_tsap": self.client.remote_tsap,
            "pdu_size": self.client.pdu_length, "client_host": client_host,
            "client_port": client_port, "error": None, "pdus": self._take()}]

    def _take(self) -> list[dict]:
        pdus = self._trace[:]
        self._trace.clear()
        return pdus

    def call(self, name: str, *args, request: dict | None = None,
             result: Callable[[Any], dict] = lambda value: {}) -> Any:
        """Run ``client.<name>(*args)`` and record it; a refusal is recorded, not raised.

        ``request`` holds the entry's argument keys, ``result`` turns the return
        value into its result keys. Connection losses and timeouts still raise.
        """
        entry = {"call": name, **(request or {})}
        try:
            value = getattr(self.client, name)(*args)
        except (S7ProtocolError, RuntimeError) as exc:  # python-snap7 raises both for refusals
            value, entry["error"] = None, f"{type(exc).__name__}: {exc}"
        else:
            entry.update(result(value))
            entry["error"] = None
        entry["pdus"] = self._take()
        self.transcript.append(entry)
        return value

    def read(self, area: Area, db: int, start: int, size: int, bit: int | None = None) -> None:
        """db_read for DB bytes, read_area otherwise; ``size`` counts elements."""
        request = _area_fields(area, db, start, size, bit)
        if area is Area.DB and bit is None:
            self.call("db_read", db, start, size, request=request,
                      result=lambda data: {"data": data.hex()})
        else:
            address = start if bit is None else start * 8 + bit
            self.call("read_area", area, db, address, size, _word_len(area, bit), request=request,
                      result=lambda data: {"data": data.hex()})

    def write(self, area: Area, db: int, start: int, data: bytes, bit: int | None = None) -> None:
        """db_write for DB bytes, write_area otherwise (a bit write sends one byte, 0 or 1)."""
        size = 1 if bit is not None else len(data) // (2 if area in (Area.CT, Area.TM) else 1)
        request = _area_fields(area, db, start, size, bit, data)
        if area is Area.DB and bit is None:
            self.call("db_write", db, start, bytearray(data), request=request)
        else:
            address = start if bit is None else start * 8 + bit
            self.call("write_area", area, db, address, bytearray(data), _word_len(area, bit),
                      request=request)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info) -> None:
        self.client.disconnect()


# --------------------------------------------------------------------------- #
# Scenarios
# --------------------------------------------------------------------------- #
def reads_and_writes(port: int, rack: int = RACK, slot: int = SLOT) -> list[dict]:
    """DB, merker, I/O, counter and timer reads and writes, one bit write, multi-var
    reads and writes, and three the server refuses (unknown DB, past a DB's end).

    DB1 read whole and a 600-byte write each take several PDUs. python-snap7's
    write_multi_vars sends one write job per item, and read_multi_vars builds a
    request it never sends (a PDU reference goes missing), so ``pdus`` tells
    what really went out.
    """
    with Session(port, rack, slot) as s:
        s.read(Area.DB, 1, 0, 16)
        s.read(Area.DB, 1, 100, 4)
        s.read(Area.DB, 2, 0, 12)
        s.read(Area.DB, 1, 0, 1024)
        s.write(Area.DB, 1, 200, bytes.fromhex("deadbeef"))
        s.read(Area.DB, 1, 198, 8)
        s.write(Area.DB, 1, 300, bytes(index % 251 for index in range(600)))
        s.read(Area.DB, 1, 300, 600)
        s.write(Area.DB, 2, 20, b"icsguard")
        s.read(Area.DB, 2, 16, 16)
        s.read(Area.MK, 0, 0, 8)
        s.write(Area.MK, 0, 4, b"\x5a\xa5")
        s.read(Area.MK, 0, 0, 8)
        s.read(Area.PE, 0, 0, 4)
        s.write(Area.PA, 0, 0, b"\x0f\xf0")
        s.read(Area.PA, 0, 0, 4)
        s.read(Area.CT, 0, 0, 4)
        s.write(Area.CT, 0, 2, b"\x00\x99")
        s.read(Area.CT, 0, 0, 4)
        s.read(Area.TM, 0, 0, 4)
        s.write(Area.DB, 2, 3, b"\x01", bit=5)
        s.read(Area.DB, 2, 3, 1, bit=5)
        s.read(Area.DB, 2, 0, 8)  # the server stored the whole byte, not one bit
        items = [(Area.DB, 1, 0, 4), (Area.MK, 0, 2, 2), (Area.DB, 2, 10, 3), (Area.PE, 0, 1, 1)]
        s.call("read_multi_vars",
               [{"area": area, "db_number": db, "start": start, "size": size}
                for area, db, start, size in items],
               request={"items": [_area_fields(*item) for item in items]},
               result=lambda value: {"items": [
                   _area_fields(*item, data=bytes(data)) for item, data in zip(items, value[1])]})
        writes = [(Area.DB, 1, 8, b"\x11\x22"), (Area.MK, 0, 16, b"\x33"), (Area.PA, 0, 4, b"\x44")]
        s.call("write_multi_vars",
               [{"area": area, "db_number": db, "start": start, "data": bytearray(data)}
                for area, db, start, data in writes],
               request={"items": [_area_fields(area, db, start, len(data), data=data)
                                  for area, db, start, data in writes]})
        s.read(Area.DB, 99, 0, 4)
        s.read(Area.DB, 2, 60, 8)
        s.write(Area.DB, 99, 0, b"\x01\x02")
        return s.transcript


def identification(port: int, rack: int = RACK, slot: int = SLOT) -> list[dict]:
    """CPU and module identification over SZL, the CPU state and the PLC clock.

    The server knows SZL 0x0000, 0x0011, 0x001C, 0x0131 and 0x0232 only, so
    0x0424 (CPU state) is refused; its 0x0011 records are 26 bytes, not 28,
    which Wireshark calls malformed. python-snap7's get_cpu_state does not read
    SZL 0x0424 either: it sends a read-var job with no item count (malformed
    too; the server answers with DB1 bytes 0..3) and always returns
    "S7CpuStatusRun".
    """
    with Session(port, rack, slot) as s:
        s.call("get_cpu_info", result=lambda info: {
            "module_type": _text(info.ModuleTypeName), "serial_number": _text(info.SerialNumber),
            "as_name": _text(info.ASName), "module_name": _text(info.ModuleName),
            "copyright": _text(info.Copyright)})
        s.call("get_order_code", result=lambda code: {
            "order_code": _text(code.OrderCode), "version": f"{code.V1}.{code.V2}.{code.V3}"})
        for szl_id in (0x0011, 0x001C, 0x0424):
            s.call("read_szl", szl_id, 0, request={"szl_id": szl_id, "szl_index": 0},
                   result=lambda szl: {"szl_data": bytes(szl.Data[:szl.Header.LengthDR]).hex()})
        s.call("read_szl_list", result=lambda data: {
            "szl_data": data.hex(),
            "szl_ids": [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]})
        s.call("get_cp_info", result=lambda info: {
            "max_pdu_length": info.MaxPduLength, "max_connections": info.MaxConnections,
            "max_mpi_rate": info.MaxMpiRate, "max_bus_rate": info.MaxBusRate})
        s.call("get_protection", result=lambda protection: {
            name: getattr(protection, name) for name, _ in protection._fields_})
        s.call("get_cpu_state", result=lambda state: {"cpu_state": state})
        s.call("get_plc_datetime", result=lambda moment: {"datetime": moment.isoformat()})
        moment = datetime(2024, 5, 6, 7, 8, 9)
        s.call("set_plc_datetime", moment, request={"datetime": moment.isoformat()})
        return s.transcript


def blocks(port: int, rack: int = RACK, slot: int = SLOT) -> list[dict]:
    """Block directory, block info, upload, download and delete.

    The server only has DBs (one per registered DB area); other block types
    list empty and their info is refused. The download is driven by the server,
    which sends its own jobs (whose PDU references the client's next job reuses).
    python-snap7's delete is a PI service "_DELE" with a bad parameter block
    (Wireshark: malformed) that the server answers as a success, deleting
    nothing: the DB list that follows still shows the block.
    """
    with Session(port, rack, slot) as s:
        s.call("list_blocks", result=lambda counts: {"blocks": {
            name.removesuffix("Count"): getattr(counts, name) for name, _ in counts._fields_}})
        for block_type in (Block.DB, Block.OB):
            s.call("list_blocks_of_type", block_type, 16,
                   request=_block_fields(block_type, max_count=16),
                   result=lambda numbers: {"block_numbers": list(numbers)})
        for block_type, number in ((Block.DB, 1), (Block.OB, 1)):
            s.call("get_block_info", block_type, number,
                   request=_block_fields(block_type, block_number=number),
                   result=lambda info: {"block_info": {
                       "block_type": info.BlkType, "block_number": info.BlkNumber,
                       "language": info.BlkLang, "mc7_size": info.MC7Size,
                       "load_size": info.LoadSize, "version": info.Version,
                       "author": _text(info.Author), "family": _text(info.Family),
                       "header": _text(info.Header)}})
        for number in (1, 7):
            s.call("upload", number, request=_block_fields(Block.DB, block_number=number),
                   result=lambda data: {"data": data.hex(), "size": len(data)})
        s.call("full_upload", Block.DB, 2, request=_block_fields(Block.DB, block_number=2),
               result=lambda value: {"data": value[0].hex(), "size": value[1]})
        image = bytes(range(32))
        s.call("download", bytearray(image), 2,
               request=_block_fields(Block.DB, block_number=2, data=image.hex()))
        s.read(Area.DB, 2, 0, 40)
        s.call("delete", Block.DB, 2, request=_block_fields(Block.DB, block_number=2))
        s.call("list_blocks_of_type", Block.DB, 16, request=_block_fields(Block.DB, max_count=16),
               result=lambda numbers: {"block_numbers": list(numbers)})
        return s.transcript


def control(port: int, rack: int = RACK, slot: int = SLOT) -> list[dict]:
    """CPU stop, hot and cold start, session password, compress and copy RAM to ROM.

    The server accepts every one of them (it checks no password).
    """
    with Session(port, rack, slot) as s:
        s.call("plc_stop")
        s.call("plc_hot_start")
        s.call("plc_cold_start")
        s.call("set_session_password", "icsguard", request={"password": "icsguard"})
        s.call("clear_session_password")
        s.call("compress", 1000, request={"timeout": 1000})
        s.call("copy_ram_to_rom", 1000, request={"timeout": 1000})
        return s.transcript


def normal_hmi(port: int, rack: int = RACK, slot: int = SLOT, source: str = CLIENT_HOST,
               cycles: int = 5) -> list[dict]:
    """What an HMI does all day: identifies the CPU once when it connects (two SZL reads,
    as get_cpu_info and get_order_code do), then polls process values for its screens
    (DB tags, flags, inputs and outputs, read only) and now and then writes an operator
    setpoint or command bit into a data block. No CPU control, no program transfer, no
    writes outside DBs.
    """
    with Session(port, rack, slot, source) as s:
        s.call("get_cpu_info", result=lambda info: {"module_name": _text(info.ModuleName)})
        s.call("get_order_code", result=lambda code: {"order_code": _text(code.OrderCode)})
        for cycle in range(cycles):
            for area, db, start, size in POLL_CYCLE:
                s.read(area, db, start, size)
            s.read(Area.PA, 0, 0, 2)
            if cycle == 1:
                s.write(Area.DB, 1, 100, (1500 + cycle).to_bytes(4, "big"))     # a setpoint
            if cycle == 3:
                s.write(Area.DB, 2, 4, b"\x01", bit=0)                          # a start command bit
                s.write(Area.DB, 2, 8, b"\x00\x2a")
        return s.transcript


def writers(port: int, rack: int = RACK, slot: int = SLOT,
            hosts: tuple[str, ...] = (CLIENT_HOST,), value: int = 1234) -> list[dict]:
    """One connection from each of ``hosts`` in turn, each reading a DB and writing one
    setpoint (a DINT, by default a harmless 1234) into it: the same write, so only who wrote
    differs. The transcripts follow one another; each starts with its "connect" entry (see
    client_host)."""
    transcript: list[dict] = []
    for host in hosts:
        with Session(port, rack, slot, host) as s:
            s.read(Area.DB, 1, 100, 4)
            s.write(Area.DB, 1, 100, value.to_bytes(4, "big", signed=True))
            transcript += s.transcript
    return transcript


def flood_polling(port: int, transactions: int, connections: int = 8) -> None:
    """POLL_CYCLE reads as fast as python-snap7 goes, over concurrent connections.

    Keeps no transcript, so memory stays flat however large ``transactions`` is.
    """
    share, extra = divmod(transactions, connections)

    def poll(count: int) -> None:
        client = _Client()
        client.connect(HOST, RACK, SLOT, port)
        try:
            for index in range(count):
                area, db, start, size = POLL_CYCLE[index % len(POLL_CYCLE)]
                client.read_area(area, db, start, size)
        finally:
            client.disconnect()

    with ThreadPoolExecutor(connections) as pool:
        for done in [pool.submit(poll, share + (index < extra)) for index in range(connections)]:
            done.result()


def capture(path: str | Path, scenario: Callable[..., list[dict]], port: int = S7_PORT,
            iface: str = "lo", **scenario_kwargs) -> list[dict]:
    """Run ``scenario`` against a fresh server on ``port`` while recording ``path``."""
    with start_server(port) as server, record(path, server.port, iface):
        return scenario(server.port, **scenario_kwargs)


# --------------------------------------------------------------------------- #
# Baseline scenarios: departures from what normal_hmi does
# --------------------------------------------------------------------------- #
def stop_cpu(port: int, rack: int = RACK, slot: int = SLOT, source: str = CLIENT_HOST) -> list[dict]:
    """From ``source`` (by default the HMI, which never controls the CPU): read a tag as
    usual, then stop the CPU."""
    with Session(port, rack, slot, source) as s:
        s.read(Area.DB, 1, 0, 16)
        s.call("plc_stop")
        return s.transcript


def db_scan(port: int, dbs: range = range(1, 11), rack: int = RACK, slot: int = SLOT,
            source: str = CLIENT_HOST) -> list[dict]:
    """From ``source`` (by default the HMI), read the first bytes of DB 1, 2, 3 ... in turn,
    as a scanner looking for data blocks does; the server refuses the DBs it lacks."""
    with Session(port, rack, slot, source) as s:
        for db in dbs:
            s.read(Area.DB, db, 0, 4)
        return s.transcript
