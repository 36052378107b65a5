"""Capture files: formats, compression, link types, merging."""

from __future__ import annotations

import gzip
import shutil
import subprocess

import pytest

from conftest import PCAPS, decoded, public
from icsguard.capture.files import CaptureError, read_capture, read_captures
from rewrite import frames, null_header, relink, sll_header, vlan_frames, write_pcap

POLLING = PCAPS / "modbus_polling.pcap"


def _modbus_view(events):
    return [(e["direction"], e["transaction_id"], e["function"], e.get("address"), e.get("values"))
            for e in events]


def test_pcap_frames_are_numbered_like_wireshark():
    got = frames(POLLING)
    assert [f.number for f in got] == list(range(1, len(got) + 1))
    tshark = subprocess.run(["tshark", "-r", str(POLLING), "-T", "fields", "-e", "frame.time_epoch"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert len(tshark) == len(got)
    assert all(abs(float(t) - f.ts) < 1e-6 for t, f in zip(tshark, got))


@pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap (tshark) is not installed")
def test_pcapng_and_nanosecond_pcap_read_the_same_frames(tmp_path):
    original = frames(POLLING)
    for fmt, extra in (("pcapng", []), ("nsecpcap", [])):
        out = tmp_path / f"copy.{fmt}"
        subprocess.run(["editcap", "-F", fmt, *extra, str(POLLING), str(out)], check=True)
        copy = frames(out)
        assert [f.data for f in copy] == [f.data for f in original]
        assert all(abs(a.ts - b.ts) < 1e-6 for a, b in zip(copy, original))


def test_gzip_capture_decodes_like_the_plain_one(tmp_path):
    packed = tmp_path / "polling.pcap.gz"
    packed.write_bytes(gzip.compress(POLLING.read_bytes()))
    assert decoded(packed) and _modbus_view(decoded(packed)) == _modbus_view(decoded(POLLING))


def test_public_pcapng_is_read():
    path = public("pcap-share/modbus.pcapng")
    events = decoded(path)
    assert len(events) == 12790
    assert {e["function"] for e in events} == {"write_single_coil"}


@pytest.mark.parametrize("link_type,header", [(113, sll_header), (0, null_header), (101, None)])
def test_other_link_types_carry_the_same_modbus(tmp_path, link_type, header):
    original = frames(POLLING)
    packets = relink(original, link_type, header) if header else [(f.ts, f.data[14:]) for f in original]
    path = write_pcap(tmp_path / f"link{link_type}.pcap", packets, link_type)
    assert _modbus_view(decoded(path)) == _modbus_view(decoded(POLLING))


def test_linux_cooked_v2_capture_from_tcpdump_any():
    events = decoded(PCAPS / "modbus_sll2.pcap")
    assert frames(PCAPS / "modbus_sll2.pcap")[0].link_type == 276
    assert events and all(e["proto"] == "modbus" for e in events)


@pytest.mark.parametrize("tags", [[(0x8100, 10)], [(0x88A8, 100), (0x8100, 10)]], ids=["802.1Q", "QinQ"])
def test_vlan_tagged_frames(tmp_path, tags):
    path = write_pcap(tmp_path / "vlan.pcap", vlan_frames(frames(POLLING), tags))
    assert _modbus_view(decoded(path)) == _modbus_view(decoded(POLLING))


def test_several_captures_merge_in_time_order(tmp_path):
    original = frames(POLLING)
    half = len(original) // 2
    first = write_pcap(tmp_path / "a.pcap", [(f.ts, f.data) for f in original[::2]])
    second = write_pcap(tmp_path / "b.pcap", [(f.ts, f.data) for f in original[1::2]])
    merged = list(read_captures([str(second), str(first)]))
    assert [f.ts for f in merged] == sorted(f.ts for f in original)
    assert len(merged) == len(original) and half > 0
    assert {f.capture for f in merged} == {"a.pcap", "b.pcap"}


def test_empty_and_foreign_files_raise_one_line_errors(tmp_path):
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    text = tmp_path / "notes.pcap"
    text.write_text("this is not a capture\n")
    with pytest.raises(CaptureError, match="empty"):
        list(read_capture(str(empty)))
    with pytest.raises(CaptureError, match="not a pcap or pcapng"):
        list(read_capture(str(text)))


def test_truncated_capture_yields_everything_before_the_cut(tmp_path):
    data = POLLING.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:len(data) - 10])
    got = []
    with pytest.raises(CaptureError, match="truncated in the middle of packet"):
        for frame in read_capture(str(cut)):
            got.append(frame)
    assert len(got) == len(frames(POLLING)) - 1
