"""Wireshark as an oracle for icsguard's Modbus/TCP decoding, and the helpers that the
S7comm and OPC UA oracles (tshark_s7_oracle.py, tshark_opcua_oracle.py) share: running
tshark, reading PDML, running icsguard, comparing per (frame, PDU index).

Both sides are reduced to one tuple per PDU, keyed by (frame, index of the PDU
among those the frame completed): transaction id, unit id, function code
(without the exception bit), reference/address, quantity, exception code -- the
project's acceptance criterion -- and the direction, because a PDU read as the
wrong direction makes every other field meaningless.

Fairness rules, each because the two tools legitimately differ in what they show:

* Wireshark shows a reference/count on a response only where the response
  itself carries one (write echoes, FC 24's FIFO count), while icsguard copies
  its paired request's into every response. On responses those two fields are
  therefore compared only where Wireshark shows them.
* FC 23 has no plain reference: both sides' read reference/count stand in.
* Wireshark tells query from response only by its Modbus/TCP port preference
  (decode-as alone leaves it "unable to classify", without any field), so each
  server port gets its own tshark pass with that preference set. Ports other
  than 502 come from SERVER_PORTS, read off the captures, not from icsguard:
  where icsguard picks the wrong side as server, Wireshark told the same would
  misread the same bytes the same way and seem to agree.
* ``-T fields`` flattens a frame that carries several PDUs into lists that
  cannot be realigned (a PDU without a reference just adds nothing), so those
  frames are read again as PDML, which keeps each field inside its PDU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from tests.support import PUBLIC, REPO

OWN = REPO / "pcaps"
TSHARK = shutil.which("tshark")
MODBUS_PORT = 502

# Modbus servers on other ports, by "<folder>/<file>". The S7comm-Plus-Anomaly-Detection
# connections are joined mid-stream (no SYN); the server is the side whose FC 3 PDUs
# carry a byte count, i.e. the responses.
SERVER_PORTS = {
    "pcaps/modbus_port5020.pcap": {5020},
    "S7comm-Plus-Anomaly-Detection/1.pcapng": {503, 505},
    "S7comm-Plus-Anomaly-Detection/2.pcapng": {503, 505},
    "S7comm-Plus-Anomaly-Detection/3.pcapng": {503, 505},
    "S7comm-Plus-Anomaly-Detection/teb.pcapng": {503, 504},
}

Key = tuple[int, int]
_DECODING = threading.Lock()     # in-process icsguard runs, one capture at a time

# Wireshark 4.0 field names; _pdu() takes the first present of each alternative.
FIELDS = ("tcp.srcport", "mbtcp.trans_id", "mbtcp.unit_id", "modbus.func_code", "modbus.exception_code",
          "modbus.reference_num", "modbus.read_reference_num",
          "modbus.word_cnt", "modbus.bit_cnt", "modbus.read_word_cnt")


class Pdu(NamedTuple):
    transaction_id: int | None
    unit_id: int | None
    function_code: int | None
    address: int | None
    quantity: int | None
    exception_code: int | None
    response: bool

    def show(self) -> str:
        return ("rsp " if self.response else "req ") + str(tuple(self[:6]))


def as_int(text: str | None) -> int | None:
    """A field's ``show`` as a number (decimal or 0x-hex); None when the field is absent."""
    return int(text, 0) if text else None


def _pdu(values: dict[str, str], server_port: int) -> Pdu:
    get = values.get
    return Pdu(as_int(get("mbtcp.trans_id")), as_int(get("mbtcp.unit_id")), as_int(get("modbus.func_code")),
               as_int(get("modbus.reference_num") or get("modbus.read_reference_num")),
               as_int(get("modbus.word_cnt") or get("modbus.bit_cnt") or get("modbus.read_word_cnt")),
               as_int(get("modbus.exception_code")),
               as_int(get("tcp.srcport")) == server_port)


def run_tshark(path: Path, *args: str) -> str:
    return subprocess.run([TSHARK, "-n", "-r", str(path), *args], check=True, capture_output=True, text=True).stdout


def pdml_packets(path: Path, frames: str, protocols: str, *options: str) -> Iterator[tuple[int, ET.Element]]:
    """(frame number, <packet>) of the frames that match, with only these protocols' trees.

    Streamed, because PDML of a large capture runs to hundreds of megabytes.
    """
    command = [TSHARK, "-n", "-r", str(path), *options, "-Y", frames, "-T", "pdml", "-J", f"frame {protocols}"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as tshark:
        for _, element in ET.iterparse(tshark.stdout):
            if element.tag == "packet":
                yield int(element.find("proto/field[@name='frame.number']").get("show")), element
                element.clear()
    if tshark.returncode:
        raise subprocess.CalledProcessError(tshark.returncode, command)


def _modbus_options(port: int) -> tuple[str, ...]:
    """``port`` as Wireshark's Modbus/TCP port."""
    return "-o", f"mbtcp.tcp.port:{port}"


def tshark_pdus(path: Path, server_ports: Iterable[int] = (MODBUS_PORT,)) -> dict[Key, Pdu]:
    """Wireshark's tuple for every Modbus/TCP PDU it dissects on these server ports.

    Frames with one PDU come from ``-T fields``; the few with several from PDML.
    """
    pdus: dict[Key, Pdu] = {}
    field_args = [arg for name in ("frame.number", *FIELDS) for arg in ("-e", name)]
    for port in sorted(set(server_ports)):
        several = False
        output = run_tshark(path, *_modbus_options(port), "-Y", f"mbtcp && tcp.port == {port}",
                            "-T", "fields", "-E", "occurrence=a", *field_args)
        for line in output.splitlines():
            frame, *values = line.split("\t")
            if "," in values[FIELDS.index("mbtcp.trans_id")]:
                several = True
            else:
                pdus[int(frame), 0] = _pdu({name: value.split(",")[0] for name, value in zip(FIELDS, values)}, port)
        if several:
            pdus.update(_pdml_pdus(path, port))
    return pdus


def _pdml_pdus(path: Path, port: int) -> dict[Key, Pdu]:
    """PDUs of frames that carry several: a PDU's fields are those after its transaction id."""
    pdus: dict[Key, Pdu] = {}
    frames = f"count(mbtcp) > 1 && tcp.port == {port}"
    for frame, packet in pdml_packets(path, frames, "tcp mbtcp modbus", *_modbus_options(port)):
        index, values = -1, {}
        for field in packet.iter("field"):
            name, show = field.get("name"), field.get("show")
            if name == "mbtcp.trans_id":
                if index >= 0:
                    pdus[frame, index] = _pdu(values, port)
                index, values = index + 1, {"tcp.srcport": values.get("tcp.srcport")}
            if name in FIELDS:
                values.setdefault(name, show)
        pdus[frame, index] = _pdu(values, port)
    return pdus


def icsguard_events(path: Path, proto: str = "modbus", in_process: bool = False) -> list[dict]:
    """icsguard's events of one protocol for one capture, as `icsguard decode` prints them.

    ``in_process`` takes them, in this interpreter, from the function whose events the
    command prints as JSON lines: the same records without a new interpreter per capture,
    whose second or so importing icsguard dominates on small captures.
    """
    if in_process:
        from icsguard.analysis import decode
        with _DECODING:
            return [json.loads(event.to_json()) for event in decode([str(path)], proto)]
    command = [sys.executable, "-m", "icsguard", "decode", "--proto", proto, str(path)]
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO).stdout
    return [json.loads(line) for line in out.splitlines()]


def keyed(events: list[dict]) -> Iterator[tuple[Key, dict]]:
    """Each event keyed like Wireshark's PDUs: events of one frame are in byte order."""
    count: dict[int, int] = {}
    for event in events:
        frame = event["frame"]
        count[frame] = count.get(frame, 0) + 1
        yield (frame, count[frame] - 1), event


def icsguard_pdus(events: list[dict]) -> dict[Key, Pdu]:
    """icsguard's tuples, keyed like Wireshark's."""
    pdus: dict[Key, Pdu] = {}
    for key, event in keyed(events):
        get = event.get
        pdus[key] = Pdu(
            get("transaction_id"), get("unit_id"), get("function_code"),
            get("address", get("read_address")), get("quantity", get("read_quantity")),
            get("exception_code"), event["direction"] == "response")
    return pdus


def fair(tshark: Pdu, icsguard: Pdu) -> Pdu:
    """icsguard's tuple without the request fields it copied into a response that Wireshark does not show."""
    if not (tshark.response and icsguard.response):
        return icsguard
    return icsguard._replace(address=None if tshark.address is None else icsguard.address,
                             quantity=None if tshark.quantity is None else icsguard.quantity)


class Comparison(NamedTuple):
    """The outcome for one capture; the tuples are Modbus Pdus, S7 S7Pdus or OPC UA UaMessages."""
    agreeing: list[Key]
    mismatching: list[tuple[Key, Any, Any]]   # key, Wireshark's tuple, icsguard's as compared
    only_tshark: dict[Key, Any]
    only_icsguard: dict[Key, Any]

    @property
    def differing_frames(self) -> set[int]:
        """Every frame with any difference: what a regression test pins down."""
        keys = [key for key, _, _ in self.mismatching] + [*self.only_tshark, *self.only_icsguard]
        return {frame for frame, _ in keys}


def check(result: Comparison, expected: set[int]) -> None:
    """Fail unless exactly the pinned frames differ: a new difference and a fixed one both need a look."""
    differing = result.differing_frames
    unexpected = [line for line in [*result.mismatching, *result.only_tshark.items(), *result.only_icsguard.items()]
                  if line[0][0] in differing - expected]
    assert differing == expected, f"new differences {unexpected}; no longer differing {sorted(expected - differing)}"


def compare(tshark: dict[Key, Any], icsguard: dict[Key, Any], fair: Callable[[Any, Any], Any] = fair) -> Comparison:
    result = Comparison([], [], {k: v for k, v in tshark.items() if k not in icsguard},
                        {k: v for k, v in icsguard.items() if k not in tshark})
    for key in sorted(tshark.keys() & icsguard.keys()):
        ws, ig = tshark[key], fair(tshark[key], icsguard[key])
        if ws == ig:
            result.agreeing.append(key)
        else:
            result.mismatching.append((key, ws, ig))
    return result


def capture_name(path: Path) -> str:
    """A capture as "<folder>/<file>", the way the per-capture SERVER_PORTS tables name it."""
    return f"{path.parent.name}/{path.name}"


def server_ports(path: Path) -> set[int]:
    return {MODBUS_PORT} | SERVER_PORTS.get(capture_name(path), set())


def crosscheck(path: Path) -> Comparison:
    return compare(tshark_pdus(path, server_ports(path)), icsguard_pdus(icsguard_events(path)))


def compare_all(paths: list[Path], crosscheck: Callable[[Path], Comparison]) -> dict[Path, Comparison]:
    """Every capture compared once, in parallel: each comparison is mostly waiting on subprocesses."""
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        return dict(zip(paths, pool.map(crosscheck, paths)))


def acceptance_tests(crosscheck: Callable[[Path], Comparison], own_pattern: str,
                     public_expected: dict[str, set[int]], own_expected: dict[str, set[int]] | None = None):
    """The pieces of a protocol's Wireshark acceptance test — the module-wide comparison,
    then a test per own capture and per public capture, each pinned to its expected
    differing frames — for the test module to bind as ``results, test_own_capture,
    test_public_capture``."""
    import pytest

    from tests.support import public

    own = sorted(OWN.glob(own_pattern))

    @pytest.fixture(scope="module")
    def results() -> dict[Path, Comparison]:
        paths = own + [PUBLIC / name for name in public_expected if (PUBLIC / name).exists()]
        return compare_all(paths, crosscheck)

    @pytest.mark.parametrize("path", own, ids=lambda p: p.name)
    def test_own_capture(path, results):
        assert results[path].agreeing, "Wireshark and icsguard agree on nothing at all"
        check(results[path], (own_expected or {}).get(path.name, set()))

    @pytest.mark.parametrize("name", sorted(public_expected))
    def test_public_capture(name, results):
        path = public(name)
        assert results[path].agreeing, "Wireshark and icsguard agree on nothing at all"
        check(results[path], public_expected[name])

    return results, test_own_capture, test_public_capture
