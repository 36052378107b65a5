"""pymodbus server and client on loopback, recorded with tcpdump: does icsguard decode what they said?"""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import PCAPS, decoded, run_icsguard

pytestmark = pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")


def _ints(values):
    return None if values is None else [int(v) for v in values]


def discrepancies(transcript: list[dict], events: list[dict]) -> list[str]:
    """Every way the decoded events differ from what the client sent and received."""
    by_key = {(e["sport"] if e["direction"] == "request" else e["dport"], e["transaction_id"], e["direction"]): e
              for e in events if e["proto"] == "modbus" and e["function"] != "malformed"}
    problems = []
    for t in transcript:
        key = (t["client_port"], t["transaction_id"])
        request, response = by_key.get((*key, "request")), by_key.get((*key, "response"))
        if request is None or response is None:
            problems.append(f"{key}: request or response not decoded")
            continue
        expected_function = t["function"]
        if t["function"].startswith("function_"):           # the harness's name for codes pymodbus lacks
            expected_function = f"user_defined_{t['function_code']}"
        if t["function_code"] == 43 and (t.get("data") or "").startswith("0d"):   # MEI type 13
            expected_function = "canopen_general_reference"
        for event in (request, response):
            if event["function_code"] != t["function_code"] or event["unit_id"] != t["unit_id"]:
                problems.append(f"{key}: {event['direction']} code/unit {event['function_code']}/{event['unit_id']}")
            if expected_function and event["function"] != expected_function:
                problems.append(f"{key}: {event['direction']} function {event['function']} != {expected_function}")
            if "malformed" in event:
                problems.append(f"{key}: {event['direction']} flagged malformed: {event['malformed']}")
        if response.get("exception_code") != t["exception_code"]:
            problems.append(f"{key}: exception {response.get('exception_code')} != {t['exception_code']}")
        if t["function_code"] == 23:
            checks = [("read_address", t["address"]), ("read_quantity", t["quantity"]),
                      ("write_address", t["write_address"])]
            if _ints(request.get("write_values")) != _ints(t["values"]):
                problems.append(f"{key}: written values {request.get('write_values')} != {t['values']}")
        else:
            # single writes carry no quantity on the wire; the harness records 1 for them
            checks = [("address", t["address"])] + ([("quantity", t["quantity"])] if t["function_code"] not in (5, 6, 22) else [])
            if t["values"] is not None and _ints(request.get("values")) != _ints(t["values"]):
                problems.append(f"{key}: request values {request.get('values')} != {t['values']}")
        if t["function_code"] == 22:
            checks += [("and_mask", t["and_mask"]), ("or_mask", t["or_mask"])]
        if t["function_code"] == 8:
            checks.append(("subfunction", t["sub_function"]))
        for field, want in checks:
            if want is not None and request.get(field) != want:
                problems.append(f"{key}: request {field} {request.get(field)} != {want}")
            if want is not None and t["exception_code"] is None and field in ("address", "read_address") \
                    and response.get("address") != want:
                problems.append(f"{key}: response address {response.get('address')} != {want}")
        if t["exception_code"] is None and t["response_values"] is not None \
                and _ints(response.get("values")) != _ints(t["response_values"]):
            problems.append(f"{key}: response values {response.get('values')} != {t['response_values']}")
        if t.get("objects") and response.get("objects") != t["objects"]:
            problems.append(f"{key}: objects {response.get('objects')} != {t['objects']}")
        if t.get("server_id") and not bytes.fromhex(response.get("data", "")).startswith(t["server_id"].encode()):
            problems.append(f"{key}: server id {response.get('data')} does not start with {t['server_id']!r}")
    return problems


@pytest.mark.parametrize("name", ["polling", "writes", "exceptions", "diagnostics", "port5020", "sll2"])
def test_committed_captures_decode_to_their_transcripts(name):
    recorded = json.loads((PCAPS / f"modbus_{name}.json").read_text())
    events = decoded(PCAPS / f"modbus_{name}.pcap")
    assert len(recorded["transcript"]) > 5
    assert discrepancies(recorded["transcript"], events) == []


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One live session per scenario, on 502 and on a port nobody assigned to Modbus."""
    import peers
    out = tmp_path_factory.mktemp("live")
    runs = {}
    for name, scenario, port in (("writes", peers.writes, 502), ("exceptions", peers.exceptions, 502),
                                 ("diagnostics", peers.diagnostics, 502),
                                 ("identification", peers.device_identification, 502),
                                 ("polling_any_port", peers.normal_polling, 0)):
        path = out / f"{name}.pcap"
        kwargs = {"cycles": 5} if scenario is peers.normal_polling else {}
        runs[name] = (path, peers.capture(path, scenario, port=port, **kwargs))
    return runs


@pytest.mark.parametrize("name", ["writes", "exceptions", "diagnostics", "identification", "polling_any_port"])
def test_live_pymodbus_session_is_decoded_exactly(live, name):
    path, transcript = live[name]
    result = run_icsguard("decode", path)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(events) == 2 * len(transcript)
    assert discrepancies(transcript, events) == []
    assert all(e["capture"] == path.name and e["frame"] >= 1 for e in events)


def test_exceptions_scenario_really_has_exceptions(live):
    _, transcript = live["exceptions"]
    codes = {t["exception_code"] for t in transcript}
    assert {1, 2}.issubset(codes)


def test_modbus_on_an_unassigned_port_is_recognised_by_content(live):
    path, transcript = live["polling_any_port"]
    events = decoded(path)
    assert events[0]["dport"] != 502
    assert len(events) == 2 * len(transcript)
