"""Lying TPKT, COTP and S7 lengths on a real python-snap7 conversation: counted, never a crash or a hang."""

from __future__ import annotations

import random
import struct

from tests.support import PCAPS, decoded, public
from tests.support.rewrite import corrupt, cut, streams, write_conversation

READS_WRITES = PCAPS / "s7_reads_writes.pcap"


def _conversation():
    client, server, payloads = streams(READS_WRITES)
    return client, server, [list(p) for p in payloads]


def _decode(tmp_path, name, client, server, payloads):
    return decoded(write_conversation(tmp_path / name, client, server, cut([tuple(p) for p in payloads], 10_000)))


def _first_job(payloads, function):
    """Index of the first client payload that is an S7 job with this parameter function."""
    return next(i for i, (from_client, data) in enumerate(payloads)
                if from_client and data[7:8] == b"\x32" and data[8] == 1 and data[17] == function)


def test_tpkt_lengths_that_lie(tmp_path):
    client, server, payloads = _conversation()
    total = len([p for p in payloads if p[0]])
    for i, bad in ((4, 0), (20, 3)):              # zero, and shorter than a COTP header
        payloads[i][1] = payloads[i][1][:2] + struct.pack("!H", bad) + payloads[i][1][4:]
    events = _decode(tmp_path, "tpkt.pcap", client, server, payloads)
    reasons = [e["malformed"] for e in events if e["function"] == "malformed"]
    assert reasons == [f"TPKT length {n} cannot hold a COTP header" for n in (0, 3)]
    requests = [e for e in events if e["direction"] == "request" and e["proto"] == "s7comm"]
    assert len(requests) >= total - 3 - 2          # the stream resynchronised after each bad frame


def test_s7_lengths_and_item_counts_that_lie(tmp_path):
    client, server, payloads = _conversation()
    read = _first_job(payloads, 0x04)
    data = payloads[read][1]
    payloads[read][1] = data[:18] + bytes([200]) + data[19:]                   # 200 items announced, 1 sent
    write = _first_job(payloads, 0x05)
    data = payloads[write][1]
    payloads[write][1] = data[:13] + struct.pack("!H", 4000) + data[15:]        # parameter length far too long
    events = _decode(tmp_path, "s7.pcap", client, server, payloads)
    by_problem = {e["malformed"]: e for e in events if "malformed" in e}
    assert any("200 items announced" in reason or "read_var parameters do not parse" in reason
               for reason in by_problem)
    assert any("announces" in reason for reason in by_problem)
    assert len([e for e in events if e["proto"] == "s7comm"]) > 60


def test_random_corruption_never_crashes_or_hangs(tmp_path):
    client, server, payloads = _conversation()
    rng = random.Random(1)
    for round_ in range(40):
        mutated = corrupt(payloads, rng)
        events = _decode(tmp_path, f"fuzz{round_}.pcap", client, server, mutated)
        assert len(events) > 20


def _szl_answer(payloads) -> int:
    """Index of the first server payload that answers a Read SZL (UserData group 4, subfunction 1)."""
    for i, (from_client, data) in enumerate(payloads):
        if not from_client and data[7:9] == b"\x32\x07":
            parameter_length = struct.unpack("!H", data[13:15])[0]
            parameter = data[17:17 + parameter_length]
            if len(parameter) >= 7 and parameter[5] & 0x0F == 4 and parameter[6] == 1:
                return i
    raise AssertionError("no SZL answer in the capture")


def test_szl_answer_shorter_than_its_header(tmp_path):
    """An SZL answer whose list is 5 bytes (id, index and half a length): flagged, and the
    conversation goes on (it raised struct.error out of the decoder)."""
    client, server, payloads = streams(PCAPS / "s7_identification.pcap")
    payloads = [list(p) for p in payloads]
    i = _szl_answer(payloads)
    data = payloads[i][1]
    parameter_length = struct.unpack("!H", data[13:15])[0]
    body = b"\xff\x09\x00\x05" + data[17 + parameter_length + 4:][:5]
    s7 = data[7:13] + struct.pack("!HH", parameter_length, len(body)) + data[17:17 + parameter_length] + body
    payloads[i][1] = struct.pack("!BBH", 3, 0, 7 + len(s7)) + data[4:7] + s7
    events = _decode(tmp_path, "szl.pcap", client, server, payloads)
    short = [e for e in events if "shorter than its 8-byte header" in e.get("malformed", "")]
    assert len(short) == 1 and short[0]["function"] == "read_szl" and short[0]["direction"] == "response"
    assert len([e for e in events if e["function"] == "read_szl"]) >= 4


def test_tpdu_size_code_out_of_range(tmp_path):
    """A COTP connection request asking for a TPDU of 2**64 bytes: flagged, not a number JSON
    cannot hold."""
    client, server, payloads = streams(PCAPS / "s7_identification.pcap")
    payloads = [list(p) for p in payloads]
    request = payloads[0][1]
    at = request.index(b"\xc0\x01", 11) + 2
    payloads[0][1] = request[:at] + b"\x40" + request[at + 1:]
    events = _decode(tmp_path, "tpdu.pcap", client, server, payloads)
    connect = next(e for e in events if e["proto"] == "cotp" and e["direction"] == "request")
    assert "tpdu_size" not in connect and "0x40" in connect["malformed"]
    assert [e for e in events if e["proto"] == "s7comm"]


def test_well_formed_conversations_raise_no_malformed_flag():
    """The checks for PDUs cut short must not flag real ones: a COTP disconnect confirm
    (5-byte header), an RDP connection request on another port (user data where COTP
    parameters would be)."""
    events = decoded(*sorted(PCAPS.glob("s7_*.pcap")))
    assert {e["function"] for e in events if e["proto"] == "cotp"} >= {"connection_request", "disconnect_confirm"}
    assert [e for e in events if e["proto"] == "cotp" and "malformed" in e] == []
    rdp = decoded(public("zeek/traces/modbus/modbus-and-non-modbus-p502.pcap"))
    request = [e for e in rdp if e["proto"] == "cotp"]
    assert request and all("malformed" not in e for e in request)
