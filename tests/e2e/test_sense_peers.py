"""Real peers (pymodbus, python-snap7, asyncua) talking inside a network namespace the test
makes, while icsguard sense listens on its loopback and tcpdump records the same traffic:
what the sensor stores is what analyze finds in the recording."""

from __future__ import annotations

import signal
import subprocess

from tests.support import REPO, capture_packets, run_icsguard, stored_run, wait_for_run
from tests.support.netns import icsguard_in, namespace, python_in

# (harness module in tests.support, scenario): writes, diagnostics, a CPU stop, block
# transfers, a password in clear and failed logins, over the three protocols
SCENARIOS = [("peers", "writes"), ("peers", "diagnostics"), ("s7_peers", "control"), ("s7_peers", "blocks"),
             ("opcua_peers", "none_plaintext_password"), ("opcua_peers", "failed_login")]
NS = "igp"


def test_live_peers_are_stored_as_analyze_finds_their_recording(tmp_path):
    db = tmp_path / "sensor.db"
    recordings = [tmp_path / f"{module}-{scenario}.pcap" for module, scenario in SCENARIOS]
    with namespace(NS):
        sensor = subprocess.Popen(icsguard_in(NS, "sense", "--iface", "lo", "--db", db),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for_run(db, sensor)
        for (module, scenario), path in zip(SCENARIOS, recordings):
            code = f"from tests.support import {module} as m; m.capture({str(path)!r}, m.{scenario})"
            done = subprocess.run(python_in(NS, "-c", code), cwd=REPO, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr
        sensor.send_signal(signal.SIGTERM)
        stdout, stderr = sensor.communicate(timeout=60)
    assert sensor.returncode == 0, stderr
    assert stdout.startswith(f"captured {capture_packets(*recordings):,} packets, 0 dropped by the kernel, 0 by icsguard")
    assert run_icsguard("analyze", "--db", tmp_path / "file.db", *recordings).returncode == 0
    live, offline = stored_run(db), stored_run(tmp_path / "file.db")
    assert offline["pdus"] > 100 and {"s7.plc_stop", "opcua.password_in_clear", "modbus.restart_communications"} \
        <= {a[0] for a in offline["alerts"]}
    assert live == offline
