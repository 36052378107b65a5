"""Posture findings: a weak configuration is one alert per (rule, client, server) however often
it is seen, in one run or the next, and it is shown with the asset it concerns; every alert
says its category."""

from __future__ import annotations

import json

from tests.support import PCAPS, opcua_peers, run_icsguard
from tests.support.peers import HOST, record
from tests.support.rewrite import frames, write_pcap

POSTURE = {"opcua.security_policy_none", "opcua.anonymous_session"}


def _alerts(db) -> list[dict]:
    result = run_icsguard("alerts", "--db", db, "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_a_historian_reconnecting_raises_each_weakness_once(tmp_path):
    capture = tmp_path / "reconnects.pcap"
    opcua_peers.certificates()
    with opcua_peers.start_server(secure=False) as server, record(capture, server.port):
        for _ in range(3):                       # three sessions, three secure channels, policy None
            opcua_peers.hmi_polling(server.port, cycles=1)
    db = tmp_path / "posture.db"
    assert run_icsguard("analyze", "--db", db, capture).returncode == 0
    posture = [a for a in _alerts(db) if a["category"] == "posture"]
    assert sorted((a["rule"], a["count"]) for a in posture) == [("opcua.anonymous_session", 3),
                                                                 ("opcua.security_policy_none", 3)]

    found = frames(capture)                      # the same historian an hour later, in the next run
    later = write_pcap(tmp_path / "later.pcap", [(f.ts + 3600, f.data) for f in found], found[0].link_type)
    assert run_icsguard("analyze", "--db", db, later).returncode == 0
    again = {a["rule"]: a for a in _alerts(db) if a["category"] == "posture"}
    assert set(again) == POSTURE and all(a["count"] == 6 for a in again.values())
    assert {a["id"] for a in again.values()} == {a["id"] for a in posture}
    assert all(a["last_ts"] - a["first_ts"] > 3600 for a in again.values())

    assert run_icsguard("analyze", "--db", db, later).returncode == 0     # the same traffic again: no more
    assert {a["rule"]: a["count"] for a in _alerts(db) if a["category"] == "posture"} == \
        {rule: 6 for rule in POSTURE}

    assets = {a["ip"]: a for a in map(json.loads, run_icsguard("assets", "--db", db, "--format", "jsonl")
                                      .stdout.splitlines())}
    assert assets[HOST]["posture"] == sorted(POSTURE)
    report = run_icsguard("report", "--db", db).stdout
    row = next(line for line in report.splitlines() if line.split()[:1] == [HOST])
    assert "opcua.anonymous_session, opcua.security_policy_none" in row


def test_every_alert_has_its_category_in_jsonl_and_eve(tmp_path):
    db = tmp_path / "categories.db"
    assert run_icsguard("analyze", "--db", db, PCAPS / "s7_control.pcap",
                        PCAPS / "opcua_none_plaintext_password.pcap").returncode == 0
    categories = {a["rule"]: a["category"] for a in _alerts(db)}
    assert categories["s7.plc_stop"] == "attack" and categories["opcua.password_in_clear"] == "posture"
    eve = [json.loads(line) for line in run_icsguard("alerts", "--db", db, "--format", "eve").stdout.splitlines()]
    assert {r["alert"]["metadata"]["icsguard_rule"][0]: r["alert"]["category"] for r in eve}["s7.plc_stop"] == \
        "icsguard attack"
