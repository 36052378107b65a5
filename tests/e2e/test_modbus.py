"""pymodbus server and client on loopback, recorded with tcpdump: does icsguard decode what they said?"""

from __future__ import annotations

import json

import pytest

from tests.support import decoded, run_icsguard
from tests.support.modbus_transcripts import discrepancies


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One live session per scenario, on 502 and on a port nobody assigned to Modbus."""
    from tests.support import peers
    out = tmp_path_factory.mktemp("live")
    runs = {}
    for name, scenario, port in (("writes", peers.writes, 502), ("exceptions", peers.exceptions, 502),
                                 ("diagnostics", peers.diagnostics, 502),
                                 ("identification", peers.device_identification, 502),
                                 ("polling_any_port", peers.normal_polling, 0)):
        path = out / f"{name}.pcap"
        kwargs = {"cycles": 5} if scenario is peers.normal_polling else {}
        runs[name] = (path, peers.capture(path, scenario, port=port, **kwargs))
    return runs


@pytest.mark.parametrize("name", ["writes", "exceptions", "diagnostics", "identification", "polling_any_port"])
def test_live_pymodbus_session_is_decoded_exactly(live, name):
    path, transcript = live[name]
    result = run_icsguard("decode", path)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(events) == 2 * len(transcript)
    assert discrepancies(transcript, events) == []
    assert all(e["capture"] == path.name and e["frame"] >= 1 for e in events)


def test_exceptions_scenario_really_has_exceptions(live):
    _, transcript = live["exceptions"]
    codes = {t["exception_code"] for t in transcript}
    assert {1, 2}.issubset(codes)


def test_modbus_on_an_unassigned_port_is_recognised_by_content(live):
    path, transcript = live["polling_any_port"]
    events = decoded(path)
    assert events[0]["dport"] != 502
    assert len(events) == 2 * len(transcript)

