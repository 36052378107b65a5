"""learn → model show → analyze --model → alerts, through the command line as a user runs it,
and every kind of unusable model file refused with one line, exit status 1, no traceback.

The committed polling capture (50 cycles of five reads in 1.1 s) is stretched 100 times to
learn from: a poll every 2.2 s, in 5 s windows (--window 5). Analysed again stretched only
10 times, the same reads come ten times as often.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import sys

import pytest

from icsguard.detect import modelfile
from icsguard.detect.features import FEATURES
from icsguard.detect.rules import signature_id
from tests.support import PCAPS, run_icsguard
from tests.support.rewrite import frames, write_pcap

PLC, HMI = "127.0.0.2", "127.0.0.10"
T0 = 1_800_000_000.0              # a multiple of the 5 s window
POLLING = PCAPS / "modbus_polling.pcap"
WRITES = PCAPS / "modbus_writes.pcap"
S7 = PCAPS / "s7_reads_writes.pcap"


def _retime(source, target, start: float, factor: float = 1.0):
    found = frames(source)
    first = found[0].ts
    return write_pcap(target, [(start + (f.ts - first) * factor, f.data) for f in found], found[0].link_type)


def _cells(text: str) -> list[list[str]]:
    """The rows of the rich tables in ``text``, as lists of stripped cells."""
    return [[cell.strip() for cell in line.strip().strip("│").split("│")] for line in text.splitlines()
            if line.startswith("│")]


def _failed(result, *fragments: str) -> str:
    """A refusal as the user sees it: status 1 and one line ``icsguard: ...`` on stderr."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("icsguard: "), result.stderr
    assert all(fragment in lines[0] for fragment in fragments), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("learn_cli")
    learning = _retime(POLLING, folder / "polling_slow.pcap", T0, 100.0)
    model = folder / "plant.icsg"
    result = run_icsguard("learn", learning, "--model", model, "--window", "5",
                          "--estimator", "local_outlier_factor")
    assert result.returncode == 0, result.stderr
    return folder, model, result.stdout


def test_learn_prints_what_it_learned(trained):
    folder, model, out = trained
    assert model.exists() and not (folder / "plant.icsg.partial").exists()
    summary = {}                                          # the summary table: label -> text
    for line in out.splitlines():
        parts = line.strip().split("  ", 1)
        if len(parts) == 2:
            summary[parts[0]] = parts[1].strip()
    assert summary["trained on"] == "1 capture(s): polling_slow.pcap"
    assert summary["packets, events"] == "508, 501"
    assert summary["baseline"] == "2 pairs, 46 registers/nodes/DB bytes with value ranges, 5 periodic exchanges"
    assert summary["model"].startswith("local_outlier_factor, 22 windows of 5 s, threshold -")
    assert summary["model"].endswith("(false-alarm rate 0.001)")
    assert summary["maturity"] == "watched 2 min in all, under 1 h: new pairs are medium, their new functions " \
                                  "or targets low"
    assert "Who talks to whom" not in out                 # learn shows the summary only


def test_model_show_prints_pairs_functions_ranges_values_periods(trained):
    _, model, _ = trained
    result = run_icsguard("model", "show", model)
    assert result.returncode == 0, result.stderr
    rows = _cells(result.stdout)
    assert [HMI, PLC, "modbus", "read_coils (50), read_discrete_inputs (50), read_holding_registers (100), "
            "read_input_registers (50)", "2 min"] in rows
    assert [HMI, PLC, "tcp", "modbus (1)", "–"] in rows
    assert [HMI, PLC, "modbus", "read_holding_registers", "unit 1 holding_register 0-9,100-103"] in rows
    assert [HMI, PLC, "modbus", "read_coils", "unit 1 coil 0-15"] in rows
    assert [PLC, "modbus", "unit 1 holding_register 100", "1100", "1100", "0", "50"] in rows
    assert [PLC, "modbus", "unit 1 input_register 7", "259", "259", "0", "50"] in rows
    periods = {row[3]: row[4:] for row in rows if len(row) == 7 and row[0] == HMI}
    assert set(periods) == {"read_coils", "read_discrete_inputs", "read_holding_registers", "read_input_registers"}
    assert periods["read_holding_registers"][0] == "2"           # two exchanges: registers 0-9 and 100-103
    assert all(period[1].startswith("2.2") and period[1].endswith(" s") for period in periods.values()), periods
    # silent after 5 periods of 2.2 s
    assert all(period[2] in ("11.1 s", "11.2 s") for period in periods.values()), periods
    for title in ("Who talks to whom", "What they touch", "Value ranges", "Periodic exchanges"):
        assert title in result.stdout


def test_learn_update_adds_a_capture(trained, tmp_path):
    _, model, _ = trained
    updated = tmp_path / "updated.icsg"
    shutil.copy(model, updated)
    before = modelfile.load(updated)
    result = run_icsguard("learn", S7, "--model", updated, "--update")
    assert result.returncode == 0, result.stderr
    assert "2 capture(s): polling_slow.pcap, s7_reads_writes.pcap" in result.stdout
    assert "4 pairs" in result.stdout and "updated" in result.stdout
    after = modelfile.load(updated)
    assert after.captures == ["polling_slow.pcap", "s7_reads_writes.pcap"]
    assert after.packets == before.packets + 80 and after.updated is not None and before.updated is None
    assert len(after.baseline.pairs) == 4 > len(before.baseline.pairs) == 2
    assert after.baseline.pairs[(HMI, PLC, "tcp")] == {"modbus": 1, "iso_tsap": 1}
    assert after.baseline.pairs[(HMI, PLC, "modbus")] == before.baseline.pairs[(HMI, PLC, "modbus")]
    assert "write_var" in after.baseline.pairs[(HMI, PLC, "s7comm")]
    assert after.baseline.events > before.baseline.events
    assert after.first_ts < before.first_ts                    # the S7 capture is older
    assert after.model.rows == before.model.rows               # 11 ms of S7: no whole window to add
    assert after.model.estimator == "local_outlier_factor" and after.model.window_seconds == 5.0
    # another window length cannot go on learning the same model; the file is left as it was
    kept = updated.read_bytes()
    _failed(run_icsguard("learn", S7, "--model", updated, "--update", "--window", "10"),
            "--window 10:", "learned with 5-second windows")
    assert updated.read_bytes() == kept
    # the same capture again is not learned twice, even under another name
    renamed = updated.parent / "renamed.pcap"
    renamed.write_bytes(S7.read_bytes())
    again = run_icsguard("learn", renamed, "--model", updated, "--update")
    assert again.returncode == 0 and f"{renamed} already learned in {updated}: skipped" in again.stderr
    relearned = modelfile.load(updated)
    assert relearned.captures == ["polling_slow.pcap", "s7_reads_writes.pcap"]
    assert relearned.packets == after.packets and relearned.baseline.events == after.baseline.events
    # --estimator with --update replaces the model's own
    run_icsguard("learn", S7, "--model", updated, "--update", "--estimator", "isolation_forest")
    assert modelfile.load(updated).model.estimator == "isolation_forest"


def test_analyze_with_model_stores_baseline_and_ml_alerts(trained, tmp_path):
    """The polling ten times faster (a new period, windows ten times as busy), and the HMI
    writing coils and registers it never wrote."""
    folder, model, _ = trained
    fast = _retime(POLLING, tmp_path / "polling_fast.pcap", T0 + 1000, 10.0)
    writes = _retime(WRITES, tmp_path / "writes.pcap", T0 + 1002.5)
    db = tmp_path / "icsguard.db"
    result = run_icsguard("analyze", fast, writes, "--model", model, "--db", db)
    assert result.returncode == 0, result.stderr
    listed = run_icsguard("alerts", "--db", db, "--format", "jsonl")
    assert listed.returncode == 0, listed.stderr
    stored = [json.loads(line) for line in listed.stdout.splitlines()]
    alerts = {a["rule"]: a for a in stored if a["detector"] in ("baseline", "ml")}   # not the shipped rules'
    assert len(alerts) == len([a for a in stored if a["detector"] in ("baseline", "ml")])
    assert {rule for rule, a in alerts.items() if a["detector"] == "ml"} == {"ml.anomalous_window"}
    # learned from two minutes: the new function and the new registers are one low alert
    assert {rule for rule, a in alerts.items() if a["detector"] == "baseline"} == {
        "baseline.briefly_learned", "baseline.period_change", "baseline.value_out_of_range"}
    for alert in alerts.values():
        assert (alert["src"], alert["dst"]) == (HMI, PLC)
        assert alert["title"].endswith(": " + alert["evidence"][0]["why"])
    briefly = alerts["baseline.briefly_learned"]
    assert briefly["severity"] == "low" and briefly["count"] >= 2
    new_function = briefly["evidence"][0]
    assert new_function["why"] == (f"write_single_coil never used from {HMI} to {PLC} (learned: read_coils, "
                                   "read_discrete_inputs, read_holding_registers, read_input_registers) "
                                   "(watched 2 min while learning)")
    assert new_function["function"] == "write_single_coil"
    assert any("never accessed" in entry["why"] for entry in briefly["evidence"])
    assert alerts["baseline.period_change"]["evidence"][0]["why"].endswith("learned every 2.23 s")
    window = alerts["ml.anomalous_window"]
    assert "requests" in window["evidence"][0]["why"] and "learned" in window["evidence"][0]["why"]
    assert set(window["evidence"][0]["features"]) == set(FEATURES)
    assert "ml.anomalous_window" in result.stdout and "baseline.briefly_learned" in result.stdout
    # in EVE too, each with its own stable signature id
    eve = [json.loads(line) for line in run_icsguard("alerts", "--db", db, "--format", "eve").stdout.splitlines()]
    ids = {e["alert"]["signature"].split(":")[0]: e["alert"]["signature_id"] for e in eve}
    assert ids["Model"] == signature_id("ml.anomalous_window") > 0



def test_a_poller_drifting_within_the_band_is_reported_not_alerted(trained, tmp_path):
    """The polling learned every 2.2 s runs every 4.4 s: no alert, and the report's "what
    changed" names each exchange, its learned period, its pace now and by how much."""
    _, model, _ = trained
    slower = _retime(POLLING, tmp_path / "polling_slower.pcap", T0 + 1000, 200.0)
    db = tmp_path / "drift.db"
    result = run_icsguard("analyze", slower, "--model", model, "--db", db)
    assert result.returncode == 0, result.stderr
    assert "Alerts: none" in result.stdout
    assert "maturity" in result.stdout and "watched 2 min in all" in result.stdout
    report = run_icsguard("report", "--db", db, "--format", "md").stdout
    assert "## What changed, not alerted" in report
    drifts = [line for line in report.splitlines() if "x slower" in line]
    assert {line.split(" | ")[3] for line in drifts} == {"read_coils", "read_discrete_inputs",
                                                          "read_holding_registers", "read_input_registers"}
    assert all(" | 2.23 s | 4.4" in line and "2.0x slower" in line for line in drifts), drifts
    stored = json.loads(run_icsguard("report", "--db", db, "--format", "json").stdout)["drifts"]
    assert len(stored) == 4 and all(d["client"] == HMI and d["server"] == PLC for d in stored)


def test_an_isolation_forest_scores_without_scikit_learn(tmp_path):
    """The default estimator's trees are in the model file: analyze scores windows with them,
    finds the HMI writing where it only read, and never imports scikit-learn or SciPy (1.5 s
    and 100 MB before the first packet)."""
    learning = _retime(POLLING, tmp_path / "polling_slow.pcap", T0, 100.0)
    model = tmp_path / "forest.icsg"
    assert run_icsguard("learn", learning, "--model", model, "--window", "5").returncode == 0
    writes = _retime(WRITES, tmp_path / "writes.pcap", T0 + 1000, 400.0)      # 7 ms made 2.8 s of a window
    db = tmp_path / "forest.db"
    code = ("import sys\nfrom icsguard.cli import main\n"
            f"sys.argv = ['icsguard', 'analyze', {str(writes)!r}, '--model', {str(model)!r}, '--db', {str(db)!r}]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print('LOADED', sorted({n.split('.')[0] for n in sys.modules} & {'sklearn', 'scipy', 'pandas'}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "LOADED []"
    listed = run_icsguard("alerts", "--db", db, "--format", "jsonl")
    windows = [a for a in map(json.loads, listed.stdout.splitlines()) if a["rule"] == "ml.anomalous_window"]
    assert windows and "share of writes" in windows[0]["evidence"][0]["why"]

# --------------------------------------------------------------------------- #
# Unusable model files
# --------------------------------------------------------------------------- #
def _envelope(model) -> dict:
    with gzip.open(model, "rt", encoding="utf-8") as handle:
        return json.load(handle)


def _write_envelope(path, envelope: dict) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as out:
        json.dump(envelope, out)


def _signed(envelope: dict, change) -> dict:
    """The envelope with its body changed by ``change`` and the digest made to match."""
    body = json.loads(envelope["body"])
    change(body)
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return dict(envelope, body=text, digest="sha256:" + hashlib.sha256(text.encode()).hexdigest())


def _break(kind: str, model, path):
    data = model.read_bytes()
    envelope = _envelope(model)
    if kind == "flipped byte":
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(flipped))
    elif kind == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif kind == "a capture":
        path.write_bytes(POLLING.read_bytes())
    elif kind == "not gzip'd":
        path.write_text(json.dumps(envelope))
    elif kind == "other JSON":
        _write_envelope(path, {"format": "something-else", "version": 1})
    elif kind == "other version":
        _write_envelope(path, dict(envelope, version=modelfile.VERSION + 1))
    elif kind == "stale digest":
        body = json.loads(envelope["body"])
        body["baseline"]["pairs"][0]["functions"]["write_single_register"] = 1
        _write_envelope(path, dict(envelope, body=json.dumps(body, sort_keys=True, separators=(",", ":"))))
    elif kind == "zero window":
        _write_envelope(path, _signed(envelope, lambda body: body["model"].update(window_seconds=0)))
    elif kind == "text time":
        _write_envelope(path, _signed(envelope, lambda body: body["training"].update(first_ts="yesterday")))
    elif kind == "missing section":
        _write_envelope(path, _signed(envelope, lambda body: body.pop("baseline")))
    return path


BROKEN = {
    "flipped byte": "not an icsguard model file (not gzip'd JSON, or cut short)",
    "truncated": "not an icsguard model file (not gzip'd JSON, or cut short)",
    "a capture": "not an icsguard model file (not gzip'd JSON, or cut short)",
    "not gzip'd": "not an icsguard model file (not gzip'd JSON, or cut short)",
    "other JSON": "not an icsguard model file",
    "other version": f"model format version {modelfile.VERSION + 1}; this icsguard reads version {modelfile.VERSION}: "
                     "learn the model again",
    "stale digest": "corrupt model file (its digest does not match its contents)",
    "zero window": "unusable model file (window of 0.0 seconds)",
    "text time": "unusable model file (could not convert string to float: 'yesterday')",
    "missing section": "unusable model file ('baseline')",
}
# what the command line is tried on (each costs a process); the library is tried on all of BROKEN
THROUGH_CLI = ("flipped byte", "truncated", "a capture", "other version", "stale digest", "zero window")


@pytest.mark.parametrize("kind", THROUGH_CLI)
def test_unusable_model_file_is_refused_in_one_line(trained, tmp_path, kind):
    _, model, _ = trained
    broken = _break(kind, model, tmp_path / "broken.icsg")
    line = _failed(run_icsguard("model", "show", broken))
    assert line == f"icsguard: {broken}: {BROKEN[kind]}"


def test_load_says_why_a_model_file_is_unusable(trained, tmp_path):
    _, model, _ = trained
    for kind, why in BROKEN.items():
        broken = _break(kind, model, tmp_path / f"{kind}.icsg")
        with pytest.raises(modelfile.ModelFileError) as refused:
            modelfile.load(broken)
        assert str(refused.value) == f"{broken}: {why}"
    assert modelfile.load(model).model.ready                  # the file they were all made from is fine


def test_broken_model_stops_analyze_and_update_before_any_work(trained, tmp_path):
    """analyze --model refuses before the database is made; learn --update leaves the file as it was."""
    _, model, _ = trained
    broken = _break("stale digest", model, tmp_path / "broken.icsg")
    kept = broken.read_bytes()
    db = tmp_path / "icsguard.db"
    _failed(run_icsguard("analyze", WRITES, "--model", broken, "--db", db), "corrupt model file")
    assert not db.exists()
    _failed(run_icsguard("learn", WRITES, "--model", broken, "--update"), "corrupt model file")
    assert broken.read_bytes() == kept
    _failed(run_icsguard("analyze", WRITES, "--model", tmp_path / "nowhere.icsg", "--db", db),
            f"{tmp_path / 'nowhere.icsg'}: no such model file")
    _failed(run_icsguard("model", "show", tmp_path), f"{tmp_path}: is a folder, not a model file")


def test_learn_into_a_missing_or_wrong_place(tmp_path):
    missing = tmp_path / "no such folder" / "plant.icsg"
    _failed(run_icsguard("learn", WRITES, "--model", missing), f"{missing}: cannot write (No such file or directory)")
    assert not missing.parent.exists()
    _failed(run_icsguard("learn", WRITES, "--model", tmp_path), f"{tmp_path}: is a folder, not a model file")
    _failed(run_icsguard("learn", WRITES, "--model", tmp_path / "new.icsg", "--update"), "no such model file")
    _failed(run_icsguard("learn", WRITES, "--model", tmp_path / "new.icsg", "--window", "0.5"),
            "--window: give at least 1 second")
    assert list(tmp_path.iterdir()) == []                    # nothing written, not even half a model
