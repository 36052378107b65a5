"""The committed S7 captures decode to the transcripts their real peers wrote."""

from __future__ import annotations

import json

import pytest

from tests.support import PCAPS, decoded
from tests.support.s7_transcripts import SCENARIOS, _all_problems


@pytest.mark.parametrize("name", SCENARIOS)
def test_committed_s7_captures_decode_to_their_transcripts(name):
    recorded = json.loads((PCAPS / f"s7_{name}.json").read_text())
    assert _all_problems(recorded["transcript"], decoded(PCAPS / f"s7_{name}.pcap")) == []

