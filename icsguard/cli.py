"""The ``icsguard`` command: argument parsing and output only; the work is in the library."""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from enum import Enum
from typing import Callable, Iterable, Iterator, List, Optional

import typer
from rich.console import Console

from icsguard import __version__
from icsguard.capture.files import STDIN, CaptureError
from icsguard.detect import catalogue, modelfile
from icsguard.detect.model import ESTIMATORS
from icsguard.detect.rules import SEVERITIES, RuleSet, load_rules, shipped_rules
from icsguard.detect.site import Site, load_site
from icsguard.detect.yamlfile import FileError
from icsguard.events import PROTOCOLS, Event
from icsguard.output import exports, model_report, notation, report, tables
from icsguard.output.progress import DelayedProgress, progress_bar
from icsguard.output.store import ALERT_STATUSES, DEFAULT_DB, Store, StoreError
from icsguard.output.tables import Column

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Passive security monitoring for industrial networks.")
stdout = tables.console()
stderr = tables.console(stderr=True)
TABLE_ROWS = 5000
SHORT_DIRECTION = {"request": "req", "response": "resp", "notification": "notif"}

CapturesArg = typer.Argument(..., help="pcap or pcapng files (or pipes; - for standard input), optionally gzip-compressed",
                             show_default=False)
DbOption = typer.Option(DEFAULT_DB, "--db", help="SQLite database file")
RulesOption = typer.Option(None, "--rules", help="rule file or folder, added to the shipped packs (repeatable)")
NoDefaultRulesOption = typer.Option(False, "--no-default-rules", help="leave out the shipped rule packs")
SiteOption = typer.Option(None, "--site", help="site file (YAML): zones, roles, writers, maintenance")
WorkersOption = typer.Option(1, "--workers", help="processes to share the work, by server address")
SchedulerOption = typer.Option(None, "--scheduler", help="a Dask scheduler's address (local: a cluster started here)")
ModelOption = typer.Option(None, "--model", help="model file made by icsguard learn: baseline and ML detection")
rules_app = typer.Typer(no_args_is_help=True, help="List, validate and try out rules.")
model_app = typer.Typer(no_args_is_help=True, help="Model files made by icsguard learn.")
site_app = typer.Typer(no_args_is_help=True, help="The site file: zones, roles, who may write where.")
alerts_app = typer.Typer(help="Stored alerts: list, acknowledge, mute, unmute.")
app.add_typer(rules_app, name="rules")
app.add_typer(site_app, name="site")
app.add_typer(alerts_app, name="alerts")
app.add_typer(model_app, name="model")


def _say(line: str) -> None:
    """One line of plain text, never wrapped (a path or an address is copied from it)."""
    stdout.print(line, markup=False, highlight=False, soft_wrap=True)


def _print_version(wanted: bool) -> None:
    if wanted:
        _say(f"icsguard {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                          help="Print the version and exit.")) -> None:
    """Passive security monitoring for industrial networks."""


class DecodeFormat(str, Enum):
    jsonl = "jsonl"
    table = "table"


class ReportFormat(str, Enum):
    terminal = "terminal"
    html = "html"
    json = "json"
    md = "md"


class ScanFormat(str, Enum):
    table = "table"
    json = "json"
    md = "md"
    html = "html"
    junit = "junit"


class ListFormat(str, Enum):
    table = "table"
    jsonl = "jsonl"
    csv = "csv"


class AlertFormat(str, Enum):
    table = "table"
    jsonl = "jsonl"
    eve = "eve"
    csv = "csv"


class Failure(Exception):
    """Ends the command with this one-line message and exit status ``code`` (1: bad input)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class ReaderGone(Exception):
    """The reader of our output left (``icsguard decode x.pcap | head``): not an error, as with
    cat. Raised in place of BrokenPipeError, which click would turn into exit status 1."""


@contextmanager
def _reader_may_leave() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        raise ReaderGone from None


def _analysis():
    """The library that reads captures, loaded only by the commands that do: it brings in
    Scapy and every decoder, which listing alerts or assets has no use for. Scapy would read
    the host's routing tables as it loads, for sending; icsguard sends nothing through Scapy,
    so they are left unread (a tenth of a second of every start)."""
    from scapy.config import conf
    conf.route_autoload = conf.route6_autoload = False
    from icsguard import analysis
    return analysis


def _check_captures(paths: list[str]) -> None:
    if paths.count(STDIN) > 1:
        raise Failure("standard input (-) can be read only once")
    for path in paths:
        if path == STDIN:
            continue
        if not os.path.exists(path):
            raise Failure(f"{path}: no such file")
        if os.path.isdir(path):
            raise Failure(f"{path}: is a directory, not a capture")


def _open_store(path: str, must_exist: bool = False, readonly: bool = False) -> Store:
    """``readonly`` for commands that only read: they work on write-protected copies too."""
    if (must_exist or readonly) and not os.path.exists(path):
        raise Failure(f"{path}: no such database (run icsguard analyze first)")
    if os.path.isdir(path):
        raise Failure(f"{path}: is a folder, not a database")
    try:
        return Store(path, readonly)
    except StoreError as exc:
        raise Failure(str(exc)) from None


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped the command; the message says what was kept."""


def _stop_on_signals() -> threading.Event:
    """SIGINT and SIGTERM ask the run to stop after the PDU at hand, so that it is recorded
    as interrupted with everything before it; a second one stops at once."""
    stop = threading.Event()

    def handle(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


@contextmanager
def _progress(captures: list[str], shown: bool = True) -> Iterator[DelayedProgress | None]:
    """A progress bar on stderr for a long read (``shown``: not while a table goes to the same terminal),
    none when stderr is no terminal (the pipeline then calls nothing per frame for it)."""
    progress = progress_bar(captures, stderr) if shown else None
    try:
        yield progress
    finally:
        if progress is not None:
            progress.close()


def _write_output(path: str, write: Callable[[io.TextIOBase], None]) -> None:
    """Write a report to a file, or say in one line why it cannot be."""
    if os.path.isdir(path):
        raise Failure(f"{path}: is a folder; give a file name for --output")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise Failure(f"{path}: the folder {folder} does not exist")
    try:
        with open(path, "w", encoding="utf-8") as f:
            write(f)
    except OSError as exc:
        raise Failure(f"{path}: cannot write ({exc.strerror})") from None


@app.command()
def decode(captures: List[str] = CapturesArg,
           format: DecodeFormat = typer.Option(DecodeFormat.jsonl, "--format", help="jsonl or table"),
           proto: Optional[str] = typer.Option(None, "--proto", help=f"only this protocol: {', '.join(PROTOCOLS)}")):
    """Print one record per application PDU."""
    _check_captures(captures)
    if proto is not None and proto not in PROTOCOLS:
        raise Failure(f"unknown protocol {proto!r} (choose from {', '.join(PROTOCOLS)})")
    with _reader_may_leave(), _progress(captures, shown=not sys.stdout.isatty()) as progress:
        _print_events(_analysis().decode(captures, proto, progress=progress), format)


def _print_events(events: Iterable[Event], format: DecodeFormat) -> None:
    if format is DecodeFormat.jsonl:
        write = sys.stdout.write
        try:
            for event in events:
                write(event.to_json())
                write("\n")
        except CaptureError as exc:
            sys.stdout.flush()
            raise Failure(str(exc)) from None
        return
    columns = [Column("frame", right=True), Column("time"), Column("src"), Column("dst"), Column("proto"),
               Column("dir"), Column("function"), Column("details", wraps=True)]
    rows: list[list[str]] = []
    caption = None
    failure = None
    try:
        for event in events:
            if len(rows) == TABLE_ROWS:
                caption = f"only the first {TABLE_ROWS} PDUs are shown; use --format jsonl for all"
                break
            rows.append([str(event.frame), notation.clock(event.ts), notation.endpoint(event.src, event.sport),
                         notation.endpoint(event.dst, event.dport), event.proto, SHORT_DIRECTION[event.direction],
                         event.function, notation.details(event.fields)])
    except CaptureError as exc:
        failure = str(exc)
    tables.show(stdout, None, columns, rows, caption)
    if failure:
        raise Failure(failure)


def _site(path: Optional[str]) -> Site | None:
    try:
        return load_site(path) if path else None
    except FileError as exc:
        raise Failure(str(exc)) from None


def _rules(paths: Optional[List[str]], site: Site | None, check_groups: bool = True, defaults: bool = True,
           detecting: bool = False) -> RuleSet:
    """The shipped packs (unless ``defaults`` is off) and the user's files; ``detecting``: a
    command that checks traffic, for which no active rule at all is a mistake, not a quiet night."""
    try:
        ruleset = load_rules(_rule_files(paths, defaults), site, check_groups)
    except FileError as exc:
        raise Failure(str(exc)) from None
    if detecting and not ruleset.rules:
        waiting = f" ({len(ruleset.inactive)} need a site file: --site)" if ruleset.inactive else ""
        raise Failure(f"no active rules{waiting}: nothing would be checked")
    return ruleset


def _rule_files(paths: Optional[List[str]], defaults: bool) -> list[str]:
    """The shipped packs (unless left out) and the user's files, as one list of paths."""
    return [*(str(p) for p in (shipped_rules() if defaults else [])), *(paths or [])]


def _model(path: Optional[str], shared: bool = False) -> modelfile.LearnedModel | None:
    """A model file loaded (``shared``: once per process, for an analysis only reading it)."""
    try:
        return (modelfile.load_shared if shared else modelfile.load)(path) if path else None
    except modelfile.ModelFileError as exc:
        raise Failure(str(exc)) from None


@app.command()
def analyze(captures: List[str] = CapturesArg, db: str = DbOption,
            rules: Optional[List[str]] = RulesOption, site: Optional[str] = SiteOption,
            model: Optional[str] = ModelOption, no_default_rules: bool = NoDefaultRulesOption,
            workers: int = WorkersOption, scheduler: Optional[str] = SchedulerOption):
    """Decode captures, check them against the rules (and a learned model), store what was
    seen and print the report."""
    _check_captures(captures)
    _check_workers(captures, workers, scheduler)
    # a broken rule, site or model file stops us before any work
    ruleset = _rules(rules, _site(site), defaults=not no_default_rules, detecting=True)
    learned = _model(model, shared=True)      # (the shards read the one loaded here)
    _analysis().check_captures(captures)      # before the database is touched
    store = _open_store(db)
    if workers > 1 or scheduler:
        run_id, status, error = _sharded(captures, store, workers, rules, no_default_rules, site, model, scheduler,
                                         ruleset)
    else:
        stop = _stop_on_signals()
        with _progress(captures) as progress:
            run_id, status, error = _analysis().analyze(captures, store, progress, ruleset, learned, stop)
    data = report.gather(store, run_id)
    store.close()
    if status == "interrupted":
        run = data["run"]
        raise Interrupted(f"interrupted: run {run_id} in {db} keeps what was read before the stop "
                          f"({run['packets']:,} packets, {len(data['alerts']):,} alerts)")
    report.render_terminal(data, stdout)
    if error:
        raise Failure(error)


def _sharded(captures: list[str], store: Store, workers: int, rules: Optional[List[str]], no_default_rules: bool,
             site: Optional[str], model: Optional[str], scheduler: Optional[str],
             ruleset: RuleSet) -> tuple[int, str, str | None]:
    from icsguard.shards import analyze_sharded
    with _cluster_errors(scheduler):
        return analyze_sharded(captures, store, workers, _rule_files(rules, not no_default_rules), site, model,
                               scheduler, _stop_on_signals(), ruleset)


@contextmanager
def _cluster_errors(scheduler: Optional[str]) -> Iterator[None]:
    """Dask missing, or a scheduler that cannot be reached, said in one line."""
    try:
        yield
    except ImportError:
        raise Failure("--scheduler needs Dask: pip install 'icsguard[cluster]'") from None
    except OSError as exc:
        raise Failure(f"--scheduler {scheduler}: {exc.strerror or exc}") from None


def _check_workers(captures: list[str], workers: int, scheduler: Optional[str]) -> None:
    if workers < 1:
        raise Failure("--workers: give at least 1")
    if STDIN in captures and (workers > 1 or scheduler):
        raise Failure("standard input can be read by one worker only: give files to --workers")


Estimator = Enum("Estimator", {name: name for name in ESTIMATORS}, type=str)


@app.command()
def sense(iface: str = typer.Option(..., "--iface", help="the interface to listen on (a SPAN port or a tap)"),
          bpf: Optional[str] = typer.Option(None, "--bpf", help="a capture filter, e.g. 'tcp port 502'"),
          db: str = DbOption, rules: Optional[List[str]] = RulesOption, site: Optional[str] = SiteOption,
          model: Optional[str] = ModelOption, no_default_rules: bool = NoDefaultRulesOption,
          silent: float = typer.Option(300.0, "--silent-after", help="seconds without a packet before a health alert"),
          gaps: int = typer.Option(10, "--gaps-per-minute", help="TCP reassembly gaps in a minute before a health alert"),
          buffer_mb: int = typer.Option(64, "--buffer-mb", help="the kernel's capture buffer, for bursts"),
          eve: Optional[str] = typer.Option(None, "--eve", help="append alerts and a stats record a minute, "
                                                                 "Suricata's EVE layout; reopened on SIGHUP"),
          evidence_dir: Optional[str] = typer.Option(None, "--evidence-dir", help="write each alert's packets "
                                                                                   "there (pcapng)"),
          evidence_quota_mb: int = typer.Option(500, "--evidence-quota-mb", help="disk space the evidence may "
                                                                                 "take")):
    """Listen on an interface until stopped (Ctrl-C, SIGTERM): decode, check and store as analyze does,
    with health alerts when the kernel drops packets or the tap goes silent."""
    from icsguard.capture.live import LiveCapture
    from icsguard.detect.health import HealthDetector
    ruleset = _rules(rules, _site(site), defaults=not no_default_rules, detecting=True)
    learned = _model(model)
    live = LiveCapture(iface, bpf, buffer_mb)
    store = _open_store(db)
    stop = _stop_on_signals()
    health = HealthDetector(live.name, live.drops, silent, gaps)
    eve_file = None
    if eve:
        from icsguard.output.eve import EveFile
        try:
            eve_file = EveFile(eve)
        except OSError as exc:
            raise Failure(str(exc)) from None
        signal.signal(signal.SIGHUP, lambda signum, frame: setattr(eve_file, "reopen_requested", True))
    ring = None
    if evidence_dir:
        from icsguard.output.evidence import RING_BYTES, EvidenceRing
        try:
            ring = EvidenceRing(evidence_dir, evidence_quota_mb * 1_000_000, RING_BYTES, store.add_evidence_capture)
        except OSError as exc:
            raise Failure(f"{evidence_dir}: cannot use it for evidence ({exc.strerror})") from None
    run_id, _status, error = _analysis().analyze_frames(live.frames(stop), [live.name], store, "sense",
                                                          rules=ruleset, learned=learned, stop=stop, health=health,
                                                          on_commit=eve_file.record if eve_file else None,
                                                          evidence=ring)
    if eve_file is not None:
        eve_file.close()
    counters = json.loads(store.run(run_id)["counters"] or "{}")
    store.close()
    _say(f"{report.sensor_line(counters)} (run {run_id} in {db})")
    if error:
        raise Failure(error)


@app.command()
def replay(captures: List[str] = CapturesArg,
           iface: str = typer.Option(..., "--iface", help="the interface to write the frames onto"),
           speed: float = typer.Option(1.0, "--speed", help="times the captured pace (2: twice as fast)"),
           topspeed: bool = typer.Option(False, "--topspeed", help="as fast as the interface takes them"),
           loop: int = typer.Option(1, "--loop", help="times to replay the captures"),
           force: bool = typer.Option(False, "--force", help="replay onto an interface that has an IP address")):
    """Write captured frames onto an interface, paced as captured: to test a sensor."""
    from icsguard.capture.replay import ReplayError
    from icsguard.capture.replay import replay as send
    _check_captures(captures)
    try:
        done = send(captures, iface, speed, topspeed, loop, force)
    except ReplayError as exc:
        raise Failure(str(exc)) from None
    skipped = f"; {done.skipped:,} frames skipped (not Ethernet)" if done.skipped else ""
    if done.too_long:
        skipped += f"; {done.too_long:,} frames longer than the MTU of {iface} skipped"
    _say(f"sent {done.packets:,} packets ({done.bytes:,} bytes) in {done.seconds:.2f} s onto {iface}{skipped}")


@app.command()
def scan(captures: Optional[List[str]] = typer.Argument(None, help="captures to analyse and scan (default: "
                                                                  "every run in --db)", show_default=False),
         db: str = DbOption, policy: Optional[str] = typer.Option(None, "--policy", help="a policy file over the "
                                                                                       "shipped one (YAML)"),
         site: Optional[str] = SiteOption,
         format: ScanFormat = typer.Option(ScanFormat.table, "--format"),
         output: Optional[str] = typer.Option(None, "--output", help="write to this file")):
    """Check the traffic against a policy (IEC 62443-3-3, NIST SP 800-82): PASS, FAIL or NOT_ASSESSED
    per check with its evidence. Exit 0: nothing failed; 1: a check failed; 2: no verdict (bad input)."""
    from icsguard.output import scan as scanner
    from icsguard.output import scan_report
    from icsguard.output.policy import load_policy
    try:
        try:
            chosen = load_policy(policy, frozenset(scanner.CHECKS))
        except FileError as exc:
            raise Failure(str(exc)) from None
        site_file = _site(site)
        if captures:
            _check_captures(captures)
            _analysis().check_captures(captures)
            store = _open_store(db)
            stop = _stop_on_signals()
            with _progress(captures) as progress:
                run_id, status, error = _analysis().analyze(captures, store, progress,
                                                            _rules(None, site_file, detecting=True), None, stop)
            if status == "interrupted":
                raise Interrupted(f"interrupted: run {run_id} in {db} keeps what was read; no scan was made")
            if error:
                raise Failure(error)
            runs, scope = [run_id], "captures " + ", ".join(sorted(os.path.basename(c) for c in captures))
        else:
            store = _open_store(db, must_exist=True)
            runs, scope = None, f"database {os.path.abspath(db)}"
        report = scanner.scan(store, chosen, site_file, runs, scope)
        store.close()
        if format is ScanFormat.html:
            from icsguard.output import html
            text = html.render_scan(report)
        elif format is ScanFormat.table:
            text = None
        else:
            text = {ScanFormat.json: scan_report.render_json, ScanFormat.md: scan_report.render_markdown,
                    ScanFormat.junit: scan_report.render_junit}[format](report)
        if text is None:
            if output:
                _write_output(output, lambda f: scan_report.render_terminal(report, Console(file=f, width=120)))
            else:
                scan_report.render_terminal(report, stdout)
        elif output:
            _write_output(output, lambda f: f.write(text))
        else:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
    except (Failure, CaptureError) as exc:          # no verdict: not to be read as a failed check
        raise Failure(str(exc), code=2) from None
    if report["result"] == "FAIL":
        raise typer.Exit(1)


@app.command()
def learn(captures: List[str] = CapturesArg,
          model: str = typer.Option(..., "--model", help="model file to write"),
          site: Optional[str] = SiteOption,
          update: bool = typer.Option(False, "--update", help="go on learning: add these captures to --model"),
          force: bool = typer.Option(False, "--force", help="replace an existing model file"),
          estimator: Optional[Estimator] = typer.Option(
              None, "--estimator", help=f"scikit-learn novelty detector (default {ESTIMATORS[0]}; "
                                        "with --update, replaces the model's)"),
          false_alarm_rate: Optional[float] = typer.Option(
              None, "--false-alarm-rate", help="share of normal windows allowed to alert (default 0.001)"),
          window: Optional[float] = typer.Option(None, "--window", help="seconds per feature window (default 60)"),
          workers: int = WorkersOption, scheduler: Optional[str] = SchedulerOption):
    """Learn normal traffic (the baseline) and fit the anomaly model, from captures believed normal."""
    _check_captures(captures)
    _check_workers(captures, workers, scheduler)
    if false_alarm_rate is not None and not 0 < false_alarm_rate < 0.5:
        raise Failure("--false-alarm-rate: give a share between 0 and 0.5, e.g. 0.001")
    if window is not None and not window >= 1:
        raise Failure("--window: give at least 1 second")
    site_file = _site(site)
    learned = None
    if update:
        learned = _model(model)
        if window is not None and window != learned.model.window_seconds:
            raise Failure(f"--window {window:g}: {model} was learned with {learned.model.window_seconds:g}-second windows")
    elif os.path.isdir(model):
        raise Failure(f"{model}: is a folder, not a model file")
    elif os.path.exists(model):
        if not force:
            raise Failure(f"{model} exists: --update to go on learning into it, --force to replace it")
        try:
            modelfile.load(model)
        except modelfile.ModelFileError:
            raise Failure(f"{model} is not a model file: it is never replaced; give another path") from None
    _analysis().check_captures(captures)
    if learned is not None:          # --update: a capture learned before is not learned twice
        known = set(learned.digests)
        again = [c for c in captures if c != STDIN and os.path.isfile(c)
                 and _analysis().capture_digest(c) in known]
        if again:
            stderr.print(f"icsguard: note: {', '.join(again)} already learned in {model}: skipped",
                         markup=False, highlight=False, soft_wrap=True)
            captures = [c for c in captures if c not in again]     # (none left: the model is refitted only)
    if workers > 1 or scheduler:
        from icsguard.shards import learn_sharded
        with _cluster_errors(scheduler):
            learned, error = learn_sharded(captures, learned, site, workers, scheduler, estimator and estimator.value,
                                           false_alarm_rate, window)
    else:
        with _progress(captures) as progress:
            learned, error = _analysis().learn(captures, learned, site_file, estimator and estimator.value,
                                               false_alarm_rate, window, progress)
    if update:
        learned.updated = time.time()
    try:
        modelfile.save(learned, model)
    except OSError as exc:
        raise Failure(f"{model}: cannot write ({exc.strerror})") from None
    model_report.render(modelfile.describe(learned), learned.baseline, stdout, brief=True)
    if error:
        raise Failure(error)


@model_app.command("show")
def model_show(path: str = typer.Argument(..., help="model file")):
    """What a model file learned: pairs, functions, address ranges, value ranges, periods."""
    learned = _model(path)
    model_report.render(modelfile.describe(learned), learned.baseline, stdout)


@app.command("report")
def report_command(db: str = DbOption,
                   run: Optional[int] = typer.Option(None, "--run", help="the run to report on (default: the "
                                                                         "latest; icsguard runs lists them)"),
                   format: ReportFormat = typer.Option(ReportFormat.terminal, "--format"),
                   output: Optional[str] = typer.Option(None, "--output", help="write to this file")):
    """Report on one run in the database (the latest unless --run)."""
    store = _open_store(db, readonly=True)
    if run is not None and store.run(run) is None:
        store.close()
        raise Failure(f"no run {run} in {db} (icsguard runs --db {db} lists them)")
    data = report.gather(store, run)
    scans = store.scans() if format is ReportFormat.html else []
    store.close()
    if format is ReportFormat.terminal:
        if output:
            _write_output(output, lambda f: report.render_terminal(data, Console(file=f, width=120)))
        else:
            report.render_terminal(data, stdout)
        return
    if format is ReportFormat.html:
        from icsguard.output import html
        text = html.render_report(data, scans[-1] if scans else None)
    else:
        text = report.render_json(data) if format is ReportFormat.json else report.render_markdown(data)
    if output:
        _write_output(output, lambda f: f.write(text))
    else:
        sys.stdout.write(text + "\n")


def _print_rows(rows: list[dict], columns: list[str], format: ListFormat, title: str,
                table_columns: list[str] | None = None) -> None:
    with _reader_may_leave():
        _write_rows(rows, columns, format, title, table_columns)


TIME_COLUMNS = frozenset(("ts", "first_ts", "last_ts", "first_seen", "last_seen", "since", "started", "finished"))
WRAPPING_COLUMNS = frozenset(("title", "vendor", "protocols", "captures", "active", "mitre", "posture"))


def _write_rows(rows: list[dict], columns: list[str], format: ListFormat, title: str,
                table_columns: list[str] | None = None) -> None:
    """JSON Lines and CSV carry ``columns`` as stored; a table shows ``table_columns`` (default
    the same) in analyst notation: UTC times, lists as lists."""
    if format is ListFormat.jsonl:
        for row in rows:
            sys.stdout.write(json.dumps(row) + "\n")
    elif format is ListFormat.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        writer.writerows([notation.json_cell(row.get(c)) for c in columns] for row in rows)
        sys.stdout.write(buffer.getvalue())
    else:
        shown = table_columns or columns
        tables.show(stdout, title, [Column(c, wraps=c in WRAPPING_COLUMNS, right=c in ("id", "count"))
                                    for c in shown],
                    [[notation.utc_time(row.get(c)) if c in TIME_COLUMNS else notation.text(row.get(c))
                      for c in shown] for row in rows])


@app.command()
def assets(db: str = DbOption, format: ListFormat = typer.Option(ListFormat.table, "--format")):
    """List the hosts seen in every run of the database: vendor, model, firmware and serial as they
    said on the wire (JSON Lines and CSV: every attribute with where and when), a guessed role."""
    store = _open_store(db, readonly=True)
    rows = store.assets()
    runs = len(store.runs())
    store.close()
    _print_rows(rows, ["ip", "mac", "vendor", "model", "firmware", "serial", "role", "protocols", "posture",
                       "first_seen", "last_seen", "identity"], format,
                f"Assets seen in the {runs} run{'s' if runs != 1 else ''} of {db} (times UTC)",
                ["ip", "mac", "vendor", "model", "firmware", "serial", "role", "protocols", "posture", "first_seen",
                 "last_seen"])


@app.command()
def runs(db: str = DbOption, format: ListFormat = typer.Option(ListFormat.table, "--format")):
    """List the runs in the database: what each read, how it ended, its alerts (for report --run N)."""
    store = _open_store(db, readonly=True)
    rows = [{"id": r["id"], "command": r["command"], "status": r["status"], "started": r["started"],
             "finished": r["finished"], "captures": json.loads(r["captures"] or "[]"), "packets": r["packets"],
             "alerts": r["alerts"]} for r in store.runs()]
    store.close()
    _print_rows(rows, ["id", "command", "status", "started", "finished", "captures", "packets", "alerts"], format,
                f"Runs in {db} (times UTC)")


@alerts_app.callback(invoke_without_command=True)
def alerts(ctx: typer.Context, db: str = DbOption,
           since: Optional[str] = typer.Option(None, "--since", help="ISO time or epoch seconds"),
           severity: Optional[List[str]] = typer.Option(None, "--severity", help="low, medium, high or critical "
                                                                                 "(repeatable, or comma-separated)"),
           status: Optional[List[str]] = typer.Option(None, "--status", help="new, acknowledged or muted "
                                                                             "(repeatable, or comma-separated)"),
           format: AlertFormat = typer.Option(AlertFormat.table, "--format")):
    """List stored alerts, most severe first (or: alerts ack ID, mute RULE_ID, unmute RULE_ID, mutes)."""
    if ctx.invoked_subcommand:
        return
    severities = _choices("--severity", severity, SEVERITIES)
    statuses = _choices("--status", status, ALERT_STATUSES)
    store = _open_store(db, readonly=True)
    rows = list(store.alerts(since=_parse_time(since) if since else None, severities=severities, statuses=statuses))
    store.close()
    if format is AlertFormat.eve:
        with _reader_may_leave():
            for row in rows:
                sys.stdout.write(json.dumps(exports.eve(row)) + "\n")
        return
    records = [exports.record(row) for row in rows]
    format = ListFormat.table if format is AlertFormat.table else ListFormat(format.value)
    _print_rows(records, list(exports.ALERT_FIELDS), format, f"Alerts in {db} (times UTC)",
                ["id", "severity", "rule", "title", "src", "dst", "count", "first_ts", "last_ts", "status"])


@alerts_app.command("ack")
def alerts_ack(ctx: typer.Context, alert_id: int = typer.Argument(..., help="the alert's id"), db: str = DbOption):
    """Mark an alert as acknowledged."""
    db = _group_db(ctx, db)
    store = _open_store(db, must_exist=True)
    found = store.acknowledge(alert_id)
    store.close()
    if not found:
        raise Failure(f"no alert {alert_id} in {db}")
    _say(f"alert {alert_id} acknowledged in {db}")


@alerts_app.command("mute")
def alerts_mute(ctx: typer.Context, rule: str = typer.Argument(..., help="the rule id"),
                src: Optional[str] = typer.Option(None, "--src", help="only for this source address"),
                db: str = DbOption):
    """Stop a rule from raising new alerts (for one source, or for all)."""
    db = _group_db(ctx, db)
    src = _address("--src", src)
    store = _open_store(db, must_exist=True)
    if not store.has_alerts_of(rule) and rule not in catalogue.alert_ids(_rules(None, None, check_groups=False)):
        store.close()
        raise Failure(f"unknown rule {rule!r}: not a shipped rule or detector, nor in {db}'s alerts "
                      "(icsguard rules list)")
    marked = store.mute(rule, src)
    store.close()
    _say(f"{rule} muted in {db} {_for_source(src)}; "
         f"{marked} stored alert(s) marked muted")


@alerts_app.command("unmute")
def alerts_unmute(ctx: typer.Context, rule: str = typer.Argument(..., help="the rule id"),
                  src: Optional[str] = typer.Option(None, "--src", help="the source the mute was for"),
                  db: str = DbOption):
    """Let a muted rule raise alerts again; its muted alerts become new."""
    db = _group_db(ctx, db)
    src = _address("--src", src)
    store = _open_store(db, must_exist=True)
    found, back = store.unmute(rule, src)
    store.close()
    if not found:
        raise Failure(f"{rule} is not muted {_for_source(src)} in {db} "
                      f"(icsguard alerts --db {db} mutes lists the mutes)")
    _say(f"{rule} unmuted in {db} {_for_source(src)}; {back} stored alert(s) new again")


def _for_source(src: Optional[str]) -> str:
    return f"for {src}" if src else "for every source"


@alerts_app.command("mutes")
def alerts_mutes(ctx: typer.Context, db: str = DbOption,
                 format: ListFormat = typer.Option(ListFormat.table, "--format")):
    """List the muted rules, and for which source."""
    db = _group_db(ctx, db)
    store = _open_store(db, readonly=True)
    rows = [dict(m, src=m["src"] or "every source") for m in store.mute_list()]
    store.close()
    _print_rows(rows, ["rule", "src", "since"], format, f"Mutes in {db} (times UTC)")


def _address(option: str, text: Optional[str]) -> Optional[str]:
    """An IP address as stored (``2001:DB8::1`` → ``2001:db8::1``), or a one-line refusal."""
    if text is None:
        return None
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise Failure(f"{option} {text!r}: not an IP address") from None


@alerts_app.command("evidence")
def alerts_evidence(ctx: typer.Context, alert_id: int = typer.Argument(..., help="the alert's id"),
                    output: str = typer.Option(..., "--output", help="the pcapng file to write"),
                    capture_dir: Optional[str] = typer.Option(None, "--capture-dir",
                                                              help="where the captures are, if they moved"),
                    db: str = DbOption):
    """Write the packets behind an alert (a pcapng for Wireshark) and keep its SHA-256 with the alert."""
    from icsguard.output.evidence import EvidenceError, locate, write_evidence
    db = _group_db(ctx, db)
    store = _open_store(db, must_exist=True)
    try:
        alert = store.alert(alert_id)
        if alert is None:
            raise Failure(f"no alert {alert_id} in {db}")
        if os.path.isdir(output):
            raise Failure(f"{output}: is a folder; give a file name for --output")
        try:
            written = write_evidence(alert, locate(alert, store.run(alert["run_id"]), capture_dir), output)
        except EvidenceError as exc:
            raise Failure(str(exc)) from None
        store.add_evidence_capture(alert_id, os.path.abspath(output), written.sha256, written.frames)
    finally:
        store.close()
    notes = "".join([f"; not found: {', '.join(written.missing)}" if written.missing else "",
                     f"; cut at {written.frames:,} frames" if written.cut else ""])
    _say(f"alert {alert_id}: {written.frames:,} frames ({written.evidence_frames} of them evidence) written to "
         f"{output}, sha256 {written.sha256}{notes}")


def _choices(option: str, given: Optional[List[str]], allowed: tuple[str, ...]) -> list[str] | None:
    """``--severity HIGH,medium --severity low``: values in any case, repeated or comma-separated,
    each one checked (a misspelt value must not quietly match nothing)."""
    if not given:
        return None
    values = [v.strip().lower() for text in given for v in text.split(",") if v.strip()]
    wrong = [v for v in values if v not in allowed]
    if wrong:
        raise Failure(f"{option} {wrong[0]!r}: give one of {', '.join(allowed)}")
    return values


def _group_db(ctx: typer.Context, db: str) -> str:
    """``alerts --db X ack 3``: the group's --db holds for its subcommands too."""
    given = ctx.parent.params.get("db") if ctx is not None and ctx.parent is not None else None
    return given if db == DEFAULT_DB and given else db


@rules_app.command("list")
def rules_list(rules: Optional[List[str]] = RulesOption, site: Optional[str] = SiteOption,
               format: ListFormat = typer.Option(ListFormat.table, "--format"),
               no_default_rules: bool = NoDefaultRulesOption):
    """The rules, their severity, protocol and ATT&CK techniques."""
    ruleset = _rules(rules, _site(site), defaults=not no_default_rules)
    rows = [{"id": r.id, "severity": r.severity, "proto": ",".join(r.proto or ("any",)),
             "mitre": ",".join(r.mitre), "title": r.title, "active": "yes"} for r in ruleset.rules]
    rows += [{"id": rule_id, "active": f"no: {why}"} for rule_id, why in ruleset.inactive.items()]
    _print_rows(rows, ["id", "severity", "proto", "mitre", "title", "active"], format,
                f"{len(ruleset.rules)} rules" + (f", {len(ruleset.inactive)} inactive without a site file"
                                                 if ruleset.inactive else ""))


@rules_app.command("validate")
def rules_validate(paths: List[str] = typer.Argument(None, help="rule files or folders (default: the shipped packs)"),
                   site: Optional[str] = SiteOption):
    """Check rule files; the first mistake is reported with its file and line."""
    ruleset = _rules(paths, _site(site), check_groups=site is not None, defaults=not paths)
    files = len(paths) if paths else len(shipped_rules())
    stdout.print(f"{len(ruleset.rules) + len(ruleset.inactive)} rules in {files} location(s): valid")


@rules_app.command("test")
def rules_test(rule_id: str = typer.Argument(..., help="the rule to try"), captures: List[str] = CapturesArg,
               rules: Optional[List[str]] = RulesOption, site: Optional[str] = SiteOption,
               no_default_rules: bool = NoDefaultRulesOption):
    """Which events of the captures a rule matches, and why (thresholds not applied)."""
    _check_captures(captures)
    ruleset = _rules(rules, _site(site), defaults=not no_default_rules)
    rule = ruleset.by_id(rule_id)
    if rule is None:
        why = ruleset.inactive.get(rule_id)
        raise Failure(f"rule {rule_id} {'is inactive: ' + why if why else 'is not among the rules'}")
    matched = 0
    try:
        with _progress(captures) as progress:
            for event, reasons in _analysis().test_rule(rule, captures, progress):
                matched += 1
                _say(f"{event.capture} frame {event.frame} {notation.endpoint(event.src, event.sport)} -> "
                     f"{notation.endpoint(event.dst, event.dport)} {event.function}: " + "; ".join(reasons))
    except CaptureError as exc:
        raise Failure(str(exc)) from None
    threshold = rule.threshold
    note = (f" (alerts need {threshold.count} within {threshold.seconds:g} s per {', '.join(threshold.by)})"
            if threshold else "")
    stdout.print(f"{rule_id}: {matched} matching event(s){note}")


@site_app.command("init")
def site_init(captures: List[str] = CapturesArg):
    """Print a draft site file from the captures' traffic, to edit and pass as --site."""
    _check_captures(captures)
    try:
        with _progress(captures) as progress:
            draft = _analysis().draft_site_file(captures, progress)
        sys.stdout.write(draft)
    except CaptureError as exc:
        raise Failure(str(exc)) from None


def _parse_time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
        return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()   # printed times are UTC
    except ValueError:
        raise Failure(f"--since {text!r}: give epoch seconds or an ISO time such as 2026-01-31T08:00") from None


def main() -> None:
    try:
        app()
    except (Failure, CaptureError) as exc:
        stderr.print(f"icsguard: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(getattr(exc, "code", 1))
    except Interrupted as exc:
        stderr.print(f"icsguard: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(130)
    except KeyboardInterrupt:
        stderr.print("icsguard: stopped at once; what was stored up to the last second is kept",
                     markup=False, highlight=False, soft_wrap=True)
        sys.exit(130)
    except sqlite3.Error as exc:     # a database damaged or changed under us
        stderr.print(f"icsguard: database error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except (ReaderGone, BrokenPipeError):   # `icsguard decode x.pcap | head`: the reader had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except OSError as exc:    # output to a full disk, say
        where = f"{exc.filename}: " if exc.filename else ""
        stderr.print(f"icsguard: {where}{exc.strerror or exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
