"""Cutting a reassembled byte stream into PDUs by the protocol's own length field."""

from __future__ import annotations

from typing import Callable, Union

from icsguard.budget import Pool

# A protocol's length rule: the PDU's total length at this offset, 0 when more
# bytes are needed to tell, or a reason string when these bytes cannot be a header.
# ``strict`` asks for a stricter judgement while hunting for a header after a gap.
LengthRule = Callable[[bytes, int, bool], Union[int, str]]

MAX_BUFFER = 256 * 1024


class PduFramer:
    """One direction of one connection.

    After a gap it is out of step. The first bytes after the gap usually start
    a segment and so a PDU: any header that the protocol's rule accepts is tried
    there. Failing that, it slides byte by byte to the next header the rule's
    strict form accepts, instead of reporting every byte as malformed.
    """
    __slots__ = ("rule", "pool", "buffer", "in_step", "after_gap", "problems", "skipped")

    def __init__(self, rule: LengthRule, pool: Pool):
        self.rule = rule
        self.pool = pool            # the bytes of a partial PDU are held from it
        self.buffer = b""
        self.in_step = True
        self.after_gap = False      # the buffer starts where the bytes after a gap start
        self.problems: list[str] = []
        self.skipped = 0

    def feed(self, data: bytes) -> list[bytes]:
        """PDUs completed by these bytes; header problems are left in ``problems``."""
        if not self.buffer and self.in_step and self.rule(data, 0, False) == len(data):
            return [data]           # the usual case: one whole PDU in one segment
        if self.buffer:
            data = self.buffer + data
        rule = self.rule
        pdus = []
        pos, end = 0, len(data)
        while pos < end:
            size = rule(data, pos, not self.in_step and not (pos == 0 and self.after_gap))
            if size.__class__ is int:
                if size == 0 or pos + size > end:
                    break
                confirmed = self.in_step or self._confirmed(data, pos + size, end)
                if confirmed is None:
                    if not (pos == 0 and self.after_gap):
                        break
                    confirmed = False   # the lenient guess must prove itself now, not hold the stream up
                self.after_gap = False
                if confirmed:
                    pdus.append(data[pos:pos + size])
                    pos += size
                    self.in_step = True
                    continue
                size = "resynchronising"
            self.after_gap = False
            if self.in_step:
                self.problems.append(size)
                self.in_step = False
            pos += 1
            self.skipped += 1
        rest = data[pos:]
        if len(rest) > MAX_BUFFER:
            self.skipped += len(rest)
            self.problems.append(f"PDU larger than {MAX_BUFFER} bytes discarded")
            rest = b""
            self.in_step = False
        grow = len(rest) - len(self.buffer)
        if grow > 0 and not self.pool.take(grow):
            self.skipped += len(rest)
            self.problems.append("partial PDU dropped: the memory budget for held bytes is spent")
            self.pool.give(len(self.buffer))
            rest = b""
            self.in_step = False
        elif grow < 0:
            self.pool.give(-grow)
        self.buffer = rest
        return pdus

    def release(self) -> None:
        """The connection is gone: give back what was held."""
        self.pool.give(len(self.buffer))
        self.buffer = b""

    def _confirmed(self, data: bytes, after: int, end: int) -> bool | None:
        """Out of step, a plausible header is trusted only if a plausible header follows it
        (or the bytes end right there, as segments usually end on a PDU boundary).
        None: wait for more bytes to tell."""
        if after == end:
            return True
        following = self.rule(data, after, True)
        if following.__class__ is not int:
            return False
        return True if following else None

    def gap(self) -> None:
        self.pool.give(len(self.buffer))
        self.buffer = b""
        self.in_step = False
        self.after_gap = True


def looks_like(data: bytes, rule: LengthRule, on_port: bool, strict: bool) -> bool | None:
    """Does a connection's first payload look like the protocol? None: too few bytes to tell.

    On the protocol's own port one valid header will do (the PDU may continue in the
    next segment); elsewhere the bytes must be whole, valid frames.
    """
    pos = 0
    while pos < len(data):
        size = rule(data, pos, strict)
        if size.__class__ is not int:
            return False
        if size and on_port:
            return True
        if size == 0 or pos + size > len(data):
            return None
        pos += size
    return True if pos else None
