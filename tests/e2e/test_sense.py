"""icsguard sense on one end of a veth pair between two network namespaces the test makes (never
any other network), icsguard replay of the project's captures into the other: what the sensor
stores is what analyze finds in the captures."""

from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
import subprocess
import time

import jsonschema
import pytest
from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether

from tests.support import PCAPS, capture_packets, rewrite, run_icsguard, stored_run, wait_for_run
from tests.support.eve_schema import ALERT
from tests.support.netns import icsguard_in, veth_pair

CAPTURES = [PCAPS / "s7_control.pcap", PCAPS / "modbus_diagnostics.pcap", PCAPS / "opcua_none_plaintext_password.pcap"]


@pytest.fixture
def tap():
    with veth_pair("igs"):
        yield


def _sensing(db, *options) -> subprocess.Popen:
    sensor = subprocess.Popen(icsguard_in("igs2", "sense", "--iface", "igs2a", "--db", db, *options),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_run(db, sensor)
    return sensor


def _alerts(db) -> set[tuple]:
    out = run_icsguard("alerts", "--db", db, "--format", "jsonl")
    assert out.returncode == 0, out.stderr
    return {(a["rule"], a["src"], a["dst"]) for a in map(json.loads, out.stdout.splitlines())}


def _replay_into_tap(*args, player: str = "icsguard") -> None:
    """Frames onto the tap's far end, by icsguard replay or by tcpreplay."""
    if player == "icsguard":
        command = icsguard_in("igs1", "replay", *args, "--iface", "igs1a")
    else:
        command = ["ip", "netns", "exec", "igs1", "tcpreplay", "-q", "-i", "igs1a", *map(str, args)]
    sent = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert sent.returncode == 0, sent.stderr


@pytest.mark.parametrize("player", ["icsguard", "tcpreplay"])
def test_the_sensor_stores_what_analyze_finds(tap, tmp_path, player):
    """The captures replayed at their own pace: the sensor reads every packet and stores the
    same alerts, functions, pairs and assets as analyze of the files."""
    sensor = _sensing(tmp_path / "sensor.db")
    for capture in CAPTURES:
        _replay_into_tap(capture, player=player)
    time.sleep(1.5)
    sensor.send_signal(signal.SIGTERM)
    stdout, stderr = sensor.communicate(timeout=60)
    assert sensor.returncode == 0, stderr
    assert stdout.strip().startswith(f"captured {capture_packets(*CAPTURES):,} packets, 0 dropped by the kernel, "
                                     "0 by icsguard")
    assert run_icsguard("analyze", "--db", tmp_path / "file.db", *CAPTURES).returncode == 0
    expected = stored_run(tmp_path / "file.db")
    assert expected["alerts"] and expected["pdus"] > 50
    assert stored_run(tmp_path / "sensor.db") == expected
    report = run_icsguard("report", "--db", tmp_path / "sensor.db")
    assert report.returncode == 0 and "interrupted" in report.stdout


def test_an_idle_tap_still_commits_stops_and_says_it_is_silent(tap, tmp_path):
    """Nothing on the wire: the run is committed every second all the same, the silence is a
    health alert, and SIGTERM stops it."""
    db = tmp_path / "idle.db"
    sensor = _sensing(db, "--silent-after", "1")
    time.sleep(3.0)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        started, updated = conn.execute("SELECT started, updated FROM runs").fetchone()
        silent = conn.execute("SELECT rule, src, title FROM alerts").fetchall()
    assert updated - started >= 1.0
    assert [(rule, src) for rule, src, _ in silent] == [("sensor.tap_silent", "iface igs2a")]
    sensor.send_signal(signal.SIGTERM)
    stdout, _ = sensor.communicate(timeout=30)
    assert sensor.returncode == 0 and stdout.startswith("captured 0 packets, 0 dropped by the kernel")


def test_a_burst_past_a_small_buffer_is_reported(tap, tmp_path):
    """A burst at top speed into a 1 MiB kernel buffer while the sensor is busy decoding: the
    kernel drops packets, and the sensor says so, as a health alert and in its last line."""
    db = tmp_path / "burst.db"
    sensor = _sensing(db, "--buffer-mb", "1")
    _replay_into_tap(*CAPTURES, "--topspeed", "--loop", "300")
    time.sleep(8)                                         # the drop counters are read every 5 s
    sensor.send_signal(signal.SIGTERM)
    stdout, stderr = sensor.communicate(timeout=120)
    assert sensor.returncode == 0, stderr
    dropped = int(stdout.split(" packets, ")[1].split(" dropped")[0].replace(",", ""))
    assert dropped > 0, stdout
    rules = {a[0] for a in _alerts(db)}
    assert "sensor.packets_dropped" in rules


def test_tcp_gaps_past_the_threshold_are_a_health_alert(tap, tmp_path):
    """Five requests cut out of a real Modbus capture, as from a SPAN port that loses packets:
    the sensor's gaps reach the threshold, and it says so in an alert and in its report."""
    kept, requests = [], 0
    for frame in rewrite.frames(PCAPS / "modbus_polling.pcap"):
        packet = Ether(frame.data)
        if TCP in packet and packet[TCP].dport == 502 and len(packet[TCP].payload):
            requests += 1
            if requests % 10 == 0 and requests <= 50:
                continue
        kept.append((frame.ts, frame.data))
    gappy = rewrite.write_pcap(tmp_path / "gappy.pcap", kept)
    db = tmp_path / "sensor.db"
    sensor = _sensing(db, "--gaps-per-minute", "3")
    _replay_into_tap(gappy, "--topspeed")
    time.sleep(6)                                         # the counters are checked every 5 s
    sensor.send_signal(signal.SIGTERM)
    assert sensor.wait(timeout=60) == 0
    alerts = [json.loads(line) for line in run_icsguard("alerts", "--db", db, "--format", "jsonl").stdout.splitlines()]
    assert [(a["rule"], a["detector"]) for a in alerts] == [("sensor.reassembly_gaps", "sensor")]
    assert "5 gaps in TCP streams" in alerts[0]["title"] and "60 bytes never seen" in alerts[0]["title"]
    report = run_icsguard("report", "--db", db)
    assert f"captured {len(kept):,} packets, 0 dropped by the kernel, 0 by icsguard; 5 gaps in TCP streams" \
        in " ".join(report.stdout.split())


def test_kill_9_loses_at_most_a_second(tap, tmp_path):
    """SIGKILL while traffic flows: the database holds the run as committed within the last
    second (status running: cut short), with the packets read up to then, and stays readable."""
    db = tmp_path / "killed.db"
    sensor = _sensing(db)
    player = subprocess.Popen(icsguard_in("igs1", "replay", PCAPS / "modbus_polling.pcap", "--iface", "igs1a",
                                          "--speed", "0.5", "--loop", "20"), stdout=subprocess.DEVNULL)
    time.sleep(4)
    sensor.kill()
    killed_at = time.time()
    sensor.wait(timeout=30)
    player.kill()
    player.wait(timeout=30)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        status, updated, packets = conn.execute("SELECT status, updated, packets FROM runs").fetchone()
    assert status == "running" and killed_at - updated <= 1.5 and packets > 100
    report = run_icsguard("report", "--db", db)
    assert report.returncode == 0 and "cut short" in report.stdout


def test_bad_interface_and_filter():
    bad = run_icsguard("sense", "--iface", "no-such-if0", "--db", "/dev/null/x.db")
    assert bad.returncode == 1 and bad.stderr.strip() == "icsguard: no-such-if0: no such interface"
    bad = run_icsguard("sense", "--iface", "lo", "--bpf", "tcp port nonsense")
    assert bad.returncode == 1 and bad.stderr.strip().startswith("icsguard: --bpf 'tcp port nonsense': ")


def test_eve_file_takes_alerts_as_raised_and_is_reopened_on_sighup(tap, tmp_path):
    """Alerts reach the EVE file within the second they are raised; after log rotation
    (the file moved away, SIGHUP) the next ones go to a new file, and none is lost."""
    eve, rotated = tmp_path / "eve.json", tmp_path / "eve.json.1"
    sensor = _sensing(tmp_path / "sensor.db", "--eve", str(eve))
    _replay_into_tap(PCAPS / "s7_control.pcap")
    time.sleep(2.0)
    first = [json.loads(line) for line in eve.read_text().splitlines()]
    assert "s7.plc_stop" in {r["alert"]["metadata"]["icsguard_rule"][0] for r in first}
    assert all(r["event_type"] == "alert" and r["src_ip"] == "127.0.0.10" for r in first)
    eve.rename(rotated)
    sensor.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    _replay_into_tap(PCAPS / "modbus_diagnostics.pcap")
    time.sleep(2.0)
    sensor.send_signal(signal.SIGTERM)
    assert sensor.wait(timeout=60) == 0
    second = [json.loads(line) for line in eve.read_text().splitlines()]
    assert {r["alert"]["metadata"]["icsguard_rule"][0] for r in second} >= {"modbus.restart_communications"}
    assert rotated.read_text().splitlines() == [json.dumps(r) for r in first]       # nothing after the rotation
    for record in first + second:
        jsonschema.validate(record, ALERT)
    stored = _alerts(tmp_path / "sensor.db")
    assert len(stored) == len(first) + len(second)


def test_evidence_dir_keeps_each_alerts_packets(tap, tmp_path):
    """A sensor with --evidence-dir: each new alert's packets (its connection from the ring, then
    the frames that follow) in a pcapng that tshark reads, its SHA-256 kept with the alert."""
    db, folder = tmp_path / "sensor.db", tmp_path / "evidence"
    sensor = _sensing(db, "--evidence-dir", str(folder))
    _replay_into_tap(PCAPS / "s7_control.pcap")
    time.sleep(7.0)                                   # the five seconds an alert waits for what follows
    sensor.send_signal(signal.SIGTERM)
    assert sensor.wait(timeout=60) == 0, sensor.stderr.read()
    with sqlite3.connect(db) as conn:
        stop = conn.execute("SELECT id FROM alerts WHERE rule = 's7.plc_stop'").fetchone()[0]
        written = dict(conn.execute("SELECT alert_id, sha256 FROM evidence_captures").fetchall())
        alerts = conn.execute("SELECT COUNT(*) FROM alerts").fetchone()[0]
    assert len(written) == alerts and stop in written
    path = folder / f"alert-{stop}.pcapng"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == written[stop]
    jobs = subprocess.run(["tshark", "-r", str(path), "-Y", "s7comm.param.func == 0x29", "-T", "fields",
                           "-e", "frame.comment"], capture_output=True, text=True, check=True).stdout.split("\n")
    assert any(": evidence" in comment for comment in jobs)          # the STOP job, marked as evidence
    handshake = subprocess.run(["tshark", "-r", str(path), "-Y", "tcp.flags.syn == 1"], capture_output=True,
                               text=True, check=True).stdout
    assert handshake.strip()
