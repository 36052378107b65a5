"""icsguard scan: per check, traffic of real peers (pymodbus, python-snap7, asyncua with secured
and unsecured endpoints) that makes it FAIL, traffic that makes it PASS, and traffic that holds
no evidence either way (NOT_ASSESSED, never a PASS); exit codes, stored scans and what changed,
JUnit XML, and a policy that tunes checks."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.support import PCAPS, public, run_icsguard
from tests.support.rewrite import frames, write_pcap

OPCUA_ENCRYPTED = PCAPS / "opcua_sign_and_encrypt.pcap"
BASIC128 = "icsnpp-opcua-binary/pcaps/open62541_client-server_encrypted.pcap"
SMB_BESIDE_MODBUS = "Modbus_dataset/exploit_ms08_netapi_modbus_6RTU_with_operate.pcap"
LOOPBACK_SITE = """\
zones: {hmi_net: [127.0.0.10/32], plc_net: [127.0.0.2/32]}
roles: {plc: [127.0.0.2], hmi: [127.0.0.10]}
"""


def _scan(tmp_path: Path, *captures, site: str | None = None, policy: str | None = None,
          expect: int | None = None) -> dict[str, dict]:
    """The checks of one scan of ``captures`` into a fresh database, by id."""
    args = ["scan", "--db", tmp_path / f"scan{len(list(tmp_path.iterdir()))}.db", *captures, "--format", "json"]
    for option, text, name in (("--site", site, "site.yaml"), ("--policy", policy, "policy.yaml")):
        if text is not None:
            path = tmp_path / f"{len(list(tmp_path.iterdir()))}-{name}"
            path.write_text(text)
            args += [option, path]
    result = run_icsguard(*args)
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    assert result.returncode == (1 if report["result"] == "FAIL" else 0)
    if expect is not None:
        assert result.returncode == expect
    return {c["id"]: c for c in report["checks"]}


def _status(checks: dict[str, dict], check_id: str) -> str:
    return checks[check_id]["status"]


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """Cleartext peers without a site file: Modbus writes and diagnostics, an S7 stop, OPC UA
    with policy None and a password."""
    folder = tmp_path_factory.mktemp("plain")
    return _scan(folder, PCAPS / "modbus_writes.pcap", PCAPS / "modbus_diagnostics.pcap", PCAPS / "s7_control.pcap",
                 PCAPS / "opcua_none_plaintext_password.pcap")


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory):
    return _scan(tmp_path_factory.mktemp("encrypted"), OPCUA_ENCRYPTED, expect=0)


@pytest.fixture(scope="module")
def polling(tmp_path_factory):
    """pymodbus polling only: no OPC UA, no S7, nothing wrong."""
    return _scan(tmp_path_factory.mktemp("polling"), PCAPS / "modbus_polling.pcap")


# ------------------------------------------------------------------ site-independent checks

@pytest.mark.parametrize("check, failing, passing, silent", [
    ("opcua.secure_channel", "plain", "encrypted", "polling"),
    ("credentials.none_in_clear", "plain", "encrypted", "polling"),
    ("confidentiality.encrypted_in_transit", "plain", "encrypted", None),
    ("diagnostics.no_silencing", "plain", "polling", "encrypted"),
    ("opcua.no_deprecated_policy", None, "encrypted", "polling"),
    ("opcua.certificates", None, "encrypted", "polling"),
    ("monitoring.capture_loss", None, "polling", None),
    ("monitoring.no_silent_gap", None, "polling", None),
])
def test_fail_pass_and_no_evidence(check, failing, passing, silent, request):
    scans = {name: request.getfixturevalue(name) for name in ("plain", "encrypted", "polling")}
    if failing:
        assert _status(scans[failing], check) == "FAIL"
        assert scans[failing][check]["evidence"]
    assert _status(scans[passing], check) == "PASS"
    assert scans[passing][check]["evidence"]                # a PASS shows what it rests on
    if silent:
        assert _status(scans[silent], check) == "NOT_ASSESSED"


def test_anonymous_sessions(tmp_path, encrypted):
    assert _status(_scan(tmp_path, PCAPS / "opcua_none_anonymous.pcap"), "opcua.no_anonymous_session") == "FAIL"
    assert _status(_scan(tmp_path, PCAPS / "opcua_none_username.pcap"), "opcua.no_anonymous_session") == "PASS"
    assert _status(encrypted, "opcua.no_anonymous_session") == "NOT_ASSESSED"     # tokens are encrypted


def test_deprecated_policy_fails_and_an_encrypted_capture_does_not_fail_sr_4_1(tmp_path, encrypted):
    checks = _scan(tmp_path, public(BASIC128))
    assert _status(checks, "opcua.no_deprecated_policy") == "FAIL"
    failed = {sr for c in encrypted.values() if c["status"] == "FAIL" for sr in c["iec62443"]}
    assert "SR 4.1" not in failed
    assert "SR 4.1" in {sr for c in checks.values() if c["status"] == "FAIL" for sr in c["iec62443"]}


def test_self_signed_certificates_fail_where_the_site_requires_pki(tmp_path):
    site = LOOPBACK_SITE + "pki_required: true\n"
    checks = _scan(tmp_path, PCAPS / "opcua_sign.pcap", site=site)
    assert _status(checks, "opcua.certificates") == "FAIL" and "self-signed" in checks["opcua.certificates"]["summary"]
    assert _status(_scan(tmp_path, PCAPS / "opcua_sign.pcap", site=LOOPBACK_SITE), "opcua.certificates") == "PASS"


def test_loss_and_silence_in_the_monitored_traffic(tmp_path):
    found = frames(PCAPS / "modbus_polling.pcap")
    holed = write_pcap(tmp_path / "holed.pcap", [(f.ts, f.data) for i, f in enumerate(found) if not 40 <= i < 140],
                       found[0].link_type)
    half = len(found) // 2
    quiet = write_pcap(tmp_path / "quiet.pcap", [(f.ts + (600 if i >= half else 0), f.data)
                                                 for i, f in enumerate(found)], found[0].link_type)
    empty = write_pcap(tmp_path / "empty.pcap", [], found[0].link_type)
    assert _status(_scan(tmp_path, holed), "monitoring.capture_loss") == "FAIL"
    silent = _scan(tmp_path, quiet)
    assert _status(silent, "monitoring.no_silent_gap") == "FAIL"
    assert "no packet for 600 s" in silent["monitoring.no_silent_gap"]["evidence"][0]["detail"]
    nothing = _scan(tmp_path, empty)
    assert {_status(nothing, c) for c in ("monitoring.capture_loss", "monitoring.no_silent_gap",
                                          "confidentiality.encrypted_in_transit")} == {"NOT_ASSESSED"}


# ------------------------------------------------------------------ checks that need the site file

def test_site_checks_are_not_assessed_without_a_site_file(plain):
    for check in ("writes.permitted_writers", "program.engineering_in_maintenance", "segmentation.within_zones",
                  "segmentation.no_outside_hosts", "segmentation.no_it_services", "inventory.known_assets"):
        assert _status(plain, check) == "NOT_ASSESSED" and "needs a site file" in plain[check]["summary"]


def test_permitted_writers(tmp_path):
    writes = PCAPS / "modbus_writes.pcap"
    denied = LOOPBACK_SITE + "writers: [{to: [$plc], from: [127.0.0.99]}]\n"
    allowed = LOOPBACK_SITE + "writers: [{to: [$plc], from: [$hmi]}]\n"
    assert _status(_scan(tmp_path, writes, site=denied), "writes.permitted_writers") == "FAIL"
    assert _status(_scan(tmp_path, writes, site=allowed), "writes.permitted_writers") == "PASS"


def test_program_changes_only_from_engineering_stations_in_maintenance(tmp_path):
    control = PCAPS / "s7_control.pcap"        # python-snap7: stop, start, memory reset at 00:08 UTC
    window = "maintenance: [{start: \"00:00\", end: \"01:00\"}]\n"
    outside = "maintenance: [{start: \"02:00\", end: \"03:00\"}]\n"
    ews = "zones: {lab: [127.0.0.0/8]}\nroles: {plc: [127.0.0.2], ews: [127.0.0.10]}\n"
    hmi = "zones: {lab: [127.0.0.0/8]}\nroles: {plc: [127.0.0.2], hmi: [127.0.0.10]}\n"
    assert _status(_scan(tmp_path, control, site=ews + window), "program.engineering_in_maintenance") == "PASS"
    assert _status(_scan(tmp_path, control, site=ews + outside), "program.engineering_in_maintenance") == "FAIL"
    assert _status(_scan(tmp_path, control, site=hmi + window), "program.engineering_in_maintenance") == "FAIL"


def test_zones_conduits_and_outside_hosts(tmp_path):
    polling = PCAPS / "modbus_polling.pcap"
    conduit = LOOPBACK_SITE + "conduits: [{between: [hmi_net, plc_net], protocols: [modbus]}]\n"
    assert _status(_scan(tmp_path, polling, site=LOOPBACK_SITE), "segmentation.within_zones") == "FAIL"
    checks = _scan(tmp_path, polling, site=conduit)
    assert _status(checks, "segmentation.within_zones") == "PASS"
    assert _status(checks, "segmentation.no_outside_hosts") == "PASS"
    lone = "zones: {plc_net: [127.0.0.2/32]}\n"
    assert _status(_scan(tmp_path, polling, site=lone), "segmentation.no_outside_hosts") == "FAIL"


def test_it_services_inside_a_control_zone(tmp_path):
    site = "zones: {control: [192.168.1.0/24]}\n"
    capture = public(SMB_BESIDE_MODBUS)
    checks = _scan(tmp_path, capture, site=site)
    assert _status(checks, "segmentation.no_it_services") == "FAIL"
    assert any("smb" in item["detail"] for item in checks["segmentation.no_it_services"]["evidence"])
    allowed = site + "allowed_services: [smb, netbios_session, msrpc, http, tls]\n"
    assert _status(_scan(tmp_path, capture, site=allowed), "segmentation.no_it_services") == "PASS"


def test_every_talking_host_is_a_known_asset(tmp_path):
    polling = PCAPS / "modbus_polling.pcap"
    checks = _scan(tmp_path, polling, site="zones: {lab: [127.0.0.0/8]}\nroles: {plc: [127.0.0.2]}\n")
    assert _status(checks, "inventory.known_assets") == "FAIL"
    assert checks["inventory.known_assets"]["evidence"][0]["hosts"] == ["127.0.0.10"]
    assert _status(_scan(tmp_path, polling, site=LOOPBACK_SITE), "inventory.known_assets") == "PASS"


def test_the_s7_protection_level_is_not_assessed_until_decoded(plain):
    assert _status(plain, "hardening.s7_protection_level") == "NOT_ASSESSED"


# ------------------------------------------------------------------ the command

def test_exit_codes_history_and_changes(tmp_path):
    db = tmp_path / "nightly.db"
    first = run_icsguard("scan", "--db", db, OPCUA_ENCRYPTED)
    assert first.returncode == 0 and "first scan of this scope" in first.stdout
    assert run_icsguard("analyze", "--db", db, PCAPS / "opcua_none_anonymous.pcap").returncode == 0
    nightly = run_icsguard("scan", "--db", db, "--format", "json")
    assert nightly.returncode == 1
    again = run_icsguard("scan", "--db", db)
    assert again.returncode == 1 and "no change since scan 2" in again.stdout
    report = json.loads(nightly.stdout)
    assert report["result"] == "FAIL" and report["previous_scan"] is None       # a new scope: the database
    bad_policy = tmp_path / "bad.yaml"
    bad_policy.write_text("checks:\n  opcua.nonsense: {enabled: false}\n")
    refused = run_icsguard("scan", "--db", db, "--policy", bad_policy)
    assert refused.returncode == 2 and "unknown check 'opcua.nonsense'" in refused.stderr
    assert run_icsguard("scan", "--db", tmp_path / "none.db").returncode == 2
    assert run_icsguard("scan", tmp_path / "missing.pcap").returncode == 2


def test_what_changed_since_the_previous_scan_of_the_same_captures(tmp_path):
    db = tmp_path / "changes.db"
    assert run_icsguard("scan", "--db", db, PCAPS / "modbus_polling.pcap").returncode == 1     # Modbus in clear
    site = tmp_path / "site.yaml"
    site.write_text("zones: {lab: [127.0.0.0/8]}\nroles: {plc: [127.0.0.2]}\n")
    second = json.loads(run_icsguard("scan", "--db", db, PCAPS / "modbus_polling.pcap", "--site", site,
                                     "--format", "json").stdout)
    assert second["previous_scan"] == 1
    assert {"id": "inventory.known_assets", "before": "NOT_ASSESSED", "now": "FAIL"} in second["changes"]


def test_a_policy_disables_and_tunes_checks(tmp_path):
    policy = "checks:\n  confidentiality.encrypted_in_transit: {enabled: false}\n" \
             "  monitoring.no_silent_gap: {silent_seconds: 5000}\n"
    checks = _scan(tmp_path, PCAPS / "modbus_polling.pcap", policy=policy)
    assert "confidentiality.encrypted_in_transit" not in checks
    assert "limit 5000 s" in checks["monitoring.no_silent_gap"]["summary"]


def test_junit_for_ci_and_schedulers(tmp_path):
    result = run_icsguard("scan", "--db", tmp_path / "j.db", PCAPS / "opcua_none_anonymous.pcap", "--format", "junit")
    assert result.returncode == 1
    suite = ET.fromstring(result.stdout.split("?>", 1)[1])
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert len(cases) == int(suite.get("tests")) == 16
    assert cases["opcua.secure_channel"].find("failure") is not None
    assert "SR 4.1" in cases["opcua.secure_channel"].find("failure").text
    assert cases["inventory.known_assets"].find("skipped") is not None
    assert int(suite.get("failures")) == sum(case.find("failure") is not None for case in cases.values())


def test_a_muted_rule_makes_its_check_not_assessed_never_pass(tmp_path):
    db = tmp_path / "muted.db"
    assert run_icsguard("analyze", "--db", db, PCAPS / "opcua_none_anonymous.pcap").returncode == 0
    for rule in ("opcua.security_policy_none", "opcua.anonymous_session"):
        assert run_icsguard("alerts", "--db", db, "mute", rule).returncode == 0
    assert run_icsguard("analyze", "--db", db, PCAPS / "opcua_none_anonymous.pcap").returncode == 0
    report = json.loads(run_icsguard("scan", "--db", db, "--format", "json").stdout)
    checks = {c["id"]: c for c in report["checks"]}
    # the first run's alerts were stored before the mutes: they still fail the checks
    assert checks["opcua.secure_channel"]["status"] == "FAIL"
    fresh = tmp_path / "fresh.db"
    assert run_icsguard("analyze", "--db", fresh, PCAPS / "modbus_polling.pcap").returncode == 0
    for rule in ("opcua.security_policy_none", "opcua.anonymous_session"):
        assert run_icsguard("alerts", "--db", fresh, "mute", rule).returncode == 0
    assert run_icsguard("analyze", "--db", fresh, PCAPS / "opcua_none_anonymous.pcap").returncode == 0
    quiet = {c["id"]: c for c in json.loads(run_icsguard("scan", "--db", fresh, "--format", "json").stdout)["checks"]}
    for check in ("opcua.secure_channel", "opcua.no_anonymous_session"):
        assert quiet[check]["status"] == "NOT_ASSESSED" and "muted" in quiet[check]["summary"], check
    certificate = quiet["opcua.certificates"]         # asyncua's certificate did cross, and is valid
    assert certificate["status"] == "PASS" and "certificate sha1" in certificate["evidence"][0]["detail"]
