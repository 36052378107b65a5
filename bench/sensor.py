"""How fast a sensor keeps up, and whether its memory stays flat: ``icsguard sense`` with the
shipped rules and a learned baseline, on one end of a veth pair between two network namespaces
that this script makes (needs root; no other network is touched), fed from the other end.

    python -m bench.sensor [--rates 10000,20000,...] [--seconds 30] [--soak-minutes 60] [--soak-rate R]

The traffic is a mixed Modbus/S7/OPC UA workload: the public ct-samples Plant1 Modbus and
S7comm captures (38 pairs) followed by the project's own Modbus, S7 and OPC UA captures,
sent again and again at a constant rate; each copy's client ports are renumbered, so every
copy is new connections, not retransmissions (bench.frames.renumber). The sender and the
sensor are pinned to different cores.

For each rate: what was sent, what the sensor captured, what the kernel and icsguard
dropped, how long the sensor took to catch up after the sender stopped (its committed
packet count reaching what was sent), its CPU use and its peak memory. A rate is held when
nothing was dropped and the sensor caught up within CATCH_UP seconds. The soak then sends at
``--soak-rate`` (default: the highest rate held) for ``--soak-minutes`` and prints the
sensor's memory and database size every minute.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.frames import renumber
from bench.rules_on_public import PUBLIC, REPO
from icsguard.capture.files import read_captures
from tests.support.netns import veth_pair

NAME = "bsen"                      # namespaces bsen1 (sender) and bsen2 (sensor)
SENDER_CORE, SENSOR_CORE = "0", "1"
CATCH_UP = 2.0                     # seconds after the sender stops
PLANT = ["ct-samples/modbus/Plant1_ModbusTCP.pcap", "ct-samples/s7/Plant1_S7comm.pcap"]
OWN = sorted(str(p) for p in (REPO / "pcaps").glob("*.pcap") if "sll" not in p.name)
SLOT = 0.001                       # the sender tops up to its rate every millisecond


def workload() -> list[bytes]:
    """One copy of the traffic: the plant in time order, then the project's captures."""
    plant = sorted(read_captures([str(PUBLIC / p) for p in PLANT]), key=lambda f: f.ts)
    return [f.data for f in plant + list(read_captures(OWN)) if f.link_type == 1]


def send(iface: str, rate: float, seconds: float) -> None:
    """The sender, run inside the sender's namespace: frames at ``rate`` a second for
    ``seconds``; prints what it sent as JSON."""
    frames = workload()
    wire = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    wire.bind((iface, 0))
    started = time.monotonic()
    sent = copy = at = 0
    copy_frames = frames
    while True:
        now = time.monotonic()
        if now - started >= seconds:
            break
        due = int((now - started) * rate)
        while sent < due:
            wire.send(copy_frames[at])
            sent += 1
            at += 1
            if at == len(copy_frames):
                at, copy = 0, copy + 1
                copy_frames = [renumber(data, copy) for data in frames]
        time.sleep(SLOT)
    print(json.dumps({"sent": sent, "seconds": time.monotonic() - started, "copies": copy}))


def committed(db: Path) -> tuple[int, dict]:
    """The packets and counters the sensor has committed so far."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            row = conn.execute("SELECT packets, counters FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    except sqlite3.OperationalError:
        return 0, {}
    return (row[0] or 0, json.loads(row[1] or "{}")) if row else (0, {})


def memory(pid: int) -> tuple[float, float, float]:
    """(resident, peak resident, anonymous resident) MB of a process. The capture ring that
    libpcap maps (--buffer-mb) is resident but not anonymous: the kernel's buffer, not icsguard's heap."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return tuple(int(fields[name].split()[0]) / 1024 for name in ("VmRSS", "VmHWM", "RssAnon"))


def pinned(side: str, core: str, *args) -> list[str]:
    """This Python with ``args``, in namespace NAME + side, on one core."""
    return ["ip", "netns", "exec", f"{NAME}{side}", "taskset", "-c", core, sys.executable, *map(str, args)]


def cpu_seconds(pid: int) -> float:
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


class Sensor:
    """icsguard sense pinned to its core in the sensor's namespace, with the rules and model."""

    def __init__(self, db: Path, model: Path):
        self.db = db
        command = pinned("2", SENSOR_CORE, "-m", "icsguard", "sense", "--iface", f"{NAME}2a", "--db", db,
                         "--model", model)
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not committed(db)[1] and time.monotonic() < deadline and self.process.poll() is None:
            time.sleep(0.1)
        if self.process.poll() is not None:
            sys.exit(f"the sensor did not start: {self.process.stderr.read().strip()}")
        self.cpu_at_start = cpu_seconds(self.process.pid)

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=120)
        if self.process.returncode != 0:
            sys.exit(f"the sensor failed: {err.strip()}")
        return out.strip()


def sender(rate: float, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(pinned("1", SENDER_CORE, "-m", "bench.sensor", "--send", rate, "--seconds", seconds),
                            stdout=subprocess.PIPE, text=True, cwd=REPO)


def dropped(stop_line: str) -> tuple[int, int, int]:
    """(captured, dropped by the kernel, dropped by icsguard) from the sensor's last line."""
    numbers = [int(word.replace(",", "")) for word in stop_line.split() if word.replace(",", "").isdigit()]
    return numbers[0], numbers[1], numbers[2]


def one_rate(rate: float, seconds: float, scratch: Path, model: Path) -> dict:
    sensor = Sensor(scratch / f"rate-{int(rate)}.db", model)
    feed = sender(rate, seconds)
    started = time.monotonic()
    result = json.loads(feed.communicate()[0])
    sent_at = time.monotonic()
    while committed(sensor.db)[0] < result["sent"] and time.monotonic() - sent_at < 30:
        time.sleep(0.05)
    caught_up = time.monotonic() - sent_at
    if sensor.process.poll() is not None:
        sys.exit(f"the sensor stopped: {sensor.process.stderr.read().strip()}")
    cpu = (cpu_seconds(sensor.process.pid) - sensor.cpu_at_start) / (time.monotonic() - started)
    _, peak, heap = memory(sensor.process.pid)
    captured, kernel, ours = dropped(sensor.stop())
    held = kernel == 0 and ours == 0 and caught_up <= CATCH_UP
    return {"rate": rate, "sent": result["sent"], "captured": captured, "kernel": kernel, "icsguard": ours,
            "catch_up": caught_up, "cpu": cpu, "peak_mb": peak, "heap_mb": heap,
            "held": held}


def soak(rate: float, minutes: float, scratch: Path, model: Path) -> None:
    db = scratch / "soak.db"
    sensor = Sensor(db, model)
    feed = sender(rate, minutes * 60)
    started = time.monotonic()
    print(f"\nsoak at {rate:,.0f} packets/s for {minutes:g} min")
    print(f"{'minute':>6} {'packets':>12} {'kernel drops':>13} {'RSS MB':>7} {'peak MB':>8} {'heap MB':>8} "
          f"{'db MB':>6}")
    for minute in range(1, int(minutes) + 1):
        time.sleep(max(0.0, started + minute * 60 - time.monotonic()))
        packets, counters = committed(db)
        rss, peak, heap = memory(sensor.process.pid)
        size = sum(p.stat().st_size for p in scratch.glob("soak.db*")) / 2**20
        print(f"{minute:>6} {packets:>12,} {counters.get('capture.kernel_drops', 0):>13,} {rss:>7.0f} {peak:>8.0f} "
              f"{heap:>8.0f} {size:>6.1f}", flush=True)
    feed.communicate()
    print(sensor.stop())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="5000,10000,20000,30000,40000,60000")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of traffic per rate")
    parser.add_argument("--soak-minutes", type=float, default=60.0, help="0: no soak")
    parser.add_argument("--soak-rate", type=float, help="default: the highest rate held")
    parser.add_argument("--send", type=float, help=argparse.SUPPRESS)          # the sender's own process
    args = parser.parse_args()
    if args.send:
        return send(f"{NAME}1a", args.send, args.seconds)
    if os.geteuid() != 0:
        sys.exit("bench.sensor makes network namespaces: run it as root")
    with tempfile.TemporaryDirectory() as folder, veth_pair(NAME):
        scratch = Path(folder)
        model = scratch / "plant.model"
        learned = subprocess.run([sys.executable, "-m", "icsguard", "learn", "--model", model,
                                  *(str(PUBLIC / p) for p in PLANT), *OWN], capture_output=True, text=True)
        if learned.returncode != 0:
            sys.exit(learned.stderr.strip())
        print(f"workload: {len(workload()):,} frames a copy; rules shipped, baseline and model learned from one copy")
        print(f"{'rate':>7} {'sent':>9} {'captured':>9} {'kernel':>7} {'icsguard':>8} {'catch-up s':>10} "
              f"{'CPU':>5} {'peak MB':>8} {'heap MB':>8}  held")
        best = 0.0
        for rate in map(float, args.rates.split(",")):
            r = one_rate(rate, args.seconds, scratch, model)
            print(f"{rate:>7,.0f} {r['sent']:>9,} {r['captured']:>9,} {r['kernel']:>7,} {r['icsguard']:>8,} "
                  f"{r['catch_up']:>10.1f} {r['cpu']:>5.0%} {r['peak_mb']:>8.0f} {r['heap_mb']:>8.0f}  {'yes' if r['held'] else 'no'}",
                  flush=True)
            if r["held"]:
                best = rate
        print(f"highest rate held with 0 drops: {best:,.0f} packets/s")
        if args.soak_minutes > 0 and (args.soak_rate or best):
            soak(args.soak_rate or best, args.soak_minutes, scratch, model)


if __name__ == "__main__":
    main()
