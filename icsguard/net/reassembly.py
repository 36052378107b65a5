"""TCP stream reassembly per connection direction, with hard memory caps.

Hostile or lossy traffic must not make the sensor hoard bytes: out-of-order
data waits only up to per-direction and global caps, then the hole is declared
a gap and the next stage resynchronises on the following PDU header.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
from collections import Counter
from typing import NamedTuple

from icsguard.budget import Budget
from icsguard.net.netstack import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, Segment

MAX_PENDING_SEGMENTS = 64          # out-of-order segments held per direction
MAX_PENDING_BYTES = 256 * 1024     # out-of-order bytes held per direction
MAX_PENDING_AGE = 5.0              # seconds a hole may stay open
MAX_SEQ_JUMP = 1 << 20             # further than this from the expected byte is not reordering
IDLE_TIMEOUT = 900.0               # polling links may be quiet for minutes
SWEEP_INTERVAL = 10.0

DATA, GAP, CLOSE = "data", "gap", "close"
SEQ_SPACE = 1 << 32                # sequence numbers wrap around here
LANE_FLAGS = TCP_SYN | TCP_FIN | TCP_RST | TCP_ACK     # of these, a usual segment has the ACK alone


def seq_add(seq: int, count: int) -> int:
    """The sequence number ``count`` bytes after ``seq``."""
    return (seq + count) % SEQ_SPACE


def seq_diff(a: int, b: int) -> int:
    """How far ``a`` lies after ``b`` (negative: before), the nearer way round the wrap."""
    return (a - b + SEQ_SPACE // 2) % SEQ_SPACE - SEQ_SPACE // 2


def seq_lt(a: int, b: int) -> bool:
    return seq_diff(a, b) < 0


def seq_distance(a: int, b: int) -> int:
    """How far ``a`` lies after ``b`` counting forward only (0 to 2**32 - 1)."""
    return (a - b) % SEQ_SPACE


def community_id(src: str, sport: int, dst: str, dport: int, proto: int = 6) -> str:
    """Community ID v1: the same flow id Zeek and Suricata print, for pivoting between tools."""
    family = socket.AF_INET6 if ":" in src else socket.AF_INET
    a, b = socket.inet_pton(family, src), socket.inet_pton(family, dst)
    if (a, sport) > (b, dport):
        a, b, sport, dport = b, a, dport, sport
    digest = hashlib.sha1(struct.pack("!H", 0) + a + b + struct.pack("!BBHH", proto, 0, sport, dport))
    return "1:" + base64.b64encode(digest.digest()).decode()


class _Direction:
    __slots__ = ("next_seq", "acked", "pending", "pending_bytes", "pending_since", "fin")

    def __init__(self) -> None:
        self.fin = False                       # this side said it has no more to send
        self.next_seq: int | None = None
        self.acked: int | None = None          # the peer's latest ACK of this direction's bytes
        self.pending: dict[int, tuple[bytes, object]] = {}     # seq → (payload, origin)
        self.pending_bytes = 0
        self.pending_since = 0.0


class Connection:
    """Both directions of one TCP connection, plus a slot for the protocol stage's state."""
    __slots__ = ("key", "client", "saw_syn", "last_seen", "directions", "session", "_flow_id", "lanes")

    def __init__(self, key: tuple, first: Segment, ts: float):
        self.key = key
        self.client = (first.src, first.sport)   # a guess until a SYN says otherwise
        self.saw_syn = False
        self.last_seen = ts
        self.directions = {(first.src, first.sport): _Direction(), (first.dst, first.dport): _Direction()}
        self.session: object = None
        self._flow_id: str | None = None
        self.lanes: list[bytes] = []             # its directions' raw flows followed (see Reassembler.lanes)

    def peer(self, side: tuple) -> tuple:
        """The other end of the connection from ``side``."""
        a, b = self.key[:2], self.key[2:]
        return b if side == a else a

    @property
    def flow_id(self) -> str:
        if self._flow_id is None:
            (a, ap), (b, bp) = self.key[:2], self.key[2:]
            self._flow_id = community_id(a, ap, b, bp)
        return self._flow_id


class Lane(NamedTuple):
    """One direction of an open connection, as its plain frames' raw flow names it."""
    conn: Connection
    side: tuple                  # (address, port) that sends on it
    direction: _Direction
    peer: _Direction


class Chunk(NamedTuple):
    """In-order bytes of one direction (DATA), a hole before the next bytes (GAP), or the end (CLOSE).

    ``origin`` is what the caller passed with the packet that carried these bytes
    (for buffered bytes, the packet they came in, not the one that released them).
    """
    kind: str
    conn: Connection
    src: tuple
    data: bytes
    origin: object


class Reassembler:
    """``budget``: how many connections may be followed at once (the least recently active go
    first), and the pool that out-of-order bytes are held from."""

    def __init__(self, counters: Counter | None = None, budget: Budget | None = None):
        self.counters = counters if counters is not None else Counter()
        budget = budget or Budget()
        self.max_connections = budget.entries("connections")
        self.pool = budget.buffers
        self.connections: dict[tuple, Connection] = {}
        self._next_sweep = 0.0
        self._origin: object = None
        # a plain frame's raw flow (netstack.plain_flow) -> its lane, for the connections open
        # now: their usual segments go by feed_known
        self.lanes: dict[bytes, Lane] = {}

    def feed_known(self, lane: Lane, ts: float, seq: int, ack: int, flags: int, payload: bytes) -> bytes | None:
        """A segment on a lane, when it is the usual one: an ACK carrying the next bytes in
        order, or none, with nothing held out of order; returns its bytes, in order on the
        lane's side (a DATA chunk's, without the chunk). None for any other: then the segment
        goes the general way, by ``feed``."""
        if flags & LANE_FLAGS != TCP_ACK or ts >= self._next_sweep:
            return None
        conn, side, direction, peer = lane
        if direction.pending or peer.pending or (payload and seq != direction.next_seq):
            return None
        key = conn.key
        del self.connections[key]              # re-inserted last: the dict is ordered by recency
        self.connections[key] = conn
        conn.last_seen = ts
        peer.acked = ack
        if payload:
            direction.next_seq = seq_add(seq, len(payload))
        return payload

    def feed(self, ts: float, seg: Segment, origin: object = None, flow: bytes | None = None) -> list[Chunk]:
        """``flow``: the segment's raw flow, when it came in a plain frame: the connection is
        then followed by it too (see feed_known)."""
        self._origin = origin
        out: list[Chunk] = []
        if ts >= self._next_sweep:
            self._sweep(ts, out)
        side = (seg.src, seg.sport)
        key = (seg.src, seg.sport, seg.dst, seg.dport)
        if side > (seg.dst, seg.dport):
            key = (seg.dst, seg.dport, seg.src, seg.sport)
        conn = self.connections.pop(key, None)
        flags = seg.flags
        if conn is not None and flags & TCP_SYN and not flags & TCP_ACK:
            previous = conn.directions[side].next_seq
            if previous is not None and previous != seq_add(seg.seq, 1):
                self._close(conn, out)      # the 4-tuple is being reused by a new connection
                conn = None
        if conn is None:
            if flags & TCP_RST or (not seg.payload and not flags & TCP_SYN):
                return out
            if len(self.connections) >= self.max_connections:
                oldest = next(iter(self.connections))
                self._close(self.connections.pop(oldest), out)
                self.counters["tcp.connections_evicted"] += 1
            conn = Connection(key, seg, ts)
            self.counters["tcp.connections"] += 1
        conn.last_seen = ts
        direction = conn.directions[side]
        if flags & TCP_SYN:
            self.connections[key] = conn
            if not flags & TCP_ACK:
                conn.client = side
                conn.saw_syn = True
            direction.next_seq = seq_add(seg.seq, 1)
            return out
        if flags & TCP_ACK:
            self._acked(conn, (seg.dst, seg.dport), seg.ack, out)
        if seg.payload:
            self._data(ts, conn, side, direction, seg.seq, seg.payload, out)
        if flags & TCP_FIN:
            direction.fin = True
        # ended: reset, or both sides finished with nothing left to deliver (what still comes,
        # the last ACK, is ignored: a segment without data or SYN starts no connection)
        if flags & TCP_RST or (direction.fin and all(d.fin and not d.pending for d in conn.directions.values())):
            self._close(conn, out)
        else:
            self.connections[key] = conn   # re-inserted last: the dict is ordered by recency
            if flow is not None and flow not in self.lanes:
                self.lanes[flow] = Lane(conn, side, direction, conn.directions[(seg.dst, seg.dport)])
                conn.lanes.append(flow)
        return out

    def _data(self, ts: float, conn: Connection, side: tuple, d: _Direction,
              seq: int, payload: bytes, out: list[Chunk]) -> None:
        if d.next_seq is None:
            self.counters["tcp.midstream"] += 1
            if d.acked is not None and not seq_lt(d.acked, seq_add(seq, len(payload))):
                # joined mid-stream and these bytes were acknowledged before we saw them: old
                # data, such as a keep-alive's single byte; the stream starts at the ACK
                d.next_seq = d.acked
                self.counters["tcp.retransmitted_segments"] += 1
                return
            d.next_seq = seq
        offset = 0 if seq == d.next_seq else seq_diff(seq, d.next_seq)    # in order: the usual case
        if offset and abs(offset) > MAX_SEQ_JUMP:
            # No window is that wide: the stream was desynchronised (or forged); restart here.
            self.counters["tcp.sequence_jumps"] += 1
            while d.pending:
                self._skip_hole(conn, side, d, out)
            out.append(Chunk(GAP, conn, side, b"", self._origin))
            d.next_seq = seq
            offset = 0
        if offset < 0:                    # starts before what was already delivered
            behind = -offset
            if behind >= len(payload):
                self.counters["tcp.retransmitted_segments"] += 1
                return
            self.counters["tcp.overlaps"] += 1
            payload = payload[behind:]
            offset = 0
        if offset:
            if seq not in d.pending or len(d.pending[seq][0]) < len(payload):
                if not d.pending:
                    d.pending_since = ts
                old = d.pending.get(seq)
                grow = len(payload) - (len(old[0]) if old else 0)
                if self.pool.take(grow):
                    d.pending[seq] = (payload, self._origin)
                    d.pending_bytes += grow
                    self.counters["tcp.out_of_order_segments"] += 1
                else:           # the memory budget is spent: the hole is given up now
                    self.counters["tcp.out_of_order_over_budget"] += 1
                    if d.pending:
                        self._skip_hole(conn, side, d, out)
                    return
            if (len(d.pending) > MAX_PENDING_SEGMENTS or d.pending_bytes > MAX_PENDING_BYTES
                    or ts - d.pending_since > MAX_PENDING_AGE):
                self._skip_hole(conn, side, d, out)
            return
        out.append(Chunk(DATA, conn, side, payload, self._origin))
        d.next_seq = seq_add(d.next_seq, len(payload))
        if d.pending:
            self._drain(conn, side, d, out)

    def _acked(self, conn: Connection, side: tuple, ack: int, out: list[Chunk]) -> None:
        """The receiver acknowledged bytes this sensor never saw: the hole will not be filled."""
        d = conn.directions[side]
        d.acked = ack
        if d.pending and d.next_seq is not None and seq_lt(d.next_seq, ack):
            self._skip_hole(conn, side, d, out)

    def _drain(self, conn: Connection, side: tuple, d: _Direction, out: list[Chunk]) -> None:
        """Deliver buffered segments that now continue the stream; drop what is already covered."""
        while d.pending:
            seq = min(d.pending, key=lambda s: seq_distance(s, d.next_seq))
            ahead = seq_diff(seq, d.next_seq)
            if ahead > 0:
                return
            payload, origin = self._take(d, seq)
            behind = -ahead
            if behind >= len(payload):
                self.counters["tcp.retransmitted_segments"] += 1
                continue
            if behind:
                self.counters["tcp.overlaps"] += 1
            out.append(Chunk(DATA, conn, side, payload[behind:], origin))
            d.next_seq = seq_add(d.next_seq, len(payload) - behind)

    def _skip_hole(self, conn: Connection, side: tuple, d: _Direction, out: list[Chunk]) -> None:
        """Give up on missing bytes: jump to the first buffered segment and announce a gap."""
        seq = min(d.pending, key=lambda s: seq_distance(s, d.next_seq))
        self.counters["tcp.gaps"] += 1
        self.counters["tcp.gap_bytes"] += seq_distance(seq, d.next_seq)
        out.append(Chunk(GAP, conn, side, b"", d.pending[seq][1]))
        d.next_seq = seq
        self._drain(conn, side, d, out)
        if d.pending:
            d.pending_since = conn.last_seen

    def _take(self, d: _Direction, seq: int) -> tuple[bytes, object]:
        payload, origin = d.pending.pop(seq)
        d.pending_bytes -= len(payload)
        self.pool.give(len(payload))
        return payload, origin

    def _close(self, conn: Connection, out: list[Chunk]) -> None:
        for flow in conn.lanes:
            del self.lanes[flow]
        conn.lanes.clear()
        for side, d in conn.directions.items():
            while d.pending:
                self._skip_hole(conn, side, d, out)
        out.append(Chunk(CLOSE, conn, conn.client, b"", self._origin))

    def _sweep(self, now: float, out: list[Chunk]) -> None:
        self._next_sweep = now + SWEEP_INTERVAL
        while self.connections:
            key = next(iter(self.connections))
            conn = self.connections[key]
            if now - conn.last_seen <= IDLE_TIMEOUT:
                break
            del self.connections[key]
            self.counters["tcp.connections_idle_closed"] += 1
            self._close(conn, out)

    def flush(self, origin: object = None) -> list[Chunk]:
        """End of input: deliver what is buffered and close every connection."""
        self._origin = origin
        out: list[Chunk] = []
        while self.connections:
            _, conn = self.connections.popitem()
            self._close(conn, out)
        return out
