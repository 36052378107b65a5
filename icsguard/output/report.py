"""Reports read from the store: one summary structure, rendered for a terminal, JSON or Markdown."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.table import Table

from icsguard.events import CONVERSATIONS
from icsguard.output.store import Store

TOP_PAIRS = 25
TOP_ASSETS = 100            # rows a terminal report shows; the rest are a command away
TOP_ALERTS = 50
SEVERITY_STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": "cyan"}
DROP_COUNTERS = ("truncated", "malformed", "not_", "gap", "evicted", "timeout", "oversized",
                 "retransmitted", "overlaps", "out_of_order", "midstream", "wrong_protocol",
                 "unusual_port", "unidentified", "dropped")


def gather(store: Store, run_id: int | None = None) -> dict[str, Any]:
    """The facts a report shows, for one run (default: the latest)."""
    run = store.run(run_id) if run_id is not None else store.latest_run()
    if run is None:
        return {"run": None}
    comms = list(store.communications(run["id"]))
    industrial = {(c["client"], c["server"], c["port"]) for c in comms if c["proto"] not in CONVERSATIONS}
    functions: dict[tuple, dict[str, int]] = defaultdict(lambda: {"requests": 0, "responses": 0, "exceptions": 0})
    pairs: dict[tuple, dict[str, Any]] = {}
    for c in comms:
        if c["proto"] in CONVERSATIONS:
            # a conversation is news only where no industrial protocol already names the pair
            if (c["client"], c["server"], c["port"]) in industrial:
                continue
        else:
            f = functions[(c["proto"], c["function"])]
            for key in ("requests", "responses", "exceptions"):
                f[key] += c[key]
        pair = pairs.setdefault((c["client"], c["server"], c["port"], c["proto"]),
                                {"pdus": 0, "functions": set(), "first_seen": c["first_seen"],
                                 "last_seen": c["last_seen"]})
        pair["pdus"] += c["requests"] + c["responses"]
        pair["functions"].add(c["function"])
        pair["first_seen"] = min(pair["first_seen"], c["first_seen"])
        pair["last_seen"] = max(pair["last_seen"], c["last_seen"])
    counters = json.loads(run["counters"] or "{}")
    return {
        "run": {k: run[k] for k in ("id", "command", "status", "first_ts", "last_ts", "started", "updated", "finished", "error")}
               | {k: run[k] or 0 for k in ("packets", "bytes", "pdus", "malformed")}    # none yet: cut short early
               | {"captures": json.loads(run["captures"] or "[]")},
        "functions": [{"proto": p, "function": f, **v}
                      for (p, f), v in sorted(functions.items(), key=lambda kv: -(kv[1]["requests"] + kv[1]["responses"]))],
        "pairs": [{"client": k[0], "server": k[1], "port": k[2], "proto": k[3], "pdus": v["pdus"],
                   "functions": sorted(v["functions"]), "first_seen": v["first_seen"], "last_seen": v["last_seen"]}
                  for k, v in sorted(pairs.items(), key=lambda kv: -kv[1]["pdus"])],
        "assets": [dict(a, protocols=json.loads(a["protocols"] or "[]")) for a in store.assets()
                   if a["last_run"] == run["id"]],
        "alerts": list(store.alerts(run_id=run["id"])),
        "problems": {k: v for k, v in sorted(counters.items()) if any(w in k for w in DROP_COUNTERS)},
        "counters": counters,
    }


def sensor_line(counters: dict[str, int]) -> str:
    """What a sensor's capture took and lost, as it says when it stops (counters of 0 are not stored)."""
    ours = sum(v for k, v in counters.items() if k.endswith("_over_budget"))
    return (f"captured {counters.get('capture.received', 0):,} packets, {counters.get('capture.kernel_drops', 0):,} "
            f"dropped by the kernel, {ours:,} by icsguard")


def sensor_summary(counters: dict[str, int]) -> str:
    """The stop line and what the reassembler never saw: a sensor run's row in a report."""
    gaps = counters.get("tcp.gaps", 0)
    missing = f" ({counters.get('tcp.gap_bytes', 0):,} bytes never seen)" if gaps else ""
    return f"{sensor_line(counters)}; {gaps:,} gaps in TCP streams{missing}"


def status_text(run: dict[str, Any]) -> str:
    """How a run ended, as an analyst needs to read its figures."""
    if run["status"] == "running":
        return (f"running, or cut short: results as committed at {utc_time(run['updated'])} UTC "
                "(a run that was killed stays so)")
    if run["status"] == "interrupted":
        return f"interrupted at {utc_time(run['finished'])} UTC: results up to the stop"
    if run["status"] == "failed":
        return "failed: results up to the error"
    return run["status"] or "unknown"


_MARKDOWN = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\n": " ", "\r": " ",
             **{c: "\\" + c for c in "\\`*[]|~"}}      # emphasis, code, links, table cells ("_" is
                                                            # no emphasis inside a word; names are full of it)


def markdown_text(value: Any) -> str:
    """A value as plain text in Markdown: file names, hosts, titles and rule ids come from the
    wire or from users, and must never become markup, links or HTML."""
    return "".join(_MARKDOWN.get(c, c) for c in str(value))


def utc_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def clock(ts: float) -> str:
    """Time of day with milliseconds, UTC: enough to line PDUs up in a table."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def render_terminal(data: dict[str, Any], console: Console) -> None:
    run = data["run"]
    if run is None:
        console.print("The database holds no runs yet: run [bold]icsguard analyze CAPTURE[/] first.")
        return
    span = (run["last_ts"] or 0) - (run["first_ts"] or 0)
    elapsed = max((run["finished"] or run["updated"] or run["started"]) - run["started"], 1e-9)
    summary = Table.grid(padding=(0, 2))
    summary.add_row("captures", ", ".join(run["captures"]))
    summary.add_row("packets", f"{run['packets']:,} ({run['bytes']:,} bytes) in {elapsed:.2f} s "
                               f"({run['packets'] / elapsed:,.0f} packets/s)")
    summary.add_row("traffic", f"{utc_time(run['first_ts'])} → {utc_time(run['last_ts'])} UTC ({span:,.1f} s)")
    summary.add_row("PDUs", f"{run['pdus']:,} decoded, {run['malformed']:,} malformed")
    counters = data["counters"]
    if "rules.active" in counters:
        waiting = counters.get("rules.need_site_file", 0)
        summary.add_row("rules", f"{counters['rules.active']:,} checked, {counters.get('rules.matches', 0):,} matches"
                        + (f"; {waiting} more need a site file (icsguard site init)" if waiting else ""))
    if "baseline.pairs" in counters:
        model = (f"{counters['ml.findings']:,} anomalous windows" if "ml.findings" in counters
                 else "none (too little training traffic)")
        summary.add_row("learned", f"baseline of {counters['baseline.pairs']:,} pairs: "
                                   f"{counters.get('baseline.findings', 0):,} findings; model: {model}")
    if run["command"] == "sense":
        summary.add_row("sensor", sensor_summary(counters))
    if run["status"] != "finished":
        summary.add_row("[yellow]status[/]", f"[yellow]{status_text(run)}[/]")
    if run["error"]:
        summary.add_row("[red]stopped[/]", f"[red]{run['error']}[/]")
    console.rule(f"[bold]icsguard run {run['id']}")
    console.print(summary)

    if not data["functions"]:
        console.print("[bold]Protocols[/]: no industrial protocol seen")
        return _render_tail(data, console)
    functions = Table(title="Protocols and functions", title_justify="left")
    for column in ("proto", "function", "requests", "responses", "exceptions"):
        functions.add_column(column, justify="right" if column not in ("proto", "function") else "left")
    for f in data["functions"]:
        functions.add_row(f["proto"], f["function"], f"{f['requests']:,}", f"{f['responses']:,}",
                          f"[red]{f['exceptions']:,}[/]" if f["exceptions"] else "0")
    console.print(functions)

    pairs = Table(title="Communication pairs", title_justify="left")
    for column in ("client", "server", "proto", "PDUs", "functions"):
        pairs.add_column(column, justify="right" if column == "PDUs" else "left")
    for p in data["pairs"][:TOP_PAIRS]:
        pairs.add_row(p["client"], f"{p['server']}:{p['port']}", p["proto"], f"{p['pdus']:,}",
                      ", ".join(p["functions"]))
    if len(data["pairs"]) > TOP_PAIRS:
        pairs.caption = f"{len(data['pairs']) - TOP_PAIRS} more pairs: icsguard report --format json"
    console.print(pairs)

    _render_tail(data, console)


def _render_tail(data: dict[str, Any], console: Console) -> None:
    """Assets, alerts and problems: shown even when no protocol was decoded."""
    assets = Table(title="Assets", title_justify="left")
    for column in ("ip", "mac", "vendor", "role (guess)", "protocols"):
        assets.add_column(column)
    for a in data["assets"][:TOP_ASSETS]:
        assets.add_row(a["ip"], a["mac"] or "-", a["vendor"] or "-", a["role"], ", ".join(a["protocols"]))
    if len(data["assets"]) > TOP_ASSETS:
        assets.caption = f"{len(data['assets']) - TOP_ASSETS:,} more assets: icsguard assets"
    if data["assets"]:
        console.print(assets)

    if data["alerts"]:
        alerts = Table(title="Alerts", title_justify="left")
        for column in ("severity", "rule", "title", "src", "dst", "count", "last seen"):
            alerts.add_column(column)
        for a in data["alerts"][:TOP_ALERTS]:
            style = SEVERITY_STYLE.get(a["severity"], "")
            alerts.add_row(f"[{style}]{a['severity']}[/]", a["rule"], a["title"], a["src"] or "-",
                           a["dst"] or "-", str(a["count"]), utc_time(a["last_ts"]))
        if len(data["alerts"]) > TOP_ALERTS:
            alerts.caption = f"the {TOP_ALERTS} most severe of {len(data['alerts']):,}: icsguard alerts lists them all"
        console.print(alerts)
    else:
        console.print("[bold]Alerts[/]: none")

    if data["problems"]:
        problems = Table(title="Malformed, dropped and unusual", title_justify="left")
        problems.add_column("counter")
        problems.add_column("count", justify="right")
        for name, count in data["problems"].items():
            problems.add_row(name, f"{count:,}")
        console.print(problems)
    else:
        console.print("[bold]Malformed or dropped[/]: nothing")


def render_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, default=list)


def render_markdown(data: dict[str, Any]) -> str:
    run = data["run"]
    if run is None:
        return "No runs yet.\n"
    lines = [f"# icsguard run {run['id']}", "",
             f"- captures: {markdown_text(', '.join(run['captures']))}",
             f"- packets: {run['packets']:,}; PDUs: {run['pdus']:,}; malformed: {run['malformed']:,}",
             f"- traffic: {utc_time(run['first_ts'])} → {utc_time(run['last_ts'])} UTC"]
    if run["command"] == "sense":
        lines.append(f"- sensor: {sensor_summary(data['counters'])}")
    if run["status"] != "finished":
        lines.append(f"- status: {markdown_text(status_text(run))}")
    if run["error"]:
        lines.append(f"- stopped: {markdown_text(run['error'])}")
    lines.append("")

    def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
        lines.extend([f"## {title}", "", "| " + " | ".join(header) + " |",
                      "|" + "---|" * len(header)])
        lines.extend("| " + " | ".join(markdown_text(c) for c in row) + " |" for row in rows)
        lines.append("")

    table("Protocols and functions", ["proto", "function", "requests", "responses", "exceptions"],
          [[f["proto"], f["function"], f["requests"], f["responses"], f["exceptions"]] for f in data["functions"]])
    table("Communication pairs", ["client", "server", "proto", "PDUs", "functions"],
          [[p["client"], f"{p['server']}:{p['port']}", p["proto"], p["pdus"], ", ".join(p["functions"])]
           for p in data["pairs"]])
    table("Assets", ["ip", "mac", "vendor", "role (guess)", "protocols"],
          [[a["ip"], a["mac"] or "-", a["vendor"] or "-", a["role"], ", ".join(a["protocols"])] for a in data["assets"]])
    table("Alerts", ["severity", "rule", "title", "src", "dst", "count"],
          [[a["severity"], a["rule"], a["title"], a["src"], a["dst"], a["count"]] for a in data["alerts"]])
    table("Malformed, dropped and unusual", ["counter", "count"], [[k, v] for k, v in data["problems"].items()])
    return "\n".join(lines)
