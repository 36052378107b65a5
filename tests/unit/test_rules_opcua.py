"""rules/opcua.yaml on the committed asyncua captures and on crafted events: every rule fires
on the traffic it is about, each alert names the right client.

What "normal but weakly configured" traffic may raise, by design: asyncua's own
certificates are self-signed, so the committed Sign and SignAndEncrypt captures raise
opcua.self_signed_or_expired_certificate (low: a posture finding, the certificate cannot be
revoked by a CA), and the anonymous Sign session also opcua.anonymous_session. Nothing
else.
"""

from __future__ import annotations

import pytest

from icsguard.analysis import decode
from icsguard.detect.rule_engine import RuleDetector
from icsguard.detect.rules import load_rules
from icsguard.events import Event
from tests.support import PCAPS, REPO, public
from tests.support.rules_opcua import CLIENT, OTHER_HMI_SITE, RULES, SERVER, SITE, alerts_by_rule, site_file

ALL_RULES = {
    "opcua.security_policy_none", "opcua.deprecated_security_policy", "opcua.anonymous_session",
    "opcua.password_in_clear", "opcua.self_signed_or_expired_certificate", "opcua.failed_login_burst",
    "opcua.write_not_permitted", "opcua.write_or_call_from_unexpected_host",
    "opcua.browse_enumeration", "opcua.error_burst",
}


def _committed(name: str) -> list[Event]:
    return list(decode([str(PCAPS / f"opcua_{name}.pcap")]))


@pytest.fixture
def site(tmp_path):
    return site_file(tmp_path)


def test_the_pack_has_exactly_these_rules_and_site_rules_need_a_site(site):
    assert {r.id for r in load_rules([RULES], site=site).rules} == ALL_RULES
    unsited = load_rules([RULES])
    assert set(unsited.inactive) == {"opcua.write_not_permitted", "opcua.write_or_call_from_unexpected_host"}


@pytest.mark.parametrize("capture, expected", [
    ("none_anonymous", {"opcua.security_policy_none", "opcua.anonymous_session"}),
    ("none_username", {"opcua.security_policy_none"}),
    ("none_plaintext_password", {"opcua.security_policy_none", "opcua.password_in_clear"}),
    ("failed_login", {"opcua.security_policy_none", "opcua.failed_login_burst"}),
    # weakly configured but normal: self-signed certificates, and an anonymous login
    ("sign", {"opcua.self_signed_or_expired_certificate", "opcua.anonymous_session"}),
    ("sign_and_encrypt", {"opcua.self_signed_or_expired_certificate"}),
])
def test_committed_captures_raise_exactly(site, capture, expected):
    alerts = alerts_by_rule(_committed(capture), site)
    assert set(alerts) == expected
    assert {(a.src, a.dst) for a in alerts.values()} == {(CLIENT, SERVER)}


def test_security_policy_none_counts_each_channel(site):
    # failed_login opens three channels without security, one per attempt
    alert = alerts_by_rule(_committed("failed_login"), site)["opcua.security_policy_none"]
    assert alert.count == 3 and alert.severity == "medium"
    assert [e["security_policy"] for e in alert.evidence] == ["http://opcfoundation.org/UA/SecurityPolicy#None"] * 3
    assert all(e["direction"] == "request" for e in alert.evidence)


def test_a_deprecated_policy_is_a_posture_finding(site):
    """open62541 opening a Basic128Rsa15 channel (public capture); asyncua's Basic256Sha256 is current."""
    events = list(decode([str(public("icsnpp-opcua-binary/pcaps/open62541_client-server_encrypted.pcap"))]))
    alert = alerts_by_rule(events, site)["opcua.deprecated_security_policy"]
    assert alert.category == "posture" and alert.evidence[0]["security_policy"].endswith("#Basic128Rsa15")
    assert "opcua.deprecated_security_policy" not in alerts_by_rule(_committed("sign_and_encrypt"), site)


def test_password_in_clear_names_the_user_not_the_password(site):
    alert = alerts_by_rule(_committed("none_plaintext_password"), site)["opcua.password_in_clear"]
    assert (alert.count, alert.severity, alert.src) == (1, "high", CLIENT)
    assert alert.evidence[0]["user_name"] == "operator"
    assert "Secret-Passw0rd" not in repr(alert.evidence)
    # the same login over a server that offers encryption is not in clear: quiet
    assert "opcua.password_in_clear" not in alerts_by_rule(_committed("none_username"), site)


def test_failed_login_burst_names_the_client(site):
    events = _committed("failed_login")
    alert = alerts_by_rule(events, site)["opcua.failed_login_burst"]
    # a response-based rule: the alert still names the client that tried the passwords
    assert (alert.src, alert.dst, alert.count, alert.severity) == (CLIENT, SERVER, 1, "high")
    third = alert.evidence[0]
    assert (third["function"], third["request_service"], third["status_name"]) == \
        ("ServiceFault", "ActivateSessionRequest", "BadUserAccessDenied")
    assert (third["src"], third["dst"]) == (SERVER, CLIENT)
    # two failures (the first two connections) are below the threshold
    flows = list(dict.fromkeys(e.flow for e in events))
    assert len(flows) == 3
    first_two = [e for e in events if e.flow in flows[:2]]
    assert "opcua.failed_login_burst" not in alerts_by_rule(first_two, site)


def test_self_signed_certificates_of_both_peers(site):
    alert = alerts_by_rule(_committed("sign"), site)["opcua.self_signed_or_expired_certificate"]
    # the client's certificate on the OPN request and the server's on the response
    assert alert.count == 2 and (alert.src, alert.dst) == (CLIENT, SERVER)
    assert [(e["direction"], e["certificate_subject"].split(",")[0]) for e in alert.evidence] == \
        [("request", "CN=icsguard client"), ("response", "CN=icsguard server")]
    assert all(e["certificate_self_signed"] is True for e in alert.evidence)


def test_write_and_call_from_a_host_the_site_file_does_not_name(tmp_path):
    events = _committed("none_anonymous")
    alerts = alerts_by_rule(events, site_file(tmp_path, OTHER_HMI_SITE))
    assert set(alerts) == {"opcua.security_policy_none", "opcua.anonymous_session",
                           "opcua.write_not_permitted", "opcua.write_or_call_from_unexpected_host"}
    writes = [e for e in events if e.function == "WriteRequest"]
    calls = [e for e in events if e.function == "CallRequest"]
    assert (len(writes), len(calls)) == (3, 1)
    assert alerts["opcua.write_not_permitted"].count == 3
    unexpected = alerts["opcua.write_or_call_from_unexpected_host"]
    assert unexpected.count == 4 and (unexpected.src, unexpected.dst) == (CLIENT, SERVER)
    assert {e["function"] for e in unexpected.evidence} == {"WriteRequest", "CallRequest"}


def test_certificate_error_alternative(site):
    """A certificate that is not DER (the decoder says so in certificate_error): no live
    stack sends one, so a crafted OPN."""
    rule = load_rules([RULES], site=site).by_id("opcua.self_signed_or_expired_certificate")
    fields = {"message_type": "OPN", "security_policy": "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"}
    event = Event(1_795_000_000.0, "opcua", CLIENT, 40000, SERVER, 4840, "request", "OpenSecureChannel", None,
                  "1:x", "t.pcap", 1, {**fields, "certificate_error": "not a DER X.509 certificate"})
    assert rule.why(event) is not None
    quiet = Event(1_795_000_000.0, "opcua", CLIENT, 40000, SERVER, 4840, "request", "OpenSecureChannel", None,
                  "1:x", "t.pcap", 1, fields)
    assert rule.why(quiet) is None


def test_browse_enumeration_counts_nodes_not_requests(site):
    """A historian reconnecting every few seconds browses the same two nodes each time (sixty
    Browse requests a minute): no enumeration. A client browsing twenty different nodes is one."""
    def browse(second: float, node: str) -> Event:
        return Event(1_795_000_000.0 + second, "opcua", CLIENT, 40000, SERVER, 4840, "request", "BrowseRequest",
                     None, "1:x", "t.pcap", 1, {"node_ids": [node]})
    rebrowsing = [browse(i, node) for i in range(30) for node in ("i=85", "ns=2;i=1")]
    assert "opcua.browse_enumeration" not in alerts_by_rule(rebrowsing, site)
    walk = [browse(i, f"ns=2;i={i}") for i in range(20)]
    assert "opcua.browse_enumeration" not in alerts_by_rule(walk[:19], site)
    alert = alerts_by_rule(walk, site)["opcua.browse_enumeration"]
    assert (alert.src, alert.dst, alert.count, alert.first_ts) == (CLIENT, SERVER, 1, walk[19].ts)


@pytest.mark.parametrize("name, port", [
    ("opcua-security-research/freeopcua_20251026_025314.pcap", 4842),
    ("opcua-security-research/nodeopcua_20251026_025314.pcap", 4841),
    ("opcua-security-research/anssi_scenario/scenario_baseline_none.pcap", 4850),
])
def test_servers_on_ports_the_site_file_gives_opcua_are_not_unusual(tmp_path, name, port):
    """The lab servers of opcua-security-research listen on 4841-4850: generic.unusual_port
    without a site file (or with one that gives OPC UA other ports), none with the range."""
    generic = REPO / "rules" / "generic.yaml"
    events = list(decode([str(public(name))]))
    assert {e.dport for e in events if e.proto == "opcua" and e.direction == "request"} == {port}

    def unusual(site):
        detector = RuleDetector(load_rules([generic], site=site))
        alerts = [a for e in events for a in detector.feed(e)] + detector.flush()
        return [a for a in alerts if a.rule == "generic.unusual_port"]
    assert len(unusual(None)) == 1
    assert len(unusual(site_file(tmp_path, SITE + "ports: {opcua: [4851-4860]}\n"))) == 1
    assert unusual(site_file(tmp_path, SITE + "ports: {opcua: [4841-4850]}\n")) == []

