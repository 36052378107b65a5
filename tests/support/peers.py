"""Real Modbus/TCP peers on loopback, recorded with tcpdump.

Captures made here contain bytes written by a real pymodbus client and
answered by a real pymodbus server, so parsers are tested against what a
Modbus stack actually puts on the wire rather than against hand-built frames.
Everything binds to 127.0.0.1 only.

Typical use::

    transcript = capture("polling.pcap", normal_polling, port=5020, cycles=10)

Each scenario returns a *transcript*: one JSON-ready dict per request (see
``_entry``) that tests compare with what the parser extracted from the pcap.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient, ModbusTcpClient
from pymodbus.constants import DeviceInformation, ExcCodes
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.device import ModbusControlBlock, ModbusDeviceIdentification
from pymodbus.pdu.mei_message import ReadDeviceInformationRequest
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest, WriteSingleRegisterRequest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

# Distinct loopback addresses, so captures show a PLC and an HMI rather than one host
# talking to itself; both are still on 127.0.0.0/8 and never leave the machine.
HOST = "127.0.0.2"
CLIENT_HOST = "127.0.0.10"
MODBUS_PORT = 502
UNIT_ID = 1
# pymodbus keeps coils in 16-bit words, so a bit table that is not a multiple
# of 16 would silently accept reads past its end; 1024 keeps every boundary exact.
TABLE_SIZE = 1024

INITIAL_TABLES = {
    "coils": [address % 3 == 0 for address in range(TABLE_SIZE)],
    "discrete_inputs": [address % 2 == 1 for address in range(TABLE_SIZE)],
    "holding_registers": [1000 + address for address in range(TABLE_SIZE)],
    "input_registers": [(address * 37) % 65536 for address in range(TABLE_SIZE)],
}
IDENTITY = {
    "VendorName": "icsguard test vendor",
    "ProductCode": "ICSG-PLC-1",
    "MajorMinorRevision": "1.4",
    "VendorUrl": "https://example.invalid/icsguard",
    "ProductName": "icsguard loopback PLC",
    "ModelName": "pymodbus-3.16",
    "UserApplicationName": "pcaps/peers.py",
}

FUNCTION_NAMES = {
    1: "read_coils",
    2: "read_discrete_inputs",
    3: "read_holding_registers",
    4: "read_input_registers",
    5: "write_single_coil",
    6: "write_single_register",
    7: "read_exception_status",
    8: "diagnostics",
    11: "get_comm_event_counter",
    12: "get_comm_event_log",
    15: "write_multiple_coils",
    16: "write_multiple_registers",
    17: "report_server_id",
    20: "read_file_record",
    21: "write_file_record",
    22: "mask_write_register",
    23: "read_write_multiple_registers",
    24: "read_fifo_queue",
    43: "encapsulated_interface_transport",
}
# One polling cycle: (client method, start address, quantity).
POLL_CYCLE = (
    ("read_holding_registers", 0, 10),
    ("read_holding_registers", 100, 4),
    ("read_input_registers", 0, 8),
    ("read_coils", 0, 16),
    ("read_discrete_inputs", 0, 8),
)


# --------------------------------------------------------------------------- #
# tcpdump
# --------------------------------------------------------------------------- #
@dataclass
class Recording:
    """A pcap being written; the tcpdump counters are filled in on exit."""

    path: Path
    captured: int | None = None
    dropped: int | None = None


@contextmanager
def record(
    path: str | Path,
    ports: int | Iterable[int],
    iface: str = "lo",
    snaplen: int = 0,
) -> Iterator[Recording]:
    """Capture TCP traffic on ``ports`` into ``path`` while the block runs.

    ``iface="any"`` yields a Linux cooked v2 (SLL2) capture; ``snaplen=0``
    means whole packets. Returns only once tcpdump listens, and on exit waits
    until the file stops growing, so the pcap holds every packet.
    """
    ports = [ports] if isinstance(ports, int) else list(ports)
    recording = Recording(Path(path))
    # --immediate-mode: without it packets sit in the kernel ring until a
    # block fills or times out and are lost on SIGINT. The 32 MiB buffer (-B)
    # avoids kernel drops when Python sends bursts faster than tcpdump reads.
    command = ["tcpdump", "-i", iface, "-w", str(recording.path), "-U", "-n",
               "--immediate-mode", "-B", "32768", "-s", str(snaplen)]
    if os.geteuid() == 0:
        # Debian's tcpdump otherwise switches to user "tcpdump", which then owns the pcap.
        command += ["-Z", "root"]
    command.append(" or ".join(f"tcp port {port}" for port in ports))
    tcpdump = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        _wait_listening(tcpdump)
        yield recording
        _wait_quiet(recording.path)
    finally:
        tcpdump.send_signal(signal.SIGINT)
        _, stderr = tcpdump.communicate(timeout=10)
    recording.captured = _counter(stderr, "packets captured")
    recording.dropped = _counter(stderr, "packets dropped by kernel")


def _wait_listening(tcpdump: subprocess.Popen) -> None:
    """Block until tcpdump reports it is capturing, or raise its error."""
    lines = []
    for line in tcpdump.stderr:
        if "listening on" in line:
            return
        lines.append(line)
    raise RuntimeError("tcpdump did not start: " + "".join(lines).strip())


def _wait_quiet(path: Path, quiet: float = 0.25, timeout: float = 5.0) -> None:
    """Wait until tcpdump has written nothing new to ``path`` for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    size, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        current = path.stat().st_size if path.exists() else 0
        if current != size:
            size, since = current, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.05)


def _counter(stderr: str, label: str) -> int | None:
    match = re.search(rf"(\d+) {label}", stderr)
    return int(match.group(1)) if match else None


# --------------------------------------------------------------------------- #
# Server
# --------------------------------------------------------------------------- #
class _Unsupported(ModbusPDU):
    """Answers a function code pymodbus has no handler for with ILLEGAL_FUNCTION.

    pymodbus 3.16 itself replies to unknown function codes with function code
    0x80, which is not valid Modbus and which its own client cannot decode.
    """

    def decode(self, data: bytes) -> None:
        """Accept any payload: the request is rejected regardless."""

    async def datastore_update(self, context, device_id: int) -> ModbusPDU:
        """Reject the request."""
        return ExceptionResponse(self.function_code, ExcCodes.ILLEGAL_FUNCTION)


def _unsupported_functions() -> list[type[ModbusPDU]]:
    known = set(DecodePDU(True).list_function_codes())
    return [type(f"Unsupported{code}", (_Unsupported,), {"function_code": code})
            for code in range(1, 128) if code not in known]


class _BusyRead(ReadHoldingRegistersRequest):
    """FC 3 answered with SERVER DEVICE BUSY (exception 6), as by a server that is swamped."""

    async def datastore_update(self, context, device_id: int) -> ModbusPDU:
        """Refuse the read for now."""
        return ExceptionResponse(self.function_code, ExcCodes.DEVICE_BUSY)


class _AcknowledgedWrite(WriteSingleRegisterRequest):
    """FC 6 answered with ACKNOWLEDGE (exception 5): accepted, but to be done later."""

    async def datastore_update(self, context, device_id: int) -> ModbusPDU:
        """Accept the write without doing it."""
        return ExceptionResponse(self.function_code, ExcCodes.ACKNOWLEDGE)


def _device(unit_id: int) -> SimDevice:
    """Separate coil/input/holding/input-register tables, addresses 0..TABLE_SIZE-1."""
    def table(name: str, datatype: DataType) -> list[SimData]:
        return [SimData(0, values=list(INITIAL_TABLES[name]), datatype=datatype)]

    return SimDevice(unit_id, simdata=(
        table("coils", DataType.BITS),
        table("discrete_inputs", DataType.BITS),
        table("holding_registers", DataType.REGISTERS),
        table("input_registers", DataType.REGISTERS),
    ))


class PeerServer:
    """A pymodbus TCP server on 127.0.0.1, served from its own event-loop thread.

    Only ``unit_id`` exists; pymodbus answers other unit ids with exception 4
    (server device failure). Function codes it implements but does not back
    with data (FC 20/21 file records, FC 24 FIFO) return pymodbus' fixed
    dummy answers. ``busy=True`` makes it answer FC 3 with exception 6
    (server busy) and FC 6 with exception 5 (acknowledge), as a device under
    a delay attack would. Use as a context manager or call ``stop()``.
    """

    def __init__(self, port: int = 0, unit_id: int = UNIT_ID, busy: bool = False) -> None:
        ready: Future[int] = Future()
        self._busy = busy
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(port, unit_id, ready),),
            name=f"modbus-server-{port}", daemon=True)
        self._thread.start()
        self.host = HOST
        self.port = ready.result(timeout=10)
        self.unit_id = unit_id

    async def _serve(self, port: int, unit_id: int, ready: Future[int]) -> None:
        try:
            self._loop = asyncio.get_running_loop()
            self._server = ModbusTcpServer(
                _device(unit_id), address=(HOST, port),
                identity=ModbusDeviceIdentification(info_name=IDENTITY),
                custom_pdu=_unsupported_functions() + ([_BusyRead, _AcknowledgedWrite] if self._busy else []))
            await self._server.serve_forever(background=True)
        except Exception as exc:  # reported to the constructor's caller
            ready.set_exception(exc)
            return
        ready.set_result(self._server.transport.sockets[0].getsockname()[1])
        await self._server.serving

    def stop(self) -> None:
        """Close the listener and all connections, then end the thread."""
        asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(10)
        self._thread.join(10)

    def __enter__(self) -> PeerServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def start_server(port: int = 0, unit_id: int = UNIT_ID, busy: bool = False) -> PeerServer:
    """Start a server on ``port`` (0 picks a free one; see ``.port``)."""
    return PeerServer(port, unit_id, busy)


# --------------------------------------------------------------------------- #
# Client scenarios
# --------------------------------------------------------------------------- #
class RawRequest(ModbusPDU):
    """A request pymodbus has no class for, framed and sent by the real client."""

    def __init__(self, function_code: int, data: bytes = b"", dev_id: int = UNIT_ID) -> None:
        super().__init__(dev_id=dev_id)
        self.function_code = function_code
        self.data = data

    def encode(self) -> bytes:
        """Return the payload unchanged."""
        return self.data


def _words(message) -> list[int]:
    """FC 8 data field as 16-bit words, whichever form pymodbus decoded it into."""
    if isinstance(message, bytes):
        return list(struct.unpack(f">{len(message) // 2}H", message))
    if isinstance(message, int):
        return [message]
    return list(message or [])


def _request_fields(request: ModbusPDU) -> dict:
    code = request.function_code
    if code in (1, 2, 3, 4):
        return {"address": request.address, "quantity": request.count}
    if code == 5:
        return {"address": request.address, "quantity": 1, "values": [bool(request.bits[0])]}
    if code == 6:
        return {"address": request.address, "quantity": 1, "values": list(request.registers)}
    if code == 15:
        return {"address": request.address, "quantity": len(request.bits),
                "values": [bool(bit) for bit in request.bits]}
    if code == 16:
        return {"address": request.address, "quantity": len(request.registers),
                "values": list(request.registers)}
    if code == 22:
        return {"address": request.address, "quantity": 1,
                "and_mask": request.and_mask, "or_mask": request.or_mask}
    if code == 23:
        return {"address": request.read_address, "quantity": request.read_count,
                "write_address": request.write_address,
                "values": list(request.write_registers)}
    if code == 24:
        return {"address": request.address}
    if code == 8:
        return {"sub_function": request.sub_function_code, "values": _words(request.message)}
    if isinstance(request, ReadDeviceInformationRequest):
        return {"mei_type": request.sub_function_code, "read_code": request.read_code,
                "object_id": request.object_id}
    if isinstance(request, RawRequest):
        return {"data": request.data.hex()}
    return {}


def _response_fields(request: ModbusPDU, response: ModbusPDU) -> dict:
    code = response.function_code
    if code in (1, 2):
        return {"response_values": [bool(bit) for bit in response.bits[:request.count]]}
    if code in (3, 4, 6, 23):
        return {"response_values": list(response.registers)}
    if code == 5:
        return {"response_values": [bool(response.bits[0])]}
    if code == 7:
        return {"response_values": [response.status]}
    if code == 8:
        return {"response_values": _words(response.message)}
    # FC 11/12 status word: pymodbus decodes it to a bool; 0x0000 = ready, 0xFFFF = busy.
    if code == 11:
        return {"response_values": [0 if response.status else 0xFFFF, response.count]}
    if code == 12:
        return {"response_values": [0 if response.status else 0xFFFF, response.event_count,
                                    response.message_count, *response.events]}
    if code == 17:
        return {"server_id": response.identifier.decode(), "run_indicator": response.status}
    if code == 24:
        return {"response_values": list(response.values)}
    if code == 43:
        return {"objects": {str(object_id): value.decode()
                            for object_id, value in response.information.items()}}
    return {}


def _entry(request: ModbusPDU, response: ModbusPDU, client_port: int) -> dict:
    """One transcript record: the request as sent and the response as decoded."""
    code = request.function_code
    function = FUNCTION_NAMES.get(code, f"function_{code}")
    if isinstance(request, ReadDeviceInformationRequest):
        function = "read_device_identification"
    entry = {
        "function_code": code,
        "function": function,
        "unit_id": request.dev_id,
        "transaction_id": request.transaction_id,
        "client_port": client_port,
        "address": None,
        "quantity": None,
        "values": None,
        **_request_fields(request),
        "response_function_code": response.function_code,
        "exception_code": None,
        "response_values": None,
    }
    if response.isError():
        entry["exception_code"] = response.exception_code
    else:
        entry.update(_response_fields(request, response))
    return entry


@contextmanager
def _client(port: int, source: str = CLIENT_HOST) -> Iterator[tuple[ModbusTcpClient, list[dict]]]:
    """A connected pymodbus client (from ``source``) whose every exchange lands in the transcript."""
    transcript: list[dict] = []
    sent: list[ModbusPDU] = []

    def trace(sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if sending:
            sent.append(pdu)
        else:
            transcript.append(_entry(sent.pop(), pdu, client.socket.getsockname()[1]))
        return pdu

    # retries=0: a lost answer must fail the scenario, not add a resend to the pcap.
    client = ModbusTcpClient(HOST, port=port, source_address=(source, 0), timeout=3, retries=0,
                             trace_pdu=trace)
    if not client.connect():
        raise ConnectionError(f"no Modbus server on {HOST}:{port}")
    try:
        yield client, transcript
    finally:
        client.close()


def normal_polling(port: int, cycles: int = 50, interval: float = 0.0,
                   unit_id: int = UNIT_ID) -> list[dict]:
    """A SCADA-style poll loop: POLL_CYCLE repeated ``cycles`` times."""
    with _client(port) as (client, transcript):
        for _ in range(cycles):
            for method, address, quantity in POLL_CYCLE:
                getattr(client, method)(address, count=quantity, device_id=unit_id)
            time.sleep(interval)
    return transcript


def writes(port: int, unit_id: int = UNIT_ID) -> list[dict]:
    """Every write function (FC 5, 6, 15, 16, 22, 23), each followed by a read-back."""
    with _client(port) as (client, transcript):
        client.write_coil(10, True, device_id=unit_id)
        client.write_coil(11, False, device_id=unit_id)
        client.read_coils(10, count=2, device_id=unit_id)
        client.write_register(20, 0xBEEF, device_id=unit_id)
        client.read_holding_registers(20, count=1, device_id=unit_id)
        client.write_coils(32, [True, False, True, True, False, False, True, False, True],
                           device_id=unit_id)
        client.read_coils(32, count=9, device_id=unit_id)
        client.write_registers(40, [1, 2, 3, 65535, 0], device_id=unit_id)
        client.read_holding_registers(40, count=5, device_id=unit_id)
        client.mask_write_register(address=50, and_mask=0xF0F0, or_mask=0x0A0A,
                                   device_id=unit_id)
        client.read_holding_registers(50, count=1, device_id=unit_id)
        client.readwrite_registers(read_address=58, read_count=6, write_address=60,
                                   values=[7, 8, 9], device_id=unit_id)
    return transcript


def exceptions(port: int, unit_id: int = UNIT_ID) -> list[dict]:
    """Requests a correct server must refuse, each answered with an exception.

    pymodbus' client refuses to encode quantities outside the protocol limits,
    so "illegal data value" is provoked with FC 43 read code 5 instead.
    """
    end = TABLE_SIZE
    with _client(port) as (client, transcript):
        client.read_holding_registers(end - 5, count=10, device_id=unit_id)      # 2
        client.read_input_registers(end, count=1, device_id=unit_id)             # 2
        client.read_coils(end - 4, count=8, device_id=unit_id)                   # 2
        client.read_discrete_inputs(5000, count=1, device_id=unit_id)            # 2
        client.write_coil(end, True, device_id=unit_id)                          # 2
        client.write_register(end + 100, 1, device_id=unit_id)                   # 2
        client.write_coils(end - 2, [True] * 4, device_id=unit_id)               # 2
        client.write_registers(end - 2, [1, 2, 3, 4], device_id=unit_id)         # 2
        client.mask_write_register(address=60000, and_mask=0, or_mask=1,
                                   device_id=unit_id)                            # 2
        client.read_device_information(read_code=DeviceInformation.SPECIFIC,
                                       object_id=0x07, device_id=unit_id)        # 2
        client.read_device_information(read_code=5, device_id=unit_id)           # 3
        client.read_holding_registers(0, count=1, device_id=unit_id + 1)         # 4
        client.execute(False, RawRequest(65, b"\x00\x01", dev_id=unit_id))       # 1, user-defined FC
        client.execute(False, RawRequest(43, b"\x0d\x00\x00", dev_id=unit_id))   # 1, MEI 13 (CANopen)
    return transcript


def diagnostics(port: int, unit_id: int = UNIT_ID) -> list[dict]:
    """Serial-line diagnostics (FC 8, 7, 11, 12), FC 17 and FC 24.

    Not sent: FC 8 sub 4 (force listen only), which in pymodbus flips a global
    flag shared by every server in the process.
    """
    with _client(port) as (client, transcript):
        client.diag_query_data(b"\x12\x34\xab\xcd", device_id=unit_id)       # sub 0
        client.diag_restart_communication(False, device_id=unit_id)          # sub 1
        client.diag_read_diagnostic_register(device_id=unit_id)              # sub 2
        client.diag_clear_counters(device_id=unit_id)                        # sub 10
        client.diag_read_bus_message_count(device_id=unit_id)                # sub 11
        client.diag_read_bus_comm_error_count(device_id=unit_id)             # sub 12
        client.diag_read_bus_exception_error_count(device_id=unit_id)        # sub 13
        client.diag_read_device_message_count(device_id=unit_id)             # sub 14
        client.read_exception_status(device_id=unit_id)
        client.diag_get_comm_event_counter(device_id=unit_id)
        client.diag_get_comm_event_log(device_id=unit_id)
        client.report_device_id(device_id=unit_id)
        client.read_fifo_queue(address=5, device_id=unit_id)
    return transcript


def device_identification(port: int, unit_id: int = UNIT_ID) -> list[dict]:
    """FC 43/14 stream reads (basic, regular, extended) and one specific object."""
    with _client(port) as (client, transcript):
        for read_code in (DeviceInformation.BASIC, DeviceInformation.REGULAR,
                          DeviceInformation.EXTENDED):
            client.read_device_information(read_code=read_code, device_id=unit_id)
        client.read_device_information(read_code=DeviceInformation.SPECIFIC,
                                       object_id=0x04, device_id=unit_id)
    return transcript


# --------------------------------------------------------------------------- #
# Attack scenarios: what the detection rules are for
# --------------------------------------------------------------------------- #
ROGUE_HOST = "127.0.0.66"        # a host no site file lists: not an HMI, not a writer


def force_listen_only(port: int, unit_id: int = UNIT_ID) -> list[dict]:
    """FC 8 sub 4, which silences a real device until it is restarted; then a normal read.

    pymodbus keeps the listen-only flag in a process-wide control block (which
    3.16 sets but never consults); it is cleared again so later servers in this
    process are unaffected. The request expects no answer.
    """
    try:
        with _client(port) as (client, transcript):
            client.diag_force_listen_only(device_id=unit_id, no_response_expected=True)
            time.sleep(0.1)
            client.read_holding_registers(0, count=2, device_id=unit_id)
    finally:
        ModbusControlBlock().ListenOnly = False
    return transcript


def broadcast_write(port: int) -> list[dict]:
    """A write to unit 0 (broadcast: every server behind a gateway, none answers), then
    the same write to the real unit."""
    with _client(port) as (client, transcript):
        client.write_register(30, 0x0BAD, device_id=0, no_response_expected=True)
        time.sleep(0.1)
        client.write_register(30, 0x0BAD, device_id=UNIT_ID)
    return transcript


def whole_map_write(port: int, unit_id: int = UNIT_ID) -> list[dict]:
    """A setpoint-sized write, then 120 registers and 1600 coils in one request each
    (the coil table has 1024, so that one is refused with exception 2)."""
    with _client(port) as (client, transcript):
        client.write_registers(0, [7] * 10, device_id=unit_id)
        client.write_registers(0, list(range(120)), device_id=unit_id)
        client.write_coils(0, [True, False] * 800, device_id=unit_id)
    return transcript


def unit_id_sweep(port: int, units: Iterable[int] = range(1, 9)) -> list[dict]:
    """One read to each unit id behind the "gateway"; only UNIT_ID exists, the
    others are answered with exception 4."""
    with _client(port) as (client, transcript):
        for unit in units:
            client.read_holding_registers(0, count=1, device_id=unit)
    return transcript


def busy_server(port: int, unit_id: int = UNIT_ID) -> list[dict]:
    """Against ``start_server(busy=True)``: three reads refused as busy (exception 6),
    two writes acknowledged for later (exception 5)."""
    with _client(port) as (client, transcript):
        for _ in range(3):
            client.read_holding_registers(0, count=4, device_id=unit_id)
        client.write_register(7, 1, device_id=unit_id)
        client.write_register(7, 2, device_id=unit_id)
    return transcript


def function_code_scan(port: int, codes: Iterable[int] = (9, 10, 13, 14, 18, 19),
                       unit_id: int = UNIT_ID) -> list[dict]:
    """Reserved function codes one after the other, each refused with exception 1."""
    with _client(port) as (client, transcript):
        for code in codes:
            client.execute(False, RawRequest(code, b"", dev_id=unit_id))
    return transcript


def rogue_client(port: int, unit_id: int = UNIT_ID) -> list[dict]:
    """A host that is neither HMI nor allowed writer reads a block and writes a register."""
    with _client(port, source=ROGUE_HOST) as (client, transcript):
        client.read_holding_registers(0, count=10, device_id=unit_id)
        client.write_register(3, 0xDEAD, device_id=unit_id)
    return transcript


def _raw(port: int, chunks: Iterable[bytes], pause: float = 0.1) -> list[dict]:
    """Send ``chunks`` from CLIENT_HOST over one plain TCP connection, each in its own
    segment, reading whatever comes back; the transcript is what was sent."""
    transcript = []
    with socket.create_connection((HOST, port), timeout=3, source_address=(CLIENT_HOST, 0)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(pause)
        for chunk in chunks:
            sock.sendall(chunk)
            transcript.append({"sent": chunk.hex()})
            try:
                sock.recv(4096)
            except (TimeoutError, OSError):
                pass
    return transcript


def invalid_frames(port: int, unit_id: int = UNIT_ID) -> list[dict]:
    """A valid FC 3 read (so the connection is Modbus), then three lying frames: an FC 3
    PDU cut to 3 bytes, an FC 3 PDU with 2 bytes too many, and an MBAP length of 300."""
    def adu(tid: int, pdu: bytes, length: int | None = None) -> bytes:
        return struct.pack(">HHHB", tid, 0, len(pdu) + 1 if length is None else length, unit_id) + pdu
    return _raw(port, [
        adu(1, struct.pack(">BHH", 3, 0, 2)),
        adu(2, struct.pack(">BH", 3, 0)),
        adu(3, struct.pack(">BHH", 3, 0, 2) + b"\xff\xff"),
        adu(4, struct.pack(">BHH", 3, 0, 2), length=300),
    ])


def not_modbus(port: int) -> list[dict]:
    """An HTTP request on the Modbus port."""
    return _raw(port, [b"GET / HTTP/1.0\r\nHost: 127.0.0.2\r\n\r\n"])


async def _flood_connection(port: int, transactions: int, unit_id: int) -> None:
    client = AsyncModbusTcpClient(HOST, port=port, source_address=(CLIENT_HOST, 0), timeout=3, retries=0)
    if not await client.connect():
        raise ConnectionError(f"no Modbus server on {HOST}:{port}")
    try:
        for index in range(transactions):
            method, address, quantity = POLL_CYCLE[index % len(POLL_CYCLE)]
            await getattr(client, method)(address, count=quantity, device_id=unit_id)
    finally:
        client.close()


def flood_polling(port: int, transactions: int, connections: int = 16,
                  unit_id: int = UNIT_ID) -> None:
    """POLL_CYCLE requests as fast as pymodbus goes, over concurrent connections.

    Keeps no transcript, so memory stays flat however large ``transactions`` is.
    """
    share, extra = divmod(transactions, connections)

    async def run() -> None:
        await asyncio.gather(*(
            _flood_connection(port, share + (index < extra), unit_id)
            for index in range(connections)))

    asyncio.run(run())


def capture(path: str | Path, scenario: Callable[..., list[dict]],
            port: int = MODBUS_PORT, iface: str = "lo", busy: bool = False,
            **scenario_kwargs) -> list[dict]:
    """Run ``scenario`` against a fresh server on ``port`` (``busy``: see PeerServer)
    while recording ``path``."""
    with start_server(port, busy=busy) as server, record(path, server.port, iface):
        return scenario(server.port, **scenario_kwargs)


# --------------------------------------------------------------------------- #
# Baseline scenarios: a small plant's normal operation, and departures from it
# --------------------------------------------------------------------------- #
HISTORIAN_HOST = "127.0.0.11"     # a second client of the PLC: a historian logging values
SETPOINT_ADDRESS = 100            # the holding register operators adjust (it starts at 1100)
SETPOINTS = (1100, 1105, 1110, 1115, 1120)
# The historian's cycle: (client method, start address, quantity), away from the HMI's registers.
HISTORIAN_CYCLE = (
    ("read_input_registers", 200, 16),
    ("read_holding_registers", 500, 8),
)


def plant_polling(port: int, cycles: int = 40, interval: float = 0.05, setpoint_every: int = 5,
                  historian_cycles: int | None = None, unit_id: int = UNIT_ID) -> list[dict]:
    """Normal operation: every ``interval`` seconds the HMI (CLIENT_HOST) polls POLL_CYCLE
    and the historian (HISTORIAN_HOST), on a connection of its own, reads HISTORIAN_CYCLE.
    Every ``setpoint_every`` cycles the HMI first writes the next of SETPOINTS into the
    setpoint register, as an operator would. ``historian_cycles``: the historian stops
    after that many cycles (its connection closes) while the HMI goes on polling.
    Cycles start on a fixed schedule, as a SCADA scan timer starts them, so their period
    does not drift with how long the requests took.
    Returns the HMI's transcript, then the historian's."""
    with _client(port) as (hmi, transcript), \
            _client(port, source=HISTORIAN_HOST) as (historian, logged):
        begin = time.monotonic()
        for cycle in range(cycles):
            if setpoint_every and cycle % setpoint_every == 0:
                value = SETPOINTS[(cycle // setpoint_every) % len(SETPOINTS)]
                hmi.write_register(SETPOINT_ADDRESS, value, device_id=unit_id)
            for method, address, quantity in POLL_CYCLE:
                getattr(hmi, method)(address, count=quantity, device_id=unit_id)
            if historian_cycles is None or cycle < historian_cycles:
                for method, address, quantity in HISTORIAN_CYCLE:
                    getattr(historian, method)(address, count=quantity, device_id=unit_id)
            elif cycle == historian_cycles:
                historian.close()
            time.sleep(max(0.0, begin + (cycle + 1) * interval - time.monotonic()))
    return transcript + logged


def setpoint_write(port: int, value: int, address: int = SETPOINT_ADDRESS, source: str = CLIENT_HOST,
                   unit_id: int = UNIT_ID) -> list[dict]:
    """From ``source`` (by default the HMI), write ``value`` into one holding register
    and read it back: an operator's setpoint change, or a tampered one."""
    with _client(port, source=source) as (client, transcript):
        client.write_register(address, value, device_id=unit_id)
        client.read_holding_registers(address, count=1, device_id=unit_id)
    return transcript


def coil_force(port: int, address: int = 10, source: str = CLIENT_HOST,
               unit_id: int = UNIT_ID) -> list[dict]:
    """From ``source`` (by default the HMI, which only ever reads coils), force a coil on
    with FC 5 and read it back."""
    with _client(port, source=source) as (client, transcript):
        client.write_coil(address, True, device_id=unit_id)
        client.read_coils(address, count=1, device_id=unit_id)
    return transcript


def register_scan(port: int, start: int = 0, stop: int = TABLE_SIZE, quantity: int = 16,
                  source: str = CLIENT_HOST, unit_id: int = UNIT_ID) -> list[dict]:
    """From ``source`` (by default the HMI), read the holding registers from ``start`` to
    ``stop`` in blocks of ``quantity``, one request after the other: a sweep of the
    register map, as reconnaissance does."""
    with _client(port, source=source) as (client, transcript):
        for address in range(start, stop, quantity):
            client.read_holding_registers(address, count=min(quantity, stop - address), device_id=unit_id)
    return transcript
