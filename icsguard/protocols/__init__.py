"""Protocol stage: recognise the application protocol of each connection and emit Events.

A connection is claimed by a protocol when its bytes look like that protocol
(on any port); bytes on a protocol's well-known port that do not look like it
are reported, never decoded as if they were. Each direction is cut into PDUs
by the protocol's length rule; the protocol's session decodes and pairs them. A
session hands back a fields dict of each PDU's own (what it shares between repeats,
from its decode cache, sits inside), which this stage completes with ``pdu_length``.
"""

from __future__ import annotations

from collections import Counter
from types import ModuleType

from icsguard.budget import Budget, Pool
from icsguard.events import Event
from icsguard.net.reassembly import CLOSE, DATA, GAP, Chunk, Connection
from icsguard.protocols import modbus, opcua, s7
from icsguard.protocols.decode_cache import DecodeCache
from icsguard.protocols.framing import PduFramer

ANALYZERS: tuple[ModuleType, ...] = (modbus, s7, opcua)
IDENTIFY_ATTEMPTS = 3        # payloads looked at before a connection is given up on
MAX_HELD = 4096              # bytes per direction held while a connection is unrecognised
MAX_UNORIENTED = 16          # PDUs held while it is unclear which side is the client

IGNORED = object()


class _Unclaimed:
    """A connection not recognised yet: the first bytes of each direction, kept (bounded,
    and held from the run's pool) so that nothing is lost once the protocol is known."""
    __slots__ = ("attempts", "buffers", "seen", "pool")

    def __init__(self, ts: float, capture: str, frame: int, pool: Pool) -> None:
        self.attempts = 0
        self.buffers: dict[tuple, bytes] = {}
        self.seen = (ts, capture, frame)      # where its first payload was, for the report
        self.pool = pool

    def hold(self, side: tuple, data: bytes) -> bool:
        """Keep these first bytes of one side, in place of what was kept; False when the pool
        cannot hold them."""
        grow = len(data) - len(self.buffers.get(side, b""))
        if grow > 0 and not self.pool.take(grow):
            return False
        if grow < 0:
            self.pool.give(-grow)
        self.buffers[side] = data
        return True

    def forget(self, side: tuple) -> None:
        """A gap: what was kept of this side no longer leads anywhere."""
        self.pool.give(len(self.buffers.pop(side, b"")))

    def release(self) -> None:
        self.pool.give(sum(map(len, self.buffers.values())))
        self.buffers = {}


class _Claimed:
    """A connection being decoded: a framer per direction, the protocol's session, and —
    until it is known which side is the client — the PDUs waiting for that answer."""
    __slots__ = ("analyzer", "session", "client", "framers", "unoriented", "unoriented_bytes", "partial", "pdus_key",
                 "malformed_key", "ends")

    def __init__(self, analyzer: ModuleType, session, client: tuple | None):
        self.analyzer = analyzer
        self.session = session
        self.client = client
        self.framers: dict[tuple, PduFramer] = {}
        self.unoriented: list[tuple] = []
        self.unoriented_bytes = 0            # ... held from the pool
        self.partial: dict[tuple, int] = {}      # side -> bytes of the fragments of a unit not complete yet
        self.pdus_key = f"{analyzer.NAME}.pdus"
        self.malformed_key = f"{analyzer.NAME}.malformed"
        self.ends: dict[tuple, tuple] = {}       # side -> (sent by the client, src, sport, dst, dport), once oriented


class ProtocolStage:
    def __init__(self, counters: Counter | None = None, budget: Budget | None = None):
        """``budget``: the decode caches' share, and the pool that partial PDUs, chunks,
        fragments and unanswered requests are held from."""
        self.counters = counters if counters is not None else Counter()
        budget = budget or Budget()
        self.pool = budget.buffers
        self.caches = {a.NAME: DecodeCache(budget.entries("decoded") // len(ANALYZERS)) for a in ANALYZERS}

    def feed(self, chunk: Chunk, ts: float, capture: str, frame: int) -> list[Event]:
        conn = chunk.conn
        state = conn.session
        if state is IGNORED:
            return []
        if chunk.kind == CLOSE:
            conn.session = IGNORED
            if state.__class__ is _Unclaimed:
                buffers = state.buffers
                state.release()
                if not buffers:
                    return []
                if all(len(held) <= 1 for held in buffers.values()):
                    self.counters["tcp.keepalive_only_connections"] += 1   # a byte is no PDU of anything
                    return []
                return self._give_up(conn, next(iter(buffers)), *state.seen)
            if state.__class__ is _Claimed:
                events = self._orient(state, conn, _guess_client(conn)) if state.unoriented else []
                for framer in state.framers.values():
                    framer.release()
                state.session.release()
                return events
            return []
        if state is None or state.__class__ is _Unclaimed:
            if chunk.kind == GAP:
                if state is not None:
                    state.forget(chunk.src)
                return []
            return self._identify(conn, chunk, state, ts, capture, frame)
        if chunk.kind == GAP:
            if chunk.src in state.framers:
                state.framers[chunk.src].gap()
            return []
        return self._events(state, conn, chunk.src, chunk.data, ts, capture, frame)

    def feed_data(self, conn: Connection, side: tuple, data: bytes, ts: float, capture: str, frame: int) -> list[Event]:
        """In-order bytes of one side, as a DATA chunk carries them (an open connection's
        usual segment, handed on without one)."""
        state = conn.session
        if state.__class__ is _Claimed:
            return self._events(state, conn, side, data, ts, capture, frame)
        return self.feed(Chunk(DATA, conn, side, data, None), ts, capture, frame)

    def _identify(self, conn: Connection, chunk: Chunk, state, ts, capture, frame) -> list[Event]:
        """Claim the connection for the protocol its bytes look like, then decode what was held back."""
        if state is None:
            state = conn.session = _Unclaimed(ts, capture, frame, self.pool)
        held = state.buffers.get(chunk.src, b"") + chunk.data
        ports = {conn.key[1], conn.key[3]}
        verdicts = []
        for analyzer in ANALYZERS:
            on_port = bool(ports & analyzer.PORTS)
            verdict = analyzer.signature(held, on_port)
            if verdict is False and len(held) > len(chunk.data) and analyzer.signature(chunk.data, on_port):
                held, verdict = chunk.data, True   # what came before was the tail of a PDU; a segment starts one
            if verdict:
                buffers = {**state.buffers, chunk.src: held}
                state.release()
                return self._claim(conn, analyzer, buffers, ts, capture, frame)
            verdicts.append(verdict)
        waiting = None in verdicts and len(held) <= MAX_HELD        # too short to tell yet
        if not state.hold(chunk.src, held if waiting else held[-MAX_HELD:]):
            self.counters["tcp.unidentified_over_budget"] += 1
            state.release()
            conn.session = IGNORED
            return []
        if waiting:
            return []
        state.attempts += 1
        if state.attempts < IDENTIFY_ATTEMPTS:
            return []
        conn.session = IGNORED
        state.release()
        return self._give_up(conn, chunk.src, *state.seen)

    def _give_up(self, conn: Connection, src: tuple, ts, capture, frame) -> list[Event]:
        """Not any protocol we know: report it if it sits on one of their ports."""
        ports = {conn.key[1], conn.key[3]}
        for analyzer in ANALYZERS:
            if ports & analyzer.PORTS:
                self.counters[f"{analyzer.NAME}.wrong_protocol_on_port"] += 1
                reason = f"payload on port {min(ports & analyzer.PORTS)} is not {analyzer.NAME}"
                client = _client_side(conn, analyzer) or _guess_client(conn)
                return [self._malformed_event(analyzer, conn, src, client, ts, capture, frame, reason)]
        self.counters["tcp.unidentified_connections"] += 1
        return []

    def _claim(self, conn: Connection, analyzer: ModuleType, held: dict, ts, capture, frame) -> list[Event]:
        if not {conn.key[1], conn.key[3]} & analyzer.PORTS:
            self.counters[f"{analyzer.NAME}.on_unusual_port"] += 1
        self.counters[f"{analyzer.NAME}.connections"] += 1
        client = _client_side(conn, analyzer)
        state = conn.session = _Claimed(analyzer, analyzer.Session(self.caches[analyzer.NAME], self.pool), client)
        events = []
        for side in sorted(held, key=lambda side: side != client):     # requests before responses
            events += self._events(state, conn, side, held[side], ts, capture, frame)
        return events

    def _events(self, state: _Claimed, conn: Connection, side: tuple, data: bytes,
                ts: float, capture: str, frame: int) -> list[Event]:
        name = state.analyzer.NAME
        framer = state.framers.get(side)
        if framer is None:
            framer = state.framers[side] = PduFramer(state.analyzer.pdu_length, self.pool)
        pdus = framer.feed(data)
        events = []
        if framer.problems:
            client = state.client or _guess_client(conn)
            for problem in framer.problems:
                self.counters[state.malformed_key] += 1
                events.append(self._malformed_event(state.analyzer, conn, side, client, ts, capture, frame, problem))
            framer.problems = []
        if framer.skipped:
            self.counters[f"{name}.resync_skipped_bytes"] += framer.skipped
            framer.skipped = 0
        if not pdus:
            return events
        if state.client is None:
            state.unoriented += [(side, pdu, ts, capture, frame) for pdu in pdus]
            client = state.analyzer.orient([(s, p) for s, p, *_ in state.unoriented], conn.peer)
            held = sum(len(pdu) for pdu in pdus)
            if client is None and len(state.unoriented) < MAX_UNORIENTED and self.pool.take(held):
                state.unoriented_bytes += held
                return events
            return events + self._orient(state, conn, client or _guess_client(conn))
        emitted = self._emit(state, conn, side, pdus, ts, capture, frame)
        return events + emitted if events else emitted

    def _orient(self, state: _Claimed, conn: Connection, client: tuple) -> list[Event]:
        """The client is known now: decode the PDUs that waited for it."""
        state.client = client
        waiting, state.unoriented = state.unoriented, []
        self.pool.give(state.unoriented_bytes)
        state.unoriented_bytes = 0
        events = []
        for side, pdu, ts, capture, frame in waiting:
            events += self._emit(state, conn, side, [pdu], ts, capture, frame)
        return events

    def _emit(self, state: _Claimed, conn: Connection, side: tuple, pdus: list[bytes],
              ts: float, capture: str, frame: int) -> list[Event]:
        """Events of PDUs one side sent in one packet; a PDU that is only part of a larger
        unit (a COTP fragment) gives none yet."""
        decode = state.session.decode
        ends = state.ends.get(side)
        if ends is None:
            ends = state.ends[side] = (side == state.client, *side, *conn.peer(side))
        from_client, src, sport, dst, dport = ends
        flow = conn.flow_id
        events = []
        partial = state.partial
        make = tuple.__new__          # an Event without its constructor's extra call (one per PDU)
        for pdu in pdus:
            try:
                decoded = decode(pdu, from_client)
            except Exception as error:      # a dissector bug or a lying length costs this PDU, never the run
                decoded = state.analyzer.undecodable(pdu, from_client, error)
            if decoded is None:
                partial[side] = partial.get(side, 0) + len(pdu)
                continue
            proto, direction, function, code, fields = decoded
            if "malformed" in fields:
                self.counters[state.malformed_key] += 1
            fields["pdu_length"] = len(pdu) + partial.pop(side, 0) if partial else len(pdu)
            events.append(make(Event, (ts, proto, src, sport, dst, dport, direction, function, code,
                                       flow, capture, frame, fields)))
        self.counters[state.pdus_key] += len(events)
        return events

    def _malformed_event(self, analyzer, conn, side, client, ts, capture, frame, reason) -> Event:
        dst, dport = conn.peer(side)
        return Event(ts, analyzer.NAME, side[0], side[1], dst, dport,
                     "request" if side == client else "response", "malformed", None,
                     conn.flow_id, capture, frame, {"malformed": reason})


def _client_side(conn: Connection, analyzer: ModuleType) -> tuple | None:
    """The (address, port) that sends requests: the side not on the protocol's port, else
    the SYN's sender; None when neither tells (then the PDUs themselves must)."""
    a, b = conn.key[:2], conn.key[2:]
    a_serves, b_serves = a[1] in analyzer.PORTS, b[1] in analyzer.PORTS
    if a_serves != b_serves:
        return b if a_serves else a
    if conn.saw_syn:
        return conn.client
    return None


def _guess_client(conn: Connection) -> tuple:
    """Last resort: servers usually listen on the lower port."""
    a, b = conn.key[:2], conn.key[2:]
    return a if a[1] > b[1] else b
