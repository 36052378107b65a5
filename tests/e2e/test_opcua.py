"""OPC UA from the command line: what `decode` prints never holds a password."""

from __future__ import annotations

import json

from tests.support import PCAPS, run_icsguard

OWN = sorted(PCAPS.glob("opcua_*.pcap"))


def test_no_password_in_output():
    """Every committed OPC UA capture decodes, and the server's password is in no output."""
    assert OWN
    for path in OWN:
        password = json.loads(path.with_suffix(".json").read_text())["server"]["password"]
        done = run_icsguard("decode", path)
        assert done.returncode == 0, done.stderr
        assert len(done.stdout.splitlines()) >= 10, path
        assert password and password not in done.stdout + done.stderr

