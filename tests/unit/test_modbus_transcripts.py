"""The committed Modbus captures decode to the transcripts their real peers wrote."""

from __future__ import annotations

import json

import pytest

from tests.support import PCAPS, decoded
from tests.support.modbus_transcripts import discrepancies


@pytest.mark.parametrize("name", ["polling", "writes", "exceptions", "diagnostics", "port5020", "sll2"])
def test_committed_captures_decode_to_their_transcripts(name):
    recorded = json.loads((PCAPS / f"modbus_{name}.json").read_text())
    events = decoded(PCAPS / f"modbus_{name}.pcap")
    assert len(recorded["transcript"]) > 5
    assert discrepancies(recorded["transcript"], events) == []

