"""S7 framing on a real python-snap7 conversation repackaged: COTP fragments, other ports, mid-stream."""

from __future__ import annotations

import struct

from tests.support import PCAPS, decoded, public
from tests.support.rewrite import cut, streams, write_conversation

READS_WRITES = PCAPS / "s7_reads_writes.pcap"


def _view(events):
    return [(e["proto"], e["direction"], e["function"], e.get("pdu_ref"), str(e.get("items"))) for e in events]


def _fragment(payload: bytes, size: int) -> bytes:
    """One COTP DT TPDU re-sent as several, only the last with the EOT bit."""
    if payload[5] >> 4 != 0xF:
        return payload
    user = payload[7:]
    pieces = [user[i:i + size] for i in range(0, len(user), size)] or [b""]
    out = b""
    for n, piece in enumerate(pieces):
        eot = 0x80 if n == len(pieces) - 1 else 0
        out += struct.pack("!BBHBBB", 3, 0, 7 + len(piece), 2, 0xF0, eot) + piece
    return out


def test_cotp_fragments_are_reassembled(tmp_path):
    client, server, payloads = streams(READS_WRITES)
    fragmented = [(from_client, _fragment(data, 16)) for from_client, data in payloads]
    assert sum(len(d) for _, d in fragmented) > sum(len(d) for _, d in payloads) + 500
    events = decoded(write_conversation(tmp_path / "frag.pcap", client, server, cut(fragmented, 10_000)))
    assert _view(events) == _view(decoded(write_conversation(tmp_path / "whole.pcap", client, server,
                                                             cut(payloads, 10_000))))


def test_s7_on_another_port_joined_mid_stream(tmp_path):
    client, server, payloads = streams(READS_WRITES)
    moved = (server[0], 65000)    # no SYN, no port that names S7, and a server port above the client's
    path = write_conversation(tmp_path / "moved.pcap", client, moved, cut(payloads[4:], 10_000))
    raw = path.read_bytes()
    pos = 24
    for _ in range(3):                           # drop the handshake
        pos += 16 + struct.unpack("<I", raw[pos + 8:pos + 12])[0]
    path.write_bytes(raw[:24] + raw[pos:])
    events = [e for e in decoded(path) if e["proto"] == "s7comm"]
    assert len(events) > 50
    assert all((e["direction"] == "request") == (e["src"] == client[0] and e["sport"] == client[1])
               for e in events)
    assert client[1] < 65000 and all(e["dport"] == 65000 for e in events if e["direction"] == "request")


def test_a_repeated_answer_to_a_repeated_poll_shares_its_items():
    """The QUT HMI polls the same items every second; an answer that repeats an earlier one
    is paired with its job once, and later stages see the very same items again (so what
    they make of them is remembered)."""
    from icsguard.analysis import decode
    capture = public("2017QUT_S7comm/attacks/20161215180642.ChangeUpperThreshold/"
                     "20161215180642.ChangeUpperThreshold.hmi.pcap")
    seen: dict[str, tuple] = {}
    repeats = shared = 0
    for event in decode([str(capture)]):
        items = event.fields.get("items")
        if event.proto == "s7comm" and event.direction == "response" and items:
            text = repr(items)
            if text in seen:
                repeats += 1
                shared += seen[text] is items
            else:
                seen[text] = items
    assert repeats >= 5 and shared == repeats
