"""Capture files written by tcpdump, and broken ones given to the command line."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from icsguard.capture.files import CaptureError, read_capture
from tests.support import PCAPS, decoded
from tests.support.rewrite import frames

POLLING = PCAPS / "modbus_polling.pcap"


@pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap (tshark) is not installed")
def test_pcapng_and_nanosecond_pcap_read_the_same_frames(tmp_path):
    original = frames(POLLING)
    for fmt, extra in (("pcapng", []), ("nsecpcap", [])):
        out = tmp_path / f"copy.{fmt}"
        subprocess.run(["editcap", "-F", fmt, *extra, str(POLLING), str(out)], check=True)
        copy = frames(out)
        assert [f.data for f in copy] == [f.data for f in original]
        assert all(abs(a.ts - b.ts) < 1e-6 for a, b in zip(copy, original))


def test_linux_cooked_v2_capture_from_tcpdump_any():
    events = decoded(PCAPS / "modbus_sll2.pcap")
    assert frames(PCAPS / "modbus_sll2.pcap")[0].link_type == 276
    assert events and all(e["proto"] == "modbus" for e in events)


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

