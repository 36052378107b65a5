"""rules/opcua.yaml against scenarios of tests/support/opcua_peers.py recorded live: browse
enumeration, error bursts, writes and calls from an unknown host, dated certificates. With
CA-issued certificates and a username login (scenario ca_signed) nothing at all fires,
writes and calls included, as long as the site file names the host as an HMI.
"""

from __future__ import annotations

import pytest

from icsguard.analysis import decode
from icsguard.detect.rules import load_rules
from tests.support.rules_opcua import CLIENT, OTHER_HMI_SITE, ROGUE, RULES, SERVER, alerts_by_rule, site_file

LIVE = ("browse_enumeration", "error_burst", "rogue_write", "ca_signed", "dated_certificates")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The live scenarios, each recorded against a fresh server: name -> (events, transcript)."""
    from tests.support import opcua_peers
    folder = tmp_path_factory.mktemp("opcua_rules")
    out = {}
    for name in LIVE:
        path = folder / f"{name}.pcap"
        transcript = opcua_peers.capture(path, getattr(opcua_peers, name))
        out[name] = (list(decode([str(path)])), transcript)
    return out


@pytest.fixture
def site(tmp_path):
    return site_file(tmp_path)


def test_browse_enumeration(live, site):
    events, transcript = live["browse_enumeration"]
    browses = [e for e in events if e.function == "BrowseRequest"]
    assert len(browses) == len([t for t in transcript if t["action"] == "browse"]) == 25
    alerts = alerts_by_rule(events, site)
    assert set(alerts) == {"opcua.browse_enumeration", "opcua.security_policy_none", "opcua.anonymous_session"}
    alert = alerts["opcua.browse_enumeration"]
    # the 20th browse within a minute raises it; the five after it fold in
    assert (alert.src, alert.dst, alert.count) == (CLIENT, SERVER, 6)
    assert alert.first_ts == browses[19].ts and alert.last_ts == browses[-1].ts
    # nineteen browses are not an enumeration
    cut = events[:events.index(browses[19])]
    assert "opcua.browse_enumeration" not in alerts_by_rule(cut, site)


def test_error_burst(live, site):
    events, transcript = live["error_burst"]
    assert [t["error"] for t in transcript] == ["ERR: 0x80B80000"] * 3
    errors = [e for e in events if e.get("message_type") == "ERR"]
    assert [(e.src, e.dst, e.get("status_name")) for e in errors] == [(SERVER, CLIENT, "BadRequestTooLarge")] * 3
    alerts = alerts_by_rule(events, site)
    assert set(alerts) == {"opcua.error_burst", "opcua.security_policy_none"}
    alert = alerts["opcua.error_burst"]
    # raised by the server's ERR, but it names the client that provoked them
    assert (alert.src, alert.dst, alert.count, alert.severity) == (CLIENT, SERVER, 1, "medium")
    assert alert.evidence[0]["frame"] == errors[2].frame
    assert "opcua.error_burst" not in alerts_by_rule(events[:events.index(errors[2])], site)


def test_writes_and_calls_from_an_unknown_host(live, site):
    events, transcript = live["rogue_write"]
    assert transcript[0]["client_host"] == ROGUE
    alerts = alerts_by_rule(events, site)
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
    alerts = alerts_by_rule(events, site)
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


def test_a_proper_hmi_raises_nothing(live, site, tmp_path):
    events, transcript = live["ca_signed"]
    assert all(t["error"] is None for t in transcript)
    # not vacuous: the Sign session's write is visible, from the HMI, on CA-issued certificates
    writes = [e for e in events if e.function == "WriteRequest"]
    assert [(e.src, e.dst, e.get("values")) for e in writes] == [(CLIENT, SERVER, [1500])]
    opens = [e for e in events if e.get("message_type") == "OPN"]
    assert len(opens) == 4 and not any(e.get("certificate_self_signed") for e in opens)
    assert alerts_by_rule(events, site) == {}
    # the same traffic from a host the site does not name as an HMI is a finding
    assert set(alerts_by_rule(events, site_file(tmp_path, OTHER_HMI_SITE))) == \
        {"opcua.write_not_permitted", "opcua.write_or_call_from_unexpected_host"}

