"""The analyst's everyday commands doing what they say: learn never overwrites what it should
not, --rules adds to the shipped packs, alert filters are checked, times without a zone are
UTC, a re-analysis does not duplicate alerts, and a pipe closed early is not an error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone

from tests.support import PCAPS, run_icsguard

S7_CONTROL = PCAPS / "s7_control.pcap"
CUSTOM_RULE = """\
- id: site.any_s7_session
  title: Any S7 session set up
  severity: low
  proto: s7comm
  direction: request
  match: {function: setup_communication}
"""


def _jsonl(result: subprocess.CompletedProcess) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_learn_never_replaces_a_file_it_was_not_asked_to(tmp_path):
    capture = tmp_path / "polling.pcap"
    shutil.copy(PCAPS / "modbus_polling.pcap", capture)
    before = capture.read_bytes()
    refused = run_icsguard("learn", PCAPS / "modbus_polling.pcap", "--model", capture, "--force")
    assert refused.returncode == 1 and refused.stderr.strip() == (
        f"icsguard: {capture} is not a model file: it is never replaced; give another path")
    assert capture.read_bytes() == before
    model = tmp_path / "plant.model"
    assert run_icsguard("learn", PCAPS / "modbus_polling.pcap", "--model", model).returncode == 0
    learned = model.read_bytes()
    again = run_icsguard("learn", PCAPS / "modbus_writes.pcap", "--model", model)
    assert again.returncode == 1 and again.stderr.strip() == (
        f"icsguard: {model} exists: --update to go on learning into it, --force to replace it")
    assert model.read_bytes() == learned
    assert run_icsguard("learn", PCAPS / "modbus_writes.pcap", "--model", model, "--force").returncode == 0
    assert model.read_bytes() != learned


def test_rules_given_are_added_to_the_shipped_packs(tmp_path):
    (tmp_path / "site.yaml").write_text(CUSTOM_RULE)
    shipped = _jsonl(run_icsguard("rules", "list", "--format", "jsonl"))
    added = _jsonl(run_icsguard("rules", "list", "--format", "jsonl", "--rules", tmp_path / "site.yaml"))
    alone = _jsonl(run_icsguard("rules", "list", "--format", "jsonl", "--rules", tmp_path / "site.yaml",
                                "--no-default-rules"))
    assert len(shipped) > 30 and len(added) == len(shipped) + 1
    assert [r["id"] for r in alone] == ["site.any_s7_session"]
    db = tmp_path / "alerts.db"
    assert run_icsguard("analyze", "--db", db, "--rules", tmp_path / "site.yaml", S7_CONTROL).returncode == 0
    rules = {a["rule"] for a in _jsonl(run_icsguard("alerts", "--db", db, "--format", "jsonl"))}
    assert {"s7.plc_stop", "site.any_s7_session"} <= rules


def test_no_active_rule_is_an_error_not_a_quiet_night(tmp_path):
    empty = tmp_path / "rules"
    empty.mkdir()
    done = run_icsguard("analyze", "--db", tmp_path / "x.db", "--no-default-rules", "--rules", empty, S7_CONTROL)
    assert done.returncode == 1 and done.stderr.strip() == "icsguard: no active rules: nothing would be checked"
    assert not (tmp_path / "x.db").exists()


def test_alert_filters_fold_case_take_lists_and_refuse_what_they_do_not_know(tmp_path):
    db = tmp_path / "alerts.db"
    assert run_icsguard("analyze", "--db", db, S7_CONTROL).returncode == 0
    every = _jsonl(run_icsguard("alerts", "--db", db, "--format", "jsonl"))
    severe = {a["id"] for a in every if a["severity"] in ("critical", "high")}
    assert severe and len(severe) < len(every)
    for args in (["--severity", "HIGH,Critical"], ["--severity", "high", "--severity", "critical"]):
        assert {a["id"] for a in _jsonl(run_icsguard("alerts", "--db", db, "--format", "jsonl", *args))} == severe
    bogus = run_icsguard("alerts", "--db", db, "--severity", "bogus")
    assert bogus.returncode == 1 and bogus.stderr.strip() == (
        "icsguard: --severity 'bogus': give one of low, medium, high, critical")
    first = min(every, key=lambda a: a["id"])["id"]
    assert run_icsguard("alerts", "--db", db, "ack", first).returncode == 0
    assert [a["id"] for a in _jsonl(run_icsguard("alerts", "--db", db, "--format", "jsonl",
                                                 "--status", "acknowledged"))] == [first]
    assert run_icsguard("alerts", "--db", db, "--status", "closed").returncode == 1


def test_a_time_without_a_zone_is_utc_as_everything_printed(tmp_path):
    db = tmp_path / "alerts.db"
    assert run_icsguard("analyze", "--db", db, S7_CONTROL).returncode == 0
    every = _jsonl(run_icsguard("alerts", "--db", db, "--format", "jsonl"))
    last = max(a["last_ts"] for a in every)
    naive = datetime.fromtimestamp(int(last), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    env = dict(os.environ, TZ="America/New_York")          # five hours from UTC
    since = subprocess.run([sys.executable, "-m", "icsguard", "alerts", "--db", str(db), "--format", "jsonl",
                            "--since", naive], capture_output=True, text=True, env=env)
    assert {a["id"] for a in _jsonl(since)} == {a["id"] for a in every if a["last_ts"] >= int(last)}


def test_analysing_the_same_capture_again_keeps_one_alert_and_its_acknowledgement(tmp_path):
    db = tmp_path / "alerts.db"
    assert run_icsguard("analyze", "--db", db, S7_CONTROL).returncode == 0
    first = _jsonl(run_icsguard("alerts", "--db", db, "--format", "jsonl"))
    assert run_icsguard("alerts", "--db", db, "ack", first[0]["id"]).returncode == 0
    again = run_icsguard("analyze", "--db", db, S7_CONTROL)
    assert again.returncode == 0 and first[0]["rule"] in again.stdout      # the latest run's report shows them
    second = _jsonl(run_icsguard("alerts", "--db", db, "--format", "jsonl"))
    assert sorted((a["id"], a["rule"], a["count"]) for a in second) == sorted((a["id"], a["rule"], a["count"])
                                                                             for a in first)
    assert {a["id"]: a["status"] for a in second}[first[0]["id"]] == "acknowledged"


def test_decode_into_a_pipe_closed_early_exits_0():
    reader = subprocess.Popen([sys.executable, "-m", "icsguard", "decode", str(PCAPS / "modbus_polling.pcap")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert json.loads(reader.stdout.readline())["proto"] == "modbus"
    reader.stdout.close()
    assert reader.wait(timeout=60) == 0 and b"Traceback" not in reader.stderr.read()


def test_mutes_are_checked_listed_and_lifted(tmp_path):
    db = tmp_path / "mutes.db"
    assert run_icsguard("analyze", "--db", db, S7_CONTROL).returncode == 0
    wrong = run_icsguard("alerts", "--db", db, "mute", "s7.plc_stopp")
    assert wrong.returncode == 1 and "unknown rule 's7.plc_stopp'" in wrong.stderr
    bad_src = run_icsguard("alerts", "--db", db, "mute", "s7.plc_stop", "--src", "127.0.0.300")
    assert bad_src.returncode == 1 and "--src '127.0.0.300': not an IP address" in bad_src.stderr
    assert run_icsguard("alerts", "--db", db, "mute", "baseline.new_talker").returncode == 0   # a detector's id
    muted = run_icsguard("alerts", "--db", db, "mute", "s7.plc_stop", "--src", "127.0.0.10")
    assert muted.stdout.strip() == f"s7.plc_stop muted in {db} for 127.0.0.10; 1 stored alert(s) marked muted"
    listed = run_icsguard("alerts", "--db", db, "mutes", "--format", "jsonl")
    assert [(m["rule"], m["src"]) for m in _jsonl(listed)] == [("baseline.new_talker", "every source"),
                                                                 ("s7.plc_stop", "127.0.0.10")]
    not_muted = run_icsguard("alerts", "--db", db, "unmute", "s7.plc_stop")      # muted for one source only
    assert not_muted.returncode == 1 and "is not muted for every source" in not_muted.stderr
    lifted = run_icsguard("alerts", "--db", db, "unmute", "s7.plc_stop", "--src", "127.0.0.10")
    assert lifted.stdout.strip() == f"s7.plc_stop unmuted in {db} for 127.0.0.10; 1 stored alert(s) new again"
    statuses = {a["rule"]: a["status"] for a in _jsonl(run_icsguard("alerts", "--db", db, "--format", "jsonl"))}
    assert statuses["s7.plc_stop"] == "new"
    assert [m["rule"] for m in _jsonl(run_icsguard("alerts", "--db", db, "mutes", "--format", "jsonl"))] == \
        ["baseline.new_talker"]


def test_runs_are_listed_and_any_one_reported(tmp_path):
    db = tmp_path / "runs.db"
    assert run_icsguard("analyze", "--db", db, S7_CONTROL).returncode == 0
    assert run_icsguard("analyze", "--db", db, PCAPS / "modbus_polling.pcap").returncode == 0
    runs = _jsonl(run_icsguard("runs", "--db", db, "--format", "jsonl"))
    assert [(r["id"], r["command"], r["status"], r["captures"]) for r in runs] == [
        (1, "analyze", "finished", [str(S7_CONTROL)]), (2, "analyze", "finished", [str(PCAPS / "modbus_polling.pcap")])]
    assert runs[0]["alerts"] > 0 and runs[1]["alerts"] == 0
    first = run_icsguard("report", "--db", db, "--run", "1")
    assert first.returncode == 0 and "icsguard run 1" in first.stdout and "s7.plc_stop" in first.stdout
    assert "icsguard run 2" in run_icsguard("report", "--db", db).stdout
    missing = run_icsguard("report", "--db", db, "--run", "9")
    assert missing.returncode == 1 and f"no run 9 in {db}" in missing.stderr


def test_the_analyze_report_gives_each_alert_its_id(tmp_path):
    db = tmp_path / "ids.db"
    shown = run_icsguard("analyze", "--db", db, S7_CONTROL)
    assert shown.returncode == 0, shown.stderr
    for alert in _jsonl(run_icsguard("alerts", "--db", db, "--format", "jsonl")):
        assert any(line.split()[:3] == [str(alert["id"]), alert["severity"], alert["rule"]]
                   for line in shown.stdout.splitlines()), alert
    assert run_icsguard("--version").stdout.startswith("icsguard ")


def test_markup_in_a_database_path_is_text(tmp_path):
    folder = tmp_path / "q[bold]"
    folder.mkdir()
    db = folder / "[red]t.db"
    assert run_icsguard("analyze", "--db", db, S7_CONTROL).returncode == 0
    for command in ("alerts", "assets", "runs"):
        shown = run_icsguard(command, "--db", db)
        assert shown.returncode == 0 and "Traceback" not in shown.stderr and str(db) in shown.stdout, command


def test_unmuting_every_source_leaves_a_sources_own_mute(tmp_path):
    db = tmp_path / "m.db"
    assert run_icsguard("analyze", "--db", db, S7_CONTROL).returncode == 0
    assert run_icsguard("alerts", "--db", db, "mute", "s7.plc_stop", "--src", "127.0.0.10").returncode == 0
    assert run_icsguard("alerts", "--db", db, "mute", "s7.plc_stop").returncode == 0
    lifted = run_icsguard("alerts", "--db", db, "unmute", "s7.plc_stop")
    assert lifted.stdout.strip().endswith("0 stored alert(s) new again")
    statuses = {a["rule"]: a["status"] for a in _jsonl(run_icsguard("alerts", "--db", db, "--format", "jsonl"))}
    assert statuses["s7.plc_stop"] == "muted"
