"""analyze --workers N and --scheduler: the same alerts, communications and assets as one
process, on the project's and the public captures (six RTUs, an address scan counted across
servers, IT traffic beside Modbus, S7, OPC UA), with worker processes and a local Dask cluster."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.support import MIXED_TRAFFIC, PCAPS, public, run_icsguard

SCAN = "Modbus_dataset/characterization_modbus_6RTU_with_operate.pcap"


def _outcome(db: Path) -> dict:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        alerts = sorted((a["rule"], a["src"], a["dst"], a["count"], a["first_ts"], a["last_ts"], a["category"])
                        for a in conn.execute("SELECT * FROM alerts"))
        comms = sorted(tuple(c)[1:] for c in conn.execute("SELECT * FROM communications"))
        assets = sorted(tuple(a[k] for k in ("ip", "mac", "vendor", "role", "protocols", "first_seen", "last_seen"))
                        for a in conn.execute("SELECT * FROM assets"))
        identities = sorted(tuple(i[k] for k in ("ip", "attribute", "value", "first_seen", "last_seen"))
                            for i in conn.execute("SELECT * FROM identities"))
        run = dict(conn.execute("SELECT packets, bytes, pdus, malformed, status FROM runs").fetchone())
    return {"alerts": alerts, "communications": comms, "assets": assets, "identities": identities, "run": run}


@pytest.fixture(scope="module")
def captures():
    return [PCAPS / "modbus_diagnostics.pcap", PCAPS / "s7_control.pcap", PCAPS / "s7_identification.pcap",
            PCAPS / "opcua_none_plaintext_password.pcap", public(SCAN), public(MIXED_TRAFFIC[0])]


@pytest.fixture(scope="module")
def one(captures, tmp_path_factory) -> dict:
    db = tmp_path_factory.mktemp("one") / "one.db"
    result = run_icsguard("analyze", "--db", db, *captures)
    assert result.returncode == 0, result.stderr
    outcome = _outcome(db)
    assert any(a[0] == "modbus.points_list_scan" for a in outcome["alerts"])     # counted across servers
    assert len(outcome["alerts"]) >= 5 and len(outcome["assets"]) >= 8
    assert len({c[1] for c in outcome["communications"]}) >= 6          # servers enough to be split
    return outcome


@pytest.mark.parametrize("options", [["--workers", "2"], ["--workers", "3"], ["--workers", "2", "--scheduler", "local"]],
                         ids=["2 workers", "3 workers", "local Dask cluster"])
def test_shards_give_what_one_process_gives(options, captures, one, tmp_path):
    db = tmp_path / "shards.db"
    result = run_icsguard("analyze", "--db", db, *captures, *options)
    assert result.returncode == 0, result.stderr
    shards = _outcome(db)
    for part in ("run", "alerts", "communications", "assets", "identities"):
        assert shards[part] == one[part], part
    assert "icsguard run 1" in result.stdout


def test_a_shard_reading_standard_input_is_refused(tmp_path):
    refused = run_icsguard("analyze", "--db", tmp_path / "x.db", "-", "--workers", "2")
    assert refused.returncode == 1 and "standard input can be read by one worker only" in refused.stderr
    bad = run_icsguard("analyze", "--db", tmp_path / "y.db", PCAPS / "s7_control.pcap", "--workers", "0")
    assert bad.returncode == 1 and "--workers: give at least 1" in bad.stderr
