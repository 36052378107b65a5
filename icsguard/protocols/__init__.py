"""Protocol stage: recognise the application protocol of each connection and emit Events.

A connection is claimed by a protocol when its bytes look like that protocol
(on any port); bytes on a protocol's well-known port that do not look like it
are reported, never decoded as if they were.
"""

from __future__ import annotations

from collections import Counter
from types import ModuleType

from icsguard.events import Event
from icsguard.protocols import modbus
from icsguard.protocols.decode_cache import DecodeCache
from icsguard.reassembly import CLOSE, GAP, Chunk, Connection

ANALYZERS: tuple[ModuleType, ...] = (modbus,)
IDENTIFY_ATTEMPTS = 3        # payloads looked at before a connection is given up on


class _Unclaimed:
    """A connection not (yet) recognised: how many payloads were tried."""
    __slots__ = ("attempts",)

    def __init__(self) -> None:
        self.attempts = 0


IGNORED = object()


class _Claimed:
    __slots__ = ("analyzer", "session")

    def __init__(self, analyzer: ModuleType, session):
        self.analyzer = analyzer
        self.session = session


class ProtocolStage:
    def __init__(self, counters: Counter | None = None, cache_entries: int | None = None):
        self.counters = counters if counters is not None else Counter()
        self.caches = {a.NAME: DecodeCache(cache_entries) if cache_entries else DecodeCache()
                       for a in ANALYZERS}

    def feed(self, chunk: Chunk, ts: float, capture: str, frame: int) -> list[Event]:
        conn = chunk.conn
        state = conn.session
        if state is IGNORED:
            return []
        if chunk.kind == CLOSE:
            conn.session = IGNORED
            return []
        if state is None or state.__class__ is _Unclaimed:
            if chunk.kind == GAP:
                return []
            state = self._identify(conn, chunk, state, ts, capture, frame)
            if state.__class__ is not _Claimed:
                return state
        from_client = chunk.src == state.session.client
        if chunk.kind == GAP:
            state.session.gap(from_client)
            return []
        return self._events(state, conn, chunk, from_client, ts, capture, frame)

    def _identify(self, conn: Connection, chunk: Chunk, state, ts, capture, frame):
        ports = {conn.key[1], conn.key[3]}
        for analyzer in ANALYZERS:
            if analyzer.signature(chunk.data, bool(ports & analyzer.PORTS)):
                return self._claim(conn, analyzer)
        if state is None:
            state = conn.session = _Unclaimed()
        state.attempts += 1
        if state.attempts < IDENTIFY_ATTEMPTS:
            return []
        conn.session = IGNORED
        for analyzer in ANALYZERS:
            if ports & analyzer.PORTS:
                self.counters[f"{analyzer.NAME}.wrong_protocol_on_port"] += 1
                reason = f"payload on port {min(ports & analyzer.PORTS)} is not {analyzer.NAME}"
                return [self._malformed_event(analyzer, conn, chunk.src, _client_side(conn, analyzer),
                                              ts, capture, frame, reason)]
        self.counters["tcp.unidentified_connections"] += 1
        return []

    def _claim(self, conn: Connection, analyzer: ModuleType) -> _Claimed:
        if not {conn.key[1], conn.key[3]} & analyzer.PORTS:
            self.counters[f"{analyzer.NAME}.on_unusual_port"] += 1
        self.counters[f"{analyzer.NAME}.connections"] += 1
        session = analyzer.Session(_client_side(conn, analyzer), self.caches[analyzer.NAME])
        state = conn.session = _Claimed(analyzer, session)
        return state

    def _events(self, state: _Claimed, conn: Connection, chunk: Chunk, from_client: bool,
                ts: float, capture: str, frame: int) -> list[Event]:
        session, analyzer = state.session, state.analyzer
        pdus, problems = session.pdus(chunk.data, from_client)
        events = []
        for problem in problems:
            self.counters[f"{analyzer.NAME}.malformed"] += 1
            events.append(self._malformed_event(analyzer, conn, chunk.src, session.client,
                                                ts, capture, frame, problem))
        src, sport = chunk.src
        (dst, dport) = (conn.key[2], conn.key[3]) if chunk.src == (conn.key[0], conn.key[1]) else (conn.key[0], conn.key[1])
        direction = "request" if from_client else "response"
        flow = conn.flow_id
        name = analyzer.NAME
        for pdu in pdus:
            function, code, fields = session.decode(pdu, from_client)
            if "malformed" in fields:
                self.counters[f"{name}.malformed"] += 1
            events.append(Event(ts, name, src, sport, dst, dport, direction, function, code,
                                flow, capture, frame, fields))
        self.counters[f"{name}.pdus"] += len(pdus)
        return events

    def _malformed_event(self, analyzer, conn, src_side, client, ts, capture, frame, reason) -> Event:
        a, b = (conn.key[0], conn.key[1]), (conn.key[2], conn.key[3])
        dst_side = b if src_side == a else a
        return Event(ts, analyzer.NAME, src_side[0], src_side[1], dst_side[0], dst_side[1],
                     "request" if src_side == client else "response", "malformed", None,
                     conn.flow_id, capture, frame, {"malformed": reason})


def _client_side(conn: Connection, analyzer: ModuleType) -> tuple:
    """The (address, port) that sends requests: the side not on the protocol's port, else the SYN's sender."""
    a, b = (conn.key[0], conn.key[1]), (conn.key[2], conn.key[3])
    a_serves, b_serves = a[1] in analyzer.PORTS, b[1] in analyzer.PORTS
    if a_serves != b_serves:
        return b if a_serves else a
    if conn.saw_syn:
        return conn.client
    return a if a[1] > b[1] else b   # joined mid-stream: servers listen on the lower port
