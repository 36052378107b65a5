"""The ``icsguard`` command: argument parsing and output only; the work is in the library."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from enum import Enum
from typing import List, Optional

import typer
from datetime import datetime
from rich.console import Console
from rich.table import Table

from icsguard import analysis, report
from icsguard.events import PROTOCOLS
from icsguard.progress import DelayedProgress
from icsguard.sources import CaptureError
from icsguard.store import DEFAULT_DB, Store, StoreError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Passive security monitoring for industrial networks.")
PIPED_WIDTH = 140        # rich would squeeze tables to 80 columns when output is not a terminal
stdout = Console(width=None if sys.stdout.isatty() else PIPED_WIDTH)
stderr = Console(stderr=True)
TABLE_ROWS = 5000
SHORT_DIRECTION = {"request": "req", "response": "resp", "notification": "notif"}

CapturesArg = typer.Argument(..., help="pcap or pcapng files, optionally gzip-compressed", show_default=False)
DbOption = typer.Option(DEFAULT_DB, "--db", help="SQLite database file")


class DecodeFormat(str, Enum):
    jsonl = "jsonl"
    table = "table"


class ReportFormat(str, Enum):
    terminal = "terminal"
    json = "json"
    md = "md"


class ListFormat(str, Enum):
    table = "table"
    jsonl = "jsonl"
    csv = "csv"


class Failure(Exception):
    """Ends the command with this one-line message and exit status 1."""


def _check_captures(paths: list[str]) -> None:
    for path in paths:
        if not os.path.exists(path):
            raise Failure(f"{path}: no such file")
        if os.path.isdir(path):
            raise Failure(f"{path}: is a directory, not a capture")


def _open_store(path: str, must_exist: bool = False) -> Store:
    if must_exist and not os.path.exists(path):
        raise Failure(f"{path}: no such database (run icsguard analyze first)")
    try:
        return Store(path)
    except StoreError as exc:
        raise Failure(str(exc)) from None


@app.command()
def decode(captures: List[str] = CapturesArg,
           format: DecodeFormat = typer.Option(DecodeFormat.jsonl, "--format", help="jsonl or table"),
           proto: Optional[str] = typer.Option(None, "--proto", help=f"only this protocol: {', '.join(PROTOCOLS)}")):
    """Print one record per application PDU."""
    _check_captures(captures)
    if proto is not None and proto not in PROTOCOLS:
        raise Failure(f"unknown protocol {proto!r} (choose from {', '.join(PROTOCOLS)})")
    events = analysis.decode(captures, proto)
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
    table = Table("frame", "time", "src", "dst", "proto", "dir", "function", "details")
    shown = 0
    try:
        for event in events:
            if shown == TABLE_ROWS:
                table.caption = f"only the first {TABLE_ROWS} PDUs are shown; use --format jsonl for all"
                break
            shown += 1
            details = " ".join(f"{k}={v}" for k, v in event.fields.items() if k != "transaction_id")
            table.add_row(str(event.frame), report.clock(event.ts), f"{event.src}:{event.sport}",
                          f"{event.dst}:{event.dport}", event.proto, SHORT_DIRECTION[event.direction],
                          event.function, details)
    except CaptureError as exc:
        stdout.print(table)
        raise Failure(str(exc)) from None
    stdout.print(table)


@app.command()
def analyze(captures: List[str] = CapturesArg, db: str = DbOption):
    """Decode captures, store what was seen and print the report."""
    _check_captures(captures)
    analysis.check_captures(captures)      # before the database is touched
    store = _open_store(db)
    progress = DelayedProgress(captures, stderr)
    try:
        run_id, error = analysis.analyze(captures, store, progress)
    finally:
        progress.close()
    report.render_terminal(report.gather(store, run_id), stdout)
    store.close()
    if error:
        raise Failure(error)


@app.command("report")
def report_command(db: str = DbOption,
                   format: ReportFormat = typer.Option(ReportFormat.terminal, "--format"),
                   output: Optional[str] = typer.Option(None, "--output", help="write to this file")):
    """Report on the latest run in the database."""
    store = _open_store(db, must_exist=True)
    data = report.gather(store)
    store.close()
    if format is ReportFormat.terminal:
        if output:
            with open(output, "w") as f:
                report.render_terminal(data, Console(file=f, width=120))
        else:
            report.render_terminal(data, stdout)
        return
    text = report.render_json(data) if format is ReportFormat.json else report.render_markdown(data)
    if output:
        with open(output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text + "\n")


def _print_rows(rows: list[dict], columns: list[str], format: ListFormat, title: str) -> None:
    if format is ListFormat.jsonl:
        for row in rows:
            sys.stdout.write(json.dumps(row) + "\n")
    elif format is ListFormat.csv:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        sys.stdout.write(buffer.getvalue())
    else:
        table = Table(*columns, title=title, title_justify="left")
        for row in rows:
            table.add_row(*("-" if row.get(c) is None else str(row[c]) for c in columns))
        stdout.print(table)


@app.command()
def assets(db: str = DbOption, format: ListFormat = typer.Option(ListFormat.table, "--format")):
    """List the hosts seen, with vendor and a guessed role."""
    store = _open_store(db, must_exist=True)
    rows = [dict(a, protocols=json.loads(a["protocols"] or "[]")) for a in store.assets()]
    store.close()
    _print_rows(rows, ["ip", "mac", "vendor", "role", "protocols", "first_seen", "last_seen"], format, "Assets")


@app.command()
def alerts(db: str = DbOption,
           since: Optional[str] = typer.Option(None, "--since", help="ISO time or epoch seconds"),
           severity: Optional[List[str]] = typer.Option(None, "--severity", help="low, medium, high or critical"),
           format: ListFormat = typer.Option(ListFormat.table, "--format")):
    """List stored alerts, most severe first."""
    store = _open_store(db, must_exist=True)
    rows = list(store.alerts(since=_parse_time(since) if since else None, severities=severity))
    store.close()
    _print_rows(rows, ["id", "severity", "rule", "title", "src", "dst", "count", "first_ts", "last_ts", "status"],
                format, "Alerts")


def _parse_time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise Failure(f"--since {text!r}: give epoch seconds or an ISO time such as 2026-01-31T08:00") from None


def main() -> None:
    try:
        app()
    except (Failure, CaptureError) as exc:
        stderr.print(f"icsguard: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except BrokenPipeError:   # e.g. `icsguard decode x.pcap | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
