"""The learned baseline and the model against real traffic.

icsguard learns what normal looks like from traffic real peers put on the wire (pymodbus,
python-snap7 and asyncua, tests/support/*peers.py, recorded live with tcpdump), then each attack
must raise the alert meant for it, saying in its "why" what was new, and fresh normal
traffic of the same kind must raise nothing at all.

The plant polls every 0.05 s live; those captures are stretched 20 times (tests/support/rewrite.py
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

from icsguard.analysis import decode, learn
from icsguard.detect import modelfile
from icsguard.detect.baseline import SILENCE_MIN_SECONDS
from icsguard.detect.model import Z_ALONE, Z_WITH_MODEL
from tests.support.baseline_detection import HISTORIAN, HMI, PLC, ROGUE, detect, watched_long, whys_of
from tests.support.rewrite import frames, write_pcap

WINDOW = 5.0

STRETCH = 20.0                   # live cycles 0.05 s apart become a one-second poll

T0 = 1_800_000_000.0             # a multiple of WINDOW: the learning capture starts a window

FRESH = T0 + 1000.0              # where the fresh normal capture starts

ATTACK = FRESH + 2.5             # where an attack starts: amid the fresh capture's first window,


                                 # while the setpoint still holds 1100, as on the attacks' PLC
SHIFTED = FRESH + 2.5            # the fresh capture again, half a window off the grid


def _retime(source, target, start: float, factor: float = 1.0) -> str:
    """The capture's frames, unchanged, with time running ``factor`` times slower from ``start``."""
    found = frames(source)
    first = found[0].ts
    write_pcap(target, [(start + (f.ts - first) * factor, f.data) for f in found], found[0].link_type)
    return str(target)


def _one(alerts, rule: str):
    """The single alert of ``rule``; there must be exactly one."""
    matching = [a for a in alerts if a.rule == rule]
    assert len(matching) == 1, [(a.rule, a.src, a.title) for a in alerts]
    return matching[0]


def summary(alerts) -> list[tuple]:
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
    from tests.support import peers
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
    watched_long(learned)
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


def _requests(path, proto: str) -> int:
    """Requests of the protocol in a capture: what a "raises nothing" test needs to mean anything."""
    return sum(e.proto == proto and e.direction == "request" for e in decode([str(path)]))


def test_modbus_fresh_normal_traffic_raises_nothing(modbus):
    """Another half minute of the same plant: no baseline finding, no anomalous window, also
    when the capture starts half a window off the grid (its first and last windows cut)."""
    learned, paths = modbus
    for name in ("fresh", "shifted"):
        assert _requests(paths[name], "modbus") >= 100, f"the {name} capture holds no polling"
        assert detect(learned, paths[name]) == []


def test_new_host_writing_is_a_new_talker(modbus):
    """127.0.0.66 reads a block and writes register 3: a pair never seen while learning."""
    learned, paths = modbus
    alerts = detect(learned, paths["fresh"], paths["rogue"])
    baseline = [a for a in alerts if a.detector == "baseline"]
    assert {a.rule for a in baseline} == {"baseline.new_talker", "baseline.value_out_of_range"}
    talker = _one(alerts, "baseline.new_talker")
    assert (talker.src, talker.dst, talker.severity) == (ROGUE, PLC, "high")
    request_whys = [why for why, e in zip(whys_of(talker), talker.evidence) if e["direction"] == "request"]
    assert request_whys == [
        f"{ROGUE} never sent tcp to {PLC} while learning (tcp modbus)",
        f"{ROGUE} never sent modbus to {PLC} while learning (modbus read_holding_registers)",
        f"{ROGUE} never sent modbus to {PLC} while learning (modbus write_single_register)"]
    assert talker.count == 5             # the connection, both requests and the PLC's two answers
    value = _one(alerts, "baseline.value_out_of_range")        # the written value, read back in the answer
    assert value.src == ROGUE and whys_of(value) == ["unit 1 holding_register 3 = 57005, learned 1003..1003"] * 2
    assert all(a.src == ROGUE for a in alerts), summary(alerts)


def test_new_function_from_a_known_host(modbus):
    """The HMI, which only ever read coils, forces coil 10 with FC 5."""
    learned, paths = modbus
    alerts = detect(learned, paths["fresh"], paths["coil"])
    function = _one(alerts, "baseline.new_function")
    assert (function.src, function.dst) == (HMI, PLC)
    assert whys_of(function) == [
        f"write_single_coil never used from {HMI} to {PLC} (learned: read_coils, read_discrete_inputs, "
        "read_holding_registers, read_input_registers, write_single_register)"]
    # the forced coil, read back, holds a value it never had while learning
    assert whys_of(_one(alerts, "baseline.value_out_of_range"))[0] == "unit 1 coil 10 = 1, learned 0..0"
    assert not {"baseline.new_talker", "baseline.new_target"} & {a.rule for a in alerts}


def test_out_of_range_setpoint_write(modbus):
    """The HMI writes 9999 into the setpoint register it writes every five seconds, with the
    function, register and connection it always uses: only the value is wrong."""
    learned, paths = modbus
    alerts = detect(learned, paths["fresh"], paths["setpoint"])
    value = _one(alerts, "baseline.value_out_of_range")
    assert (value.src, value.dst, value.severity) == (HMI, PLC, "high")
    whys = whys_of(value)
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
    alerts = detect(learned, paths["fresh"], paths["scan"])
    target = _one(alerts, "baseline.new_target")
    assert (target.src, target.dst, target.count) == (HMI, PLC, 62)
    assert whys_of(target)[:2] == [
        f"read_holding_registers on unit 1 holding_register 16-31: never accessed by {HMI} on {PLC}",
        f"read_holding_registers on unit 1 holding_register 32-47: never accessed by {HMI} on {PLC}"]
    assert {a.rule for a in alerts if a.detector == "baseline"} == {"baseline.new_target"}


def test_flood_changes_the_period(modbus):
    """2000 of the HMI's usual reads over 8 connections in about a second: nothing in any
    single PDU is new, but the one-second exchanges now come microseconds apart."""
    learned, paths = modbus
    alerts = detect(learned, paths["fresh"], paths["flood"])
    period = _one(alerts, "baseline.period_change")
    assert (period.src, period.dst) == (HMI, PLC)
    assert period.count >= 5
    for why in whys_of(period):
        match = re.fullmatch(r"(read_\w+) every (\S+) s, learned every (\S+) s", why)
        assert match, why
        assert float(match[2]) < 0.5 and float(match[3]) == pytest.approx(1.0, rel=0.05)   # under half the period
    assert {a.rule for a in alerts if a.detector == "baseline"} == {"baseline.period_change"}


def test_poller_that_stops_goes_silent(modbus):
    """The historian stops after 10 s while the HMI goes on for 25 s more: both of the
    historian's one-second exchanges are reported silent; the HMI's are not."""
    learned, paths = modbus
    alerts = detect(learned, paths["silence"])
    assert summary(alerts) == [("baseline.channel_silent", HISTORIAN, PLC)]
    silent = alerts[0]
    assert silent.count == 2 and silent.severity == "medium"
    whys = sorted(whys_of(silent))
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
    assert detect(learned, paths["fresh"]) == []
    for attack, words in (("flood", ("PDUs", "requests")), ("scan", ("never-seen targets", "distinct registers"))):
        window = _one(detect(learned, paths["fresh"], paths[attack]), "ml.anomalous_window")
        assert (window.src, window.dst, window.proto) == (HMI, PLC, "modbus")
        evidence = window.evidence[0]
        # far beyond a learned range (Z_ALONE), or beyond one and scored low by the estimator
        spreads = max(abs(float(x)) for x in re.findall(r"([+-]\d+\.\d) spreads", evidence["why"]))
        assert spreads >= Z_ALONE or (spreads >= Z_WITH_MODEL and evidence["score"] < evidence["threshold"])
        assert evidence["window_start"] == FRESH and evidence["window_end"] == FRESH + WINDOW
        assert all(word in evidence["why"] for word in words), evidence["why"]
        assert re.search(r"\(learned [\d.e+-]+\.\.[\d.e+-]+, [+-]\d+\.\d spreads\)", evidence["why"])
    flood = _one(detect(learned, paths["fresh"], paths["flood"]), "ml.anomalous_window").evidence[0]
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
        assert ([(a.rule, a.src, a.count, a.title) for a in detect(loaded, *run)]
                == [(a.rule, a.src, a.count, a.title) for a in detect(learned, *run)])


# --------------------------------------------------------------------------- #
# S7: an HMI on a python-snap7 PLC
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def s7(out):
    """Live: the HMI's session (s7_peers.normal_hmi) twice, to learn and as fresh traffic,
    then a CPU stop from the HMI, a write from a stranger and a DB scan from the HMI."""
    from tests.support import s7_peers
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
    watched_long(learned)
    assert learned.baseline.pairs[(HMI, PLC, "s7comm")] == {
        "setup_communication": 1, "read_szl": 2, "read_var": 60, "write_var": 3}
    return learned, paths


@pytest.mark.parametrize("peers, proto", [("s7", "s7comm"), ("opcua", "opcua")])
def test_fresh_normal_traffic_raises_nothing(peers, proto, request):
    learned, paths = request.getfixturevalue(peers)
    assert _requests(paths["fresh"], proto) >= 10, "the fresh capture holds no polling"
    assert detect(learned, paths["fresh"]) == []


def test_s7_cpu_stop_from_the_hmi_is_a_new_function(s7):
    learned, paths = s7
    alerts = detect(learned, paths["fresh"], paths["stop"])
    assert summary(alerts) == [("baseline.new_function", HMI, PLC)]
    assert whys_of(alerts[0]) == [
        f"plc_stop never used from {HMI} to {PLC} (learned: read_szl, read_var, setup_communication, write_var)"]
    assert alerts[0].evidence[0]["function"] == "plc_stop" and alerts[0].proto == "s7comm"


def test_s7_write_from_a_new_host_is_a_new_talker(s7):
    learned, paths = s7
    alerts = detect(learned, paths["fresh"], paths["rogue"])
    assert summary(alerts) == [("baseline.new_talker", ROGUE, PLC)]
    whys = whys_of(alerts[0])
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
    alerts = detect(learned, paths["fresh"], paths["setpoint"])
    value = _one(alerts, "baseline.value_out_of_range")
    assert (value.src, value.dst, value.severity) == (HMI, PLC, "high")
    assert value.evidence[0]["function"] == "write_var" and value.evidence[0]["direction"] == "request"
    assert {e["direction"] for e in value.evidence if e["function"] == "write_var"} == {"request"}     # not the ack
    whys = whys_of(value)
    assert whys[:2] == ["DB1.DBB100 = 255, learned 0..100", "DB1.DBB101 = 255, learned 0..101"]
    assert {a.rule for a in alerts} == {"baseline.value_out_of_range"}


def test_s7_db_scan_is_new_targets(s7):
    """DB1 and DB2 bytes 0-3 were read while learning; DB3 to DB10 never were."""
    learned, paths = s7
    alerts = detect(learned, paths["fresh"], paths["scan"])
    assert summary(alerts) == [("baseline.new_target", HMI, PLC)]
    assert alerts[0].count == 8
    assert whys_of(alerts[0])[0] == f"read_var on DB3 0-3: never accessed by {HMI} on {PLC}"


# --------------------------------------------------------------------------- #
# OPC UA: an HMI on an asyncua server
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def opcua(out):
    """Live, against one asyncua server: the HMI's polling session for 30 cycles (to
    learn) and 20 (fresh), both stretched to a one-second poll, then a stranger's write, a
    setpoint of 9999 from the HMI and a method call from the HMI."""
    from tests.support import opcua_peers, peers
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
    watched_long(learned)
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
    alerts = detect(learned, paths["fresh"], paths["rogue"])
    # the stranger's session, and the setpoint of 9999 it writes: out of range, and a jump
    # far faster than any learned (seen too in what the HMI reads next)
    assert {("baseline.new_talker", ROGUE, PLC), ("baseline.value_out_of_range", ROGUE, PLC)} <= set(summary(alerts))
    assert {a.rule for a in alerts} <= {"baseline.new_talker", "baseline.value_out_of_range", "baseline.rate_of_change"}
    assert all("ns=2;i=4" in why for a in alerts if a.rule != "baseline.new_talker" for why in whys_of(a))
    alerts = [a for a in alerts if a.rule == "baseline.new_talker"]
    assert alerts[0].count >= 6               # the conversation, then every request of the session
    assert whys_of(alerts[0])[:2] == [f"{ROGUE} never sent tcp to {PLC} while learning (tcp opcua)",
                                    f"{ROGUE} never sent opcua to {PLC} while learning (opcua Hello)"]


def test_opcua_out_of_range_setpoint(opcua):
    learned, paths = opcua
    alerts = detect(learned, paths["fresh"], paths["setpoint"])
    value = _one(alerts, "baseline.value_out_of_range")
    assert (value.src, value.dst) == (HMI, PLC)
    assert set(whys_of(value)) == {"node ns=2;i=4 = 9999, learned 1500..1520"} and value.count == 2
    assert value.evidence[0]["function"] == "WriteRequest"
    assert not {"baseline.new_talker", "baseline.new_function", "baseline.new_target"} & {a.rule for a in alerts}


def test_opcua_method_call_from_the_hmi_is_a_new_function(opcua):
    learned, paths = opcua
    alerts = detect(learned, paths["fresh"], paths["call"])
    assert summary(alerts) == [("baseline.new_function", HMI, PLC)]
    why = whys_of(alerts[0])[0]
    assert why.startswith(f"CallRequest never used from {HMI} to {PLC} (learned: ")
    assert "ReadRequest" in why and "WriteRequest" in why

