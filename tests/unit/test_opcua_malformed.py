"""OPC UA messages that lie — sizes, strings, 2^31 arrays, nesting without end — in a real
asyncua conversation: each is counted as malformed, and the conversation goes on."""

from __future__ import annotations

import random
import struct
import time

import pytest

from icsguard.analysis import decode
from icsguard.runstats import RunStats
from tests.support import PCAPS
from tests.support.rewrite import corrupt, cut, streams, write_conversation

CONVERSATION = PCAPS / "opcua_none_anonymous.pcap"
WRITE, READ = 673, 631


def _string(text: bytes | None) -> bytes:
    return struct.pack("<i", -1) if text is None else struct.pack("<i", len(text)) + text


def _node(namespace: int, identifier: int) -> bytes:
    return b"\x01" + bytes([namespace]) + struct.pack("<H", identifier)


def _message(channel: int, request_id: int, service: int, body: bytes) -> bytes:
    """A MSG request with a plain request header, as a client on a None channel sends it."""
    header = b"\x00\x00" + struct.pack("<qII", 0, request_id, 0) + _string(None) + struct.pack("<I", 1000) + b"\x00\x00\x00"
    payload = struct.pack("<IIII", channel, 13, 1000 + request_id, request_id) + _node(0, service) + header + body
    return b"MSGF" + struct.pack("<I", 8 + len(payload)) + payload


def _write_body(variant: bytes) -> bytes:
    """WriteRequest: one node, attribute Value, no index range, a DataValue holding ``variant``."""
    return struct.pack("<i", 1) + _node(2, 4) + struct.pack("<I", 13) + _string(None) + b"\x01" + variant


def _run(tmp_path, replacements: dict[int, bytes] | None = None, mutate=None):
    """The conversation with some client messages replaced; its events and the run's counters."""
    client, server, payloads = streams(CONVERSATION)
    payloads = [list(p) for p in payloads]
    for index, data in (replacements or {}).items():
        payloads[index][1] = data
    if mutate:
        mutate(payloads)
    path = write_conversation(tmp_path / "conversation.pcap", client, server, cut([tuple(p) for p in payloads], 10_000))
    stats = RunStats(captures=[str(path)])
    events = [e.to_dict() for e in decode([str(path)], stats=stats)]
    return events, stats.counters, payloads


def _writes(payloads) -> list[int]:
    """Positions of the client's WriteRequests in the conversation."""
    code = _node(0, WRITE)
    return [i for i, (from_client, data) in enumerate(payloads) if from_client and data[24:28] == code]


def test_the_crafted_write_is_decoded_when_it_tells_the_truth(tmp_path):
    _, _, payloads = _run(tmp_path)
    first = _writes(payloads)[0]
    double = b"\x0b" + struct.pack("<d", 1234.5)
    events, counters, _ = _run(tmp_path, {first: _message(6, 9, WRITE, _write_body(double))})
    write = next(e for e in events if e["function"] == "WriteRequest")
    assert (write["node_ids"], write["values"], write["request_handle"]) == (["ns=2;i=4"], [1234.5], 9)
    assert counters["opcua.malformed"] == 0


@pytest.mark.parametrize("variant, reason", [
    (b"\x8b" + struct.pack("<i", 2**31 - 1) + b"\x00" * 16, "array of 2147483647 elements in 16 bytes"),
    (b"\x0c" + struct.pack("<i", 2**31 - 1) + b"abc", "string of 2147483647 bytes in 3"),
    (b"\x0c" + struct.pack("<i", -7) + b"abc", "string of -7 bytes"),
    (b"\x18" * 100_000 + b"\x06" + struct.pack("<i", 1), "Variant nested deeper than 8"),
    (b"\x17\x01" * 50_000 + b"\x00", "DataValue nested deeper than 8"),
    (b"\x19" + b"\x40" * 100_000 + b"\x00", "DiagnosticInfo nested deeper than 8"),
    (b"\x0d\x00\x00", "truncated DateTime"),
    (b"\x3e", "Variant type 62"),
    (b"\x16\x01\x00\x01\x01\x01" + struct.pack("<i", 2**31 - 1), "string of 2147483647 bytes in 0"),
], ids=["array-2^31", "string-2^31", "negative-string", "variant-in-variant", "datavalue-in-variant",
        "diagnostics-in-diagnostics", "truncated-datetime", "unknown-variant-type", "extension-object-size"])
def test_lying_bodies_are_counted_and_the_conversation_goes_on(tmp_path, variant, reason):
    _, _, payloads = _run(tmp_path)
    first = _writes(payloads)[0]
    started = time.perf_counter()
    events, counters, _ = _run(tmp_path, {first: _message(6, 9, WRITE, _write_body(variant))})
    assert time.perf_counter() - started < 30          # no hang: far from it, in fact
    bad = [e for e in events if "malformed" in e]
    assert len(bad) == 1 and bad[0]["function"] == "WriteRequest" and reason in bad[0]["malformed"]
    assert counters["opcua.malformed"] == 1
    # everything after the lie is still decoded: the later write, the close
    assert [e["values"] for e in events if e["function"] == "WriteRequest" and "malformed" not in e] == [[1475.5], [1490.0]]
    assert events[-1]["function"] == "CloseSecureChannelRequest"


def test_request_header_that_lies(tmp_path):
    _, _, payloads = _run(tmp_path)
    first = _writes(payloads)[0]
    message = bytearray(_message(6, 9, READ, b""))
    message[24 + 4 + 2 + 16:24 + 4 + 2 + 20] = struct.pack("<i", 1 << 30)      # the audit entry id's length
    events, counters, _ = _run(tmp_path, {first: bytes(message)})
    bad = [e for e in events if "malformed" in e]
    assert [e["malformed"] for e in bad] == ["ReadRequest header does not parse: string of 1073741824 bytes in 7"]
    assert counters["opcua.malformed"] == 1


def test_message_sizes_that_lie(tmp_path):
    """A size below the header cannot be framed; the stream resynchronises on the next message."""
    _, _, payloads = _run(tmp_path)
    first = _writes(payloads)[0]
    data = payloads[first][1]
    events, counters, _ = _run(tmp_path, {first: data[:4] + struct.pack("<I", 3) + data[8:]})
    assert counters["opcua.malformed"] + counters["opcua.resync_skipped_bytes"] > 0
    assert not [e for e in events if e["function"] == "WriteRequest" and e.get("values") == [1600]]
    assert events[-1]["function"] == "CloseSecureChannelRequest"


def test_too_many_chunks_are_given_up(tmp_path):
    """Intermediate chunks that never end are dropped at MAX_CHUNKS, not held forever."""
    from icsguard.protocols.opcua import MAX_CHUNKS
    _, _, payloads = _run(tmp_path)
    first = _writes(payloads)[0]
    chunk = b"MSGC" + struct.pack("<I", 8 + 16 + 100) + struct.pack("<IIII", 6, 13, 1, 99) + b"\x00" * 100
    events, counters, _ = _run(tmp_path, {first: chunk * (MAX_CHUNKS + 1)})
    assert [e["malformed"] for e in events if "malformed" in e] == ["message of too many chunks"]
    assert events[-1]["function"] == "CloseSecureChannelRequest"


def test_random_corruption_never_crashes_or_hangs(tmp_path):
    rng = random.Random(4)
    decoded_total = 0
    for _ in range(40):
        def mutate(payloads):
            payloads[:] = corrupt(payloads, rng)
        events, counters, _ = _run(tmp_path, mutate=mutate)
        assert len(events) > 10
        decoded_total += counters["opcua.malformed"]
    assert decoded_total > 0          # the corruption did reach the decoder
