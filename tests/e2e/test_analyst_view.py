"""What an analyst sees: addresses and rule ids whole at 80 columns, one record a line when
piped, UTC times and STEP 7 / OPC UA notation instead of Python reprs, progress on long
reads, and conversations named even when no industrial protocol is decoded."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from icsguard.output.progress import DELAY
from tests.support import PCAPS, public, run_icsguard
from tests.support.rewrite import write_pcap

LONG_CAPTURE = ("2017QUT_S7comm/attacks/20161215191717.ChangeUpperThreshold_Flooding/"
                "20161215191717.ChangeUpperThreshold_Flooding.master.pcap")      # 39,566 packets


@pytest.fixture(scope="module")
def alerts_db(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("view") / "view.db"
    result = run_icsguard("analyze", "--db", db, public("Modbus_dataset/characterization_modbus_6RTU_with_operate.pcap"),
                          PCAPS / "modbus_diagnostics.pcap",
                          PCAPS / "s7_control.pcap")
    assert result.returncode == 0, result.stderr
    return db


def _alerts(db: Path) -> list[dict]:
    result = run_icsguard("alerts", "--db", db, "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    alerts = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(alerts) >= 5 and any(a["src"].startswith("192.168.") for a in alerts)
    return alerts


def test_at_80_columns_no_address_port_or_rule_id_is_cut(alerts_db):
    alerts = _alerts(alerts_db)
    for command in ("alerts", "report", "assets"):
        shown = run_icsguard(command, "--db", alerts_db, columns=80)
        assert shown.returncode == 0, shown.stderr
        assert max(len(line) for line in shown.stdout.splitlines()) <= 80
        words = set(shown.stdout.split())
        for alert in alerts:
            assert {alert["src"], alert["dst"]} <= words, (command, alert)
            if command != "assets":
                assert alert["rule"] in words, (command, alert)
        assert "…" not in shown.stdout


def test_piped_output_is_one_record_a_line(alerts_db):
    alerts = _alerts(alerts_db)
    shown = run_icsguard("alerts", "--db", alerts_db)
    lines = shown.stdout.splitlines()
    for alert in alerts:
        line = next(line for line in lines if line.split()[:1] == [str(alert["id"])])
        assert alert["rule"] in line.split() and alert["title"] in line
        assert alert["src"] in line.split() and alert["dst"] in line.split()


def test_columns_is_honoured_when_piped(alerts_db):
    shown = run_icsguard("alerts", "--db", alerts_db, columns=120)
    assert shown.returncode == 0 and max(len(line) for line in shown.stdout.splitlines()) <= 120


def test_times_are_utc_and_lists_are_plain(alerts_db):
    assets = [json.loads(line) for line in run_icsguard("assets", "--db", alerts_db, "--format", "jsonl")
              .stdout.splitlines()]
    plc = next(a for a in assets if a["ip"] == "192.168.1.101")
    table = run_icsguard("assets", "--db", alerts_db).stdout
    row = next(line for line in table.splitlines() if line.split()[:1] == [plc["ip"]])
    first_seen = datetime.fromtimestamp(plc["first_seen"], timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    assert first_seen in row and row.split()[1:4] == ["00:0c:29:f9:a8:75", "VMware,", "Inc."]
    both = next(line for line in table.splitlines() if line.split()[:1] == ["127.0.0.2"])
    assert "cotp, modbus, s7comm" in both
    assert "[" not in table and "'" not in table and str(plc["first_seen"]) not in table
    assert f"Assets seen in the 1 run of {alerts_db} (times UTC)" in table

    alerts = run_icsguard("alerts", "--db", alerts_db).stdout
    assert "1795" not in alerts and "'" not in alerts        # no epoch seconds, no Python reprs


def test_decode_table_speaks_step7_and_opcua():
    s7 = run_icsguard("decode", "--format", "table", PCAPS / "s7_reads_writes.pcap")
    assert s7.returncode == 0, s7.stderr
    assert "items=DB1.DBB0[16]" in s7.stdout and "items=DB1.DBB0[16]=000102030405060708090a0b0c0d0e0f" in s7.stdout
    opcua = run_icsguard("decode", "--format", "table", PCAPS / "opcua_none_username.pcap")
    assert "security_policy=None " in opcua.stdout and "node_ids=ns=2;i=2" in opcua.stdout
    assert "endpoints=None/None, Basic256Sha256/Sign, Basic256Sha256/SignAndEncrypt" in opcua.stdout
    for out in (s7.stdout, opcua.stdout):
        assert "{'" not in out and "('" not in out and "http://opcfoundation.org" not in out


def _with_stderr_on_a_terminal(*args: str, stdout_path: Path) -> str:
    """Run icsguard with stderr on a pseudo-terminal (where a progress bar goes) and stdout to a file."""
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    with open(stdout_path, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "icsguard", *map(str, args)], stdout=out,
                                   stderr=follower, env=env)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:                      # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    assert process.wait(timeout=300) == 0, seen.decode(errors="replace")
    os.close(leader)
    return seen.decode(errors="replace")


def _arriving_slowly(path: Path, capture: bytes) -> threading.Thread:
    """A named pipe at ``path`` that gives a quarter of the capture, then the rest once the
    progress bar's delay has passed: a long read however fast the machine."""
    os.mkfifo(path)

    def feed() -> None:
        with open(path, "wb") as pipe:
            pipe.write(capture[:len(capture) // 4])
            pipe.flush()
            time.sleep(DELAY + 0.5)
            pipe.write(capture[len(capture) // 4:])
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    return feeder


def test_long_reads_show_progress(tmp_path):
    capture = public(LONG_CAPTURE).read_bytes()
    slow = tmp_path / "slow.pcap"
    for command in (("decode", slow), ("learn", slow, "--model", tmp_path / "m.icsg"),
                    ("rules", "test", "s7.write_outputs_or_flags", slow), ("site", "init", slow)):
        feeder = _arriving_slowly(slow, capture)
        shown = _with_stderr_on_a_terminal(*command, stdout_path=tmp_path / "out")
        feeder.join(timeout=60)
        slow.unlink()
        assert "decoding" in shown, command
        assert (tmp_path / "out").stat().st_size > 0


def test_only_undecoded_industrial_protocols_still_shows_their_conversations(tmp_path):
    folder = "ITI-ICS-Security-Tools/negative/"
    result = run_icsguard("analyze", "--db", tmp_path / "x.db", public(folder + "iec104_TestDissectIec104.pcap"),
                          public(folder + "enip_test.pcap"))
    assert result.returncode == 0, result.stderr
    assert "no industrial protocol decoded" in result.stdout
    assert "Not decoded: industrial protocols seen by their ports: ethernet_ip (1 pair), iec104 (1 pair)" \
        in result.stdout
    assert any(line.split()[:4] == ["10.1.1.167", "10.1.1.164:44818", "tcp", "1"]
               for line in result.stdout.splitlines())
    assert any(line.split()[1:3] == ["172.27.248.79:2404", "tcp"] for line in result.stdout.splitlines())


def test_a_multicast_address_is_never_the_client_and_ipv6_ports_are_bracketed(tmp_path):
    db = tmp_path / "m.db"
    assert run_icsguard("analyze", "--db", db, public("ITI-ICS-Security-Tools/s7/wrapup.pcapng")).returncode == 0
    pairs = json.loads(run_icsguard("report", "--db", db, "--format", "json").stdout)["pairs"]
    udp = [p for p in pairs if p["proto"] == "udp"]
    assert udp and not any(p["client"].startswith(("ff0", "224.", "239.", "255.")) for p in udp)
    dhcpv6 = [p for p in udp if p["port"] == 547]
    assert dhcpv6 and all(p["server"] == "ff02::1:2" and p["client"].startswith("fe80:") for p in dhcpv6)
    shown = run_icsguard("report", "--db", db).stdout
    assert "[ff02::1:2]:547" in shown.split()


def test_only_it_traffic_shows_its_conversations(tmp_path):
    """An SMB session and a reverse shell's port: no industrial protocol, but who talked to whom."""
    frames = []
    for n, (sport, dport) in enumerate(((49200, 445), (49201, 4444))):
        syn = Ether() / IP(src="10.1.1.50", dst="10.1.1.20") / TCP(sport=sport, dport=dport, flags="S", seq=1000)
        ack = Ether() / IP(src="10.1.1.20", dst="10.1.1.50") / TCP(sport=dport, dport=sport, flags="SA", seq=5000,
                                                                   ack=1001)
        frames += [(1_800_000_000.0 + n, bytes(syn)), (1_800_000_000.1 + n, bytes(ack))]
    capture = write_pcap(tmp_path / "it.pcap", frames)
    result = run_icsguard("analyze", "--db", tmp_path / "it.db", capture)
    assert result.returncode == 0, result.stderr
    assert "no industrial protocol decoded" in result.stdout and "Not decoded" not in result.stdout
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["10.1.1.50", "10.1.1.20:445", "tcp", "1", "smb"] in rows
    assert ["10.1.1.50", "10.1.1.20:4444", "tcp", "1", "port_4444"] in rows
