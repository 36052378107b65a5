"""Regenerate the Modbus/TCP fixture captures from real pymodbus peers.

    python pcaps/make_captures.py [--out DIR]
    python pcaps/make_captures.py --bench [N] --out DIR

Needs root (tcpdump, port 502). Each NAME.pcap gets a NAME.json next to it:
``{"pcap", "iface", "server": {"host", "port", "unit_id"}, "transcript": [...]}``
where the transcript is what the client sent and decoded (see peers.py).
``--bench`` instead writes DIR/bench_modbus.pcap with at least N packets of
polling traffic (default 200000) and reports how long that took.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402  (needs the path above)


def _diagnostics_and_identification(port: int) -> list[dict]:
    return peers.diagnostics(port) + peers.device_identification(port)


# name -> (scenario, server port, capture interface, scenario kwargs)
CAPTURES = {
    "modbus_polling": (peers.normal_polling, 502, "lo", {"cycles": 50, "interval": 0.02}),
    "modbus_writes": (peers.writes, 502, "lo", {}),
    "modbus_exceptions": (peers.exceptions, 502, "lo", {}),
    "modbus_diagnostics": (_diagnostics_and_identification, 502, "lo", {}),
    "modbus_port5020": (peers.normal_polling, 5020, "lo", {"cycles": 50, "interval": 0.02}),
    "modbus_sll2": (peers.normal_polling, 502, "any", {"cycles": 10, "interval": 0.02}),
}


def make_captures(out: Path) -> None:
    """Write every capture in CAPTURES and its transcript into ``out``."""
    for name, (scenario, port, iface, kwargs) in CAPTURES.items():
        pcap = out / f"{name}.pcap"
        transcript = peers.capture(pcap, scenario, port=port, iface=iface, **kwargs)
        document = {
            "pcap": pcap.name,
            "iface": iface,
            "server": {"host": peers.HOST, "port": port, "unit_id": peers.UNIT_ID},
            "transcript": transcript,
        }
        (out / f"{name}.json").write_text(json.dumps(document, indent=1) + "\n")
        print(f"{pcap.name}: {len(transcript)} requests, {pcap.stat().st_size} bytes")


def _serve(port: int, started, stop) -> None:
    """Bench server process: a second core for the server side."""
    with peers.start_server(port):
        started.set()
        stop.wait()


def bench(out: Path, packets: int, connections: int = 16) -> None:
    """Record at least ``packets`` packets of polling on port 502 as fast as possible."""
    pcap = out / "bench_modbus.pcap"
    started, stop = multiprocessing.Event(), multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(peers.MODBUS_PORT, started, stop))
    server.start()
    try:
        if not started.wait(10):
            raise RuntimeError("bench server did not start")
        with peers.record(pcap, peers.MODBUS_PORT) as recording:
            begin = time.monotonic()
            # Every transaction is at least a request and a response packet.
            peers.flood_polling(peers.MODBUS_PORT, (packets + 1) // 2, connections)
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
                        help="output directory (default: this folder; required with --bench)")
    parser.add_argument("--bench", type=int, nargs="?", const=200_000, metavar="N",
                        help="write only bench_modbus.pcap with at least N packets")
    args = parser.parse_args(argv)
    if args.bench and args.out is None:
        parser.error("--bench needs --out: the bench capture does not belong in the repository")
    # pymodbus logs the exception responses we provoke as errors, with tracebacks.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    out = args.out or Path(__file__).resolve().parent
    out.mkdir(parents=True, exist_ok=True)
    if args.bench:
        bench(out, args.bench)
    else:
        make_captures(out)


if __name__ == "__main__":
    main()
