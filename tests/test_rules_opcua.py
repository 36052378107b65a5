"""rules/opcua.yaml against real asyncua traffic: every rule fires on the traffic it is
about (the committed captures, or scenarios of pcaps/opcua_peers.py recorded live here),
and stays quiet on an HMI that does things properly.

What "normal but weakly configured" traffic may raise, by design: asyncua's own
certificates are self-signed, so the committed Sign and SignAndEncrypt captures raise
opcua.self_signed_or_expired_certificate (low: a posture finding, the certificate cannot be
revoked by a CA), and the anonymous Sign session also opcua.anonymous_session. Nothing
else. With CA-issued certificates and a username login (scenario ca_signed) nothing at all
fires, writes and calls included, as long as the site file names the host as an HMI.
"""

from __future__ import annotations

import pytest

from conftest import PCAPS, REPO, public

from icsguard.analysis import decode
from icsguard.detect.rule_engine import RuleDetector
from icsguard.events import Event
from icsguard.detect.rules import load_rules
from icsguard.detect.site import load_site

RULES = REPO / "rules" / "opcua.yaml"
SERVER, CLIENT, ROGUE = "127.0.0.2", "127.0.0.10", "127.0.0.66"
# the harness's hosts: the PLC-like server, the HMI; 127.0.0.66 is named nowhere
SITE = f"""\
zones: {{control: [127.0.0.0/24]}}
roles: {{plc: [{SERVER}], hmi: [{CLIENT}], ews: [127.0.0.20]}}
writers: [{{to: [$plc], from: [$hmi]}}]
"""
# the same plant, but the file does not name 127.0.0.10: it is neither HMI nor writer
OTHER_HMI_SITE = SITE.replace(f"hmi: [{CLIENT}]", "hmi: [127.0.0.30]")
ALL_RULES = {
    "opcua.security_policy_none", "opcua.anonymous_session", "opcua.password_in_clear",
    "opcua.self_signed_or_expired_certificate", "opcua.failed_login_burst",
    "opcua.write_not_permitted", "opcua.write_or_call_from_unexpected_host",
    "opcua.browse_enumeration", "opcua.error_burst",
}
LIVE = ("browse_enumeration", "error_burst", "rogue_write", "ca_signed", "dated_certificates")


def _site(tmp_path, text: str = SITE):
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return load_site(path)


def _alerts(events, site) -> dict[str, object]:
    """Alerts by rule id (each rule folds into one alert per client and server here)."""
    rules = load_rules([RULES], site=site)
    assert not rules.inactive
    detector = RuleDetector(rules)
    alerts = []
    for event in events:
        alerts += detector.feed(event)
    alerts += detector.flush()
    by_rule = {}
    for alert in alerts:
        assert alert.rule not in by_rule, f"{alert.rule} raised twice: {alerts}"
        by_rule[alert.rule] = alert
    return by_rule


def _committed(name: str) -> list[Event]:
    return list(decode([str(PCAPS / f"opcua_{name}.pcap")]))


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The live scenarios, each recorded against a fresh server: name -> (events, transcript)."""
    opcua_peers = pytest.importorskip("opcua_peers")
    folder = tmp_path_factory.mktemp("opcua_rules")
    out = {}
    for name in LIVE:
        path = folder / f"{name}.pcap"
        transcript = opcua_peers.capture(path, getattr(opcua_peers, name))
        out[name] = (list(decode([str(path)])), transcript)
    return out


@pytest.fixture
def site(tmp_path):
    return _site(tmp_path)


def test_the_pack_has_exactly_these_rules_and_site_rules_need_a_site(site):
    assert {r.id for r in load_rules([RULES], site=site).rules} == ALL_RULES
    unsited = load_rules([RULES])
    assert set(unsited.inactive) == {"opcua.write_not_permitted", "opcua.write_or_call_from_unexpected_host"}


# --- committed captures -------------------------------------------------------------------

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
    alerts = _alerts(_committed(capture), site)
    assert set(alerts) == expected
    assert {(a.src, a.dst) for a in alerts.values()} == {(CLIENT, SERVER)}


def test_security_policy_none_counts_each_channel(site):
    # failed_login opens three channels without security, one per attempt
    alert = _alerts(_committed("failed_login"), site)["opcua.security_policy_none"]
    assert alert.count == 3 and alert.severity == "medium"
    assert [e["security_policy"] for e in alert.evidence] == ["http://opcfoundation.org/UA/SecurityPolicy#None"] * 3
    assert all(e["direction"] == "request" for e in alert.evidence)


def test_password_in_clear_names_the_user_not_the_password(site):
    alert = _alerts(_committed("none_plaintext_password"), site)["opcua.password_in_clear"]
    assert (alert.count, alert.severity, alert.src) == (1, "high", CLIENT)
    assert alert.evidence[0]["user_name"] == "operator"
    assert "Secret-Passw0rd" not in repr(alert.evidence)
    # the same login over a server that offers encryption is not in clear: quiet
    assert "opcua.password_in_clear" not in _alerts(_committed("none_username"), site)


def test_failed_login_burst_names_the_client(site):
    events = _committed("failed_login")
    alert = _alerts(events, site)["opcua.failed_login_burst"]
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
    assert "opcua.failed_login_burst" not in _alerts(first_two, site)


def test_self_signed_certificates_of_both_peers(site):
    alert = _alerts(_committed("sign"), site)["opcua.self_signed_or_expired_certificate"]
    # the client's certificate on the OPN request and the server's on the response
    assert alert.count == 2 and (alert.src, alert.dst) == (CLIENT, SERVER)
    assert [(e["direction"], e["certificate_subject"].split(",")[0]) for e in alert.evidence] == \
        [("request", "CN=icsguard client"), ("response", "CN=icsguard server")]
    assert all(e["certificate_self_signed"] is True for e in alert.evidence)


def test_write_and_call_from_a_host_the_site_file_does_not_name(tmp_path):
    events = _committed("none_anonymous")
    alerts = _alerts(events, _site(tmp_path, OTHER_HMI_SITE))
    assert set(alerts) == {"opcua.security_policy_none", "opcua.anonymous_session",
                           "opcua.write_not_permitted", "opcua.write_or_call_from_unexpected_host"}
    writes = [e for e in events if e.function == "WriteRequest"]
    calls = [e for e in events if e.function == "CallRequest"]
    assert (len(writes), len(calls)) == (3, 1)
    assert alerts["opcua.write_not_permitted"].count == 3
    unexpected = alerts["opcua.write_or_call_from_unexpected_host"]
    assert unexpected.count == 4 and (unexpected.src, unexpected.dst) == (CLIENT, SERVER)
    assert {e["function"] for e in unexpected.evidence} == {"WriteRequest", "CallRequest"}


# --- live scenarios -----------------------------------------------------------------------

def test_browse_enumeration(live, site):
    events, transcript = live["browse_enumeration"]
    browses = [e for e in events if e.function == "BrowseRequest"]
    assert len(browses) == len([t for t in transcript if t["action"] == "browse"]) == 25
    alerts = _alerts(events, site)
    assert set(alerts) == {"opcua.browse_enumeration", "opcua.security_policy_none", "opcua.anonymous_session"}
    alert = alerts["opcua.browse_enumeration"]
    # the 20th browse within a minute raises it; the five after it fold in
    assert (alert.src, alert.dst, alert.count) == (CLIENT, SERVER, 6)
    assert alert.first_ts == browses[19].ts and alert.last_ts == browses[-1].ts
    # nineteen browses are not an enumeration
    cut = events[:events.index(browses[19])]
    assert "opcua.browse_enumeration" not in _alerts(cut, site)


def test_error_burst(live, site):
    events, transcript = live["error_burst"]
    assert [t["error"] for t in transcript] == ["ERR: 0x80B80000"] * 3
    errors = [e for e in events if e.get("message_type") == "ERR"]
    assert [(e.src, e.dst, e.get("status_name")) for e in errors] == [(SERVER, CLIENT, "BadRequestTooLarge")] * 3
    alerts = _alerts(events, site)
    assert set(alerts) == {"opcua.error_burst", "opcua.security_policy_none"}
    alert = alerts["opcua.error_burst"]
    # raised by the server's ERR, but it names the client that provoked them
    assert (alert.src, alert.dst, alert.count, alert.severity) == (CLIENT, SERVER, 1, "medium")
    assert alert.evidence[0]["frame"] == errors[2].frame
    assert "opcua.error_burst" not in _alerts(events[:events.index(errors[2])], site)


def test_writes_and_calls_from_an_unknown_host(live, site):
    events, transcript = live["rogue_write"]
    assert transcript[0]["client_host"] == ROGUE
    alerts = _alerts(events, site)
    assert set(alerts) == {"opcua.write_not_permitted", "opcua.write_or_call_from_unexpected_host",
                           "opcua.security_policy_none", "opcua.anonymous_session"}
    assert {(a.src, a.dst) for a in alerts.values()} == {(ROGUE, SERVER)}
    assert alerts["opcua.write_not_permitted"].count == 1
    assert alerts["opcua.write_not_permitted"].evidence[0]["values"] == [9999]
    unexpected = alerts["opcua.write_or_call_from_unexpected_host"]
    assert [e["function"] for e in unexpected.evidence] == ["WriteRequest", "CallRequest"]


def test_dated_certificates(live, site):
    events, transcript = live["dated_certificates"]
    assert [t["error"] for t in transcript if t["action"] == "connect"] == [None, None]
    alerts = _alerts(events, site)
    assert set(alerts) == {"opcua.self_signed_or_expired_certificate"}
    alert = alerts["opcua.self_signed_or_expired_certificate"]
    # the two client certificates; the server's, from the same CA and current, is fine
    assert (alert.src, alert.dst, alert.count) == (CLIENT, SERVER, 2)
    assert [(e["direction"], e["certificate_self_signed"], e["certificate_subject"]) for e in alert.evidence] == \
        [("request", False, "CN=icsguard expired"), ("request", False, "CN=icsguard not_yet_valid")]
    rule = load_rules([RULES], site=site).by_id("opcua.self_signed_or_expired_certificate")
    opens = [e for e in events if e.get("message_type") == "OPN" and e.direction == "request"]
    assert [rule.why(e)[1].split(" (")[0] for e in opens] == \
        ["certificate_not_after before 'ts'", "certificate_not_before after 'ts'"]
    assert all(rule.why(e) is None for e in events if e.get("message_type") == "OPN" and e.direction == "response")


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


def test_a_proper_hmi_raises_nothing(live, site, tmp_path):
    events, transcript = live["ca_signed"]
    assert all(t["error"] is None for t in transcript)
    # not vacuous: the Sign session's write is visible, from the HMI, on CA-issued certificates
    writes = [e for e in events if e.function == "WriteRequest"]
    assert [(e.src, e.dst, e.get("values")) for e in writes] == [(CLIENT, SERVER, [1500])]
    opens = [e for e in events if e.get("message_type") == "OPN"]
    assert len(opens) == 4 and not any(e.get("certificate_self_signed") for e in opens)
    assert _alerts(events, site) == {}
    # the same traffic from a host the site does not name as an HMI is a finding
    assert set(_alerts(events, _site(tmp_path, OTHER_HMI_SITE))) == \
        {"opcua.write_not_permitted", "opcua.write_or_call_from_unexpected_host"}


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
    assert len(unusual(_site(tmp_path, SITE + "ports: {opcua: [4851-4860]}\n"))) == 1
    assert unusual(_site(tmp_path, SITE + "ports: {opcua: [4841-4850]}\n")) == []
