"""python-snap7 server and client on loopback, recorded with tcpdump: does icsguard decode what they did?"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.support import PCAPS, run_icsguard
from tests.support.s7_transcripts import SCENARIOS, _all_problems


def test_password_never_appears_in_output():
    recorded = json.loads((PCAPS / "s7_control.json").read_text())
    password = next(t["password"] for t in recorded["transcript"] if t["call"] == "set_session_password")
    output = run_icsguard("decode", PCAPS / "s7_control.pcap").stdout
    assert "plc_password" in output and password not in output and password.encode().hex() not in output


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from tests.support import s7_peers
    out = tmp_path_factory.mktemp("live_s7")
    runs = {}
    for name, scenario in (("reads_writes", s7_peers.reads_and_writes), ("identification", s7_peers.identification),
                           ("blocks", s7_peers.blocks), ("control", s7_peers.control)):
        path = out / f"{name}.pcap"
        runs[name] = (path, s7_peers.capture(path, scenario))
    return runs


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
@pytest.mark.parametrize("name", SCENARIOS)
def test_live_snap7_session_is_decoded_exactly(live, name):
    path, transcript = live[name]
    result = run_icsguard("decode", path)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert _all_problems(transcript, events) == []

