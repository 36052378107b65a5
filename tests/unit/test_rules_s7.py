"""The S7 rule pack (rules/s7.yaml) on the committed python-snap7 captures and public
S7comm-plus ones: every rule fires on what it is about, and each alert names the client
that acted as its source. S7comm-plus, which python-snap7 cannot speak, comes from a public
S7-1200 capture.
"""

from __future__ import annotations

import pytest

from icsguard.analysis import decode
from icsguard.detect.rule_engine import RuleDetector
from icsguard.detect.rules import load_rules
from tests.support import PCAPS, public
from tests.support.rules_s7 import EWS, HMI, PLC, SITE, SITE_DEPENDENT, alerts_of, site_file, summary

S7_PACK = PCAPS.parent / "rules" / "s7.yaml"


# The S7comm-plus capture: TIA Portal (192.168.55.5) going online to an S7-1200
# (192.168.42.10), stopping and restarting it: four SetVariable and one SetMultiVariables.
S7PLUS_CAPTURE = "S7comm-Plus-Anomaly-Detection/s71200_OnlineStopStart.pcapng"

TIA, S71200 = "192.168.55.5", "192.168.42.10"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return site_file(tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def s7(site):
    """rules/s7.yaml alone: what the committed captures are checked against, so that the
    other packs (generic.yaml) do not decide these tests."""
    return load_rules([S7_PACK], site)


def test_every_s7_rule_is_covered_here(site):
    """A new rule in rules/s7.yaml must get a test below: this list is the table of them."""
    assert [r.id for r in load_rules([S7_PACK], site).rules] == [
        "s7.plc_stop", "s7.plc_start", "s7.program_upload", "s7.program_download", "s7.block_delete",
        "s7.memory_reset", "s7.szl_enumeration", "s7.password_presented", "s7.password_guessing",
        "s7.password_cleared", "s7.write_not_permitted",
        "s7.write_from_non_operator", "s7.write_outputs_or_flags",
        "s7plus.set_or_invoke_from_unexpected_host", "s7plus.cpu_state_change",
        "s7plus.program_upload", "s7plus.program_download"]
    unsited = load_rules([S7_PACK])
    assert set(unsited.inactive) == SITE_DEPENDENT
    assert len(unsited.rules) == 14


def test_control_capture_stop_start_password_compress(s7):
    """plc_stop, hot and cold start (PI P_PROGRAM), session password set and cleared,
    compress (_GARB) and copy RAM to ROM (_MODU)."""
    alerts = alerts_of(s7, PCAPS / "s7_control.pcap")
    assert summary(alerts) == [
        ("s7.memory_reset", 2, HMI, PLC),
        ("s7.password_cleared", 1, HMI, PLC),
        ("s7.password_presented", 1, HMI, PLC),
        ("s7.plc_start", 2, HMI, PLC),
        ("s7.plc_stop", 1, HMI, PLC),
    ]
    by_rule = {a.rule: a for a in alerts}
    assert [e["pi_service"] for e in by_rule["s7.memory_reset"].evidence] == ["_GARB", "_MODU"]
    assert [e.get("pi_arguments") for e in by_rule["s7.plc_start"].evidence] == [None, "C "]   # hot, cold
    assert [e["function"] for e in by_rule["s7.password_presented"].evidence] == ["plc_password"]
    assert by_rule["s7.password_cleared"].severity == "high" and by_rule["s7.password_presented"].severity == "low"
    assert by_rule["s7.plc_stop"].severity == "critical"
    assert all(e["direction"] == "request" and e["src"] == HMI for a in alerts for e in a.evidence)


def test_blocks_capture_upload_download_delete(s7):
    alerts = alerts_of(s7, PCAPS / "s7_blocks.pcap")
    assert summary(alerts) == [
        ("s7.block_delete", 1, HMI, PLC),
        ("s7.program_download", 1, HMI, PLC),
        ("s7.program_upload", 9, HMI, PLC),       # DB1, DB7 (refused) and DB2: start, upload(s), end
    ]
    by_rule = {a.rule: a for a in alerts}
    upload = by_rule["s7.program_upload"]
    assert [e["function"] for e in upload.evidence] == ["start_upload", "upload", "upload", "upload", "end_upload"]
    assert upload.evidence[0]["block_number"] == 1
    download = by_rule["s7.program_download"].evidence[0]
    assert (download["function"], download["block_type"], download["block_number"]) == ("request_download", "DB", 2)
    # in a download the PLC sends the download_block jobs: they raise nothing more, and
    # nothing is pinned on the PLC as a source
    assert all(a.src == HMI for a in alerts)
    assert by_rule["s7.block_delete"].evidence[0]["pi_service"] == "_DELE"


def test_identification_capture_szl_enumeration(s7):
    """SZL 0x001C, 0x0011 (twice each), then 0x0424, 0x0000, 0x0131, 0x0232: the fourth
    different list (0x0000) crosses the threshold; the two after it fold into the alert."""
    alerts = alerts_of(s7, PCAPS / "s7_identification.pcap")
    assert summary(alerts) == [("s7.szl_enumeration", 3, HMI, PLC)]
    assert [e["szl_id"] for e in alerts[0].evidence] == [0x0000, 0x0131, 0x0232]


def test_szl_enumeration_from_an_engineering_station_is_quiet_with_a_site_file(tmp_path):
    """TIA Portal going online reads 16 different lists (public capture): an alert without
    a site file, none once the site names its host as an EWS. The identification capture
    from a host the site names as EWS is quiet too; the HMI's is not (above)."""
    capture = public("gymgit-s7-pcaps/tia_s300_goOnline.pcapng")
    tia, cpu = "134.217.61.131", "134.217.61.211"
    alerts = alerts_of(load_rules([S7_PACK]), capture)
    assert summary(alerts) == [("s7.szl_enumeration", 12, tia, cpu)]
    # requests for the next part of a list name none and do not count as another list
    assert all(e.get("szl_id") is not None for e in alerts[0].evidence)
    site = site_file(tmp_path, f"roles: {{plc: [{cpu}], ews: [{tia}]}}\n", name="tia.yaml")
    assert alerts_of(load_rules([S7_PACK], site), capture) == []
    ews = site_file(tmp_path, SITE.replace(f"hmi: [{HMI}], ews: [{EWS}]", f"ews: [{HMI}]"), name="ews.yaml")
    assert alerts_of(load_rules([S7_PACK], ews), PCAPS / "s7_identification.pcap") == []


def test_szl_enumeration_needs_four_different_lists(tmp_path):
    """The same traffic cut short after three different SZL lists stays quiet."""
    rules = load_rules([S7_PACK], site_file(tmp_path))
    detector = RuleDetector(rules)
    seen, alerts = set(), []
    for event in decode([str(PCAPS / "s7_identification.pcap")]):
        if event.function == "read_szl" and event.direction == "request":
            seen.add(event.get("szl_id"))
            if len(seen) == 4:
                break
        alerts += detector.feed(event)
    assert seen == {0x001C, 0x0011, 0x0424, 0x0000}
    assert alerts + detector.flush() == []


def test_reads_writes_capture_outputs_and_flags_from_the_hmi(s7):
    """The HMI may write to the PLC, so only the area rule fires: the Q and C writes
    (write_area and write_multi_vars). Its two flag writes are an HMI's job once the site
    names it; DB writes, bit writes and every read stay quiet."""
    alerts = alerts_of(s7, PCAPS / "s7_reads_writes.pcap")
    assert summary(alerts) == [("s7.write_outputs_or_flags", 3, HMI, PLC)]
    assert [e["items"][0]["area"] for e in alerts[0].evidence] == ["Q", "C", "Q"]


def test_flag_writes_count_without_a_site_file_or_from_a_host_it_does_not_name(tmp_path):
    """The same capture without a site file, or with one that names another HMI and EWS:
    the M writes count again (the 2017QUT attacks are flag writes from an unknown host)."""
    for rules in (load_rules([S7_PACK]),
                  load_rules([S7_PACK], site_file(tmp_path, SITE.replace(HMI, "127.0.0.11").replace(EWS, "127.0.0.21")))):
        alerts = [a for a in alerts_of(rules, PCAPS / "s7_reads_writes.pcap") if a.rule == "s7.write_outputs_or_flags"]
        assert summary(alerts) == [("s7.write_outputs_or_flags", 5, HMI, PLC)]
        assert [e["items"][0]["area"] for e in alerts[0].evidence] == ["M", "Q", "C", "M", "Q"]


def test_flag_writes_of_a_wincc_hmi_are_quiet_once_the_site_names_it(tmp_path):
    """WinCC writing its flags (public capture, 36 M writes): an alert without a site file,
    none when the site names the WinCC station as an HMI (or as an EWS)."""
    capture = public("gymgit-s7-pcaps/wincc_s300_setup-alarm-read-write.pcapng")
    wincc, cpu = "134.249.53.130", "134.249.61.182"
    assert summary(alerts_of(load_rules([S7_PACK]), capture)) == [("s7.write_outputs_or_flags", 36, wincc, cpu)]
    for role in ("hmi", "ews"):
        site = site_file(tmp_path, f"roles: {{plc: [{cpu}], {role}: [{wincc}]}}\n", name=f"{role}.yaml")
        assert alerts_of(load_rules([S7_PACK], site), capture) == []


def test_s7plus_set_variable_from_an_unexpected_host(tmp_path):
    capture = public(S7PLUS_CAPTURE)
    site = site_file(tmp_path, f"roles: {{plc: [{S71200}], hmi: [{HMI}], ews: [{EWS}]}}\n")
    alerts = alerts_of(load_rules(site=site), capture)
    assert summary(alerts) == [("s7plus.cpu_state_change", 2, TIA, S71200),
                                ("s7plus.set_or_invoke_from_unexpected_host", 5, TIA, S71200)]
    alerts = [a for a in alerts if a.rule == "s7plus.set_or_invoke_from_unexpected_host"]
    assert alerts[0].proto == "s7comm-plus"
    assert [(e["function"], e["direction"], e["src"]) for e in alerts[0].evidence] == \
        [("set_variable", "request", TIA), ("set_multi_variables", "request", TIA)] + \
        [("set_variable", "request", TIA)] * 3


def test_s7plus_set_variable_from_the_engineering_station_is_only_the_stop_and_start(tmp_path):
    capture = public(S7PLUS_CAPTURE)
    site = site_file(tmp_path, f"roles: {{plc: [{S71200}], ews: [{TIA}]}}\n")
    assert summary(alerts_of(load_rules(site=site), capture)) == [("s7plus.cpu_state_change", 2, TIA, S71200)]


@pytest.mark.parametrize("name, stops_and_starts", [
    ("S7comm-Plus-Anomaly-Detection/paket_stop.pcapng", 1),
    ("S7comm-Plus-Anomaly-Detection/paket_start.pcapng", 1),
    ("S7comm-Plus-Anomaly-Detection/yeni/online_stop_yeni_yeni.pcapng", 1),
    ("S7comm-Plus-Anomaly-Detection/stabil_haberlesme.pcapng", 0),        # normal HMI session
    ("S7comm-Plus-Anomaly-Detection/S71200_StartupGoOnline.pcapng", 0),   # TIA going online, no mode change
])
def test_s7plus_cpu_state_change_on_the_labelled_captures(name, stops_and_starts):
    rules = load_rules([S7_PACK])
    alerts = [a for a in alerts_of(rules, public(name)) if a.rule == "s7plus.cpu_state_change"]
    assert sum(a.count for a in alerts) == stops_and_starts


def test_password_guessing_needs_five_tries_in_a_minute(tmp_path):
    """The control capture's one password sets no guessing alert; the same login five times
    in a row (the capture read five times over) does."""
    rules = load_rules([S7_PACK])
    once = [a.rule for a in alerts_of(rules, PCAPS / "s7_control.pcap")]
    assert "s7.password_guessing" not in once
    detector = RuleDetector(load_rules([S7_PACK]))
    login = next(e for e in decode([str(PCAPS / "s7_control.pcap")]) if e.function == "plc_password")
    alerts = []
    for n in range(5):
        alerts += detector.feed(login._replace(ts=login.ts + n))
    alerts += detector.flush()
    guessing = [a for a in alerts if a.rule == "s7.password_guessing"]
    assert [(a.count, a.src, a.dst) for a in guessing] == [(1, HMI, PLC)]


# --- S7comm-plus program transfer: the labelled public captures ---
# (upload, download) matches of each rule with rules/s7.yaml and no site file
PLUS_TRANSFERS = {
    # TIA Portal uploads from an S7-1200: the program explored with no attribute list
    # (yeni_onlineken, yeni_onlineyapilmis), the station's hardware configuration explored
    # as an upload starts (online_alma, yeni_onlineyapilmis)
    "S7comm-Plus-Anomaly-Detection/yeni/yeni_onlineken_upload.pcapng": (1, 0),
    "S7comm-Plus-Anomaly-Detection/yeni/yeni_onlineyapilmis_upload.pcapng": (2, 0),
    "S7comm-Plus-Anomaly-Detection/yeni/online_alma_yeni.pcapng": (1, 0),
    # 3 s at the end of an upload: subscriptions disabled and deleted, the session deleted,
    # 'LOGOUT'. Not one PDU of the upload itself is in it.
    "S7comm-Plus-Anomaly-Detection/yeni/offline_alma_yeni.pcapng": (0, 0),
    # 'Uploading OB1' to the PLC, a download in Siemens' terms: a DLTransaction creating OB1
    # ('Main', 2 KB of it sent by the PC); the PLC sends back only short answers
    "ITI-ICS-Security-Tools/s7/S7-1200-Uploading-OB1-TIAV12.pcap": (0, 1),
    "S7comm-Plus-Anomaly-Detection/yeni/offline_download_yeni.pcapng": (0, 8),
    "EmreEkin-ICS-Pcaps/s7plus/plc.pcap": (0, 4),               # engineering sessions with a DLTransaction
    "EmreEkin-ICS-Pcaps/s7plus/plc1.pcap": (0, 4),
    # downloads that change configuration and code without creating blocks, stops, starts
    "S7comm-Plus-Anomaly-Detection/s71200_GoOfline_HWCompileDownload.pcapng": (0, 0),
    "S7comm-Plus-Anomaly-Detection/s71200_Ofline_SWCompileDownload.pcapng": (0, 0),
    "S7comm-Plus-Anomaly-Detection/s71200_OnlineStopStart.pcapng": (0, 0),
    "S7comm-Plus-Anomaly-Detection/paket_start.pcapng": (0, 0),
    "S7comm-Plus-Anomaly-Detection/yeni/online_stop_yeni_yeni.pcapng": (0, 0),
    # normal: TIA Portal going online, HMI and OPC server sessions, mixed lab traffic
    "S7comm-Plus-Anomaly-Detection/S71200_StartupGoOnline.pcapng": (0, 0),
    "S7comm-Plus-Anomaly-Detection/stabil_haberlesme.pcapng": (0, 0),
    "S7comm-Plus-Anomaly-Detection/barkink1.pcapng": (0, 0),
    "S7comm-Plus-Anomaly-Detection/fst.pcapng": (0, 0),
    "S7comm-Plus-Anomaly-Detection/teb.pcapng": (0, 0),
    "S7comm-Plus-Anomaly-Detection/2.pcapng": (0, 0),
    "ITI-ICS-Security-Tools/s7/S7-1511-opc-request-all-types.pcap": (0, 0),
    "ITI-ICS-Security-Tools/s7/S7-1511_db3_var1_HMI.pcap": (0, 0),
    "ITI-ICS-Security-Tools/s7/V13_1200_TP1200sim_timer_sync.pcapng": (0, 0),
    "EmreEkin-ICS-Pcaps/s7plus/hmi.pcap": (0, 0),
    "EmreEkin-ICS-Pcaps/s7plus/cotp.pcap": (0, 0),
    "EmreEkin-ICS-Pcaps/s7plus/CotpAnalog.pcap": (0, 0),
    "icsnpp-s7comm/traces/s7comm_plus.pcap": (0, 0),
    "nDPI/pcap/s7comm-plus.pcap": (0, 0),
}


@pytest.mark.parametrize("name", list(PLUS_TRANSFERS))
def test_s7plus_program_upload_and_download_on_the_labelled_captures(name):
    alerts = alerts_of(load_rules([S7_PACK]), public(name))
    counts = tuple(sum(a.count for a in alerts if a.rule == rule)
                   for rule in ("s7plus.program_upload", "s7plus.program_download"))
    assert counts == PLUS_TRANSFERS[name]
    for alert in alerts:
        if alert.rule.startswith("s7plus.program_"):
            # the engineering station acts, the PLC is acted on
            assert alert.proto == "s7comm-plus" and {e["direction"] for e in alert.evidence} == {"request"}
            assert alert.src in ("192.168.55.5", "192.168.1.10", "192.168.1.20")


def test_s7plus_upload_evidence_is_the_unfiltered_program_explore():
    """The explore that uploads asks for no attribute at all; the one before a download
    names 59 of them (last modified, sizes, names...), which is why it stays quiet."""
    upload = alerts_of(load_rules([S7_PACK]), public("S7comm-Plus-Anomaly-Detection/yeni/yeni_onlineken_upload.pcapng"))
    evidence = [e for a in upload if a.rule == "s7plus.program_upload" for e in a.evidence]
    assert [(e["function"], e["object_ids"], e["attribute_ids"]) for e in evidence] == [("explore", (3,), ())]
    download = public("S7comm-Plus-Anomaly-Detection/s71200_Ofline_SWCompileDownload.pcapng")
    explores = [e for e in decode([str(download)]) if e.function == "explore" and e.direction == "request"
                and e.get("object_ids") == (3,)]
    assert len(explores) == 1 and len(explores[0].get("attribute_ids")) == 59
    assert 2453 in explores[0].get("attribute_ids")        # ASObjectSimple.LastModified

