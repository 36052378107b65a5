"""OPC UA service bodies recorded live: what asyncua's client did, as icsguard saw it on the wire."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from tests.support import PCAPS, decoded, public, run_icsguard
from tests.support.opcua_transcripts import SCENARIOS, transcript_problems


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from tests.support import opcua_peers
    out = tmp_path_factory.mktemp("live_opcua")
    runs = {}
    for name in SCENARIOS:
        path = out / f"{name}.pcap"
        runs[name] = (path, opcua_peers.capture(path, getattr(opcua_peers, name)))
    return runs


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
@pytest.mark.parametrize("name", SCENARIOS)
def test_live_asyncua_session_is_decoded_exactly(live, name):
    path, transcript = live[name]
    events = decoded(path)
    assert len(events) > 10
    assert transcript_problems(transcript, events) == []
    output = "\n".join(json.dumps(e) for e in events)
    secrets = {t["password"] for t in transcript if t.get("password")}
    assert not [s for s in secrets if s in output or s.encode().hex() in output]


def _strings(value):
    """Every string inside a decoded event, however deep."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@pytest.mark.parametrize("name, user, secret", [
    ("opcua_none_plaintext_password.pcap", "operator", "Secret-Passw0rd"),
    # open62541 clients logging in as user1 with the password "password"
    ("Malcolm-Test-Artifacts/OPCUA-Binary.pcap", "user1", "password"),
    ("icsnpp-opcua-binary/traces/open62541_client-server_mainloop.pcap", "user1", "password"),
])
def test_clear_text_passwords_are_seen_but_never_kept(name, user, secret, tmp_path):
    """The secret is looked for as a value (in every event, every stored cell and the JSON
    inside cells), as hex, and — where it is not an ordinary word that rule titles use,
    as open62541's "password" is — anywhere in the output and the database file."""
    capture = PCAPS / name if name.startswith("opcua_") else public(name)
    events = decoded(capture)
    logins = [e for e in events if e["function"] == "ActivateSessionRequest" and e.get("identity_token") == "username"]
    assert logins and all(e["user_name"] == user and e["password_in_clear"] is True for e in logins)
    secret_hex = secret.encode().hex()
    distinctive = not secret.isalpha()

    def leaks(text: str) -> bool:
        return text == secret or secret_hex in text or (distinctive and secret in text)

    assert not [s for e in events for s in _strings(e) if leaks(s)]
    database = tmp_path / "icsguard.db"
    result = run_icsguard("analyze", capture, "--db", database)
    assert result.returncode == 0, result.stderr
    assert secret_hex not in result.stdout and not (distinctive and secret in result.stdout)
    with sqlite3.connect(database) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        cells = [cell for table in tables for row in db.execute(f"SELECT * FROM [{table}]") for cell in row
                 if isinstance(cell, str)]
    assert any(user in cell for cell in cells)               # the login was seen and stored
    values = [s for cell in cells for s in _strings(_json_or_text(cell))]
    assert not [v for v in values if leaks(v)]
    assert not (distinctive and secret.encode() in database.read_bytes())


def _json_or_text(cell: str):
    try:
        return json.loads(cell)
    except ValueError:
        return cell

