"""What a Modbus capture must decode to: the transcript its real peers wrote while it was recorded."""

from __future__ import annotations


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

