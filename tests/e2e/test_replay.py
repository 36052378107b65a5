"""icsguard replay onto a veth pair between two network namespaces the test makes (never any
other network): what tcpdump records on the far end decodes as the original does."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.support import PCAPS, decoded, run_icsguard
from tests.support.netns import icsguard_in, sh, veth_pair

POLLING = PCAPS / "modbus_polling.pcap"


@pytest.fixture
def wire():
    with veth_pair("igr"):
        yield


def _replay(*args) -> subprocess.CompletedProcess:
    return subprocess.run(icsguard_in("igr1", "replay", *args, "--iface", "igr1a"), capture_output=True, text=True,
                          timeout=120)


def _view(events: list[dict]) -> list[tuple]:
    drop = {"ts", "capture", "frame"}
    return [tuple(sorted((k, str(v)) for k, v in e.items() if k not in drop)) for e in events]


def test_replayed_frames_decode_as_the_capture_does(wire, tmp_path):
    recorded = tmp_path / "far.pcap"
    tcpdump = subprocess.Popen(["ip", "netns", "exec", "igr2", "tcpdump", "-i", "igr2a", "--immediate-mode", "-U",
                                "-w", str(recorded)], stderr=subprocess.PIPE)
    time.sleep(1.0)                                       # tcpdump listening
    sent = _replay(POLLING)                               # at its own pace: top speed may outrun tcpdump
    time.sleep(1.0)
    tcpdump.terminate()
    tcpdump.wait(timeout=30)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("sent 508 packets (41,144 bytes) in ") and "onto igr1a" in sent.stdout
    original = decoded(POLLING)
    assert len(original) == 500 and _view(decoded(recorded)) == _view(original)


def test_paced_by_the_captured_times(wire):
    """The capture spans 1.1 s: at twice the speed the replay takes about half of that."""
    sent = _replay(POLLING, "--speed", "2")
    seconds = float(sent.stdout.split(" in ")[1].split(" s ")[0])
    assert sent.returncode == 0 and 0.5 <= seconds < 1.5


def test_an_interface_with_an_address_is_refused(wire):
    sh("ip -n igr1 addr add 192.0.2.1/24 dev igr1a")
    refused = _replay(POLLING)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        "icsguard: igr1a carries 192.0.2.1: replaying onto a live network could drive real devices; "
        "use an interface without addresses, or --force"]
    assert _replay(POLLING, "--topspeed", "--force").returncode == 0


def test_no_such_interface():
    done = run_icsguard("replay", POLLING, "--iface", "no-such-if0")
    assert done.returncode == 1 and done.stderr.strip() == "icsguard: no-such-if0: no such interface"


def test_frames_longer_than_the_mtu_are_skipped_and_counted(wire):
    """A capture made where the MTU is larger (loopback, or a NIC with offloading) onto an
    Ethernet MTU: the long frames cannot go, and the replay says how many did not."""
    sh("ip -n igr1 link set igr1a mtu 1500")
    sent = _replay(PCAPS / "opcua_sign.pcap", "--topspeed")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("sent 20 packets (")
    assert sent.stdout.strip().endswith("; 3 frames longer than the MTU of igr1a skipped")
