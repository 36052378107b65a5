"""The rule engine: rule files as data with errors that name file and line, the operators,
thresholds, folding of repeats and site groups."""

from __future__ import annotations

import pytest

from bench import rules_bench
from icsguard.analysis import decode
from icsguard.detect.rule_engine import RuleDetector
from icsguard.detect.rules import load_rules
from icsguard.detect.site import load_site
from icsguard.detect.yamlfile import FileError
from icsguard.events import Event
from tests.support import PCAPS

SITE = """\
zones: {control: [10.0.0.0/24]}
roles: {plc: [10.0.0.2], hmi: [10.0.0.10], ews: [10.0.0.20]}
writers: [{to: [$plc], from: [$hmi]}]
maintenance: [{days: [sat], start: "02:00", end: "04:00"}]
"""



def _event(ts=1_700_000_000.0, src="10.0.0.10", dst="10.0.0.2", function="write_single_register",
           direction="request", proto="modbus", **fields) -> Event:
    return Event(ts, proto, src, 40000, dst, 502, direction, function, 6, "1:x", "t.pcap", 1, fields)



def _rules(tmp_path, text: str, site: str | None = None):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    loaded_site = None
    if site is not None:
        (tmp_path / "site.yaml").write_text(site)
        loaded_site = load_site(tmp_path / "site.yaml")
    return load_rules([path], loaded_site)



@pytest.mark.parametrize("text, line, message", [
    ("- id: a\n  title: t\n  severity: high\n  match: {function: [x\n", 5, "not valid YAML"),
    ("- id: a\n  title: t\n  severity: high\n  match: {functon: x}\n", 4, "unknown field 'functon'"),
    ("- id: a\n  title: t\n  severity: high\n  match:\n    unit_id: {bigger: 3}\n", 5, "unknown operator 'bigger'"),
    ("- id: a\n  title: t\n  severity: high\n  match: {function: {regex: '(('}}\n", 4, "regex"),
    ("- id: a\n  title: t\n  severity: loud\n  match: {function: x}\n", 3, "severity 'loud'"),
    ("- id: a\n  title: t\n  severity: high\n  colour: red\n  match: {function: x}\n", 4, "unknown key 'colour'"),
    ("- id: a\n  title: t\n  severity: high\n  match: {src: {in: [$operators]}}\n", 4, "unknown site group $operators"),
    ("- id: a\n  title: t\n  severity: high\n  mitre: [T99]\n  match: {function: x}\n", 4, "ATT&CK"),
    ("- id: a\n  title: t\n  severity: high\n  match: {function: x}\n- id: a\n  title: u\n  severity: low\n"
     "  match: {function: y}\n", 5, "rule id 'a' is also in"),
])
def test_broken_rule_files_name_file_and_line(tmp_path, text, line, message):
    with pytest.raises(FileError) as caught:
        _rules(tmp_path, text, SITE)
    assert caught.value.line == line and message in str(caught.value)
    assert str(caught.value).startswith(f"{tmp_path / 'rules.yaml'}:{line}: ")



def test_operators_and_list_fields(tmp_path):
    rules = _rules(tmp_path, """
- {id: eq, title: t, severity: low, match: {unit_id: 0}}
- {id: rng, title: t, severity: low, match: {values: {range: [1000, 2000]}}}
- {id: rx, title: t, severity: low, match: {function: {regex: "^write_"}}}
- {id: nin, title: t, severity: low, match: {values: {not_in: [1, 2]}}}
- {id: ex, title: t, severity: low, match: {exception_code: {exists: false}}}
- {id: has, title: t, severity: low, match: {node_ids: {contains: "ns=2;i=4"}}}
- {id: deep, title: t, severity: low, match: {items.area: {in: [Q, M]}}}
- {id: late, title: t, severity: low, match: {certificate_not_after: {before: ts}}}
""")
    event = _event(unit_id=0, values=[5, 1500], node_ids=["ns=2;i=4"], items=[{"area": "DB"}, {"area": "Q"}],
                   certificate_not_after="2023-11-14T00:00:00+00:00")
    assert {r.id for r in rules.rules if r.why(event) is not None} == {"eq", "rng", "rx", "nin", "ex", "has", "deep", "late"}
    quiet = _event(unit_id=1, values=[1, 2], function="read_coils", exception_code=2, node_ids=[],
                   items=[{"area": "DB"}], certificate_not_after="2030-01-01T00:00:00+00:00")
    assert [r.id for r in rules.rules if r.why(quiet) is not None] == []
    why = rules.by_id("deep").why(event)
    assert why == ["items.area in ['Q', 'M'] (is ['DB', 'Q'])"]



def test_site_groups_permissions_and_maintenance(tmp_path):
    rules = _rules(tmp_path, """
- {id: writer, title: t, severity: high, match: {src: {not_permitted: write}}}
- {id: not_hmi, title: t, severity: high, match: {src: {not_in: [$hmi, $ews]}}}
- {id: outside, title: t, severity: low, match: {ts: {not_in: [$maintenance]}}}
""", SITE)
    saturday_3am = 1_700_362_800.0        # 2023-11-19 03:00 UTC is a Sunday: use the day before
    saturday_3am -= 86_400
    hmi = _event(ts=saturday_3am)
    intruder = _event(src="10.0.0.99", ts=saturday_3am + 3600)
    assert [r.id for r in rules.rules if r.why(hmi) is not None] == []
    assert [r.id for r in rules.rules if r.why(intruder) is not None] == ["writer", "not_hmi", "outside"]
    # without a site file, rules that need one are set aside, not guessed at
    unsited = _rules(tmp_path, "- {id: writer, title: t, severity: high, match: {src: {not_permitted: write}}}\n")
    assert unsited.rules == [] and "writer" in unsited.inactive
    # a site file without maintenance windows does not make every write "outside" them
    windowless = _rules(tmp_path, "- {id: outside, title: t, severity: low, match: {ts: {not_in: [$maintenance]}}}\n",
                        SITE.replace('maintenance: [{days: [sat], start: "02:00", end: "04:00"}]\n', ""))
    assert windowless.rules == [] and "outside" in windowless.inactive



def test_thresholds_distinct_and_folding(tmp_path):
    rules = _rules(tmp_path, """
- {id: scan, title: t, severity: medium, match: {exception_code: 2}, threshold: {count: 3, seconds: 10, by: [dst]}}
- {id: sweep, title: t, severity: medium, match: {unit_id: {exists: true}},
   threshold: {count: 3, seconds: 60, by: [src], distinct: unit_id}}
""")
    detector = RuleDetector(rules)
    answers = [_event(ts=100.0 + i, src="10.0.0.2", dst="10.0.0.66", direction="response", exception_code=2)
               for i in (0, 1, 20, 21, 22, 23)]      # a pair, a pause, then four in a row
    for event in answers:
        detector.feed(event)
    for unit in (1, 1, 2, 1, 3):
        detector.feed(_event(ts=200.0, src="10.0.0.9", unit_id=unit))
    alerts = {a.rule: a for a in detector.flush()}
    scan = alerts["scan"]
    assert (scan.count, scan.first_ts, scan.last_ts) == (2, 122.0, 123.0)
    assert (scan.src, scan.dst) == ("10.0.0.66", "10.0.0.2")       # the client that scanned
    assert alerts["sweep"].count == 1 and alerts["sweep"].evidence[0]["unit_id"] == 3



def test_repeats_fold_until_a_gap(tmp_path):
    rules = _rules(tmp_path, "- {id: w, title: t, severity: high, match: {function: write_single_register}}\n")
    detector = RuleDetector(rules)
    closed = []
    for ts in [0.0, 10.0, 20.0, 30.0, 31.0, 32.0, 2000.0]:
        closed += detector.feed(_event(ts=ts, values=[int(ts)]))
    closed += detector.flush()
    assert [(a.count, a.first_ts, a.last_ts, len(a.evidence)) for a in closed] == [(6, 0.0, 32.0, 5), (1, 2000.0, 2000.0, 1)]



def test_rules_index_finds_exactly_the_matching_rules(tmp_path):
    """1,000 rules filed under their function and unit id: an event meets only its own
    (bench/rules_bench.py measures what that saves)."""
    extra = "".join(f"- {{id: r{n}, title: t, severity: low, match: {{function: f{n}, unit_id: {n}}}}}\n"
                    for n in range(1000))
    rules = _rules(tmp_path, extra + """
- {id: w, title: t, severity: low, direction: request, match: {function: [write_single_register, f7]}}
- {id: rx, title: t, severity: low, match: {function: {regex: "^f7$"}}}
- {id: lists, title: t, severity: low, match: {node_ids: "ns=2;i=4"}}
""")
    assert [r.id for r in rules.matching(_event(function="f7", unit_id=7))] == ["r7", "w", "rx"]
    assert [r.id for r in rules.matching(_event(function="f7", unit_id=8))] == ["w", "rx"]
    assert [r.id for r in rules.matching(_event(function="f7", unit_id=7, direction="response"))] == ["r7", "rx"]
    assert [r.id for r in rules.matching(_event(node_ids=["i=85", "ns=2;i=4"]))] == ["w", "lists"]



def test_rules_index_agrees_with_each_rule_on_real_traffic(tmp_path):
    """The index (per-field answers, remembered) must give what trying every rule gives:
    1,000 generated rules of every operator against the committed captures' events, with
    registers long and short, booleans and missing fields."""
    rules_bench.write_rules(tmp_path, 1000, seed=7)
    rules = load_rules([tmp_path])
    events = list(decode([str(p) for p in sorted(PCAPS.glob("*.pcap"))]))
    events += [_event(values=list(range(300))), _event(values=[True, False]), _event(unit_id=True),
               _event(values=(1, 2, 70000)), _event(function="read_coils", address=None)]
    matched = 0
    for event in events + events:          # twice: the second time from remembered answers
        expected = [r.id for r in rules.rules if r.why(event) is not None]
        assert [r.id for r in rules.matching(event)] == expected, event
        matched += bool(expected)
    assert matched > 100


def test_a_field_of_too_many_values_is_tested_each_time_not_remembered():
    """Every client port is new (each poll a fresh connection): the shipped rule that tests the
    ports of every industrial PDU stops remembering the client's after MAX_FIELD_ANSWERS of them,
    and still answers right: a PDU to an unusual port matches, the others do not."""
    from icsguard.detect import rules as rules_module

    def poll(sport, dport=502):
        return Event(1_700_000_000.0, "modbus", "10.0.0.10", sport, "10.0.0.2", dport, "request",
                     "read_holding_registers", 3, "1:x", "t.pcap", 1, {"unit_id": 1, "address": 0, "quantity": 2})
    rules = load_rules()
    for port in range(20_000, 20_000 + rules_module.MAX_FIELD_ANSWERS + 500):
        assert "generic.unusual_port" not in [r.id for r in rules.matching(poll(port))]
    group = rules._groups[("modbus", "read_holding_registers", "request")]
    answers = {name: remembered for name, _, remembered, _ in group.tested}
    assert answers["sport"] is rules_module._UNREMEMBERED
    assert sum(len(remembered) for remembered in answers.values()) < 100
    assert "generic.unusual_port" in [r.id for r in rules.matching(poll(30_000, 503))]


def test_shipped_packs_load_and_map_to_attack(tmp_path):
    (tmp_path / "site.yaml").write_text(SITE)
    rules = load_rules(site=load_site(tmp_path / "site.yaml"))
    assert len(rules.rules) >= 35 and not rules.inactive
    assert all(r.mitre and r.title and r.severity for r in rules.rules)
    assert {r.proto[0] for r in rules.rules if r.proto} >= {"modbus", "s7comm", "opcua"}



@pytest.mark.parametrize("text, line, message", [
    ("ports:\n  modbus: [502]\n  profinet: [34964]\n", 3, "ports: unknown protocol 'profinet' (protocols: modbus, "),
    ("ports: {modbus: [504, http]}\n", 1, "ports: modbus: 'http' is not a port or a range like 4841-4850"),
    ("roles: {plc: [10.0.0.2]}\nports:\n  opcua: [4840, 70000]\n", 3, "ports: opcua: 70000 is not a port (1-65535)"),
    ("ports:\n  opcua:\n    - 4850-4841\n", 2, "ports: opcua: '4850-4841' is not a port (1-65535) or a rising range"),
    ("ports: [502, 504]\n", 1, "ports must map protocols to lists of ports"),
    ("zones:\n  ports: [10.0.0.0/24]\n", 2, "the name 'ports' is used twice"),
    ("ports: {modbus: [504]}\nport: {opcua: [4841]}\n", 2, "unknown key 'port' (known: zones, roles, writers, maintenance, ports, conduits, control_zones, allowed_services, known_hosts, pki_required)"),
])
def test_broken_site_ports_name_file_and_line(tmp_path, text, line, message):
    (tmp_path / "site.yaml").write_text(text)
    with pytest.raises(FileError) as caught:
        load_site(tmp_path / "site.yaml")
    assert caught.value.line == line and message in str(caught.value)
    assert str(caught.value).startswith(f"{tmp_path / 'site.yaml'}:{line}: ")



def test_site_ports_are_per_protocol_and_shared_by_the_s7_family(tmp_path):
    (tmp_path / "site.yaml").write_text("ports:\n  modbus: [504, '505']\n  opcua: [4841-4843, 48010]\n"
                                        "  cotp: 1102\n")
    site = load_site(tmp_path / "site.yaml")
    assert site.ports["modbus"] == {504, 505} and site.ports["opcua"] == {4841, 4842, 4843, 48010}
    assert site.ports["s7comm"] == site.ports["s7comm-plus"] == site.ports["cotp"] == {1102}
    assert site.has_port("modbus", 505) and not site.has_port("modbus", 4841) and not site.has_port("opcua", 504)
    (tmp_path / "plain.yaml").write_text(SITE)
    assert load_site(tmp_path / "plain.yaml").ports == {}



def test_ports_group_is_the_sites_ports_for_the_events_protocol(tmp_path):
    text = "- {id: odd, title: t, severity: low, match: {dport: {not_in: [502, $ports]}}}\n"
    unsited = _rules(tmp_path, text)          # $ports needs no site file: none are given then
    assert [r.id for r in unsited.rules] == ["odd"] and unsited.inactive == {}
    assert unsited.rules[0].why(_event()._replace(dport=504)) is not None
    sited = _rules(tmp_path, text, SITE + "ports: {modbus: [504], s7comm: [1102]}\n")
    assert sited.rules[0].why(_event()._replace(dport=504)) is None
    assert sited.rules[0].why(_event()._replace(dport=505)) is not None
    assert sited.rules[0].why(_event(proto="opcua")._replace(dport=504)) is not None      # another protocol's port
    assert sited.rules[0].why(_event(proto="s7comm-plus")._replace(dport=1102)) is None
    assert not sited.matching(_event()._replace(dport=504)) and sited.matching(_event()._replace(dport=505))



def test_optional_groups_hold_with_a_site_and_are_empty_without(tmp_path):
    text = "- {id: flags, title: t, severity: high, match: {src: {not_in: [\"$hmi?\", \"$ews?\"]}}}\n"
    unsited = _rules(tmp_path, text)
    assert [r.id for r in unsited.rules] == ["flags"] and unsited.inactive == {}
    assert unsited.rules[0].why(_event(src="10.0.0.10")) is not None and unsited.rules[0].why(_event(src="10.0.0.99")) is not None
    sited = _rules(tmp_path, text, SITE)
    assert sited.rules[0].why(_event(src="10.0.0.10")) is None and sited.rules[0].why(_event(src="10.0.0.20")) is None
    assert sited.rules[0].why(_event(src="10.0.0.99")) is not None
    with pytest.raises(FileError) as caught:     # with a site, a name it does not have is still a mistake
        _rules(tmp_path, "- {id: a, title: t, severity: low, match: {src: {in: [\"$operators?\"]}}}\n", SITE)
    assert caught.value.line == 1 and "unknown site group $operators" in str(caught.value)

