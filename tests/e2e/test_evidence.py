"""The packets behind an alert: a pcapng that tshark reads, holding the PDU that raised the alert
(the same function) with its connection's handshake, its SHA-256 kept with the alert; a capture
that moved is said so, and a sensor's alert says its packets were not kept."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.support import PCAPS, run_icsguard

# the rule, the capture that raises it, and tshark's filter for the PDU that did
CASES = [
    ("s7.plc_stop", "s7_control.pcap", "s7comm.param.func == 0x29"),
    ("modbus.restart_communications", "modbus_diagnostics.pcap", "modbus.func_code == 8 && modbus.diagnostic_code == 1"),
    ("opcua.password_in_clear", "opcua_none_plaintext_password.pcap", "opcua.servicenodeid.numeric == 467"),
]


def _alert(db: Path, rule: str) -> dict:
    alerts = [json.loads(line) for line in run_icsguard("alerts", "--db", db, "--format", "jsonl").stdout.splitlines()]
    return next(a for a in alerts if a["rule"] == rule)


def _tshark(path: Path, display_filter: str) -> list[str]:
    result = subprocess.run(["tshark", "-r", str(path), "-Y", display_filter, "-T", "fields", "-e", "frame.number"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("rule, capture, pdu", CASES)
def test_the_evidence_capture_holds_the_pdu_behind_the_alert(rule, capture, pdu, tmp_path):
    db = tmp_path / "e.db"
    assert run_icsguard("analyze", "--db", db, PCAPS / capture).returncode == 0
    alert = _alert(db, rule)
    output = tmp_path / "evidence.pcapng"
    result = run_icsguard("alerts", "--db", db, "evidence", str(alert["id"]), "--output", output)
    assert result.returncode == 0, result.stderr
    digest = hashlib.sha256(output.read_bytes()).hexdigest()
    assert result.stdout.strip().endswith(f"written to {output}, sha256 {digest}")
    assert _tshark(output, pdu)                                          # the triggering PDU, as tshark sees it
    assert len(_tshark(output, 'frame.comment contains "evidence"')) == len(alert["evidence"])
    assert _tshark(output, "tcp.flags.syn == 1 && tcp.flags.ack == 0")   # with its connection's opening
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT alert_id, sha256, path FROM evidence_captures").fetchall()
    assert stored == [(alert["id"], digest, str(output))]


def test_a_moved_capture_is_said_and_can_be_found_again(tmp_path):
    first, later = tmp_path / "first", tmp_path / "later"
    first.mkdir()
    later.mkdir()
    shutil.copy(PCAPS / "s7_control.pcap", first)
    db = tmp_path / "m.db"
    assert run_icsguard("analyze", "--db", db, first / "s7_control.pcap").returncode == 0
    shutil.move(first / "s7_control.pcap", later / "s7_control.pcap")
    alert = _alert(db, "s7.plc_stop")
    output = tmp_path / "x.pcapng"
    moved = run_icsguard("alerts", "--db", db, "evidence", str(alert["id"]), "--output", output)
    assert moved.returncode == 1
    assert moved.stderr.strip() == (f"icsguard: s7_control.pcap: the capture run 1 read as {first / 's7_control.pcap'} "
                                    "is no longer there (moved? give the folder it is in with --capture-dir)")
    found = run_icsguard("alerts", "--db", db, "evidence", str(alert["id"]), "--output", output,
                         "--capture-dir", later)
    assert found.returncode == 0 and _tshark(output, "s7comm.param.func == 0x29")
    assert run_icsguard("alerts", "--db", db, "evidence", "99", "--output", output).returncode == 1


def test_the_evidence_never_overwrites_a_capture(tmp_path):
    capture = tmp_path / "s7_control.pcap"
    shutil.copy(PCAPS / "s7_control.pcap", capture)
    db = tmp_path / "o.db"
    assert run_icsguard("analyze", "--db", db, capture).returncode == 0
    before = capture.read_bytes()
    refused = run_icsguard("alerts", "--db", db, "evidence", str(_alert(db, "s7.plc_stop")["id"]), "--output", capture)
    assert refused.returncode == 1 and "is a capture the evidence is cut from" in refused.stderr
    assert capture.read_bytes() == before and not list(tmp_path.glob("*.partial"))
