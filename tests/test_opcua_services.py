"""OPC UA service bodies: what asyncua's client did, as icsguard saw it on the wire."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from conftest import PCAPS, decoded, public, run_icsguard

SCENARIOS = ("none_anonymous", "none_username", "none_plaintext_password", "failed_login", "sign",
             "sign_and_encrypt")
# transcript action -> the request that carries it
REQUESTS = {"browse": "BrowseRequest", "read": "ReadRequest", "write": "WriteRequest", "call": "CallRequest",
            "subscribe": "CreateSubscriptionRequest", "monitor": "CreateMonitoredItemsRequest"}


def _answer(events, request):
    """The response to a request: same connection, same request id, the other way."""
    return next((e for e in events if e["flow"] == request["flow"] and e["direction"] == "response"
                 and e.get("request_id") == request["request_id"] and e["message_type"] == "MSG"), {})


def _connect_problems(connect, events):
    problems = []
    client = [e for e in events if e["sport"] == connect["client_port"] and e["src"] == connect["client_host"]]
    flow = client[0]["flow"] if client else None
    mine = [e for e in events if e["flow"] == flow]
    hello = next((e for e in mine if e["message_type"] == "HEL"), {})
    if hello.get("endpoint_url") != connect["endpoint_url"]:
        problems.append(f"connect: hello endpoint {hello.get('endpoint_url')}")
    policies = {e.get("security_policy") for e in mine if e["message_type"] == "OPN"}
    if policies != {connect["security_policy_uri"]}:
        problems.append(f"connect: policies {policies}")
    modes = {e.get("security_mode") for e in mine if e["message_type"] == "MSG"}
    if modes != {connect["security_mode"]}:
        problems.append(f"connect: modes {modes}")
    if connect["security_mode"] == "SignAndEncrypt":
        if [e for e in mine if e.get("service")]:
            problems.append("connect: a service was read through encryption")
        return problems
    activate = next((e for e in mine if e["function"] == "ActivateSessionRequest"), {})
    if (activate.get("identity_token"), activate.get("user_name")) != (connect["token_type"], connect["username"]):
        problems.append(f"connect: identity {activate.get('identity_token')}/{activate.get('user_name')}")
    answer = _answer(mine, activate) if activate else {}
    if connect["error"]:
        status = connect["error"].split(":")[0]
        if (answer.get("function"), answer.get("status_name"), answer.get("request_service")) != \
                ("ServiceFault", status, "ActivateSessionRequest"):
            problems.append(f"connect: refusal {answer.get('function')} {answer.get('status_name')}")
        if answer.get("user_name") != connect["username"]:
            problems.append("connect: the refusal does not name the user")
    elif answer.get("status_name") != "Good":
        problems.append(f"connect: activation answered {answer.get('status_name')}")
    session = next((e for e in mine if e["function"] == "CreateSessionRequest"), {})
    if session.get("endpoint_url") != connect["endpoint_url"]:
        problems.append(f"connect: session endpoint {session.get('endpoint_url')}")
    return problems


def _action_problems(t, request, events):
    """One client action against the request that carried it and the response to it."""
    action, node = t["action"], t["node_id"]
    response = _answer(events, request)
    where = f"{action} {node} (frame {request['frame']})"
    problems = []
    if action in ("browse", "read", "write", "monitor") and request.get("node_ids") != [node]:
        problems.append(f"{where}: node ids {request.get('node_ids')}")
    if action in ("read", "write") and response.get("node_ids") != [node]:
        problems.append(f"{where}: the response names {response.get('node_ids')}")
    if action == "browse" and response.get("targets") != t["value"]:
        problems.append(f"{where}: targets {response.get('targets')}")
    if action == "read" and response.get("values") != [t["value"]]:
        problems.append(f"{where}: read {response.get('values')}")
    if action == "write" and (request.get("values"), response.get("results")) != ([t["value"]], ["Good"]):
        problems.append(f"{where}: wrote {request.get('values')}, answered {response.get('results')}")
    if action == "call":
        if (request.get("object_node_ids"), request.get("node_ids")) != ([t["object_id"]], [node]):
            problems.append(f"{where}: called {request.get('object_node_ids')}.{request.get('node_ids')}")
        if response.get("values") != [[t["value"]]]:
            problems.append(f"{where}: returned {response.get('values')}")
    if action == "subscribe":
        got = (request.get("publishing_interval"), response.get("subscription_id"))
        if got != (t["publishing_interval"], t["subscription_id"]):
            problems.append(f"{where}: subscription {got}")
    if action == "monitor":
        notified = [v for e in events if e["function"] == "PublishResponse" and e["flow"] == request["flow"]
                    for n, v in zip(e.get("node_ids", ()), e.get("values", ())) if n == node]
        if (request.get("subscription_id"), notified) != (t["subscription_id"], t["value"]):
            problems.append(f"{where}: subscription {request.get('subscription_id')} notified {notified}")
    return problems


def transcript_problems(transcript, events):
    """Everything the client did that icsguard does not show, as readable lines."""
    events = [e for e in events if e["proto"] == "opcua"]
    problems = []
    clear = True
    requests = {name: [e for e in events if e["function"] == name] for name in REQUESTS.values()}
    for t in transcript:
        if t["action"] == "connect":
            problems += _connect_problems(t, events)
            clear = t["security_mode"] != "SignAndEncrypt"
        elif t["action"] in REQUESTS and clear:
            pending = requests[REQUESTS[t["action"]]]
            if not pending:
                problems.append(f"{t['action']} {t['node_id']}: no {REQUESTS[t['action']]} decoded")
                continue
            problems += _action_problems(t, pending.pop(0), events)
    problems += [f"{name} at frame {e['frame']} is not in the transcript" for name, left in requests.items()
                 for e in left]
    return problems


@pytest.mark.parametrize("name", SCENARIOS)
def test_committed_captures_decode_to_their_transcripts(name):
    recorded = json.loads((PCAPS / f"opcua_{name}.json").read_text())
    events = decoded(PCAPS / f"opcua_{name}.pcap")
    assert transcript_problems(recorded["transcript"], events) == []
    assert not [e for e in events if "malformed" in e]


def test_checker_sees_a_wrong_value():
    """The comparison above must be able to fail."""
    recorded = json.loads((PCAPS / "opcua_none_anonymous.json").read_text())
    transcript = [dict(t, value=1601) if t["action"] == "write" and t["value"] == 1600 else t
                  for t in recorded["transcript"]]
    assert transcript_problems(transcript, decoded(PCAPS / "opcua_none_anonymous.pcap")) == \
        ["write ns=2;i=4 (frame 24): wrote [1600], answered ['Good']"]


def test_certificates_of_a_signed_channel():
    events = decoded(PCAPS / "opcua_sign.pcap")
    opened = {e["direction"]: e for e in events if e["message_type"] == "OPN"}
    client, server = opened["request"], opened["response"]
    assert client["certificate_subject"] == "CN=icsguard client,CN=urn:icsguard:opcua:client"
    assert server["certificate_subject"] == server["certificate_issuer"]     # self-signed
    assert client["certificate_not_before"] < client["certificate_not_after"]
    # the certificate the channel was opened with is the one the session presents
    session = next(e for e in events if e["function"] == "CreateSessionRequest")
    answer = next(e for e in events if e["function"] == "CreateSessionResponse")
    assert session["certificate_sha1"] == client["certificate_sha1"] != server["certificate_sha1"]
    assert answer["certificate_sha1"] == server["certificate_sha1"]
    assert server["receiver_thumbprint"] == client["certificate_sha1"]
    offered = {(e["security_policy"].rsplit("#")[1], e["security_mode"]) for e in answer["endpoints"]}
    assert offered == {("None", "None"), ("Basic256Sha256", "Sign"), ("Basic256Sha256", "SignAndEncrypt")}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    import opcua_peers
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


def test_status_code_names_agree_with_asyncua():
    from asyncua.ua.status_codes import StatusCodes

    from icsguard.parsers.opcua_status import STATUS_CODES, status_name
    theirs = {getattr(StatusCodes, name): name for name in dir(StatusCodes) if not name.startswith("_")}
    assert STATUS_CODES == theirs
    assert status_name(0x801F0000 | 0x0400) == "BadUserAccessDenied"           # info bits do not change the name
    assert (status_name(0x40FE0000), status_name(0x80FF0000)) == ("Uncertain_0x40fe0000", "Bad_0x80ff0000")
