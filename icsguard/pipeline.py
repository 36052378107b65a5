"""The decode pipeline: frames in, Events out, with every stage's counters.

Data flows one way — source → netstack → reassembly → protocols — and the
pipeline only wires the stages together and keeps the run's statistics.
"""

from __future__ import annotations

import time
import zlib
from collections import Counter
from typing import Callable, Iterable, Iterator

from icsguard.bounded import remember
from icsguard.budget import Budget
from icsguard.capture.files import CaptureError, Frame
from icsguard.events import SERVER_PORTS, Event
from icsguard.net.conversations import SERVICES, Conversations
from icsguard.net.netstack import (
    IPPROTO_TCP,
    TCP_ACK,
    TCP_FIN,
    TCP_RST,
    TCP_SYN,
    NetStack,
    Segment,
    UnsupportedLink,
    plain_flow,
    plain_tcp4_at,
    plain_tcp_fields,
)
from icsguard.net.reassembly import Reassembler
from icsguard.protocols import ProtocolStage
from icsguard.runstats import RunStats


class Pipeline:
    def __init__(self, stats: RunStats | None = None, conversations: bool = False, budget: Budget | None = None,
                 on_segment: Callable[[Frame, Segment], None] | None = None, shard: tuple[int, int] | None = None,
                 placed: dict[str, int] | None = None):
        """``conversations``: also an Event (``tcp``/``udp``) for each new conversation of any kind.
        ``budget``: the run's memory budget, shared by every stage. ``on_segment`` sees every
        frame with the segment it carried (a sensor's packet ring keeps them as evidence).
        ``shard`` (index, count): go on only with the connections of this shard's servers
        (every shard reads every frame; the first alone counts what the netstack saw); ``placed``:
        servers given their shard beforehand (the others go by their address's hash)."""
        self.on_segment = on_segment
        self.sharder = Sharder(*shard, (budget or Budget()).entries("conversations"), placed) if shard else None
        self.stats = stats or RunStats()
        counters = self.stats.counters
        budget = budget or Budget()
        self.max_hosts = budget.entries("hosts")
        self.netstack = NetStack(counters if shard is None or shard[0] == 0 else Counter())
        self.reassembler = Reassembler(counters, budget)
        self.protocols = ProtocolStage(counters, budget)
        self.conversations = Conversations(budget, counters) if conversations else None

    def run(self, frames: Iterable[Frame], progress: Callable[[Frame], None] | None = None) -> Iterator[Event]:
        """Events in capture order. Errors in the capture end the stream with CaptureError
        after everything before them has been yielded."""
        stats = self.stats
        sharder = self.sharder
        plain_segment = self.netstack.plain_segment
        feed_tcp, feed_known = self.reassembler.feed, self.reassembler.feed_known
        # connections followed by their raw flows, unless something needs every frame's segment
        lanes = self.reassembler.lanes if self.on_segment is None else None
        plain_frames = lanes is not None or sharder is not None       # (see netstack.plain_tcp4_at)
        decode = self.netstack.decode_other if plain_frames else self.netstack.decode
        feed_app, feed_lane = self.protocols.feed, self.protocols.feed_data
        see = self.conversations.feed if self.conversations is not None else None
        hosts = stats.hosts
        macs: dict[str, bytes] = {}

        def seen_from(src: str, mac: bytes) -> None:
            """The latest MAC a host was seen from: a device replaced shows."""
            if src in macs or len(macs) < self.max_hosts:
                macs[src] = mac
                hosts[src] = mac.hex(":")

        last = None
        failure = None
        try:
            for frame in frames:
                ts, link_type, data, capture, number = frame
                if not data:                       # a live source's heartbeat: no packet came
                    if progress is not None:
                        progress(frame)
                    continue
                # the tap's quietest stretch, within one capture (captures merged may be days apart)
                if last is not None and last.capture == capture and ts - last.ts > stats.longest_silence:
                    stats.longest_silence = ts - last.ts
                last = frame
                stats.packets += 1
                stats.bytes += len(data)
                if stats.first_ts is None:
                    stats.first_ts = ts
                stats.last_ts = ts
                if progress is not None:
                    progress(frame)
                where = plain_tcp4_at(link_type, data) if plain_frames else None
                flow = plain_flow(data, where[0]) if where is not None else None
                plain = sharder.plain(flow, data[where[0] + 13]) if sharder is not None and flow else None
                known = None
                if plain is not None:
                    known = sharder.flows.get(plain)
                    if known is False:
                        continue                   # another shard's connection, known as such
                if where is not None:
                    lane = lanes.get(flow) if lanes is not None else None
                    if lane is not None:       # an open connection's: its usual segments go straight on
                        payload = feed_known(lane, ts, *plain_tcp_fields(data, where))
                        if payload is not None:
                            src, mac = lane.side[0], data[6:12]
                            if macs.get(src) != mac:
                                seen_from(src, mac)
                            if payload:
                                yield from feed_lane(lane.conn, lane.side, payload, ts, capture, number)
                            continue
                    segment = plain_segment(data, where)
                else:
                    try:
                        segment = decode(ts, link_type, data)
                    except UnsupportedLink as exc:     # a pcapng interface added mid-file
                        raise CaptureError(f"{capture}: {exc}") from None
                    if segment is None:
                        continue
                if self.on_segment is not None:
                    self.on_segment(frame, segment)
                mac = segment.src_mac
                if mac and macs.get(segment.src) != mac:
                    seen_from(segment.src, mac)
                if sharder is not None and not known and not sharder.mine(segment, plain):
                    continue                       # (ours, known as such: nothing to work out)
                if see is not None:
                    started = see(ts, segment, capture, number)
                    if started is not None:
                        stats.counters["conversations.started"] += 1
                        yield started
                if segment.transport != IPPROTO_TCP:
                    continue
                for chunk in feed_tcp(ts, segment, frame, flow):
                    origin = chunk.origin
                    yield from feed_app(chunk, origin.ts, origin.capture, origin.number)
        except CaptureError as exc:
            failure = exc
            stats.error = str(exc)
        if last is not None:
            for chunk in self.reassembler.flush(last):
                origin = chunk.origin
                yield from feed_app(chunk, origin.ts, origin.capture, origin.number)
        stats.finished = time.time()
        for name, cache in self.protocols.caches.items():
            stats.counters[f"{name}.cache_hits"] = cache.hits
            stats.counters[f"{name}.cache_misses"] = cache.misses
        if failure is not None:
            raise failure


class Sharder:
    """Whether a segment's connection belongs to this shard: its server's. The server is the end
    the SYN went to (as conversations are oriented), else the end on a controller's or a known
    service's port, else the one on the lower port; the same in every shard, since every shard
    sees every frame, so a server's connections stay in one shard. A server's shard is the one
    it was placed in beforehand (by its traffic: see server_traffic), else its address's hash."""

    def __init__(self, index: int, count: int, capacity: int, placed: dict[str, int] | None = None):
        self.index, self.count, self.capacity = index, count, capacity
        self.placed = placed or {}
        self.servers: dict[tuple, str] = {}        # connection -> its server, as its SYN said
        # a plain TCP frame's flow (see netstack.plain_flow) -> whether it is this shard's: frames of other
        # shards' connections are passed over before they are decoded
        self.flows: dict[bytes, bool] = {}

    def plain(self, flow: bytes, flags: int) -> bytes | None:
        """A plain TCP frame's flow when it is neither SYN, FIN nor reset, else None. A SYN
        starts a connection on its addresses and ports: their frames are decided afresh."""
        if flags & TCP_SYN:
            if self.flows:
                self.flows.pop(flow, None)
                self.flows.pop(flow[4:8] + flow[:4] + flow[10:12] + flow[8:10], None)
            return None
        return None if flags & (TCP_FIN | TCP_RST) else flow

    def mine(self, segment: Segment, plain: bytes | None = None) -> bool:
        server = self.server(segment)
        shard = self.placed.get(server)
        ours = (zlib.crc32(server.encode()) % self.count if shard is None else shard) == self.index
        if plain is not None:
            remember(self.flows, plain, ours, self.capacity)
        return ours

    def server(self, segment: Segment) -> str:
        a, b = (segment.src, segment.sport), (segment.dst, segment.dport)
        key = (a, b) if a < b else (b, a)
        flags = segment.flags if segment.transport == IPPROTO_TCP else 0
        if flags & TCP_SYN:
            server = segment.src if flags & TCP_ACK else segment.dst
            remember(self.servers, key, server, self.capacity)
            return server
        return self.servers.get(key) or _server_by_port(segment)


def server_traffic(frames: Iterable[Frame], capacity: int) -> Counter:
    """Frames per server, servers named as a Sharder names them: what shards are balanced by.
    An estimate (a flow keeps the server its first frame named) that ends at a broken frame."""
    netstack, sharder = NetStack(Counter()), Sharder(0, 1, capacity)
    servers: dict[bytes, str] = {}
    traffic: Counter = Counter()
    try:
        for ts, link_type, data, _, _ in frames:
            where = plain_tcp4_at(link_type, data)
            flow = plain_flow(data, where[0]) if where is not None else None
            server = servers.get(flow) if flow is not None else None
            if server is None:
                segment = netstack.decode(ts, link_type, data)
                if segment is None:
                    continue
                server = sharder.server(segment)
                if flow is not None:
                    remember(servers, flow, server, capacity)
            traffic[server] += 1
    except (CaptureError, UnsupportedLink):
        pass
    return traffic


def _server_by_port(segment: Segment) -> str:
    a, b = (segment.src, segment.sport), (segment.dst, segment.dport)
    a_serves = a[1] in SERVER_PORTS or (segment.transport, a[1]) in SERVICES
    b_serves = b[1] in SERVER_PORTS or (segment.transport, b[1]) in SERVICES
    if a_serves != b_serves:
        return a[0] if a_serves else b[0]
    if a[1] != b[1]:
        return a[0] if a[1] < b[1] else b[0]
    return min(a[0], b[0])
