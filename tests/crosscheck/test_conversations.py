"""Conversations of every kind (tcp/udp Events), checked against tshark's view of the same
captures: each TCP connection opened in the capture names its client, server and port as
the SYN does, and every UDP exchange between two endpoints is one conversation."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from icsguard.analysis import decode
from tests.support import MIXED_TRAFFIC, public


def _tshark(path, display_filter: str, *fields: str) -> list[list[str]]:
    args = ["tshark", "-n", "-r", str(path), "-Y", display_filter, "-T", "fields"]
    for name in fields:
        args += ["-e", name]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


@pytest.mark.parametrize("relative", MIXED_TRAFFIC)
def test_conversations_agree_with_tshark(relative):
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    path = public(relative)
    events = [e for e in decode([str(path)], conversations=True) if e.proto in ("tcp", "udp")]
    found = {(e.proto, e.src, e.dst, e.dport) for e in events}
    # every connection opened in the capture: the SYN's sender is the client
    opened = {("tcp", src, dst, int(port)) for src, dst, port in
              _tshark(path, "tcp.flags.syn == 1 && tcp.flags.ack == 0", "ip.src", "ip.dst", "tcp.dstport")}
    assert opened and opened <= found
    # whatever icsguard calls a conversation, tshark saw packets between those endpoints
    seen = {(src, dst, int(port)) for src, dst, port in _tshark(path, "tcp", "ip.src", "ip.dst", "tcp.dstport")}
    seen |= {(dst, src, int(port)) for src, dst, port in _tshark(path, "tcp", "ip.src", "ip.dst", "tcp.srcport")}
    assert {(s, d, p) for proto, s, d, p in found if proto == "tcp"} <= seen
    # one event per (client, server, transport, port): no repeats
    assert len(events) == len(found)
    udp = {frozenset([(s, int(sp)), (d, int(dp))]) for s, d, sp, dp in
           _tshark(path, "udp && !icmp", "ip.src", "ip.dst", "udp.srcport", "udp.dstport")}
    ours = [e for e in events if e.proto == "udp"]
    assert len(ours) <= len(udp)
    assert all(frozenset([(e.src, e.sport), (e.dst, e.dport)]) in udp for e in ours)

