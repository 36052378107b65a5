"""Rules from the command line: a broken rule file refused before any work, the alerts
workflow, `rules test` and `site init`."""

from __future__ import annotations

import json
import sqlite3

from icsguard.detect.site import load_site
from tests.support import PCAPS, run_icsguard


def test_analyze_refuses_a_broken_rule_file_before_any_work(tmp_path):
    (tmp_path / "bad.yaml").write_text("- id: a\n  title: t\n  severity: high\n  match: {function: {nope: 1}}\n")
    result = run_icsguard("analyze", PCAPS / "modbus_writes.pcap", "--rules", tmp_path / "bad.yaml",
                          "--db", tmp_path / "x.db")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"icsguard: {tmp_path / 'bad.yaml'}:4: rule a: function: unknown operator 'nope' " \
        "(known: equals, not_equals, in, not_in, gt, gte, lt, lte, range, regex, exists, contains, not_contains, " \
        "not_permitted, before, after)"
    assert not (tmp_path / "x.db").exists()



def test_alerts_workflow_from_the_command_line(tmp_path):
    db = tmp_path / "icsguard.db"
    result = run_icsguard("analyze", PCAPS / "s7_control.pcap", "--db", db)
    assert result.returncode == 0, result.stderr
    assert "s7.plc_stop" in result.stdout
    rows = [json.loads(line) for line in run_icsguard("alerts", "--db", db, "--format", "jsonl").stdout.splitlines()]
    assert rows[0]["severity"] == "critical" and rows[0]["rule"] == "s7.plc_stop"
    assert rows[0]["mitre"] == ["T0881", "T0816"] and rows[0]["evidence"][0]["function"] == "plc_stop"
    eve = [json.loads(line) for line in run_icsguard("alerts", "--db", db, "--format", "eve").stdout.splitlines()]
    first = eve[0]
    assert (first["event_type"], first["src_ip"], first["dest_port"], first["app_proto"]) == \
        ("alert", "127.0.0.10", 102, "s7comm")
    assert first["alert"]["severity"] == 1 and first["alert"]["signature"] == "S7 PLC stop"
    assert first["s7comm"]["pi_service"] == "P_PROGRAM"
    assert run_icsguard("alerts", "ack", str(rows[0]["id"]), "--db", db).returncode == 0
    assert run_icsguard("alerts", "ack", "999", "--db", db).stderr.strip() == f"icsguard: no alert 999 in {db}"
    muted = run_icsguard("alerts", "mute", "s7.plc_stop", "--src", "127.0.0.10", "--db", db)
    assert muted.returncode == 0 and "1 stored alert(s) marked muted" in muted.stdout
    again = run_icsguard("analyze", PCAPS / "s7_control.pcap", "--db", db)
    assert again.returncode == 0
    with sqlite3.connect(db) as conn:
        stops = conn.execute("SELECT run_id, status FROM alerts WHERE rule = 's7.plc_stop'").fetchall()
    assert stops == [(1, "muted")]          # the second run raised none: muted for that source



def test_rules_test_explains_matches(tmp_path):
    result = run_icsguard("rules", "test", "s7.plc_stop", PCAPS / "s7_control.pcap")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "s7.plc_stop: 1 matching event(s)"
    assert "frame 10 127.0.0.10:56443 -> 127.0.0.2:102 plc_stop: function equals 'plc_stop'" in lines[0]



def test_site_init_drafts_a_usable_site(tmp_path):
    result = run_icsguard("site", "init", PCAPS / "modbus_writes.pcap")
    assert result.returncode == 0, result.stderr
    (tmp_path / "site.yaml").write_text(result.stdout)
    site = load_site(tmp_path / "site.yaml")
    assert "127.0.0.2" in site.group("plc") and "127.0.0.10" in site.group("hmi")
    assert site.may_write("127.0.0.10", "127.0.0.2") and not site.may_write("127.0.0.99", "127.0.0.2")
    assert run_icsguard("rules", "validate", "--site", tmp_path / "site.yaml").returncode == 0

