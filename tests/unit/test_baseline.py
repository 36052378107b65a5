"""The learned baseline and the model, one rule at a time, on hand-made events and public
captures: window cutting, pace changes, the Internet and the local network as peers,
announcements, silences, value drift, severities and neighbouring addresses.
"""

from __future__ import annotations

import pytest

from icsguard.analysis import learn
from icsguard.detect import baseline as baseline_module
from icsguard.detect.baseline import SILENCE_MIN_SECONDS, Baseline, BaselineDetector
from icsguard.detect.features import FEATURES, Windows
from icsguard.detect.targets import Targets
from icsguard.events import Event
from tests.support import public
from tests.support.baseline_detection import HISTORIAN, HMI, PLC, ROGUE, detect, whys_of

REQUESTS = FEATURES.index("requests")


TARGETS = Targets()     # one for the whole module, as a run has one


@pytest.fixture
def watched_long(monkeypatch):
    """Baselines made of a few hand-made events, taken as watched long enough: what these
    tests check is what is new, not how sure the baseline is of it."""
    monkeypatch.setattr(baseline_module, "MATURE_SECONDS", 0.0)


def test_windows_cut_by_the_capture_are_scaled_to_whole_ones():
    """A capture starting 2.5 s into a 5 s window and ending 1.5 s into another: the cut
    windows' counts are scaled to a whole window's; a window covered less than a quarter
    makes no row."""
    def feed(windows, seconds):
        rows = []
        for number, ts in enumerate(seconds):
            rows += windows.feed(Event(ts, "modbus", HMI, 40000, PLC, 502, "request", "read_coils", 1, "",
                                       "x.pcap", number, {"unit_id": 1, "address": 0, "quantity": 8,
                                                          "pdu_length": 12}))
        return rows + windows.flush()
    rows = feed(Windows(5.0), [2.5 + second for second in range(20)])       # one request a second
    assert [row.start for row in rows] == [0.0, 5.0, 10.0, 15.0, 20.0]
    requests = [round(row.values[REQUESTS], 2) for row in rows]
    assert requests == [6.0, 5.0, 5.0, 5.0, 6.67]       # 3 in 2.5 s; 5 in 5 s; 2 in 1.5 s
    assert [row.values[FEATURES.index("bytes")] for row in rows] == pytest.approx([12 * r for r in requests], rel=0.01)
    rows = feed(Windows(5.0), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])                # 5.0-6.0 covers a fifth
    assert [(row.start, row.values[REQUESTS]) for row in rows] == [(0.0, 5.0)]
    rows = feed(Windows(5.0), [1.0, 2.0, 3.0, 4.0, 30.0, 31.0, 32.0])       # a pause: bursty traffic
    assert [(row.start, round(row.values[REQUESTS], 2)) for row in rows] == [(0.0, 5.0), (30.0, 7.5)]
    rows = feed(Windows(5.0), [1.0, 2.0, 3.0, 4.0, 90.0, 91.0, 92.0])       # 10 windows silent: a restart
    assert [(row.start, round(row.values[REQUESTS], 2)) for row in rows] == [(0.0, 6.67), (90.0, 7.5)]


def test_public_s7comm_plus_traffic_learned_raises_nothing_on_itself():
    """TIA Portal and three S7-1200 over S7comm-plus (item addresses, object ids): what was
    learned raises nothing on the same traffic, and a CPU stop from the same station is a
    function that station never used."""
    normal = public("S7comm-Plus-Anomaly-Detection/stabil_haberlesme.pcapng")
    stop = public("S7comm-Plus-Anomaly-Detection/paket_stop.pcapng")
    learned, error = learn([str(normal)], window_seconds=10)
    assert error is None
    assert any(proto == "s7comm-plus" for _, _, proto in learned.baseline.pairs)
    assert detect(learned, normal) == []
    # a minute of learning: what the station never did is news of low severity, one alert a pair
    alerts = detect(learned, stop)
    young = [a for a in alerts if a.rule == "baseline.briefly_learned"]
    assert young and {a.severity for a in young} == {"low"}
    assert len({(a.src, a.dst) for a in young}) == len(young)
    assert any("set_variable never used" in why and why.endswith("(watched under a minute while learning)")
               for a in young for why in whys_of(a))
    # the variables each PLC was read at are learned by access area and LID path, as OPC UA
    # nodes are: a read of one never read before is a new target
    spaces = learned.baseline.spaces[("192.168.55.5", "192.168.41.10", "s7comm-plus", "get_multi_variables")]
    assert "variable area 201 1081.0" in spaces and all(name.startswith("variable ") for name in spaces)
    assert "get_multi_variables on variable area 34 2449: never accessed by 192.168.55.5 on 192.168.41.10 " \
        "(watched under a minute while learning)" in {why for a in young for why in whys_of(a)}


def test_period_change_needs_mean_and_median_off():
    """A poll learned at 1 s: a stall the poller catches up on, or one long pause between
    bursts, is no change, and nor is drift within PACE_BAND (a poll three times slower); a
    flood or a poll five times slower is a change, reported once."""
    def read(ts):
        return Event(ts, "modbus", HMI, 40000, PLC, 502, "request", "read_coils", 1, "", "x.pcap", 1,
                     {"unit_id": 1, "address": 0, "quantity": 8})
    baseline = Baseline()
    for second in range(60):
        baseline.learn(read(1000.0 + second), TARGETS)
    assert list(baseline.periodic().values()) == [pytest.approx(1.0)]

    def changes(times):
        detector = BaselineDetector(baseline)
        found = [why for ts in times for f, _, _, why in detector.findings(read(ts)) if f.rule == "baseline.period_change"]
        return found
    steady = [2000.0 + s for s in range(20)]
    stall = steady[:5] + [2007.0, 2007.05, 2007.1, 2007.15] + [2008.0 + s for s in range(12)]   # 3 s late, caught up
    bursts = [2000.0 + s for s in range(8)] + [2062.0 + s for s in range(8)]                    # a pause of a minute
    flood = [2000.0 + s * 0.01 for s in range(40)]
    drift = [2000.0 + s * 3 for s in range(40)]
    slow = [2000.0 + s * 5 for s in range(40)]
    assert changes(steady) == changes(stall) == changes(bursts) == changes(drift) == []
    assert changes(flood) == ["read_coils every 0.01 s, learned every 1 s"]
    assert changes(slow) == ["read_coils every 5 s, learned every 1 s"]



def test_drift_within_the_band_is_noted_not_alerted():
    """A poll learned at 1 s running three times slower, then back at its pace: noted as
    drift (learned period, latest pace, first and last seen), once per exchange, never an
    alert; a poll 1.2 times slower is no drift; one five times slower is a change, not drift."""
    baseline = Baseline()
    for second in range(60):
        baseline.learn(_poll(1000.0 + second), TARGETS)

    def drifts(times):
        detector = BaselineDetector(baseline)
        found = [f for ts in times for f in detector.findings(_poll(ts))]
        return found, detector.take_drifts(), detector
    found, noted, detector = drifts([2000.0 + s * 3 for s in range(40)] + [2120.0 + s for s in range(20)])
    assert found == []
    assert noted == [((HMI, PLC, "modbus", "read_coils"), (pytest.approx(1.0), 3.0, 2024.0, 2120.0))]
    assert detector.take_drifts() == []                     # taken: only what moves since is given again
    assert drifts([2000.0 + s * 1.2 for s in range(40)])[1] == []
    found, noted, _ = drifts([2000.0 + s * 5 for s in range(40)])
    assert [f.rule for f, *_ in found] == ["baseline.period_change"] and noted == []


def test_a_poller_drifted_slower_may_pause_as_long_as_its_own_pace_allows():
    """Learned at 1 s, an exchange is silent after 10 s without it. Drifted to 3 s, a pause of
    14 s (a reconnect) is five of its own periods at most, not a silence; stopping still is."""
    def poll(ts, client):
        return Event(ts, "modbus", client, 40000, PLC, 502, "request", "read_coils", 1, "", "x.pcap", 1,
                     {"unit_id": 1, "address": 0, "quantity": 8})
    baseline = Baseline()
    for second in range(60):
        baseline.learn(poll(1000.0 + second, HMI), TARGETS)
        baseline.learn(poll(1000.5 + second, HISTORIAN), TARGETS)
    detector = BaselineDetector(baseline)
    hmi = [2000.0 + 3 * n for n in range(40)] + [2131.0 + 3 * n for n in range(10)]
    historian = [2000.5 + n for n in range(200)]
    alerts = [a for ts, client in sorted([(t, HMI) for t in hmi] + [(t, HISTORIAN) for t in historian])
              for a in detector.feed(poll(ts, client))] + detector.flush()
    assert [(a.rule, a.src) for a in alerts] == [("baseline.channel_silent", HMI)]
    assert alerts[0].ts > 2158.0 + 15          # found after the last poll and five of its periods


def test_learning_goes_on_with_the_pace_the_poller_keeps():
    """An exchange's period is the median of its latest intervals: learned at 1 s, then
    updated with an hour at 3 s, it is a 3 s poll."""
    baseline = Baseline()
    for second in range(600):
        baseline.learn(_poll(1000.0 + second), TARGETS)
    for step in range(1200):
        baseline.learn(_poll(2000.0 + 3 * step), TARGETS)
    assert list(baseline.periodic().values()) == [pytest.approx(3.0)]


@pytest.mark.usefixtures("watched_long")
def test_internet_hosts_are_one_peer():
    """The TIA Portal laptop of the S7-1200 lab, learned while it reached no cloud host,
    then reaches six over TLS while going online: one alert that it reached the Internet at
    all, its evidence naming the hosts, not one alert per host. Once that is learned, other
    cloud hosts over TLS are nothing new, but HTTP to one is a new function."""
    quiet = public("S7comm-Plus-Anomaly-Detection/fst.pcapng")
    online = public("S7comm-Plus-Anomaly-Detection/barkink1.pcapng")
    learned, _ = learn([str(quiet)], window_seconds=10)
    internet = [a for a in detect(learned, online) if "the Internet" in a.title]
    assert len(internet) == 1
    alert = internet[0]
    assert (alert.rule, alert.src, alert.dst, alert.count) == ("baseline.new_talker", "192.168.55.5", "51.178.91.235", 6)
    assert whys_of(alert)[0] == "192.168.55.5 never sent tcp to the Internet while learning (tcp tls to 51.178.91.235)"
    assert len({entry["dst"] for entry in alert.evidence}) == 5          # evidence keeps five
    relearned, _ = learn([str(quiet), str(online)], window_seconds=10)
    assert relearned.baseline.pairs[("192.168.55.5", "the Internet", "tcp")] == {"tls": 6}
    other = public("S7comm-Plus-Anomaly-Detection/S71200_StartupGoOnline.pcapng")      # TLS to two more, HTTP to one
    internet = [a for a in detect(relearned, other) if "the Internet" in a.title]
    assert [(a.rule, whys_of(a)) for a in internet] == [
        ("baseline.new_function", ["http never used from 192.168.55.5 to the Internet (learned: tls)"])]


def test_plant_hosts_on_public_addresses_stay_themselves():
    from icsguard.detect.peers import INTERNET, LOCAL, peer
    assert peer("192.168.55.5", "51.178.91.235") == INTERNET
    assert peer("134.249.53.130", "134.249.61.182") == "134.249.61.182"      # one /16: the plant's own
    assert peer("192.168.55.5", "192.168.50.46") == "192.168.50.46"
    assert peer("192.168.1.1", "224.0.0.251") == LOCAL
    assert peer("10.0.0.1", "10.0.0.255") == peer("10.0.0.1", "255.255.255.255") == LOCAL
    assert peer("10.0.0.1", "10.0.1.254") == "10.0.1.254"
    assert peer("192.168.1.5", "52.20.30.255") == INTERNET                # outside the site first


@pytest.mark.usefixtures("watched_long")
def test_a_host_that_announced_itself_may_announce_itself_another_way():
    """The TIA Portal laptop of the S7-1200 lab sent SSDP to a multicast group while
    learning; its NetBIOS datagrams to the subnet's broadcast address later are nothing new.
    A PLC that never announced itself doing so is, and SMB to the local network would be."""
    def udp(src, dst, service):
        return Event(1000.0, "udp", src, 50000, dst, 1, "request", service, 1, "", "x.pcap", 1, {})
    baseline = Baseline()
    baseline.learn(udp("192.168.55.5", "239.255.255.250", "ssdp"), TARGETS)
    baseline.learn(udp("192.168.41.10", "192.168.41.255", "dhcp"), TARGETS)
    detector = BaselineDetector(baseline)
    assert detector.findings(udp("192.168.55.5", "192.168.55.255", "netbios_datagram")) == []
    assert detector.findings(udp("192.168.55.5", "224.0.0.252", "llmnr")) == []
    assert [why for *_, why in detector.findings(udp("192.168.55.5", "192.168.55.255", "smb"))] == [
        "smb never used from 192.168.55.5 to the local network (learned: ssdp)"]
    assert [why for *_, why in detector.findings(udp("192.168.41.10", "224.0.0.251", "mdns"))] == [
        "mdns never used from 192.168.41.10 to the local network (learned: dhcp)"]
    baseline.learn(udp("192.168.55.5", "192.168.50.46", "netbios_name"), TARGETS)         # a WINS server, unicast
    assert [why for *_, why in BaselineDetector(baseline).findings(udp("192.168.55.5", "192.168.50.46", "mdns"))] == [
        "mdns never used from 192.168.55.5 to 192.168.50.46 (learned: netbios_name)"]


def _poll(ts, function="read_coils", address=0):
    return Event(ts, "modbus", HMI, 40000, PLC, 502, "request", function, 1, "", "x.pcap", 1,
                 {"unit_id": 1, "address": address, "quantity": 8})


def test_a_channel_is_silent_only_when_its_client_is():
    """An HMI polls two screens' registers each second while learning. When it stops
    polling one but goes on with the other, nothing is silent; when it stops altogether, it is."""
    baseline = Baseline()
    for second in range(60):
        baseline.learn(_poll(1000.0 + second), TARGETS)
        baseline.learn(_poll(1000.2 + second, "read_holding_registers", 100), TARGETS)
    assert len(baseline.periodic()) == 2

    def silences(events):
        detector = BaselineDetector(baseline)
        alerts = [a for event in events for a in detector.feed(event)] + detector.flush()
        return [a for a in alerts if a.rule == "baseline.channel_silent"]
    both = [e for s in range(5) for e in (_poll(2000.0 + s), _poll(2000.2 + s, "read_holding_registers", 100))]
    one_left = both + [_poll(2005.0 + s) for s in range(40)]
    assert silences(one_left) == []
    stopped = one_left + [_poll(2100.0, "read_holding_registers", 100)]     # 55 s of nothing, then a poll
    found = silences(stopped)
    assert len(found) == 1 and found[0].count == 2
    assert sorted(e["function"] for e in found[0].evidence) == ["read_coils", "read_holding_registers"]


def test_a_value_may_drift_by_noise_but_not_jump():
    """A reading that sat at 14017 while learning may read 14018; a setpoint learned at
    1100..1120 may not be written 1150; a coil that was always off may not turn on."""
    def answer(ts, table, value):
        function = {"holding_register": "read_holding_registers", "coil": "read_coils"}[table]
        return Event(ts, "modbus", PLC, 502, HMI, 40000, "response", function, 1, "", "x.pcap", 1,
                     {"unit_id": 1, "address": 7, "quantity": 1, "values": [value]})
    baseline = Baseline()
    for second in range(30):
        baseline.learn(answer(1000.0 + second, "holding_register", 14017), TARGETS)
        baseline.learn(answer(1000.0 + second, "coil", 0), TARGETS)
    detector = BaselineDetector(baseline)

    def out_of_range(event):
        return [why for finding, _, _, why in detector.findings(event) if finding.rule == "baseline.value_out_of_range"]
    assert out_of_range(answer(2000.0, "holding_register", 14018)) == []
    assert out_of_range(answer(2000.0, "holding_register", 14017 + 140)) == []
    assert out_of_range(answer(2000.0, "holding_register", 14017 + 141)) == [
        "unit 1 holding_register 7 = 14158, learned 14017..14017"]
    assert out_of_range(answer(2000.0, "coil", 1)) == ["unit 1 coil 7 = 1, learned 0..0"]


def test_two_writers_of_one_setpoint_each_change_it_at_their_own_pace():
    """An HMI learned writing a setpoint slowly; a second HMI starts writing the same register at
    its own slow pace, the two interleaved: no rate-of-change. One writer jumping still is one."""
    def write(ts, client, value):
        return Event(ts, "modbus", client, 40000, PLC, 502, "request", "write_single_register", 6, "", "x.pcap",
                     1, {"unit_id": 1, "address": 9, "values": [value]})
    baseline = Baseline()
    for step in range(40):                               # one step of 1 every 8 s: at most 0.5/s
        baseline.learn(write(1000.0 + 2 * step, HMI, 1000 + step // 4), TARGETS)
    detector = BaselineDetector(baseline)

    def rates(event):
        return [why for finding, _, _, why in detector.findings(event) if finding.rule == "baseline.rate_of_change"]
    second = "10.0.0.11"
    found = []
    for step in range(20):
        found += rates(write(2000.0 + 2 * step, HMI, 1000 + step // 4))
        found += rates(write(2001.0 + 2 * step, second, 1009 - step // 4))
    assert found == []
    assert rates(write(2100.0, HMI, 1000)) == [] and rates(write(2102.0, HMI, 1009))    # 4.5/s against 0.5/s


@pytest.mark.usefixtures("watched_long")
def test_what_changes_something_is_graded_up():
    """A new function that only reads is medium, one that writes or controls is high; a new
    target written is high, one read is medium, and the two never fold into one alert."""
    def request(ts, function, address):
        return Event(ts, "modbus", HMI, 40000, PLC, 502, "request", function, 1, "", "x.pcap", 1,
                     {"unit_id": 1, "address": address, "quantity": 1})
    baseline = Baseline()
    for second in range(10):
        baseline.learn(request(1000.0 + second, "read_coils", 0), TARGETS)
        baseline.learn(request(1000.5 + second, "write_single_register", 100), TARGETS)
    detector = BaselineDetector(baseline)
    events = [request(2000.0, "read_holding_registers", 0), request(2001.0, "write_single_coil", 0),
              request(2002.0, "read_coils", 50), request(2003.0, "write_single_register", 200),
              request(2004.0, "read_coils", 60)]
    alerts = [a for e in events for a in detector.feed(e)] + detector.flush()
    assert sorted((a.rule, a.severity, a.count) for a in alerts) == [
        ("baseline.new_function", "high", 1), ("baseline.new_function", "medium", 1),
        ("baseline.new_target", "high", 1), ("baseline.new_target", "medium", 2)]


def test_a_duty_cycle_is_silent_only_after_twice_its_pause():
    """A client writes a coil every half second for 15 s, then pauses 60 s, again and again
    (as in the public pcap-share capture): its usual pause is no silence; a pause of more
    than twice that is."""
    def burst(start):
        return [_poll(start + 0.5 * n, "write_single_coil", 7) for n in range(30)]
    baseline = Baseline()
    for cycle in range(8):
        for event in burst(1000.0 + 75 * cycle):
            baseline.learn(event, TARGETS)
    key, = baseline.periodic()
    assert baseline.periodic()[key] == pytest.approx(0.5)
    assert baseline.channels[key].silence(0.5) == pytest.approx(2 * 60.5)

    def silences(starts):
        detector = BaselineDetector(baseline)
        alerts = [a for start in starts for e in burst(start) for a in detector.feed(e)] + detector.flush()
        return [whys_of(a) for a in alerts if a.rule == "baseline.channel_silent"]
    assert silences([5000.0, 5075.0, 5150.0]) == []
    apart = Baseline()                  # the same bursts learned from captures a day apart: no duty cycle
    for day in range(4):
        for event in burst(1000.0 + 86400 * day):
            apart.learn(event, TARGETS)
    key, = apart.periodic()
    assert apart.channels[key].silence(0.5) == SILENCE_MIN_SECONDS
    assert silences([5000.0, 5075.0, 5300.0]) == [["write_single_coil from 127.0.0.10 to 127.0.0.2 every 0.5 s, "
                                                   "silent for 210.5 s"]]


def test_a_duty_cycle_slowed_down_pauses_longer_by_as_much():
    """The same bursts and pauses, the whole cycle played three times as slowly (benign drift):
    a pause of 181.5 s is its usual 60.5 s slowed down, no silence; one of 431.5 s still is."""
    def burst(start, every):
        return [_poll(start + every * n, "write_single_coil", 7) for n in range(30)]
    baseline = Baseline()
    for cycle in range(8):
        for event in burst(1000.0 + 75 * cycle, 0.5):
            baseline.learn(event, TARGETS)

    def silences(starts):
        detector = BaselineDetector(baseline)
        alerts = [a for start in starts for e in burst(start, 1.5) for a in detector.feed(e)] + detector.flush()
        return [whys_of(a) for a in alerts if a.rule == "baseline.channel_silent"]
    assert silences([5000.0, 5225.0, 5450.0]) == []                     # bursts of 43.5 s, pauses of 181.5 s
    assert silences([5000.0, 5225.0, 5700.0]) == [["write_single_coil from 127.0.0.10 to 127.0.0.2 every 0.5 s, "
                                                   "silent for 431.5 s"]]


def test_addresses_next_to_learned_ones_are_learned():
    """An HMI that wrote coils 1 and 2 may write coil 0 (the operator's next button); coil
    40 is far from anything it wrote. SZL ids and block numbers are names, not neighbours."""
    baseline = Baseline()
    for second in range(10):
        baseline.learn(Event(1000.0 + second, "modbus", HMI, 40000, PLC, 502, "request", "write_single_coil", 5,
                             "", "x.pcap", 1, {"unit_id": 1, "address": 1 + second % 2, "value": True}), TARGETS)
    key = (HMI, PLC, "modbus", "write_single_coil")
    assert baseline.covers(key, "unit 1 coil", 0, 0)
    assert baseline.covers(key, "unit 1 coil", 10, 10)
    assert not baseline.covers(key, "unit 1 coil", 11, 11)
    assert not baseline.covers(key, "unit 1 coil", 40, 40)
    assert not baseline.covers(key, "unit 2 coil", 0, 0)
    baseline.spaces[(HMI, PLC, "s7comm", "read_szl")] = {"SZL": [[0x11, 0x11]]}
    assert not baseline.covers((HMI, PLC, "s7comm", "read_szl"), "SZL", 0x12, 0x12)



@pytest.mark.usefixtures("watched_long")
def test_a_dbread_item_teaches_its_data_blocks():
    """WinCC reads several DB ranges in one DBREAD item (syntax 0xB0): learned, each range is a
    target, and a read of another data block is a new target."""
    def dbread(ts, db):
        return Event(ts, "s7comm", HMI, 40000, PLC, 102, "request", "read_var", 4, "", "x.pcap", 1,
                     {"items": ({"syntax_id": 0xB0, "spec": "", "areas": ({"area": "DB", "db": db, "byte": 10,
                                                                          "length": 4},)},)})
    baseline = Baseline()
    for second in range(30):
        baseline.learn(dbread(1000.0 + second, 5), TARGETS)
    detector = BaselineDetector(baseline)
    new = [why for f, _, _, why in detector.findings(dbread(2000.0, 7)) if f.rule == "baseline.new_target"]
    assert new and "DB7" in new[0]
    assert [f for f, _, _, _ in detector.findings(dbread(2001.0, 5)) if f.rule == "baseline.new_target"] == []


def test_what_was_watched_briefly_makes_low_folded_findings():
    """The HMI polled for two hours, the historian for 30 minutes in two sittings a day apart
    (the day between is no watching): something new from the HMI is news at its usual
    severity; from the historian, a new function and a new register are one low alert for the
    pair, saying how long it was watched. The timing survives the model file; a model file
    from before it (no timing) treats every pair as known."""
    def request(ts, client, function, address):
        return Event(ts, "modbus", client, 40000, PLC, 502, "request", function, 1, "", "x.pcap", 1,
                     {"unit_id": 1, "address": address, "quantity": 1})
    baseline = Baseline()
    for second in range(0, 7200, 10):
        baseline.learn(request(1000.0 + second, HMI, "read_coils", 0), TARGETS)
    for start in (1000.0, 1000.0 + 86_400):
        for second in range(0, 900, 10):
            baseline.learn(request(start + second, HISTORIAN, "read_coils", 0), TARGETS)
    assert baseline.maturity((HMI, PLC, "modbus")) is None
    assert baseline.maturity((HISTORIAN, PLC, "modbus")) == pytest.approx(1780.0)
    assert not baseline.young

    def alerts_of(learned):
        detector = BaselineDetector(learned)
        events = [request(100_000.0, HMI, "write_single_coil", 0), request(100_001.0, HISTORIAN, "write_single_coil", 0),
                  request(100_002.0, HISTORIAN, "read_coils", 500)]
        return sorted((a.rule, a.severity, a.src, a.count) for e in events for a in detector.feed(e)) + \
            sorted((a.rule, a.severity, a.src, a.count) for a in detector.flush())

    assert alerts_of(baseline) == [("baseline.briefly_learned", "low", HISTORIAN, 2),
                                   ("baseline.new_function", "high", HMI, 1)]
    detector = BaselineDetector(baseline)
    why = detector.findings(request(100_001.0, HISTORIAN, "write_single_coil", 0))[0][3]
    assert why.endswith("(learned: read_coils) (watched 30 min while learning)")
    assert alerts_of(Baseline.from_json(baseline.to_json())) == alerts_of(baseline)
    old = baseline.to_json()
    del old["observed"]
    for row in old["pairs"]:
        del row["watched"]
    assert [rule for rule, *_ in alerts_of(Baseline.from_json(old))] == ["baseline.new_function"] * 2 + \
        ["baseline.new_target"]


def test_a_baseline_watched_for_minutes_grades_a_new_pair_down():
    def request(ts, client):
        return Event(ts, "modbus", client, 40000, PLC, 502, "request", "read_coils", 1, "", "x.pcap", 1,
                     {"unit_id": 1, "address": 0, "quantity": 1})
    baseline = Baseline()
    for second in range(0, 600, 10):
        baseline.learn(request(1000.0 + second, HMI), TARGETS)
    assert baseline.young and baseline.observed == pytest.approx(590.0)
    found = BaselineDetector(baseline).findings(request(5000.0, ROGUE))
    assert [(f.rule, f.severity) for f, *_ in found] == [("baseline.new_talker", "medium")]



@pytest.mark.usefixtures("watched_long")
def test_a_reconnect_of_a_client_learned_mid_session_is_not_news():
    """Learning began while the historian's OPC UA session was up, so it saw reads only. Its
    reconnect later (a new secure channel and session) opens with functions every connection
    opens with: on its learned pair they are no new function; a write still is, and the same
    handshake from a host never seen is a new talker."""
    def request(ts, function, src=HISTORIAN):
        fields = {"node_ids": ["ns=2;i=7"]} if function in ("ReadRequest", "WriteRequest") else {}
        return Event(ts, "opcua", src, 50000, PLC, 4840, "request", function, 0, "", "x.pcap", 1, fields)
    baseline = Baseline()
    for second in range(10):
        baseline.learn(request(1000.0 + second, "ReadRequest"), TARGETS)
    detector = BaselineDetector(baseline)
    handshake = ["Hello", "OpenSecureChannelRequest", "GetEndpointsRequest", "CreateSessionRequest",
                 "ActivateSessionRequest", "ReadRequest", "CloseSessionRequest", "CloseSecureChannelRequest"]
    assert [detector.findings(request(2000.0 + n, function)) for n, function in enumerate(handshake)] == [[]] * 8
    assert [(finding.rule, why) for finding, _, _, why in detector.findings(request(2010.0, "WriteRequest"))] == [
        ("baseline.new_function", f"WriteRequest never used from {HISTORIAN} to {PLC} (learned: ReadRequest)")]
    assert [finding.rule for finding, *_ in detector.findings(request(2011.0, "CreateSessionRequest", ROGUE))] == [
        "baseline.new_talker"]


@pytest.mark.usefixtures("watched_long")
def test_answers_whose_questions_were_never_seen_teach_their_pair():
    """A tap that carries the PLC's side only: learning sees its answers, never the HMI's
    requests. The same answers later are no new talker; a request then is a function the HMI
    was never seen to use, and answers to a host never seen are still a new talker."""
    def answer(ts, client=HMI):
        return Event(ts, "modbus", PLC, 502, client, 40000, "response", "read_coils", 1, "", "x.pcap", 1,
                     {"unit_id": 1, "address": 0, "quantity": 8, "values": [0] * 8})
    baseline = Baseline()
    for second in range(30):
        baseline.learn(answer(1000.0 + second), TARGETS)
    assert baseline.pairs == {(HMI, PLC, "modbus"): {}} and (HMI, PLC, "modbus") in baseline.watched
    detector = BaselineDetector(baseline)
    assert [detector.findings(answer(2000.0 + n)) for n in range(3)] == [[]] * 3
    assert [(finding.rule, why) for finding, _, _, why in detector.findings(_poll(2010.0))] == [
        ("baseline.new_function", f"read_coils never used from {HMI} to {PLC} (learned: only its answers)")]
    assert [finding.rule for finding, *_ in detector.findings(answer(2011.0, ROGUE))] == ["baseline.new_talker"]
