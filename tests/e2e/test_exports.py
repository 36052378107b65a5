"""What a SIEM or a spreadsheet reads: every EVE record valid against Suricata's schema, ports
on the side of their addresses, the transport as captured, flow_id an integer with the
Community ID beside it; CSV cells in JSON, never Python reprs."""

from __future__ import annotations

import csv
import io
import json

import jsonschema
import pytest

from icsguard.output.eve import stats
from tests.support import PCAPS, public, run_icsguard
from tests.support.eve_schema import ALERT, STATS

SERVER_PORTS = {502, 102, 4840}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    db = tmp_path_factory.mktemp("exports") / "exports.db"
    learn = tmp_path_factory.mktemp("model") / "wrapup.icsg"
    wrapup = public("ITI-ICS-Security-Tools/s7/wrapup.pcapng")
    assert run_icsguard("learn", PCAPS / "modbus_polling.pcap", "--model", learn).returncode == 0
    result = run_icsguard("analyze", "--db", db, "--model", learn, wrapup, PCAPS / "modbus_exceptions.pcap",
                          PCAPS / "modbus_diagnostics.pcap", PCAPS / "s7_control.pcap",
                          PCAPS / "opcua_none_plaintext_password.pcap")
    assert result.returncode == 0, result.stderr
    return db


def _eve(db) -> list[dict]:
    result = run_icsguard("alerts", "--db", db, "--format", "eve")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_every_eve_record_is_valid_against_suricatas_schema(db):
    records = _eve(db)
    assert {r["app_proto"] for r in records} >= {"modbus", "s7comm", "opcua", "udp"}
    for record in records:
        jsonschema.validate(record, ALERT)
    jsonschema.validate(stats({"capture.received": 10, "tcp.gaps": 1, "rules.findings": 2}, 61.5), STATS)


def test_eve_ports_follow_their_addresses_and_flows_are_integers(db):
    records = _eve(db)
    jsonl = {a["id"]: a for a in map(json.loads, run_icsguard("alerts", "--db", db, "--format", "jsonl")
                                     .stdout.splitlines())}
    about_responses = 0
    for record in records:
        alert = jsonl[int(record["alert"]["metadata"]["icsguard_alert_id"][0])]
        first = alert["evidence"][0]
        if first["direction"] == "response":
            about_responses += 1
        if record["app_proto"] in ("modbus", "s7comm", "opcua", "cotp"):
            assert record["proto"] == "TCP" and record["dest_port"] in SERVER_PORTS, record
            assert record["src_port"] not in SERVER_PORTS
        assert isinstance(record["flow_id"], int) and 0 <= record["flow_id"] < 2 ** 51
        assert record["community_id"] == first["flow"]
    assert about_responses >= 1            # an exception scan is seen in the responses
    udp = [r for r in records if r["app_proto"] == "udp"]
    assert udp and all(r["proto"] == "UDP" for r in udp)


def test_eve_modbus_object_is_suricatas(db):
    modbus = [r["modbus"] for r in _eve(db) if r["app_proto"] == "modbus"]
    assert modbus
    diagnostics = next(m["request"] for m in modbus if "diagnostic" in m.get("request", {}))
    assert diagnostics["function_raw"] == 8 and diagnostics["unit_id"] == 1 and diagnostics["protocol_id"] == 0


def test_csv_cells_are_json_and_booleans_true_or_false(db):
    text = run_icsguard("alerts", "--db", db, "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and all(json.loads(row["mitre"]) is not None for row in rows)
    for row in rows:                    # JSON, which a Python repr ('x', True, None) is not
        assert isinstance(json.loads(row["evidence"]), list) and "'" not in row["mitre"]
    assets = list(csv.DictReader(io.StringIO(run_icsguard("assets", "--db", db, "--format", "csv").stdout)))
    assert assets and all(isinstance(json.loads(a["protocols"]), list) for a in assets)
    opcua = [json.loads(r["evidence"]) for r in rows if r["proto"] == "opcua"]
    assert any(isinstance(e.get("password_in_clear"), bool) for evidence in opcua for e in evidence)
