"""analyze → SQLite store → report/assets/alerts, through the command line as a user runs it."""

from __future__ import annotations

import csv
import io
import json
import sqlite3

import pytest

from icsguard.output.store import SCHEMA_VERSION, Store
from tests.support import PCAPS, run_icsguard

POLLING = PCAPS / "modbus_polling.pcap"
DIAGNOSTICS = PCAPS / "modbus_diagnostics.pcap"


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "icsguard.db"
    result = run_icsguard("analyze", "--db", path, POLLING)
    assert result.returncode == 0, result.stderr
    return path, result.stdout


def test_analyze_report_shows_the_run(db):
    _, out = db
    for text in ("packets", "508", "500 decoded, 0 malformed", "read_holding_registers",
                 "Communication pairs", "127.0.0.2:502", "Assets", "Alerts: none"):
        assert text in out


def test_store_tables_and_schema(db):
    path, _ = db
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"runs", "communications", "assets", "alerts", "scans"} <= tables
        run = conn.execute("SELECT packets, pdus, malformed, captures FROM runs").fetchone()
        assert run[:3] == (508, 500, 0) and "modbus_polling.pcap" in run[3]
        rows = conn.execute("SELECT proto, function, requests, responses FROM communications "
                            "ORDER BY proto, function").fetchall()
    assert rows == [("modbus", "read_coils", 50, 50), ("modbus", "read_discrete_inputs", 50, 50),
                    ("modbus", "read_holding_registers", 100, 100), ("modbus", "read_input_registers", 50, 50),
                    ("tcp", "modbus", 1, 0)]       # the connection itself, as a conversation


def test_report_formats(db, tmp_path):
    path, _ = db
    data = json.loads(run_icsguard("report", "--db", path, "--format", "json").stdout)
    assert data["run"]["pdus"] == 500
    assert {f["function"] for f in data["functions"]} == {"read_coils", "read_discrete_inputs",
                                                          "read_holding_registers", "read_input_registers"}
    assert data["pairs"][0]["pdus"] == 500
    md = tmp_path / "r.md"
    assert run_icsguard("report", "--db", path, "--format", "md", "--output", md).returncode == 0
    assert "| modbus | read_holding_registers | 100 | 100 | 0 |" in md.read_text()


def test_assets_formats(db):
    path, _ = db
    rows = [json.loads(line) for line in run_icsguard("assets", "--db", path, "--format", "jsonl").stdout.splitlines()]
    assert [(r["ip"], r["role"]) for r in rows] == [("127.0.0.10", "scada"), ("127.0.0.2", "plc")]
    assert rows[0]["protocols"] == ["modbus"]
    table = list(csv.DictReader(io.StringIO(run_icsguard("assets", "--db", path, "--format", "csv").stdout)))
    assert [r["ip"] for r in table] == ["127.0.0.10", "127.0.0.2"]


def test_alerts_empty_until_detectors_exist(db):
    path, _ = db
    result = run_icsguard("alerts", "--db", path, "--format", "jsonl")
    assert result.returncode == 0 and result.stdout == ""


def test_second_run_is_added_and_assets_merge(tmp_path):
    path = tmp_path / "two.db"
    assert run_icsguard("analyze", "--db", path, POLLING).returncode == 0
    assert run_icsguard("analyze", "--db", path, DIAGNOSTICS).returncode == 0
    store = Store(str(path))
    assert store.latest_run()["id"] == 2
    functions = {c["function"] for c in store.communications(2)}
    assert "diagnostics" in functions and "read_holding_registers" not in functions
    assert [a["ip"] for a in store.assets()] == ["127.0.0.10", "127.0.0.2"]
    store.close()


def test_decode_table_and_protocol_filter():
    table = run_icsguard("decode", "--format", "table", PCAPS / "modbus_writes.pcap")
    assert table.returncode == 0
    assert "write_multiple_registers" in table.stdout and "and_mask=" in table.stdout
    none = run_icsguard("decode", "--proto", "opcua", PCAPS / "modbus_writes.pcap")
    assert none.returncode == 0 and none.stdout == ""


def test_default_database_is_created_in_the_working_directory(tmp_path):
    result = run_icsguard("analyze", POLLING, cwd=tmp_path)
    assert result.returncode == 0
    assert (tmp_path / "icsguard.db").exists()


def test_database_from_a_newer_icsguard_is_refused_untouched(tmp_path):
    path = tmp_path / "future.db"
    assert run_icsguard("analyze", "--db", path, POLLING).returncode == 0
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    result = run_icsguard("analyze", "--db", path, POLLING)
    assert result.returncode == 1 and "made by a newer icsguard" in result.stderr
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
