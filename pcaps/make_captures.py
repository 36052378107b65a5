"""Regenerate the fixture captures from real peers: pymodbus, python-snap7 and asyncua.

    python -m pcaps.make_captures [--protocol modbus|s7|opcua] [--out DIR]
    python -m pcaps.make_captures --bench [N] --out DIR
    python -m pcaps.make_captures --bench-s7 [N] --out DIR
    python -m pcaps.make_captures --bench-opcua [N] --out DIR

Needs root (tcpdump, ports 502 and 102; 4840 for OPC UA). Each NAME.pcap gets a NAME.json next to it:
``{"pcap", "iface", "server": {...}, "transcript": [...]}`` where the transcript
is what the client sent and decoded (see peers.py, s7_peers.py and
opcua_peers.py) and the server holds its address plus the Modbus unit id, the
S7 areas' initial contents, or the OPC UA endpoint, nodes and user.
``--protocol`` limits the run to one protocol's captures.
``--bench`` / ``--bench-s7`` / ``--bench-opcua`` instead write
DIR/bench_modbus.pcap / DIR/bench_s7.pcap / DIR/bench_opcua.pcap with at least
N packets of polling traffic (default 200000) and report how long that took.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import time
from pathlib import Path

from tests.support import opcua_peers, peers, s7_peers


def _diagnostics_and_identification(port: int) -> list[dict]:
    return peers.diagnostics(port) + peers.device_identification(port)


# name -> (harness module, scenario, server port, capture interface, scenario kwargs)
CAPTURES = {
    "modbus_polling": (peers, peers.normal_polling, 502, "lo", {"cycles": 50, "interval": 0.02}),
    "modbus_writes": (peers, peers.writes, 502, "lo", {}),
    "modbus_exceptions": (peers, peers.exceptions, 502, "lo", {}),
    "modbus_diagnostics": (peers, _diagnostics_and_identification, 502, "lo", {}),
    "modbus_port5020": (peers, peers.normal_polling, 5020, "lo", {"cycles": 50, "interval": 0.02}),
    "modbus_sll2": (peers, peers.normal_polling, 502, "any", {"cycles": 10, "interval": 0.02}),
    "s7_reads_writes": (s7_peers, s7_peers.reads_and_writes, 102, "lo", {}),
    # Slot 2, as for the S7-300 CPU the server claims to be: another TSAP on the wire.
    "s7_identification": (s7_peers, s7_peers.identification, 102, "lo", {"slot": 2}),
    "s7_blocks": (s7_peers, s7_peers.blocks, 102, "lo", {}),
    "s7_control": (s7_peers, s7_peers.control, 102, "lo", {}),
    "opcua_none_anonymous": (opcua_peers, opcua_peers.none_anonymous, 4840, "lo", {}),
    "opcua_none_username": (opcua_peers, opcua_peers.none_username, 4840, "lo", {}),
    "opcua_none_plaintext_password": (opcua_peers, opcua_peers.none_plaintext_password, 4840, "lo", {}),
    "opcua_failed_login": (opcua_peers, opcua_peers.failed_login, 4840, "lo", {}),
    "opcua_sign": (opcua_peers, opcua_peers.sign, 4840, "lo", {}),
    "opcua_sign_and_encrypt": (opcua_peers, opcua_peers.sign_and_encrypt, 4840, "lo", {}),
}
# protocol -> (harness module, server port, client connections) for the bench
BENCHES = {
    "modbus": (peers, peers.MODBUS_PORT, 16),
    "s7": (s7_peers, s7_peers.S7_PORT, 8),
    "opcua": (opcua_peers, opcua_peers.OPCUA_PORT, 8),
}


def _server(harness, port: int, scenario) -> dict:
    if harness is peers:
        return {"host": peers.HOST, "port": port, "unit_id": peers.UNIT_ID}
    if harness is opcua_peers:
        return opcua_peers.server_info(port, **opcua_peers.SERVERS.get(scenario.__name__, {}))
    return {"host": s7_peers.HOST, "port": port, "areas": s7_peers.initial_areas()}


def make_captures(out: Path, protocol: str | None = None) -> None:
    """Write the captures in CAPTURES (only ``protocol``'s, if given) and their transcripts into ``out``."""
    for name, (harness, scenario, port, iface, kwargs) in CAPTURES.items():
        if protocol and not name.startswith(f"{protocol}_"):
            continue
        pcap = out / f"{name}.pcap"
        transcript = harness.capture(pcap, scenario, port=port, iface=iface, **kwargs)
        document = {
            "pcap": pcap.name,
            "iface": iface,
            "server": _server(harness, port, scenario),
            "transcript": transcript,
        }
        (out / f"{name}.json").write_text(json.dumps(document, indent=1) + "\n")
        print(f"{pcap.name}: {len(transcript)} transcript entries, {pcap.stat().st_size} bytes")


def _serve(protocol: str, started, stop) -> None:
    """Bench server process: a second core for the server side."""
    harness, port, _ = BENCHES[protocol]
    with harness.start_server(port):
        started.set()
        stop.wait()


def bench(out: Path, protocol: str, packets: int) -> None:
    """Record at least ``packets`` packets of ``protocol`` polling as fast as possible."""
    harness, port, connections = BENCHES[protocol]
    pcap = out / f"bench_{protocol}.pcap"
    started, stop = multiprocessing.Event(), multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(protocol, started, stop))
    server.start()
    try:
        if not started.wait(10):
            raise RuntimeError("bench server did not start")
        with peers.record(pcap, port) as recording:
            begin = time.monotonic()
            # Every transaction is at least a request and a response packet.
            harness.flood_polling(port, (packets + 1) // 2, connections)
            elapsed = time.monotonic() - begin
    finally:
        stop.set()
        server.join(10)
    print(f"{pcap}: {recording.captured} packets ({recording.dropped} dropped by kernel), "
          f"{pcap.stat().st_size} bytes, traffic generated in {elapsed:.1f} s")
    if recording.dropped:
        raise SystemExit("tcpdump dropped packets; the bench capture is incomplete")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        help="output directory (default: this folder; required with a bench)")
    parser.add_argument("--protocol", choices=("modbus", "s7", "opcua"),
                        help="make only this protocol's captures (default: all)")
    bench_kind = parser.add_mutually_exclusive_group()
    bench_kind.add_argument("--bench", type=int, nargs="?", const=200_000, metavar="N",
                            help="write only bench_modbus.pcap with at least N packets")
    bench_kind.add_argument("--bench-s7", type=int, nargs="?", const=200_000, metavar="N",
                            help="write only bench_s7.pcap with at least N packets")
    bench_kind.add_argument("--bench-opcua", type=int, nargs="?", const=200_000, metavar="N",
                            help="write only bench_opcua.pcap with at least N packets")
    args = parser.parse_args(argv)
    benches = {"modbus": args.bench, "s7": args.bench_s7, "opcua": args.bench_opcua}
    protocol = next((name for name, packets in benches.items() if packets), None)
    if protocol and args.out is None:
        parser.error("a bench needs --out: the bench capture does not belong in the repository")
    # The servers log the refusals we provoke (pymodbus as errors, with tracebacks).
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.getLogger("snap7").setLevel(logging.CRITICAL)
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    out = args.out or Path(__file__).resolve().parent
    out.mkdir(parents=True, exist_ok=True)
    if protocol:
        bench(out, protocol, benches[protocol])
    else:
        make_captures(out, args.protocol)


if __name__ == "__main__":
    main()
