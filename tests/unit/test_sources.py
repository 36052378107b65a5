"""Capture files: formats, compression, link types, merging."""

from __future__ import annotations

import gzip

import pytest

from icsguard.capture.files import read_captures
from tests.support import PCAPS, decoded, public
from tests.support.rewrite import frames, null_header, relink, sll_header, vlan_frames, write_pcap

POLLING = PCAPS / "modbus_polling.pcap"


def _modbus_view(events):
    return [(e["direction"], e["transaction_id"], e["function"], e.get("address"), e.get("values"))
            for e in events]


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

