"""Evidence captures: the packets behind an alert, cut from the captures it was raised on, as a
pcapng an analyst opens in Wireshark or hands to an incident team, its SHA-256 kept with the
alert (chain of custody).

For each connection of the alert's evidence events it keeps every frame from the connection's
opening (its last SYN before the first evidence frame, else its first frame) to the last
evidence frame, and a few that follow: the handshake, every segment the PDUs were reassembled
from, and the answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from icsguard import __version__
from icsguard.capture.files import CaptureError, read_capture
from icsguard.net.netstack import TCP_ACK, TCP_SYN, NetStack
from icsguard.output.pcapng import PcapNgWriter

FOLLOWING = 10            # frames of each connection kept after its last evidence frame
MAX_FRAMES = 100_000      # per evidence capture; beyond, it says so
RING_PER_CONNECTION = 256  # recent frames a sensor keeps of each connection
RING_BYTES = 32_000_000    # and of all connections, within the sensor's memory budget


class EvidenceError(Exception):
    """The evidence cannot be cut; the message says why in one line."""


@dataclass
class Written:
    path: str
    sha256: str
    frames: int
    evidence_frames: int
    missing: list[str] = field(default_factory=list)      # evidence frames not found, said aloud
    cut: bool = False


def _flow(src: str, sport: int, dst: str, dport: int) -> frozenset:
    return frozenset(((src, sport), (dst, dport)))


def locate(alert: dict[str, Any], run: dict[str, Any], capture_dir: str | None) -> dict[str, str]:
    """Capture name (as events give it) -> the path to read; a capture that moved says so."""
    names = {e.get("capture") for e in json.loads(alert["evidence"] or "[]") if e.get("capture")}
    if not names:
        raise EvidenceError(f"alert {alert['id']} has no packet evidence (a {alert['detector']} alert)")
    if run["command"] == "sense":
        raise EvidenceError(f"alert {alert['id']} was raised by a sensor on {', '.join(sorted(names))}: its packets "
                            "were not kept")
    paths = {os.path.basename(p): p for p in json.loads(run["captures"] or "[]")}
    found = {}
    for name in sorted(names):
        candidates = [os.path.join(capture_dir, name)] if capture_dir else []
        candidates.append(paths.get(name, name))
        path = next((c for c in candidates if os.path.isfile(c)), None)
        if path is None:
            where = paths.get(name, name)
            raise EvidenceError(f"{name}: the capture run {run['id']} read as {where} is no longer there (moved? "
                                "give the folder it is in with --capture-dir)")
        found[name] = path
    return found


def write_evidence(alert: dict[str, Any], paths: dict[str, str], output: str) -> Written:
    """Cut the alert's packets from its captures into a pcapng at ``output``."""
    events = json.loads(alert["evidence"] or "[]")
    wanted: dict[str, dict[int, str]] = {}         # capture -> evidence frame -> what it was
    flows: dict[str, set[frozenset]] = {}
    for e in events:
        if e.get("capture") in paths and e.get("frame"):
            wanted.setdefault(e["capture"], {})[e["frame"]] = f"{e.get('proto')} {e.get('function')}"
            flows.setdefault(e["capture"], set()).add(_flow(e["src"], e["sport"], e["dst"], e["dport"]))
    comment = (f"icsguard alert {alert['id']}: {alert['rule']} - {alert['title']} ({alert['src']} -> "
               f"{alert['dst']}, {alert['count']}x); evidence frames: "
               + "; ".join(f"{name} {sorted(frames)}" for name, frames in sorted(wanted.items())))
    if os.path.exists(output) and any(os.path.samefile(output, path) for path in paths.values()):
        raise EvidenceError(f"{output}: is a capture the evidence is cut from; give another file name")
    written = Written(output, "", 0, 0)
    partial = output + ".partial"              # put in place only when whole
    try:
        with open(partial, "wb") as f:
            writer = PcapNgWriter(f, comment, f"icsguard {__version__}")
            for name, path in sorted(paths.items()):
                written.missing += _cut(writer, path, name, wanted.get(name, {}), flows.get(name, set()), written)
        with open(partial, "rb") as f:
            written.sha256 = hashlib.sha256(f.read()).hexdigest()
        os.replace(partial, output)
    except OSError as exc:
        raise EvidenceError(f"{output}: cannot write ({exc.strerror})") from None
    except CaptureError as exc:
        raise EvidenceError(str(exc)) from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return written


def _cut(writer: PcapNgWriter, path: str, name: str, wanted: dict[int, str], flows: set[frozenset],
         written: Written) -> list[str]:
    """Two passes over one capture: where each connection opened, then the frames to keep."""
    last_wanted = max(wanted, default=0)
    first_wanted = min(wanted, default=0)
    opened: dict[frozenset, int] = {}
    stack = NetStack()
    for frame in read_capture(path):
        if frame.number > first_wanted:
            break
        segment = stack.decode(frame.ts, frame.link_type, frame.data)
        if segment is None:
            continue
        flow = _flow(segment.src, segment.sport, segment.dst, segment.dport)
        if flow in flows:
            opened.setdefault(flow, frame.number)
            if segment.flags & TCP_SYN and not segment.flags & TCP_ACK:
                opened[flow] = frame.number                 # the latest opening before the evidence
    after: dict[frozenset, int] = {}
    found: set[int] = set()
    stack = NetStack()
    for frame in read_capture(path):
        segment = stack.decode(frame.ts, frame.link_type, frame.data)
        flow = _flow(segment.src, segment.sport, segment.dst, segment.dport) if segment is not None else None
        keep = frame.number in wanted
        if flow in flows and frame.number >= opened.get(flow, first_wanted):
            if frame.number <= last_wanted:
                keep = True
            elif after.get(flow, 0) < FOLLOWING:
                after[flow] = after.get(flow, 0) + 1
                keep = True
        if not keep:
            if frame.number > last_wanted and all(n >= FOLLOWING for n in after.values()) and \
                    len(after) == len(flows):
                break
            continue
        if written.frames >= MAX_FRAMES:
            written.cut = True
            break
        note = f"{name} frame {frame.number}"
        if frame.number in wanted:
            found.add(frame.number)
            written.evidence_frames += 1
            note += f": evidence ({wanted[frame.number]})"
        writer.write(frame.ts, frame.link_type, frame.data, note)
        written.frames += 1
    return [f"{name} frame {n}" for n in sorted(set(wanted) - found)]


@dataclass
class _Connection:
    frames: deque = field(default_factory=lambda: deque(maxlen=RING_PER_CONNECTION))
    bytes: int = 0
    evicted: int = 0            # frames that fell out of this connection's ring


@dataclass
class _Pending:
    alert: Any
    flows: set
    frames: list             # (ts, link type, data, comment) already taken from the rings
    evicted: int
    follow: dict             # flow -> frames still to take after the alert
    until: float             # monotonic deadline for the frames that follow


class EvidenceRing:
    """A sensor's evidence: a bounded ring of recent frames per connection, from which each new
    alert's packets, and FOLLOWING that come after it, are written to a pcapng in a folder, under
    a disk quota. Frames evicted before an alert, and alerts over the quota, are said (in the
    file's comment, in the run's counters), never hidden."""

    def __init__(self, folder: str, quota_bytes: int, ring_bytes: int, record, wait: float = 5.0):
        """``record(alert_id, path, sha256, frames)`` keeps each file's digest with its alert."""
        self.folder, self.quota, self.ring_bytes, self.wait = folder, quota_bytes, ring_bytes, wait
        self.record = record
        self.counters: Counter = Counter()      # the run copies them into its own
        self.connections: OrderedDict[frozenset, _Connection] = OrderedDict()
        self.held = 0
        self.pending: list[_Pending] = []
        os.makedirs(folder, exist_ok=True)

    def feed(self, frame, segment) -> None:
        flow = _flow(segment.src, segment.sport, segment.dst, segment.dport)
        item = (frame.ts, frame.link_type, frame.data, f"{frame.capture} packet {frame.number}")
        for pending in self.pending:
            if flow in pending.follow and pending.follow[flow] > 0:
                pending.follow[flow] -= 1
                pending.frames.append(item)
        connection = self.connections.get(flow)
        if connection is None:
            connection = self.connections[flow] = _Connection()
        else:
            self.connections.move_to_end(flow)
        if len(connection.frames) == connection.frames.maxlen:
            old = connection.frames[0]
            connection.bytes -= len(old[2])
            self.held -= len(old[2])
            connection.evicted += 1
        connection.frames.append(item)
        connection.bytes += len(frame.data)
        self.held += len(frame.data)
        while self.held > self.ring_bytes and len(self.connections) > 1:
            _, gone = self.connections.popitem(last=False)            # the least recently active
            self.held -= gone.bytes
            self.counters["evidence.connections_evicted"] += 1

    def raised(self, alerts) -> None:
        """New alerts: take what the rings hold of their connections, then wait for what follows."""
        for alert in alerts:
            flows = {_flow(e["src"], e["sport"], e["dst"], e["dport"]) for e in alert.evidence
                     if e.get("sport") is not None}
            if not flows or alert.id is None:
                continue
            frames, evicted = [], 0
            for flow in flows:
                connection = self.connections.get(flow)
                if connection is None:
                    evicted += 1
                    continue
                frames += list(connection.frames)
                evicted += connection.evicted
            frames.sort(key=lambda item: item[0])
            self.pending.append(_Pending(alert, flows, frames, evicted, {f: FOLLOWING for f in flows},
                                         time.monotonic() + self.wait))

    def tick(self, final: bool = False) -> None:
        """Write the alerts whose following frames came, or whose wait is over (all, at the end)."""
        now = time.monotonic()
        due = [p for p in self.pending if final or now >= p.until or not any(p.follow.values())]
        if not due:
            return
        self.pending = [p for p in self.pending if p not in due]
        for pending in due:
            self._write(pending)

    def _write(self, pending: _Pending) -> None:
        alert = pending.alert
        path = os.path.join(self.folder, f"alert-{alert.id}.pcapng")
        size = sum(len(item[2]) + 64 for item in pending.frames)
        try:
            used = sum(entry.stat().st_size for entry in os.scandir(self.folder) if entry.is_file())
        except OSError:
            self.counters["evidence.write_errors"] += 1
            return
        if used + size > self.quota:
            self.counters["evidence.over_quota"] += 1
            return
        evidence = {e.get("frame") for e in alert.evidence}
        note = (f"; {pending.evicted} earlier packets of these connections had left the ring and are not here"
                if pending.evicted else "")
        comment = (f"icsguard alert {alert.id}: {alert.rule} - {alert.title} ({alert.src} -> {alert.dst}){note}")
        try:
            with open(path, "wb") as f:
                writer = PcapNgWriter(f, comment, f"icsguard {__version__}")
                for ts, link_type, data, origin in pending.frames:
                    number = int(origin.rsplit(" ", 1)[1])
                    writer.write(ts, link_type, data, origin + (": evidence" if number in evidence else ""))
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except OSError:                 # a full disk, a folder taken away: counted, the sensor goes on
            self.counters["evidence.write_errors"] += 1
            return
        self.record(alert.id, os.path.abspath(path), digest, len(pending.frames))
        self.counters["evidence.captures_written"] += 1
