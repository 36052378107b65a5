"""analyze --workers N and --scheduler: the same alerts, communications and assets as one
process, on the project's and the public captures (six RTUs, an address scan counted across
servers, IT traffic beside Modbus, S7, OPC UA), with worker processes and a local Dask cluster."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from icsguard.detect import modelfile
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


def test_with_a_model_shards_give_what_one_process_gives(tmp_path):
    """The baseline and the model over shards: new talkers, functions, values out of range and an
    anomalous window, the same as one process (connections oriented by their SYN in every shard)."""
    model = tmp_path / "m.icsg"
    learned = run_icsguard("learn", PCAPS / "modbus_polling.pcap",
                           public("Modbus_dataset/moving_two_files_modbus_6RTU.pcap"), "--model", model)
    assert learned.returncode == 0, learned.stderr
    captures = [public(MIXED_TRAFFIC[0]), public(SCAN), PCAPS / "s7_control.pcap"]
    outcomes = []
    for workers in ("1", "2", "3"):
        db = tmp_path / f"w{workers}.db"
        assert run_icsguard("analyze", "--db", db, "--model", model, *captures, "--workers", workers).returncode == 0
        outcomes.append(_outcome(db))
    rules = {a[0] for a in outcomes[0]["alerts"]}
    assert {"baseline.new_talker", "ml.anomalous_window", "modbus.points_list_scan"} <= rules
    assert outcomes[1] == outcomes[0] and outcomes[2] == outcomes[0]


def test_workers_that_cannot_start_leave_the_run_failed(tmp_path):
    db = tmp_path / "gone.db"
    result = run_icsguard("analyze", "--db", db, PCAPS / "s7_control.pcap", "--workers", "2",
                          "--scheduler", "tcp://127.0.0.1:1")
    assert result.returncode == 1 and result.stderr.startswith("icsguard: --scheduler tcp://127.0.0.1:1: ")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT status FROM runs").fetchall() == [("failed",)]


def test_learning_over_shards_learns_what_one_process_learns(tmp_path):
    """learn --workers 2 and on a local Dask cluster: the same pairs, functions, targets, values,
    periods, watch times, identities and model windows as one process, on the project's three
    protocols and two public plants; only the windows a capture partly covers (its first and
    last) may be scaled by a shard's own span, and the baseline's total watch by its own gaps."""
    captures = [PCAPS / "modbus_polling.pcap", PCAPS / "s7_reads_writes.pcap", PCAPS / "opcua_none_anonymous.pcap",
                PCAPS / "s7_identification.pcap", public("Modbus_dataset/moving_two_files_modbus_6RTU.pcap"),
                public("ct-samples/s7/Plant1_S7comm.pcap")]
    learned = []
    for options in (["--workers", "1"], ["--workers", "2"], ["--workers", "2", "--scheduler", "local"]):
        model = tmp_path / f"m{len(learned)}.icsg"
        result = run_icsguard("learn", *captures, "--model", model, *options)
        assert result.returncode == 0, result.stderr
        learned.append(modelfile.load(model))
    one = learned[0]
    assert len(one.baseline.pairs) >= 20 and len(one.model.rows) >= 20 and one.identities
    for shards in learned[1:]:
        for part in ("pairs", "spaces", "watched", "events", "first_ts", "last_ts"):
            assert getattr(shards.baseline, part) == getattr(one.baseline, part), part
        assert {k: vars(v) for k, v in shards.baseline.values.items()} == \
            {k: vars(v) for k, v in one.baseline.values.items()}
        assert {k: (c.count, sorted(c.intervals)) for k, c in shards.baseline.channels.items()} == \
            {k: (c.count, sorted(c.intervals)) for k, c in one.baseline.channels.items()}
        assert shards.baseline.observed == pytest.approx(one.baseline.observed, rel=0.01)
        assert len(shards.model.rows) == len(one.model.rows)
        for theirs, ours in zip(shards.model.rows, one.model.rows):
            assert theirs == pytest.approx(ours, rel=0.01)
        assert shards.model.threshold == pytest.approx(one.model.threshold, rel=0.05)
        assert shards.identities == one.identities and shards.packets == one.packets


def test_a_worker_that_fails_fails_the_run_and_stops_the_others(tmp_path, monkeypatch):
    """A bug in one shard (here: its detectors raise on one RTU's requests) ends the run as
    failed, saying why, and no worker is left behind."""
    from icsguard import shards
    from icsguard.output.store import Store

    real = shards.Detection.feed

    def feed(self, event):
        if event.dst == "192.168.1.104" and event.direction == "request":
            raise RuntimeError("a bug in a detector")
        real(self, event)
    monkeypatch.setattr(shards.Detection, "feed", feed)          # (the workers fork with it)
    store = Store(str(tmp_path / "failed.db"))
    with pytest.raises(RuntimeError, match="a bug in a detector"):
        shards.analyze_sharded([str(public(SCAN)), str(public(MIXED_TRAFFIC[0]))], store, 2, [], None, None)
    run = store.run(1)
    assert run["status"] == "failed" and run["error"] == "the workers did not finish: a bug in a detector"
    assert not multiprocessing.active_children()
