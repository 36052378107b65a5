"""What the tests share: where captures live, running icsguard as a user would, and (in
the modules beside this one) the real protocol peers, the tshark oracles and the
capture rewriting that make malformed and hostile input."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PCAPS = REPO / "pcaps"
PUBLIC = REPO.parent / "shared" / "pcaps" / "public"
# public captures where Modbus shares the wire with IT traffic and an intrusion
MIXED_TRAFFIC = [
    "Modbus_dataset/exploit_ms08_netapi_modbus_6RTU_with_operate.pcap",    # SMB, a reverse shell, Modbus
    "Modbus_dataset/CnC_uploading_exe_modbus_6RTU_with_operate.pcap",      # TLS and SMB beside Modbus
    "Modbus_dataset/moving_two_files_modbus_6RTU.pcap",
]



def public(relative: str) -> Path:
    """A public capture, read in place; tests that need one skip when the folder is absent."""
    path = PUBLIC / relative
    if not path.exists():
        pytest.skip(f"public capture {relative} is not available")
    return path


def run_icsguard(*args: str, cwd: Path | None = None, columns: int | None = None) -> subprocess.CompletedProcess:
    """icsguard with its output piped, as into grep; ``columns``: COLUMNS set, as a user may
    (pytest sets it to 80 for itself, which a real pipe would not have)."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run([sys.executable, "-m", "icsguard", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300, env=env)


def wait_for_run(db: Path, process: subprocess.Popen) -> None:
    """Wait until a running icsguard has started its run in the database (the interpreter and
    Scapy take a moment)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                    if conn.execute("SELECT count(*) FROM runs").fetchone()[0]:
                        return
            except sqlite3.OperationalError:
                pass
        time.sleep(0.05)
    pytest.fail(f"icsguard did not start a run: {process.stderr.read() if process.poll() is not None else 'timeout'}")


def stored_run(db: Path) -> dict:
    """What a database holds of its latest run, apart from times: alerts (with their counts),
    functions, pairs, assets, PDUs; to compare a sensor's run with analyze of the same traffic."""
    out = run_icsguard("report", "--db", db, "--format", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    return {"alerts": sorted((a["rule"], a["src"], a["dst"], a["count"]) for a in data["alerts"]),
            "functions": sorted(tuple(f.values()) for f in data["functions"]),
            "pairs": sorted((p["client"], p["server"], p["port"], p["proto"], p["pdus"], tuple(p["functions"]))
                            for p in data["pairs"]),
            "assets": sorted((a["ip"], a["role"], tuple(a["protocols"])) for a in data["assets"]),
            "pdus": data["run"]["pdus"], "malformed": data["run"]["malformed"]}


def capture_packets(*paths) -> int:
    """Packets in captures, as capinfos counts them."""
    return sum(int(subprocess.run(["capinfos", "-c", "-M", "-T", str(p)], capture_output=True, text=True, check=True)
                   .stdout.splitlines()[-1].split("\t")[1]) for p in paths)


def decoded(*paths) -> list[dict]:
    """Events of captures as the JSON dicts ``icsguard decode`` prints."""
    from icsguard.analysis import decode
    return [json.loads(e.to_json()) for e in decode([str(p) for p in paths])]
