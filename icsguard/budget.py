"""One memory budget for everything a run holds, so that no traffic an attacker chooses can
grow a sensor past it.

The tables that grow with the traffic (connections, conversations, communications, hosts,
decoded PDUs, threshold state, alerts still folding) each get a share of the budget, sized
by what one entry costs; full, they make room by dropping their oldest (least recently
active) entries, and every drop is counted. The bytes held while waiting for the rest of
something (out-of-order segments, partial PDUs, the first bytes of connections not yet
recognised, OPC UA chunks, COTP fragments) come from one pool: a holder that cannot take
what it needs drops what it held, and that is counted too.
"""

from __future__ import annotations

MiB = 1 << 20
PROCESS_MB = 200       # the process in all, by default
LIBRARIES_MB = 95      # the interpreter, Scapy and the store's libraries, before any traffic (91 measured)
MIN_STATE_MB = 16

# table: (share of the state budget, bytes one entry costs, measured with tracemalloc)
TABLES = {
    "connections": (0.22, 3600),      # TCP connections being reassembled, with their protocol sessions
                                      # (3.6 KB each over Modbus, S7 and OPC UA; 900 B without sessions)
    "conversations": (0.08, 250),     # conversations seen, and the 5-tuples already looked at
    "pairs": (0.08, 300),             # communications: client, server, protocol and function
    "assets": (0.02, 400),
    "hosts": (0.02, 120),             # IP address -> MAC address
    "decoded": (0.15, 900),           # decoded PDUs kept for their repeats, all protocols together
    "rule_groups": (0.05, 400),       # threshold state per rule and group
    "open_alerts": (0.03, 3000),      # alerts still folding repeats in, with their evidence
}
BUFFERS = 0.30                        # the pool of bytes held


class Pool:
    """Bytes held across the run: taken as a holder's holding grows, given back as it shrinks."""
    __slots__ = ("limit", "held", "peak", "refused")

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0
        self.peak = 0
        self.refused = 0          # bytes a holder could not take (and dropped)

    def take(self, size: int) -> bool:
        if self.held + size > self.limit:
            self.refused += size
            return False
        self.held += size
        if self.held > self.peak:
            self.peak = self.held
        return True

    def give(self, size: int) -> None:
        self.held -= size


class Budget:
    def __init__(self, process_mb: float = PROCESS_MB):
        self.state = max(process_mb - LIBRARIES_MB, MIN_STATE_MB) * MiB
        self.buffers = Pool(int(self.state * BUFFERS))

    def entries(self, table: str) -> int:
        """How many entries a table may keep."""
        share, cost = TABLES[table]
        return max(256, int(self.state * share / cost))
