"""Capture files: frames numbered as Wireshark numbers them."""

from __future__ import annotations

import subprocess

from tests.support import PCAPS
from tests.support.rewrite import frames

POLLING = PCAPS / "modbus_polling.pcap"



def test_pcap_frames_are_numbered_like_wireshark():
    got = frames(POLLING)
    assert [f.number for f in got] == list(range(1, len(got) + 1))
    tshark = subprocess.run(["tshark", "-r", str(POLLING), "-T", "fields", "-e", "frame.time_epoch"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert len(tshark) == len(got)
    assert all(abs(float(t) - f.ts) < 1e-6 for t, f in zip(tshark, got))

