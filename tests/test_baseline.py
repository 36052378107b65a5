"""The learned baseline and the model against real traffic.

icsguard learns what normal looks like from traffic real peers put on the wire (pymodbus,
python-snap7 and asyncua, pcaps/*peers.py, recorded live with tcpdump), then each attack
must raise the alert meant for it, saying in its "why" what was new, and fresh normal
traffic of the same kind must raise nothing at all.

The plant polls every 0.05 s live; those captures are stretched 20 times (tests/rewrite.py
writes the same frames with new timestamps), so the HMI and the historian poll every
second, a period a SCADA system really uses, and a stopped poller goes silent for longer
than the 10 s the baseline waits, all without waiting that long. Attack captures keep
their real timing and are read together with a fresh normal capture, so each attack
happens in the middle of normal operation. Windows are 5 s (60 s by default); the
stretched captures start on a window boundary, all but one made to start off it.
"""

from __future__ import annotations

import re
import shutil

import pytest

from conftest import public
from rewrite import frames, write_pcap

from icsguard.detect import modelfile
from icsguard.analysis import decode, learn
from icsguard.detect.baseline import Baseline, BaselineDetector, SILENCE_MIN_SECONDS
from icsguard.events import Event
from icsguard.detect.features import FEATURES, Windows
from icsguard.detect.model import Z_ALONE, Z_WITH_MODEL, ModelDetector
from icsguard.detect.targets import Targets

REQUESTS = FEATURES.index("requests")
PLC, HMI, HISTORIAN, ROGUE = "127.0.0.2", "127.0.0.10", "127.0.0.11", "127.0.0.66"
WINDOW = 5.0
STRETCH = 20.0                   # live cycles 0.05 s apart become a one-second poll
T0 = 1_800_000_000.0             # a multiple of WINDOW: the learning capture starts a window
FRESH = T0 + 1000.0              # where the fresh normal capture starts
ATTACK = FRESH + 2.5             # where an attack starts: amid the fresh capture's first window,
                                 # while the setpoint still holds 1100, as on the attacks' PLC
SHIFTED = FRESH + 2.5            # the fresh capture again, half a window off the grid

TARGETS = Targets()     # one for the whole module, as a run has one


def _retime(source, target, start: float, factor: float = 1.0) -> str:
    """The capture's frames, unchanged, with time running ``factor`` times slower from ``start``."""
    found = frames(source)
    first = found[0].ts
    write_pcap(target, [(start + (f.ts - first) * factor, f.data) for f in found], found[0].link_type)
    return str(target)


def _detect(learned, *paths) -> list:
    """Every baseline and model alert over the captures, as ``analyze --model`` raises them."""
    detectors = [BaselineDetector(learned.baseline)]
    if learned.model.ready:
        detectors.append(ModelDetector(learned.model, learned.baseline))
    alerts = []
    for event in decode([str(p) for p in paths], conversations=True):
        for detector in detectors:
            alerts += detector.feed(event)
    for detector in detectors:
        alerts += detector.flush()
    for alert in alerts:                 # every alert explains itself
        whys = [entry["why"] for entry in alert.evidence]
        assert whys and all(isinstance(why, str) and why for why in whys), alert
        assert alert.title.endswith(": " + whys[0]), alert.title
        assert alert.detector == ("ml" if alert.rule.startswith("ml.") else "baseline")
    return alerts


def _by_rule(alerts) -> dict[str, list]:
    found: dict[str, list] = {}
    for alert in alerts:
        found.setdefault(alert.rule, []).append(alert)
    return found


def _one(alerts, rule: str):
    """The single alert of ``rule``; there must be exactly one."""
    matching = [a for a in alerts if a.rule == rule]
    assert len(matching) == 1, [(a.rule, a.src, a.title) for a in alerts]
    return matching[0]


def _whys(alert) -> list[str]:
    return [entry["why"] for entry in alert.evidence]


def _summary(alerts) -> list[tuple]:
    return sorted((a.rule, a.src, a.dst) for a in alerts)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    return tmp_path_factory.mktemp("baseline")


# --------------------------------------------------------------------------- #
# Modbus: an HMI and a historian polling a pymodbus PLC
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def modbus(out):
    """Live captures: the plant for 80 cycles (to learn), again for 30 (fresh), for 35 with
    the historian stopping after 10, and the attacks; then the baseline and the default
    model (isolation forest) learned from the first."""
    import peers
    live = out / "live"
    live.mkdir()
    scenarios = {
        "learn": (peers.plant_polling, {"cycles": 80}),
        "fresh": (peers.plant_polling, {"cycles": 30}),
        "silence": (peers.plant_polling, {"cycles": 35, "historian_cycles": 10}),
        "rogue": (peers.rogue_client, {}),
        "coil": (peers.coil_force, {}),
        "setpoint": (peers.setpoint_write, {"value": 9999}),
        "scan": (peers.register_scan, {}),
        "flood": (peers.flood_polling, {"transactions": 2000, "connections": 8}),
    }
    for name, (scenario, kwargs) in scenarios.items():
        peers.capture(live / f"{name}.pcap", scenario, **kwargs)
    paths = {
        "learn": _retime(live / "learn.pcap", out / "learn.pcap", T0, STRETCH),
        "fresh": _retime(live / "fresh.pcap", out / "fresh.pcap", FRESH, STRETCH),
        "shifted": _retime(live / "fresh.pcap", out / "shifted.pcap", SHIFTED, STRETCH),
        "silence": _retime(live / "silence.pcap", out / "silence.pcap", FRESH, STRETCH),
    }
    for name in ("rogue", "coil", "setpoint", "scan", "flood"):
        paths[name] = _retime(live / f"{name}.pcap", out / f"{name}.pcap", ATTACK)
    learned, error = learn([paths["learn"]], window_seconds=WINDOW)
    assert error is None
    return learned, paths


def test_modbus_learns_pairs_functions_targets_values_and_periods(modbus):
    learned, _ = modbus
    baseline = learned.baseline
    assert baseline.pairs[(HMI, PLC, "modbus")] == {
        "write_single_register": 16, "read_holding_registers": 160, "read_input_registers": 80,
        "read_coils": 80, "read_discrete_inputs": 80}
    assert baseline.pairs[(HISTORIAN, PLC, "modbus")] == {"read_input_registers": 80, "read_holding_registers": 80}
    assert baseline.pairs[(HMI, PLC, "tcp")] == {"modbus": 1}
    assert set(baseline.pairs) == {(HMI, PLC, "modbus"), (HMI, PLC, "tcp"), (HISTORIAN, PLC, "modbus"),
                                   (HISTORIAN, PLC, "tcp")}
    assert baseline.spaces[(HMI, PLC, "modbus", "read_holding_registers")] == {
        "unit 1 holding_register": [[0, 9], [100, 103]]}
    assert baseline.spaces[(HISTORIAN, PLC, "modbus", "read_holding_registers")] == {
        "unit 1 holding_register": [[500, 507]]}
    setpoint = baseline.values[(PLC, "modbus", (1, "holding_register", 100))]
    assert (setpoint.low, setpoint.high) == (1100, 1120)
    periods = {(key[0], key[3], key[4][1]): period for key, period in baseline.periodic().items()}
    assert len(periods) == 8              # 5 HMI polls, its setpoint write, 2 historian polls
    assert periods.pop((HMI, "write_single_register", 100)) == pytest.approx(5.0, rel=0.05)
    assert all(period == pytest.approx(1.0, rel=0.05) for period in periods.values()), periods
    assert learned.model.ready and len(learned.model.rows) >= 20     # 2 pairs, about 15 whole windows each


def test_modbus_fresh_normal_traffic_raises_nothing(modbus):
    """Another half minute of the same plant: no baseline finding, no anomalous window, also
    when the capture starts half a window off the grid (its first and last windows cut)."""
    learned, paths = modbus
    assert _detect(learned, paths["fresh"]) == []
    assert _detect(learned, paths["shifted"]) == []


def test_new_host_writing_is_a_new_talker(modbus):
    """127.0.0.66 reads a block and writes register 3: a pair never seen while learning."""
    learned, paths = modbus
    alerts = _detect(learned, paths["fresh"], paths["rogue"])
    baseline = [a for a in alerts if a.detector == "baseline"]
    assert {a.rule for a in baseline} == {"baseline.new_talker", "baseline.value_out_of_range"}
    talker = _one(alerts, "baseline.new_talker")
    assert (talker.src, talker.dst, talker.severity) == (ROGUE, PLC, "high")
    request_whys = [why for why, e in zip(_whys(talker), talker.evidence) if e["direction"] == "request"]
    assert request_whys == [
        f"{ROGUE} never sent tcp to {PLC} while learning (tcp modbus)",
        f"{ROGUE} never sent modbus to {PLC} while learning (modbus read_holding_registers)",
        f"{ROGUE} never sent modbus to {PLC} while learning (modbus write_single_register)"]
    assert talker.count == 5             # the connection, both requests and the PLC's two answers
    value = _one(alerts, "baseline.value_out_of_range")        # the written value, read back in the answer
    assert value.src == ROGUE and _whys(value) == ["unit 1 holding_register 3 = 57005, learned 1003..1003"] * 2
    assert all(a.src == ROGUE for a in alerts), _summary(alerts)


def test_new_function_from_a_known_host(modbus):
    """The HMI, which only ever read coils, forces coil 10 with FC 5."""
    learned, paths = modbus
    alerts = _detect(learned, paths["fresh"], paths["coil"])
    function = _one(alerts, "baseline.new_function")
    assert (function.src, function.dst) == (HMI, PLC)
    assert _whys(function) == [
        f"write_single_coil never used from {HMI} to {PLC} (learned: read_coils, read_discrete_inputs, "
        "read_holding_registers, read_input_registers, write_single_register)"]
    # the forced coil, read back, holds a value it never had while learning
    assert _whys(_one(alerts, "baseline.value_out_of_range"))[0] == "unit 1 coil 10 = 1, learned 0..0"
    assert not {"baseline.new_talker", "baseline.new_target"} & {a.rule for a in alerts}


def test_out_of_range_setpoint_write(modbus):
    """The HMI writes 9999 into the setpoint register it writes every five seconds, with the
    function, register and connection it always uses: only the value is wrong."""
    learned, paths = modbus
    alerts = _detect(learned, paths["fresh"], paths["setpoint"])
    value = _one(alerts, "baseline.value_out_of_range")
    assert (value.src, value.dst, value.severity) == (HMI, PLC, "high")
    whys = _whys(value)
    assert whys[0] == "unit 1 holding_register 100 = 9999, learned 1100..1120"
    assert len(whys) >= 2 and set(whys) == {whys[0]}      # the write, then the read-back
    assert value.evidence[0]["function"] == "write_single_register"
    assert value.evidence[0]["direction"] == "request"
    assert not {"baseline.new_talker", "baseline.new_function", "baseline.new_target"} & {a.rule for a in alerts}


def test_register_scan_is_new_targets(modbus):
    """The HMI sweeps the holding registers in blocks of 16: every block but the two next to
    what it learned to read (0-9 and 100-103: 0-15 and 96-111 lie within NEIGHBOURS of them)
    is a new target."""
    learned, paths = modbus
    alerts = _detect(learned, paths["fresh"], paths["scan"])
    target = _one(alerts, "baseline.new_target")
    assert (target.src, target.dst, target.count) == (HMI, PLC, 62)
    assert _whys(target)[:2] == [
        f"read_holding_registers on unit 1 holding_register 16-31: never accessed by {HMI} on {PLC}",
        f"read_holding_registers on unit 1 holding_register 32-47: never accessed by {HMI} on {PLC}"]
    assert {a.rule for a in alerts if a.detector == "baseline"} == {"baseline.new_target"}


def test_flood_changes_the_period(modbus):
    """2000 of the HMI's usual reads over 8 connections in about a second: nothing in any
    single PDU is new, but the one-second exchanges now come microseconds apart."""
    learned, paths = modbus
    alerts = _detect(learned, paths["fresh"], paths["flood"])
    period = _one(alerts, "baseline.period_change")
    assert (period.src, period.dst) == (HMI, PLC)
    assert period.count >= 5
    for why in _whys(period):
        match = re.fullmatch(r"(read_\w+) every (\S+) s, learned every (\S+) s", why)
        assert match, why
        assert float(match[2]) < 0.5 and float(match[3]) == pytest.approx(1.0, rel=0.05)   # under half the period
    assert {a.rule for a in alerts if a.detector == "baseline"} == {"baseline.period_change"}


def test_poller_that_stops_goes_silent(modbus):
    """The historian stops after 10 s while the HMI goes on for 25 s more: both of the
    historian's one-second exchanges are reported silent; the HMI's are not."""
    learned, paths = modbus
    alerts = _detect(learned, paths["silence"])
    assert _summary(alerts) == [("baseline.channel_silent", HISTORIAN, PLC)]
    silent = alerts[0]
    assert silent.count == 2 and silent.severity == "medium"
    whys = sorted(_whys(silent))
    for why, function in zip(whys, ("read_holding_registers", "read_input_registers")):
        match = re.fullmatch(rf"{function} from {HISTORIAN} to {PLC} every (\S+) s, silent for (\S+) s", why)
        assert match, why
        assert float(match[1]) == pytest.approx(1.0, rel=0.05)
        assert SILENCE_MIN_SECONDS <= float(match[2]) < SILENCE_MIN_SECONDS + 3   # shown to 0.1 s
    assert {entry["function"] for entry in silent.evidence} == {"read_holding_registers", "read_input_registers"}


def test_local_outlier_factor_model_flags_flood_and_scan(modbus):
    """The same traffic learned with --estimator local_outlier_factor: the flood's and the
    scan's windows are anomalous and say which features; fresh traffic still raises nothing."""
    _, paths = modbus
    learned, error = learn([paths["learn"]], estimator="local_outlier_factor", window_seconds=WINDOW)
    assert error is None and learned.model.ready
    assert _detect(learned, paths["fresh"]) == []
    for attack, words in (("flood", ("PDUs", "requests")), ("scan", ("never-seen targets", "distinct registers"))):
        window = _one(_detect(learned, paths["fresh"], paths[attack]), "ml.anomalous_window")
        assert (window.src, window.dst, window.proto) == (HMI, PLC, "modbus")
        evidence = window.evidence[0]
        # far beyond a learned range (Z_ALONE), or beyond one and scored low by the estimator
        spreads = max(abs(float(x)) for x in re.findall(r"([+-]\d+\.\d) spreads", evidence["why"]))
        assert spreads >= Z_ALONE or (spreads >= Z_WITH_MODEL and evidence["score"] < evidence["threshold"])
        assert evidence["window_start"] == FRESH and evidence["window_end"] == FRESH + WINDOW
        assert all(word in evidence["why"] for word in words), evidence["why"]
        assert re.search(r"\(learned [\d.e+-]+\.\.[\d.e+-]+, [+-]\d+\.\d spreads\)", evidence["why"])
    flood = _one(_detect(learned, paths["fresh"], paths["flood"]), "ml.anomalous_window").evidence[0]
    assert flood["features"]["requests"] > 300             # learned: 10 to 26 a window


def test_model_file_keeps_what_was_learned(modbus, tmp_path):
    """Saved and loaded again, the model detects exactly as the learned one does."""
    learned, paths = modbus
    modelfile.save(learned, tmp_path / "plant.icsg")
    loaded = modelfile.load(tmp_path / "plant.icsg")
    assert loaded.baseline.pairs == learned.baseline.pairs
    assert loaded.baseline.spaces == learned.baseline.spaces
    periods = learned.baseline.periodic()
    assert loaded.baseline.periodic() == pytest.approx(periods) and len(periods) == 8
    assert loaded.model.rows == learned.model.rows
    assert loaded.model.threshold == learned.model.threshold
    for attack in ("rogue", "silence"):
        run = [paths["fresh"], paths[attack]] if attack != "silence" else [paths[attack]]
        assert ([(a.rule, a.src, a.count, a.title) for a in _detect(loaded, *run)]
                == [(a.rule, a.src, a.count, a.title) for a in _detect(learned, *run)])


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


# --------------------------------------------------------------------------- #
# S7: an HMI on a python-snap7 PLC
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def s7(out):
    """Live: the HMI's session (s7_peers.normal_hmi) twice, to learn and as fresh traffic,
    then a CPU stop from the HMI, a write from a stranger and a DB scan from the HMI."""
    import s7_peers
    folder = out / "s7"
    folder.mkdir()
    scenarios = {
        "learn": (s7_peers.normal_hmi, {"cycles": 10}),
        "fresh": (s7_peers.normal_hmi, {"cycles": 10}),
        "stop": (s7_peers.stop_cpu, {}),
        "rogue": (s7_peers.writers, {"hosts": (ROGUE,)}),
        "setpoint": (s7_peers.writers, {"value": -1000}),
        "scan": (s7_peers.db_scan, {}),
    }
    paths = {}
    for name, (scenario, kwargs) in scenarios.items():
        s7_peers.capture(folder / f"{name}.pcap", scenario, **kwargs)
        paths[name] = _retime(folder / f"{name}.pcap", folder / f"{name}.retimed.pcap",
                              T0 if name == "learn" else FRESH if name == "fresh" else FRESH + 0.5)
    learned, error = learn([paths["learn"]], window_seconds=WINDOW)
    assert error is None
    assert learned.baseline.pairs[(HMI, PLC, "s7comm")] == {
        "setup_communication": 1, "read_szl": 2, "read_var": 60, "write_var": 3}
    return learned, paths


@pytest.mark.parametrize("peers", ["s7", "opcua"])
def test_fresh_normal_traffic_raises_nothing(peers, request):
    learned, paths = request.getfixturevalue(peers)
    assert _detect(learned, paths["fresh"]) == []


def test_s7_cpu_stop_from_the_hmi_is_a_new_function(s7):
    learned, paths = s7
    alerts = _detect(learned, paths["fresh"], paths["stop"])
    assert _summary(alerts) == [("baseline.new_function", HMI, PLC)]
    assert _whys(alerts[0]) == [
        f"plc_stop never used from {HMI} to {PLC} (learned: read_szl, read_var, setup_communication, write_var)"]
    assert alerts[0].evidence[0]["function"] == "plc_stop" and alerts[0].proto == "s7comm"


def test_s7_write_from_a_new_host_is_a_new_talker(s7):
    learned, paths = s7
    alerts = _detect(learned, paths["fresh"], paths["rogue"])
    assert _summary(alerts) == [("baseline.new_talker", ROGUE, PLC)]
    whys = _whys(alerts[0])
    assert whys[0] == f"{ROGUE} never sent tcp to {PLC} while learning (tcp iso_tsap)"
    assert f"{ROGUE} never sent s7comm to {PLC} while learning (s7comm setup_communication)" in whys
    assert alerts[0].count >= 10            # its connection, setup and writes, and the PLC's answers


def test_s7_setpoint_out_of_range_from_the_hmi(s7):
    """The HMI wrote DB1.DBD100 = 1501 while learning, and read it (and DB1's other bytes)
    every cycle; now it writes -1000 (FF FF FC 18). Each byte is learned as a value of its
    own (the types are not on the wire): the bytes beyond their learned ranges are reported,
    on the write and on the reads that show it."""
    learned, paths = s7
    assert learned.baseline.values[(PLC, "s7comm", ("s7", "DB1", 100))].high == 100
    alerts = _detect(learned, paths["fresh"], paths["setpoint"])
    value = _one(alerts, "baseline.value_out_of_range")
    assert (value.src, value.dst, value.severity) == (HMI, PLC, "high")
    assert value.evidence[0]["function"] == "write_var" and value.evidence[0]["direction"] == "request"
    assert {e["direction"] for e in value.evidence if e["function"] == "write_var"} == {"request"}     # not the ack
    whys = _whys(value)
    assert whys[:2] == ["DB1.DBB100 = 255, learned 0..100", "DB1.DBB101 = 255, learned 0..101"]
    assert {a.rule for a in alerts} == {"baseline.value_out_of_range"}


def test_s7_db_scan_is_new_targets(s7):
    """DB1 and DB2 bytes 0-3 were read while learning; DB3 to DB10 never were."""
    learned, paths = s7
    alerts = _detect(learned, paths["fresh"], paths["scan"])
    assert _summary(alerts) == [("baseline.new_target", HMI, PLC)]
    assert alerts[0].count == 8
    assert _whys(alerts[0])[0] == f"read_var on DB3 0-3: never accessed by {HMI} on {PLC}"


# --------------------------------------------------------------------------- #
# OPC UA: an HMI on an asyncua server
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def opcua(out):
    """Live, against one asyncua server: the HMI's polling session for 30 cycles (to
    learn) and 20 (fresh), both stretched to a one-second poll, then a stranger's write, a
    setpoint of 9999 from the HMI and a method call from the HMI."""
    import opcua_peers
    import peers
    folder = out / "opcua"
    folder.mkdir()
    scenarios = {
        "learn": (opcua_peers.hmi_polling, {"cycles": 30}),
        "fresh": (opcua_peers.hmi_polling, {"cycles": 20}),
        "rogue": (opcua_peers.rogue_write, {}),
        "setpoint": (opcua_peers.setpoint_change, {"value": 9999}),
        "call": (opcua_peers.start_pump, {}),
    }
    opcua_peers.certificates()
    with opcua_peers.start_server(opcua_peers.OPCUA_PORT) as server:
        for name, (scenario, kwargs) in scenarios.items():
            with peers.record(folder / f"{name}.pcap", server.port):
                transcript = scenario(server.port, **kwargs)
            assert [entry["error"] for entry in transcript] == [None] * len(transcript)
    paths = {
        "learn": _retime(folder / "learn.pcap", out / "ua_learn.pcap", T0, STRETCH),
        "fresh": _retime(folder / "fresh.pcap", out / "ua_fresh.pcap", FRESH, STRETCH),
    }
    for name in ("rogue", "setpoint", "call"):
        paths[name] = _retime(folder / f"{name}.pcap", out / f"ua_{name}.pcap", FRESH + 7.5)
    learned, error = learn([paths["learn"]], window_seconds=WINDOW)
    assert error is None
    return learned, paths


def test_opcua_learns_the_setpoint_range_and_one_second_reads(opcua):
    learned, _ = opcua
    setpoint = learned.baseline.values[(PLC, "opcua", ("node", "ns=2;i=4"))]
    assert (setpoint.low, setpoint.high) == (1500, 1520)
    reads = {key[4][-2]: period for key, period in learned.baseline.periodic().items() if key[3] == "ReadRequest"}
    assert reads == {("ns=2;i=2",): pytest.approx(1.0, rel=0.05), ("ns=2;i=4",): pytest.approx(1.0, rel=0.05)}
    assert "CallRequest" not in learned.baseline.pairs[(HMI, PLC, "opcua")]


def test_opcua_write_from_a_new_host_is_a_new_talker(opcua):
    learned, paths = opcua
    alerts = _detect(learned, paths["fresh"], paths["rogue"])
    # the stranger's session, and the setpoint of 9999 it writes: out of range, and a jump
    # far faster than any learned (seen too in what the HMI reads next)
    assert {("baseline.new_talker", ROGUE, PLC), ("baseline.value_out_of_range", ROGUE, PLC)} <= set(_summary(alerts))
    assert {a.rule for a in alerts} <= {"baseline.new_talker", "baseline.value_out_of_range", "baseline.rate_of_change"}
    assert all("ns=2;i=4" in why for a in alerts if a.rule != "baseline.new_talker" for why in _whys(a))
    alerts = [a for a in alerts if a.rule == "baseline.new_talker"]
    assert alerts[0].count >= 6               # the conversation, then every request of the session
    assert _whys(alerts[0])[:2] == [f"{ROGUE} never sent tcp to {PLC} while learning (tcp opcua)",
                                    f"{ROGUE} never sent opcua to {PLC} while learning (opcua Hello)"]


def test_opcua_out_of_range_setpoint(opcua):
    learned, paths = opcua
    alerts = _detect(learned, paths["fresh"], paths["setpoint"])
    value = _one(alerts, "baseline.value_out_of_range")
    assert (value.src, value.dst) == (HMI, PLC)
    assert set(_whys(value)) == {"node ns=2;i=4 = 9999, learned 1500..1520"} and value.count == 2
    assert value.evidence[0]["function"] == "WriteRequest"
    assert not {"baseline.new_talker", "baseline.new_function", "baseline.new_target"} & {a.rule for a in alerts}


def test_opcua_method_call_from_the_hmi_is_a_new_function(opcua):
    learned, paths = opcua
    alerts = _detect(learned, paths["fresh"], paths["call"])
    assert _summary(alerts) == [("baseline.new_function", HMI, PLC)]
    why = _whys(alerts[0])[0]
    assert why.startswith(f"CallRequest never used from {HMI} to {PLC} (learned: ")
    assert "ReadRequest" in why and "WriteRequest" in why


def test_public_s7comm_plus_traffic_learned_raises_nothing_on_itself():
    """TIA Portal and three S7-1200 over S7comm-plus (item addresses, object ids): what was
    learned raises nothing on the same traffic, and a CPU stop from the same station is a
    function that station never used."""
    normal = public("S7comm-Plus-Anomaly-Detection/stabil_haberlesme.pcapng")
    stop = public("S7comm-Plus-Anomaly-Detection/paket_stop.pcapng")
    learned, error = learn([str(normal)], window_seconds=10)
    assert error is None
    assert any(proto == "s7comm-plus" for _, _, proto in learned.baseline.pairs)
    assert _detect(learned, normal) == []
    alerts = _detect(learned, stop)
    assert "baseline.new_function" in {a.rule for a in alerts}
    assert any("set_variable never used" in why for a in alerts for why in _whys(a))
    # the variables each PLC was read at are learned by access area and LID path, as OPC UA
    # nodes are: a read of one never read before is a new target
    spaces = learned.baseline.spaces[("192.168.55.5", "192.168.41.10", "s7comm-plus", "get_multi_variables")]
    assert "variable area 201 1081.0" in spaces and all(name.startswith("variable ") for name in spaces)
    assert ("medium", "get_multi_variables on variable area 34 2449: never accessed by 192.168.55.5 on 192.168.41.10") \
        in {(a.severity, why) for a in alerts if a.rule == "baseline.new_target" for why in _whys(a)}


def test_period_change_needs_mean_and_median_off():
    """A poll learned at 1 s: a stall the poller catches up on, or one long pause between
    bursts, is no change; a flood or a poll three times slower is one, reported once."""
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
    slow = [2000.0 + s * 3 for s in range(40)]
    assert changes(steady) == changes(stall) == changes(bursts) == []
    assert changes(flood) == ["read_coils every 0.01 s, learned every 1 s"]
    assert changes(slow) == ["read_coils every 3 s, learned every 1 s"]


def test_internet_hosts_are_one_peer():
    """The TIA Portal laptop of the S7-1200 lab, learned while it reached no cloud host,
    then reaches six over TLS while going online: one alert that it reached the Internet at
    all, its evidence naming the hosts, not one alert per host. Once that is learned, other
    cloud hosts over TLS are nothing new, but HTTP to one is a new function."""
    quiet = public("S7comm-Plus-Anomaly-Detection/fst.pcapng")
    online = public("S7comm-Plus-Anomaly-Detection/barkink1.pcapng")
    learned, _ = learn([str(quiet)], window_seconds=10)
    internet = [a for a in _detect(learned, online) if "the Internet" in a.title]
    assert len(internet) == 1
    alert = internet[0]
    assert (alert.rule, alert.src, alert.dst, alert.count) == ("baseline.new_talker", "192.168.55.5", "51.178.91.235", 6)
    assert _whys(alert)[0] == "192.168.55.5 never sent tcp to the Internet while learning (tcp tls to 51.178.91.235)"
    assert len({entry["dst"] for entry in alert.evidence}) == 5          # evidence keeps five
    relearned, _ = learn([str(quiet), str(online)], window_seconds=10)
    assert relearned.baseline.pairs[("192.168.55.5", "the Internet", "tcp")] == {"tls": 6}
    other = public("S7comm-Plus-Anomaly-Detection/S71200_StartupGoOnline.pcapng")      # TLS to two more, HTTP to one
    internet = [a for a in _detect(relearned, other) if "the Internet" in a.title]
    assert [(a.rule, _whys(a)) for a in internet] == [
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
        return [_whys(a) for a in alerts if a.rule == "baseline.channel_silent"]
    assert silences([5000.0, 5075.0, 5150.0]) == []
    apart = Baseline()                  # the same bursts learned from captures a day apart: no duty cycle
    for day in range(4):
        for event in burst(1000.0 + 86400 * day):
            apart.learn(event, TARGETS)
    key, = apart.periodic()
    assert apart.channels[key].silence(0.5) == SILENCE_MIN_SECONDS
    assert silences([5000.0, 5075.0, 5300.0]) == [["write_single_coil from 127.0.0.10 to 127.0.0.2 every 0.5 s, "
                                                   "silent for 210.5 s"]]


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
