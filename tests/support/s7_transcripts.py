"""What an S7 capture must decode to: the transcript its real peers wrote while it was recorded."""

from __future__ import annotations

AREA_CODES = {"DB": 0x84, "I": 0x81, "Q": 0x82, "M": 0x83, "C": 0x1C, "T": 0x1D}


SCENARIOS = ("reads_writes", "identification", "blocks", "control")


def _s7_events(events):
    return [e for e in events if e["proto"] == "s7comm"]


def _pdu_problems(transcript, events):
    """Every S7 PDU the client library saw, in order, against icsguard's events."""
    expected = [(p, t["call"]) for t in transcript for p in t["pdus"]]
    got = _s7_events(events)
    problems = []
    if len(got) != len(expected):
        problems.append(f"{len(got)} S7 events for {len(expected)} PDUs")
    for (pdu, call), event in zip(expected, got):
        where = f"{call} pdu_ref {pdu['pdu_ref']}"
        if (event["rosctr"], event["pdu_ref"]) != (pdu["rosctr"], pdu["pdu_ref"]):
            problems.append(f"{where}: rosctr/ref {event['rosctr']}/{event['pdu_ref']}")
        if pdu["function"] is not None and event["function_code"] != pdu["function"]:
            problems.append(f"{where}: function code {event['function_code']} != {pdu['function']}")
        if pdu["group"] is not None and (event.get("userdata_group"), event.get("userdata_subfunction")) \
                != (pdu["group"], pdu["subfunction"]):
            problems.append(f"{where}: userdata {event.get('userdata_group')}/{event.get('userdata_subfunction')}")
        if pdu["error"] is not None and (event.get("error_class", 0) << 8 | event.get("error_code", 0)) != pdu["error"]:
            problems.append(f"{where}: error {event.get('error_class')}/{event.get('error_code')}")
        sender = "client" if event["src"] == "127.0.0.10" else "server"
        if sender != pdu["from"]:
            problems.append(f"{where}: sent by the {sender}, not the {pdu['from']}")
    return problems


def _call_events(transcript, events):
    """The S7 events of each transcript entry, by position."""
    got = iter(_s7_events(events))
    return [(t, [next(got) for _ in t["pdus"]]) for t in transcript]


def _item_problems(t, evs):
    """Addresses and data of area reads and writes."""
    problems = []
    specs = t.get("items") or [t]
    reading = t["call"] in ("db_read", "read_area", "read_multi_vars")
    items = [item for e in evs if e["direction"] == ("response" if reading else "request")
             for item in e.get("items", ())]
    if t["error"] is None or not reading:
        data = sorted(item.get("data", "") for item in items)
        want = sorted(spec.get("data", "") for spec in specs)
        if len(specs) == 1:           # one variable may span several PDUs: compare the bytes in order
            data, want = ["".join(item.get("data", "") for item in items)], want
        if data != want:
            problems.append(f"{t['call']}: data {str(data)[:60]} != {str(want)[:60]}")
    # python-snap7 may reorder a multi-variable request, so compare the sets of addresses
    # (for counters and timers "byte" is the element number)
    want = {(spec["area"], spec["db"] or 0, spec["start"], spec["bit"] or 0) for spec in specs}
    got = {(AREA_CODES.get(item["area"]), item["db"], item["byte"], item["bit"]) for item in items}
    spans_pdus = t["call"] in ("db_read", "db_write")      # a large transfer is split over several PDUs
    if not want <= got or (got != want and not spans_pdus):
        problems.append(f"{t['call']}: addresses {sorted(got, key=str)} != {sorted(want, key=str)}")
    return problems


def _call_problems(transcript, events):
    problems = []
    for t, evs in _call_events(transcript, events):
        call = t["call"]
        request = next((e for e in evs if e["src"] == "127.0.0.10" and e["direction"] == "request"), {})
        response = next((e for e in evs if e["direction"] == "response"), {})
        if call in ("db_read", "read_area", "db_write", "write_area", "read_multi_vars", "write_multi_vars"):
            problems += _item_problems(t, evs)
        elif call == "read_szl" and (request.get("szl_id"), request.get("szl_index")) != (t["szl_id"], t["szl_index"]):
            problems.append(f"read_szl: {request.get('szl_id')}/{request.get('szl_index')}")
        elif call == "get_cpu_info":
            info = response.get("cpu_info", {})
            want = {"module_type": t["module_type"], "serial": t["serial_number"], "as_name": t["as_name"],
                    "module_name": t["module_name"], "copyright": t["copyright"]}
            if {k: info.get(k) for k in want} != want:
                problems.append(f"get_cpu_info: {info} != {want}")
        elif call == "get_order_code" and response.get("cpu_info", {}).get("order_number") != t["order_code"]:
            problems.append(f"get_order_code: {response.get('cpu_info')}")
        elif call in ("list_blocks_of_type", "get_block_info", "upload", "full_upload", "download"):
            if request.get("block_type") != t["block_type_name"]:
                problems.append(f"{call}: block type {request.get('block_type')} != {t['block_type_name']}")
            if call != "list_blocks_of_type" and request.get("block_number") != t["block_number"]:
                problems.append(f"{call}: block number {request.get('block_number')} != {t['block_number']}")
        elif call in ("plc_stop", "plc_hot_start", "plc_cold_start", "compress", "copy_ram_to_rom", "delete"):
            service = {"compress": "_GARB", "copy_ram_to_rom": "_MODU", "delete": "_DELE"}.get(call, "P_PROGRAM")
            if request.get("pi_service") != service:
                problems.append(f"{call}: PI service {request.get('pi_service')} != {service}")
            if call == "plc_cold_start" and "C" not in request.get("pi_arguments", ""):
                problems.append("plc_cold_start: no 'C' argument")
        elif call in ("set_session_password", "clear_session_password"):
            want = "plc_password" if call == "set_session_password" else "clear_password"
            if request.get("function") != want:
                problems.append(f"{call}: function {request.get('function')}")
    return problems


def _cotp_problems(transcript, events):
    connect = transcript[0]
    requests = [e for e in events if e["proto"] == "cotp" and e["function"] == "connection_request"]
    if not requests:
        return ["no COTP connection request decoded"]
    cr = requests[0]
    want = (f"{connect['remote_tsap']:04x}", connect["rack"], connect["slot"])
    got = (cr.get("dst_tsap"), cr.get("rack"), cr.get("slot"))
    problems = [] if got == want else [f"COTP CR {got} != {want}"]
    setup = next(e for e in _s7_events(events) if e["function"] == "setup_communication" and e["direction"] == "response")
    if setup["pdu_size"] != connect["pdu_size"]:
        problems.append(f"negotiated PDU size {setup['pdu_size']} != {connect['pdu_size']}")
    return problems


def _all_problems(transcript, events):
    return _pdu_problems(transcript, events) + _call_problems(transcript, events) + _cotp_problems(transcript, events)

