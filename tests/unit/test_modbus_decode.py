"""Decoding details on public captures from real devices and fuzzers."""

from __future__ import annotations

from collections import Counter

from tests.support import decoded, public


def test_device_identification_objects_and_exception():
    events = decoded(public("zeek/traces/modbus/modbus-eit.pcap"))
    assert [e["function"] for e in events] == ["read_device_identification"] * 4
    assert events[3]["exception_code"] == 4 and events[3]["direction"] == "response"
    # 11-byte PDU whose fields describe 7 bytes: flagged, as Wireshark silently ignores the rest
    assert events[1]["malformed"] == "trailing bytes after the PDU"


def test_every_public_function_code_from_zeek_example():
    events = decoded(public("icsnpp-modbus/traces/modbus_example.pcap"))
    functions = Counter(e["function"] for e in events)
    for name in ("read_coils", "read_discrete_inputs", "read_holding_registers", "read_input_registers",
                 "write_single_coil", "write_single_register", "read_exception_status", "diagnostics",
                 "write_multiple_coils", "write_multiple_registers", "report_server_id", "read_file_record",
                 "write_file_record", "mask_write_register", "read_write_multiple_registers",
                 "read_fifo_queue", "read_device_identification"):
        assert functions[name] >= 2, name
    assert not [e for e in events if "malformed" in e]
    ident = next(e for e in events if e["function"] == "read_device_identification" and e["direction"] == "response")
    assert ident["objects"] == {"0": "Zeek Modbus Test", "1": "Protocol Parsing is fun!", "2": "1.2.3.6"}
    masked = next(e for e in events if e["function"] == "mask_write_register")
    assert (masked["address"], masked["and_mask"], masked["or_mask"]) == (10, 0xDEAD, 0)
    rw = [e for e in events if e["function"] == "read_write_multiple_registers"]
    assert rw[0]["write_address"] == 2 and rw[0]["write_values"] == [255]
    assert rw[1]["address"] == rw[0]["read_address"] and rw[1]["values"] == [170]
    coils = next(e for e in events if e["function"] == "read_coils" and e["direction"] == "response")
    assert len(coils["values"]) == coils["quantity"]          # padding bits of the last byte dropped


def test_reserved_and_user_defined_codes_keep_their_bytes():
    events = decoded(public("zeek/traces/modbus/fuzz-72.pcap"))
    reserved = [e for e in events if e["function"].startswith(("reserved_", "user_defined_"))]
    # a fuzzed TCP stream (random sequence numbers): what reassembles is decoded, nothing crashes
    assert len(reserved) >= 5
    assert all("data" in e or "exception_code" in e for e in reserved)
    assert {e["function_code"] for e in reserved} >= {29, 71}


def test_schneider_umas_is_named():
    events = decoded(public("nDPI/pcap/umas.pcap"))
    assert {e["function"] for e in events} == {"schneider_umas"}
    assert all(e["function_code"] == 90 and "data" in e for e in events)


def test_read_write_multiple_with_gateway_exception():
    events = decoded(public("zeek/traces/modbus/4SICS-GeekLounge-151022-min.pcap"))
    request, response = events
    assert request["write_address"] == 223 and len(request["write_values"]) > 50
    assert response["exception_code"] == 10


def test_polling_values_are_attributable_to_registers():
    events = decoded(public("ct-samples/modbus/Plant1_ModbusTCP.pcap"))
    responses = [e for e in events if e["direction"] == "response" and e["function"] == "read_input_registers"]
    paired = [e for e in responses if e.get("address") is not None]
    assert len(responses) >= 100
    assert len(paired) >= 0.99 * len(responses)       # the rest answer requests sent before the capture began
    assert all(len(e["values"]) == e["quantity"] for e in paired if "exception_code" not in e)
    assert not [e for e in events if "malformed" in e]
