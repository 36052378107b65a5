"""S7comm-plus headers against the expected outputs that come with the public captures
(Wireshark 4.0 has no S7comm-plus dissector)."""

from __future__ import annotations

from collections import Counter

from tests.support import decoded, public


def _baseline(path):
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        f = line.split("\t")
        rows.append((int(f[8]), int(f[11]), int(f[12], 16), None if f[14] == "-" else int(f[14], 16)))
    return rows


def test_every_pdu_matches_the_icsnpp_baseline():
    """ICSNPP's Zeek plugin logs source port, version, opcode and function of every S7comm-plus PDU."""
    trace = public("icsnpp-s7comm/traces/s7comm_plus.pcap")
    expected = _baseline(public("icsnpp-s7comm/baseline/analyzer.s7comm_plus/s7comm_plus.log"))
    events = [e for e in decoded(trace) if e["proto"] == "s7comm-plus"]
    assert [(e["sport"], e["version"], e["opcode"], e["function_code"]) for e in events] == expected
    assert len(expected) == 121
    assert all(e["integrity"] for e in events)          # V3: every PDU carries its digest
    requests = [e for e in events if e["direction"] == "request"]
    assert {e["function"] for e in requests} == {"set_variable", "get_multi_variables", "set_multi_variables"}
    assert len({e["session_id"] for e in requests}) == 1


def test_versions_and_functions_of_a_tia_portal_session():
    """The dataset's index counts versions and request functions (by a byte-level parse of each PDU)."""
    events = [e for e in decoded(public("S7comm-Plus-Anomaly-Detection/teb.pcapng")) if e["proto"] == "s7comm-plus"]
    assert Counter(e["version"] for e in events) == {3: 243, 254: 10, 1: 2, 2: 2}
    assert Counter(e["function"] for e in events if e["direction"] == "request") == {
        "set_variable": 54, "get_multi_variables": 10, "get_var_sub_streamed": 5,
        "create_object": 1, "set_multi_variables": 1, "delete_object": 1}
    assert not [e for e in events if "malformed" in e]
    responses = [e for e in events if e["direction"] == "response" and e.get("seq_num") is not None]
    assert responses and all(e.get("object_ids") for e in responses if e["function"] == "set_variable")


def test_item_addresses_of_multi_variable_requests():
    """The addresses are only kept when they add up to the field count the request announces,
    so every request that carries them was parsed consistently."""
    events = [e for e in decoded(public("S7comm-Plus-Anomaly-Detection/1.pcapng"))
              if e["proto"] == "s7comm-plus" and e["function"] == "get_multi_variables"
              and e["direction"] == "request"]
    assert len(events) == 7 and all(e.get("addresses") for e in events)
    first = events[0]["addresses"]
    assert len(first) == 5
    assert {(a["access_area"], tuple(a["lids"])) for a in first} == {
        (201, (1081, 0)), (52, (2237, 3486)), (201, (1081, 1)), (50, (3451,)), (201, (1081, 2))}
