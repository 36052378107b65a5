"""Bad input: one clear line on stderr and a non-zero exit, or a counted malformed PDU — never a traceback."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import struct
import subprocess
import sys

import pytest

from tests.support import PCAPS, public, run_icsguard
from tests.support.rewrite import cut, streams, write_conversation, write_pcap

POLLING = PCAPS / "modbus_polling.pcap"


def _one_line_error(result, *phrases):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("icsguard: ")
    for phrase in phrases:
        assert phrase in lines[0]


@pytest.mark.parametrize("command", ["decode", "analyze"])
def test_empty_file(tmp_path, command):
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    _one_line_error(run_icsguard(command, empty, cwd=tmp_path), "empty.pcap", "empty")


@pytest.mark.parametrize("command", ["decode", "analyze"])
def test_text_file(tmp_path, command):
    text = tmp_path / "readme.txt"
    text.write_text("Modbus is a serial protocol from 1979.\n" * 20)
    _one_line_error(run_icsguard(command, text, cwd=tmp_path), "readme.txt", "not a pcap or pcapng")


def test_missing_file_and_directory(tmp_path):
    _one_line_error(run_icsguard("decode", tmp_path / "nope.pcap"), "no such file")
    _one_line_error(run_icsguard("decode", tmp_path), "is a directory")


def test_truncated_capture_keeps_what_came_before(tmp_path):
    data = POLLING.read_bytes()
    cut_file = tmp_path / "cut.pcap"
    cut_file.write_bytes(data[:len(data) * 2 // 3])
    result = run_icsguard("decode", cut_file)
    _one_line_error(result, "cut.pcap", "truncated in the middle of packet")
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(events) > 200                    # everything before the cut was decoded

    analyzed = run_icsguard("analyze", "--db", tmp_path / "t.db", cut_file)
    _one_line_error(analyzed, "truncated")
    with sqlite3.connect(tmp_path / "t.db") as db:
        packets, error = db.execute("SELECT packets, error FROM runs").fetchone()
        requests = db.execute("SELECT sum(requests) FROM communications").fetchone()[0]
    assert packets > 300 and "truncated" in error and requests > 100


def test_unsupported_link_type(tmp_path):
    path = write_pcap(tmp_path / "usb.pcap", [(1.0, b"\x00" * 64)], link_type=189)
    _one_line_error(run_icsguard("decode", path), "link type 189 is not supported")


def test_non_modbus_bytes_on_port_502_are_flagged_not_decoded(tmp_path):
    client, server, payloads = streams(POLLING)
    http = [(True, b"GET / HTTP/1.1\r\nHost: plc\r\n\r\n"), (False, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")] * 5
    path = write_conversation(tmp_path / "http502.pcap", client, server, cut(http, 1000))
    result = run_icsguard("decode", path)
    assert result.returncode == 0 and result.stderr == ""
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(events) == 1
    assert events[0]["function"] == "malformed"
    assert events[0]["malformed"] == "payload on port 502 is not modbus"
    assert events[0]["dport"] == 502 and events[0]["frame"] == 4     # the first payload packet

    report = run_icsguard("analyze", "--db", tmp_path / "h.db", path)
    assert report.returncode == 0
    assert "modbus.wrong_protocol_on_port" in report.stdout


def test_public_capture_with_other_protocols_on_502():
    path = public("zeek/traces/modbus/modbus-and-non-modbus-p502.pcap")
    result = run_icsguard("decode", path)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    flagged = [e for e in events if e["function"] == "malformed"]
    assert len([e for e in events if e["proto"] == "modbus" and e["function"] != "malformed"]) == 12
    assert len(flagged) == 5
    assert {e["dport"] for e in flagged} == {502}
    # a scanner's COTP connection request on 502 is recognised for what it is
    assert [(e["proto"], e["function"], e["dport"]) for e in events if e["proto"] == "cotp"] == \
        [("cotp", "connection_request", 502)]


def test_lying_mbap_lengths_are_counted_and_the_stream_recovers(tmp_path):
    client, server, payloads = streams(POLLING)
    broken = list(payloads)
    for i in (10, 40):                              # two requests claim to be 300 bytes long
        from_client, data = broken[i]
        broken[i] = (from_client, data[:4] + struct.pack("!H", 300) + data[6:])
    path = write_conversation(tmp_path / "lying.pcap", client, server, cut(broken, 10_000))
    result = run_icsguard("decode", path)
    assert result.returncode == 0
    events = [json.loads(line) for line in result.stdout.splitlines()]
    malformed = [e for e in events if e["function"] == "malformed"]
    assert [e["malformed"] for e in malformed] == ["MBAP length 300 is outside 2..254"] * 2
    assert len(events) - len(malformed) == len(payloads) - 2


def test_byte_counts_that_lie_are_flagged(tmp_path):
    client, server, payloads = streams(POLLING)
    from_client, data = payloads[1]                 # a read holding registers response
    assert not from_client and data[7] == 3
    payloads[1] = (False, data[:8] + bytes([data[8] + 4]) + data[9:])
    path = write_conversation(tmp_path / "count.pcap", client, server, cut(payloads[:4], 10_000))
    events = [json.loads(line) for line in run_icsguard("decode", path).stdout.splitlines()]
    assert "fields describe" in events[1]["malformed"]
    assert "malformed" not in events[2]


def test_database_that_is_not_ours(tmp_path):
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE t (x)")
    _one_line_error(run_icsguard("analyze", "--db", foreign, POLLING), "did not create")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not sqlite at all" * 100)
    _one_line_error(run_icsguard("analyze", "--db", garbage, POLLING), "not a usable icsguard database")
    _one_line_error(run_icsguard("report", "--db", tmp_path / "none.db"), "no such database")


def test_unknown_protocol_filter():
    _one_line_error(run_icsguard("decode", "--proto", "dnp3", POLLING), "unknown protocol 'dnp3'")


@pytest.fixture
def read_only(tmp_path):
    """A folder holding an analysed database, mounted read-only (as a forensic copy on
    write-protected media is: root can write to a file whose mode says read-only)."""
    source, mount = tmp_path / "source", tmp_path / "ro"
    source.mkdir()
    mount.mkdir()
    assert run_icsguard("analyze", "--db", source / "case.db", PCAPS / "modbus_diagnostics.pcap").returncode == 0
    done = subprocess.run(f"mount --bind {source} {mount} && mount -o remount,ro,bind {mount}", shell=True)
    assert done.returncode == 0, "a read-only bind mount is needed (tests run as root)"
    yield mount / "case.db"
    subprocess.run(["umount", str(mount)], check=True)


def test_read_only_database(read_only):
    """Commands that read work on a write-protected copy and change nothing; commands that
    write say in one line why they cannot."""
    before = read_only.read_bytes()
    report = run_icsguard("report", "--db", read_only)
    assert report.returncode == 0 and "modbus.restart_communications" in report.stdout
    listed = run_icsguard("alerts", "--db", read_only, "--format", "jsonl")
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 3
    assert run_icsguard("assets", "--db", read_only, "--format", "jsonl").stdout.count("127.0.0.") == 2
    _one_line_error(run_icsguard("analyze", "--db", read_only, POLLING), "read-only")
    _one_line_error(run_icsguard("alerts", "--db", read_only, "ack", "1"), "read-only")
    _one_line_error(run_icsguard("alerts", "--db", read_only, "mute", "modbus.clear_counters"), "read-only")
    assert read_only.read_bytes() == before


def test_captures_from_standard_input_and_pipes(tmp_path):
    """- reads standard input; a FIFO is read as a stream (no seeking back), gzip'd or not."""
    expected = run_icsguard("decode", POLLING).stdout.replace('"capture":"modbus_polling.pcap"', '"capture":"stdin"')
    piped = subprocess.run([sys.executable, "-m", "icsguard", "decode", "-"], input=POLLING.read_bytes(),
                           capture_output=True, timeout=120)
    assert piped.returncode == 0 and piped.stdout.decode() == expected and expected.count("\n") == 500
    fifo = tmp_path / "tap"
    os.mkfifo(fifo)
    writer = subprocess.Popen(f"gzip -c {POLLING} > {fifo}", shell=True)
    analysed = run_icsguard("analyze", "--db", tmp_path / "pipe.db", fifo)
    writer.wait(timeout=60)
    assert analysed.returncode == 0 and "500 decoded" in analysed.stdout
    _one_line_error(run_icsguard("decode", "-", "-"), "standard input")


def test_report_output_that_cannot_be_written(tmp_path):
    db = tmp_path / "x.db"
    assert run_icsguard("analyze", "--db", db, POLLING).returncode == 0
    _one_line_error(run_icsguard("report", "--db", db, "--output", tmp_path / "nowhere" / "r.md", "--format", "md"),
                    "does not exist")
    _one_line_error(run_icsguard("report", "--db", db, "--output", tmp_path), "is a folder")


def test_damaged_schema(tmp_path):
    db = tmp_path / "x.db"
    assert run_icsguard("analyze", "--db", db, POLLING).returncode == 0
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE alerts")
    for command in (["report"], ["alerts"], ["assets"], ["analyze", POLLING]):
        _one_line_error(run_icsguard(*command[:1], "--db", db, *command[1:]), "damaged", "alerts")


def test_model_files_that_unpack_too_big_or_nest_too_deep(tmp_path):
    """Refused before their contents are held: a 1 MB gzip of 1 GiB, JSON 200,000 levels deep."""
    bomb = tmp_path / "bomb.model"
    with gzip.open(bomb, "wb", compresslevel=9) as out:
        for _ in range(1024):
            out.write(b" " * (1 << 20))
    deep = tmp_path / "deep.model"
    with gzip.open(deep, "wt") as out:
        out.write("[" * 200_000 + "]" * 200_000)
    _one_line_error(run_icsguard("model", "show", bomb), "unpacks to more than")
    _one_line_error(run_icsguard("analyze", "--db", tmp_path / "x.db", "--model", deep, POLLING), "nested too deep")


def test_markdown_report_escapes_what_came_from_outside(tmp_path):
    """A capture named like HTML: the Markdown report shows the name, never the markup."""
    hostile = tmp_path / "<img src=x onerror=alert(1)>.pcap"
    hostile.write_bytes(POLLING.read_bytes())
    db = tmp_path / "x.db"
    assert run_icsguard("analyze", "--db", db, hostile).returncode == 0
    text = run_icsguard("report", "--db", db, "--format", "md").stdout
    assert "&lt;img src=x onerror=alert(1)&gt;.pcap" in text and "<img" not in text


def test_read_only_copy_of_a_database_still_in_its_write_ahead_log(tmp_path):
    """A copy of a running sensor's database: the recent results are only in its -wal file.
    On write-protected media they are read all the same."""
    from icsguard import analysis
    from icsguard.detect.rules import load_rules
    from icsguard.output.store import Store
    source, mount = tmp_path / "source", tmp_path / "ro"
    source.mkdir()
    mount.mkdir()
    live = Store(str(tmp_path / "live.db"))            # held open: nothing is checkpointed
    analysis.analyze([str(PCAPS / "modbus_diagnostics.pcap")], live, None, load_rules(), None)
    wal = tmp_path / "live.db-wal"
    assert wal.stat().st_size > 0
    (source / "case.db").write_bytes((tmp_path / "live.db").read_bytes())
    (source / "case.db-wal").write_bytes(wal.read_bytes())
    live.close()
    assert subprocess.run(f"mount --bind {source} {mount} && mount -o remount,ro,bind {mount}", shell=True).returncode == 0
    try:
        listed = run_icsguard("alerts", "--db", mount / "case.db", "--format", "jsonl")
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 3
