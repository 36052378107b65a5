"""Roles and vendors as an analyst would state them: a PLC taking a program download stays a
PLC, an RTU that also polls stays a controller, and a router's MAC is not the vendor of the
hosts behind it."""

from __future__ import annotations

import json

from tests.support import PCAPS, public, run_icsguard


def _assets(db) -> dict[str, dict]:
    result = run_icsguard("assets", "--db", db, "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    return {a["ip"]: a for a in map(json.loads, result.stdout.splitlines())}


def test_a_plc_taking_a_download_stays_a_plc_and_the_draft_says_so(tmp_path):
    db = tmp_path / "blocks.db"
    assert run_icsguard("analyze", "--db", db, PCAPS / "s7_blocks.pcap").returncode == 0
    assets = _assets(db)
    assert (assets["127.0.0.2"]["role"], assets["127.0.0.10"]["role"]) == ("plc", "ews")
    pairs = json.loads(run_icsguard("report", "--db", db, "--format", "json").stdout)["pairs"]
    assert {(p["client"], p["server"], p["port"]) for p in pairs} == {("127.0.0.10", "127.0.0.2", 102)}
    draft = run_icsguard("site", "init", PCAPS / "s7_blocks.pcap").stdout
    assert "  plc: [127.0.0.2]" in draft and "  ews: [127.0.0.10]" in draft


def test_an_rtu_that_also_polls_is_still_a_controller(tmp_path):
    db = tmp_path / "rtu.db"
    capture = public("Modbus_dataset/characterization_modbus_6RTU_with_operate.pcap")
    assert run_icsguard("analyze", "--db", db, capture).returncode == 0
    assets = _assets(db)
    pairs = json.loads(run_icsguard("report", "--db", db, "--format", "json").stdout)["pairs"]
    assert any(p["client"] == "192.168.1.101" for p in pairs) and any(p["server"] == "192.168.1.101" for p in pairs)
    assert assets["192.168.1.101"]["role"] == "plc"
    assert assets["192.168.1.100"]["role"] in ("hmi", "scada")


def test_a_mac_in_front_of_many_hosts_is_a_gateway_not_their_vendor(tmp_path):
    db = tmp_path / "gw.db"
    assert run_icsguard("analyze", "--db", db, public("S7comm-Plus-Anomaly-Detection/1.pcapng")).returncode == 0
    assets = _assets(db)
    behind = {ip for ip, a in assets.items() if a["vendor"] == "behind gateway d4:f5:27:4f:9f:0e (SIEMENS AG)"}
    assert behind >= {"192.168.45.10", "192.168.45.20", "192.168.45.30", "192.168.45.130"}
    assert all(assets[ip]["mac"] is None for ip in behind)
    own = assets["192.168.41.10"]
    assert own["mac"] == "e0:dc:a0:8f:bc:04" and own["vendor"].startswith("Siemens")
    table = run_icsguard("assets", "--db", db).stdout
    assert "behind gateway d4:f5:27:4f:9f:0e" in table
