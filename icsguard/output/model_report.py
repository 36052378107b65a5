"""What a model file learned, as rich tables: for `learn` (a summary) and `model show`."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from rich.console import Console
from rich.table import Table

from icsguard.detect.baseline import Baseline, holder_text, watched_text
from icsguard.output.notation import utc_time

SHOWN = 200          # rows per table; the rest are counted


def render(meta: dict[str, Any], baseline: Baseline, console: Console, brief: bool = False) -> None:
    summary = Table(show_header=False, box=None, title="Model", title_justify="left")
    captures = meta["captures"]
    summary.add_row("trained on", f"{len(captures)} capture(s): " + ", ".join(captures[:6])
                    + (f" and {len(captures) - 6} more" if len(captures) > 6 else ""))
    summary.add_row("time span", f"{utc_time(meta['first_ts'])} .. {utc_time(meta['last_ts'])} UTC")
    summary.add_row("packets, events", f"{meta['packets']:,}, {meta['events']:,}")
    periodic = baseline.periodic()
    summary.add_row("baseline", f"{len(baseline.pairs):,} pairs, {len(baseline.values):,} registers/nodes/DB bytes "
                    f"with value ranges, {len(periodic):,} periodic exchanges")
    summary.add_row("maturity", baseline.maturity_text())
    if meta["threshold"] is None:
        model = f"none: {meta['training_windows']} windows are too few (the baseline alone detects)"
    else:
        model = (f"{meta['estimator']}, {meta['training_windows']:,} windows of {meta['window_seconds']:g} s, "
                 f"threshold {meta['threshold']:.4f} (false-alarm rate {meta['false_alarm_rate']:g})")
    summary.add_row("model", model)
    summary.add_row("libraries", ", ".join(f"{k} {v}" for k, v in meta["libraries"].items()))
    if meta["updated"]:
        summary.add_row("updated", utc_time(meta["updated"]))
    console.print(summary)
    if brief:
        return
    _pairs(baseline, console)
    _targets(baseline, console)
    _values(baseline, console)
    _periods(baseline, periodic, console)


def _cut(table: Table, rows: list, console: Console) -> None:
    for row in rows[:SHOWN]:
        table.add_row(*row)
    if len(rows) > SHOWN:
        table.caption = f"{len(rows) - SHOWN:,} more not shown"
    console.print(table)


def _pairs(baseline: Baseline, console: Console) -> None:
    table = Table("client", "server", "proto", "functions (requests learned)", "watched", title="Who talks to whom",
                  title_justify="left")
    rows = [(c, s, p, ", ".join(f"{f} ({n:,})" for f, n in sorted(functions.items())) or "none: only answers seen",
             watched_text(baseline.watched[(c, s, p)][2]) if (c, s, p) in baseline.watched else "–")
            for (c, s, p), functions in sorted(baseline.pairs.items())]
    _cut(table, rows, console)


def _targets(baseline: Baseline, console: Console) -> None:
    table = Table("client", "server", "proto", "function", "registers / blocks / nodes", title="What they touch",
                  title_justify="left")
    rows = []
    for (c, s, p, f), spaces in sorted(baseline.spaces.items()):
        if not spaces:
            continue
        text = "; ".join(space if ranges is None else f"{space} " + ",".join(
            str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges) for space, ranges in sorted(spaces.items()))
        rows.append((c, s, p, f, text if len(text) <= 300 else text[:297] + "..."))
    _cut(table, rows, console)


def _values(baseline: Baseline, console: Console) -> None:
    table = Table("server", "proto", "register / node / DB byte", "min", "max", "max change/s", "seen",
                  title="Value ranges", title_justify="left")
    rows = [(s, p, holder_text(h), f"{v.low:g}", f"{v.high:g}", "–" if h[0] == "s7" else f"{v.max_rate:.3g}",
             f"{v.count:,}")
            for (s, p, h), v in sorted(baseline.values.items(), key=lambda kv: (kv[0][0], kv[0][1], _order(kv[0][2])))]
    _cut(table, rows, console)


def _periods(baseline: Baseline, periodic: dict[tuple, float], console: Console) -> None:
    table = Table("client", "server", "proto", "function", "exchanges", "period", "silent after",
                  title="Periodic exchanges", title_justify="left")
    grouped: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for key, period in periodic.items():
        grouped[key[:4]].append((period, baseline.channels[key].silence(period)))
    rows = [(c, s, p, f, str(len(found)), _seconds([period for period, _ in found]),
             _seconds([wait for _, wait in found]))
            for (c, s, p, f), found in sorted(grouped.items())]
    _cut(table, rows, console)


def _order(holder: tuple) -> tuple:
    """Registers and bytes in numeric order, whatever mix of numbers and names a holder has."""
    return tuple((0, part, "") if isinstance(part, int) else (1, 0, str(part)) for part in holder)


def _seconds(values: list[float]) -> str:
    low, high = (f"{x:.3g}" if x < 1000 else f"{x:.0f}" for x in (min(values), max(values)))
    return f"{low} s" if low == high else f"{low}..{high} s"
