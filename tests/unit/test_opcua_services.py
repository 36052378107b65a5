"""OPC UA service bodies in the committed captures: what asyncua's client did, as icsguard saw it."""

from __future__ import annotations

import json

import pytest

from tests.support import PCAPS, decoded
from tests.support.opcua_transcripts import SCENARIOS, transcript_problems


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


def test_status_code_names_agree_with_asyncua():
    from asyncua.ua.status_codes import StatusCodes

    from icsguard.parsers.opcua_status import STATUS_CODES, status_name
    theirs = {getattr(StatusCodes, name): name for name in dir(StatusCodes) if not name.startswith("_")}
    assert STATUS_CODES == theirs
    assert status_name(0x801F0000 | 0x0400) == "BadUserAccessDenied"           # info bits do not change the name
    assert (status_name(0x40FE0000), status_name(0x80FF0000)) == ("Uncertain_0x40fe0000", "Bad_0x80ff0000")

