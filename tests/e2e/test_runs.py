"""Runs cut short: kill -9 at several points, Ctrl-C and SIGTERM. The database stays whole,
every command that reads it works, and it holds what was found up to a second before."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import public, run_icsguard, wait_for_run

FLOODS = ("20161215191717.ChangeUpperThreshold_Flooding", "20161215190548.WaterTankOnManu_Flooding",
          "20161215193421.WaterTankOnAuto_Flooding", "20161215192146.ConveyorBeltOn_Flooding")
CAPTURES = [f"2017QUT_S7comm/attacks/{run}/{run}.{side}.pcap" for run in FLOODS[:2] for side in ("master", "attacker")] \
    + [f"2017QUT_S7comm/attacks/{run}/{run}.hmi.pcap" for run in FLOODS[2:]] \
    + ["Modbus_dataset/covert/channel_4d_12s.pcap", "ct-samples/s7/Plant1_S7comm.pcap"]


@pytest.fixture(scope="module")
def captures():
    return [str(public(c)) for c in CAPTURES]


@pytest.fixture(scope="module")
def whole(captures, tmp_path_factory):
    """The same captures analysed to the end: what a cut-short run is a part of."""
    db = tmp_path_factory.mktemp("whole") / "whole.db"
    assert run_icsguard("analyze", "--db", db, *captures).returncode == 0
    return _state(db)


def _start(db, captures, *options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "icsguard", "analyze", "--db", str(db), *captures, *options],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue                 # (a process that just ended)
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _state(db) -> dict:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        status, packets, updated = conn.execute("SELECT status, packets, updated FROM runs").fetchone()
        alerts = conn.execute("SELECT count(*), coalesce(sum(count), 0) FROM alerts").fetchone()
        pairs = conn.execute("SELECT count(*) FROM communications").fetchone()[0]
    return {"status": status, "packets": packets or 0, "updated": updated, "alerts": alerts[0],
            "matches": alerts[1], "pairs": pairs}


@pytest.mark.parametrize("after", [0.3, 1.5, 2.5])
def test_kill_9_loses_at_most_a_second(tmp_path, captures, whole, after):
    db = tmp_path / "killed.db"
    run = _start(db, captures)
    wait_for_run(db, run)
    time.sleep(after)
    if run.poll() is not None:
        pytest.fail(f"analyze finished within {after} s: the captures are too small to test this")
    killed_at = time.time()
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    state = _state(db)
    assert state["status"] == "running"                     # nobody could say otherwise
    assert killed_at - state["updated"] <= 1.5              # the last commit: at most a second (and a bit) before
    assert state["packets"] < whole["packets"]
    if after >= 1.5:                                        # a second in: committed results
        assert state["packets"] > 0 and 0 < state["pairs"] <= whole["pairs"]
        assert state["alerts"] <= whole["alerts"]
    report = run_icsguard("report", "--db", db)
    assert report.returncode == 0 and "running, or cut short" in report.stdout
    assert run_icsguard("alerts", "--db", db, "--format", "jsonl").stdout.count("\n") == state["alerts"]
    again = run_icsguard("analyze", "--db", db, *captures)    # the database takes the next run
    assert again.returncode == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_end_the_run_as_interrupted(tmp_path, captures, whole, signum):
    db = tmp_path / "stopped.db"
    run = _start(db, captures)
    wait_for_run(db, run)
    time.sleep(1.5)
    run.send_signal(signum)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 130
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("icsguard: interrupted: run 1") and "Traceback" not in stderr
    state = _state(db)
    assert state["status"] == "interrupted"
    assert 0 < state["packets"] < whole["packets"] and state["alerts"] <= whole["alerts"]
    report = run_icsguard("report", "--db", db)
    assert report.returncode == 0 and "interrupted at" in report.stdout


def test_a_finished_run_matches_what_it_committed_along_the_way(captures, whole):
    """Committing as it goes stores the same as before: one finished run, every alert once."""
    assert whole["status"] == "finished" and whole["alerts"] > 0 and whole["matches"] >= whole["alerts"]


def test_a_sharded_run_commits_as_it_goes_and_its_workers_end_with_it(tmp_path, captures, whole):
    """--workers 2: the shards' findings are in the store within a second; killed, the run
    keeps them, and the orphaned workers end instead of running on."""
    db = tmp_path / "killed.db"
    run = _start(db, captures, "--workers", "2")
    wait_for_run(db, run)
    time.sleep(2.0)
    workers = _children(run.pid)
    if run.poll() is not None:
        pytest.fail("analyze --workers 2 finished within 2 s: the captures are too small to test this")
    assert len(workers) >= 2
    killed_at = time.time()
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    state = _state(db)
    assert state["status"] == "running" and killed_at - state["updated"] <= 1.5
    assert 0 < state["packets"] <= whole["packets"] and 0 < state["pairs"] <= whole["pairs"]
    deadline = time.time() + 5
    while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in workers):
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_ctrl_c_stops_the_workers_with_what_they_found(tmp_path, captures, whole):
    db = tmp_path / "stopped.db"
    run = _start(db, captures, "--workers", "2")
    wait_for_run(db, run)
    time.sleep(2.0)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("icsguard: interrupted: run 1") and "Traceback" not in stderr
    state = _state(db)
    assert state["status"] == "interrupted"
    assert 0 < state["packets"] <= whole["packets"] and 0 < state["pairs"] <= whole["pairs"]
    assert state["matches"] < whole["matches"]               # stopped before the end
