"""IP fragment reassembly with caps, so a fragment flood cannot exhaust memory."""

from __future__ import annotations

from collections import Counter

from icsguard.bounded import remember

MAX_DATAGRAMS = 1024          # datagrams being reassembled at once
MAX_DATAGRAM_BYTES = 65535    # the largest datagram IP can describe
FRAGMENT_TIMEOUT = 30.0       # seconds of capture time, as Linux does


class _Datagram:
    __slots__ = ("first_ts", "pieces", "size", "total")

    def __init__(self, ts: float):
        self.first_ts = ts
        self.pieces: dict[int, bytes] = {}
        self.size = 0
        self.total: int | None = None


class FragmentReassembler:
    def __init__(self, counters: Counter):
        self.counters = counters
        self.pending: dict[tuple, _Datagram] = {}

    def add(self, ts: float, key: tuple, offset: int, more: bool, data: bytes) -> bytes | None:
        """Store one fragment; return the whole payload once every piece is in."""
        self.counters["ip.fragments"] += 1
        datagram = self.pending.get(key)
        if datagram is None:
            self._expire(ts)
            datagram = _Datagram(ts)
            evicted = remember(self.pending, key, datagram, MAX_DATAGRAMS)
            if evicted:
                self.counters["ip.fragments_evicted"] += evicted
        if offset + len(data) > MAX_DATAGRAM_BYTES:
            self.counters["ip.fragments_oversized"] += 1
            del self.pending[key]
            return None
        if offset not in datagram.pieces:
            datagram.pieces[offset] = data
            datagram.size += len(data)
        if not more:
            datagram.total = offset + len(data)
        if datagram.total is None or datagram.size < datagram.total:
            return None
        payload = bytearray(datagram.total)
        covered = 0
        for piece_offset in sorted(datagram.pieces):       # overlaps can add up without covering it all
            if piece_offset > covered:
                return None
            piece = datagram.pieces[piece_offset]
            payload[piece_offset:piece_offset + len(piece)] = piece[:max(0, datagram.total - piece_offset)]
            covered = max(covered, piece_offset + len(piece))
        del self.pending[key]
        self.counters["ip.reassembled"] += 1
        return bytes(payload)

    def _expire(self, now: float) -> None:
        while self.pending:
            key = next(iter(self.pending))
            if now - self.pending[key].first_ts <= FRAGMENT_TIMEOUT:
                return
            del self.pending[key]
            self.counters["ip.fragments_timeout"] += 1
