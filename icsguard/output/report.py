"""Reports read from the store: one summary structure, rendered for a terminal, JSON or Markdown."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from icsguard.detect.baseline import maturity_text
from icsguard.events import CONVERSATIONS
from icsguard.net.conversations import INDUSTRIAL_SERVICES
from icsguard.output import tables
from icsguard.output.notation import endpoint, utc_time
from icsguard.output.store import Store
from icsguard.output.tables import Column

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
        "assets": [a for a in store.assets() if a["last_run"] == run["id"]],
        "alerts": list(store.alerts(run_id=run["id"])),
        "drifts": store.drifts(run["id"]),
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
    text = "".join(_MARKDOWN.get(c, c) for c in str(value))
    return text.replace("://", "\\://").replace("www.", "www\\.")      # no autolink (GitHub's Markdown)


DRIFT_TITLE = "What changed, not alerted: pollers off their learned period, within the pace band"
DRIFT_COLUMNS = ("client", "server", "proto", "function", "learned every", "now every", "change", "last seen")
DRIFT_NUMBERS = ("learned every", "now every")


def drift_rows(drifts: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for d in drifts:
        ratio = d["pace"] / d["period"]
        change = f"{ratio:.1f}x slower" if ratio >= 1 else f"{1 / ratio:.1f}x faster"
        rows.append([d["client"], d["server"], d["proto"], d["function"], f"{d['period']:.3g} s", f"{d['pace']:.3g} s",
                     change, utc_time(d["last_seen"])])
    return rows


def render_terminal(data: dict[str, Any], console: Console) -> None:
    run = data["run"]
    if run is None:
        console.print("The database holds no runs yet: run [bold]icsguard analyze CAPTURE[/] first.")
        return
    span = (run["last_ts"] or 0) - (run["first_ts"] or 0)
    elapsed = max((run["finished"] or run["updated"] or run["started"]) - run["started"], 1e-9)
    summary = Table.grid(padding=(0, 2))
    summary.add_column(no_wrap=True)
    summary.add_column(overflow="fold")
    summary.add_row("captures", Text(", ".join(run["captures"])))
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
        if "baseline.watched_seconds" in counters:
            summary.add_row("maturity", maturity_text(counters["baseline.watched_seconds"],
                                                      counters.get("baseline.briefly_watched_pairs", 0),
                                                      counters.get("baseline.watched_pairs", 0)))
    if run["command"] == "sense":
        summary.add_row("sensor", sensor_summary(counters))
    if run["status"] != "finished":
        summary.add_row(Text("status", style="yellow"), Text(status_text(run), style="yellow"))
    if run["error"]:
        summary.add_row(Text("stopped", style="red"), Text(run["error"], style="red"))
    console.print(Text(f"icsguard run {run['id']}", style="bold underline"))
    console.print(summary)

    if data["functions"]:
        tables.show(console, "Protocols and functions",
                    [Column("proto"), Column("function"), Column("requests", right=True),
                     Column("responses", right=True), Column("exceptions", right=True)],
                    [[f["proto"], f["function"], f"{f['requests']:,}", f"{f['responses']:,}",
                      Text(f"{f['exceptions']:,}", style="red" if f["exceptions"] else "")] for f in data["functions"]])
    else:
        console.print(Text.assemble(("Protocols", "bold"), ": no industrial protocol decoded"))
    undecoded = undecoded_protocols(data["pairs"])
    if undecoded:
        console.print(Text.assemble(("Not decoded", "bold"), ": industrial protocols seen by their ports: "
                                    + ", ".join(f"{name} ({count} pair{'s' if count > 1 else ''})"
                                                for name, count in undecoded.items())))
    if data["pairs"]:
        more = len(data["pairs"]) - TOP_PAIRS
        tables.show(console, "Communication pairs",
                    [Column("client"), Column("server"), Column("proto"), Column("PDUs", right=True),
                     Column("functions", wraps=True)],
                    [[p["client"], endpoint(p["server"], p["port"]), p["proto"], f"{p['pdus']:,}",
                      ", ".join(p["functions"])] for p in data["pairs"][:TOP_PAIRS]],
                    caption=f"{more:,} more pairs: icsguard report --format json" if more > 0 else None)
    _render_tail(data, console)


def undecoded_protocols(pairs: list[dict[str, Any]]) -> dict[str, int]:
    """Industrial protocols seen only as conversations on their ports, with how many pairs."""
    seen: dict[str, int] = {}
    for p in pairs:
        if p["proto"] in CONVERSATIONS:
            for name in p["functions"]:
                if name in INDUSTRIAL_SERVICES:
                    seen[name] = seen.get(name, 0) + 1
    return seen


def _render_tail(data: dict[str, Any], console: Console) -> None:
    """Assets, alerts and problems."""
    more = len(data["assets"]) - TOP_ASSETS
    if data["assets"]:
        tables.show(console, "Assets seen in this run",
                    [Column("ip"), Column("mac"), Column("vendor", wraps=True), Column("model", wraps=True),
                     Column("firmware"), Column("serial"), Column("role (guess)"), Column("protocols", wraps=True),
                     Column("posture findings", wraps=True)],
                    [[a["ip"], a["mac"] or "-", a["vendor"] or "-", a["model"] or "-", a["firmware"] or "-",
                      a["serial"] or "-", a["role"], ", ".join(a["protocols"]), ", ".join(a["posture"]) or "-"]
                     for a in data["assets"][:TOP_ASSETS]],
                    caption=f"{more:,} more assets: icsguard assets" if more > 0 else None)

    if data["alerts"]:
        total = len(data["alerts"])
        tables.show(console, "Alerts",
                    [Column("id", right=True), Column("severity"), Column("rule"), Column("title", wraps=True),
                     Column("src"), Column("dst"), Column("count", right=True), Column("last seen")],
                    [[str(a["id"]), Text(a["severity"], style=SEVERITY_STYLE.get(a["severity"], "")), a["rule"],
                      a["title"], a["src"] or "-", a["dst"] or "-", str(a["count"]), utc_time(a["last_ts"])]
                     for a in data["alerts"][:TOP_ALERTS]],
                    caption=(f"the {TOP_ALERTS} most severe of {total:,}: icsguard alerts lists them all"
                             if total > TOP_ALERTS else "icsguard alerts ack ID to acknowledge one"))
    else:
        console.print(Text.assemble(("Alerts", "bold"), ": none"))

    if data["drifts"]:
        tables.show(console, DRIFT_TITLE, [Column(name, right=name in DRIFT_NUMBERS) for name in DRIFT_COLUMNS],
                    drift_rows(data["drifts"]))

    if data["problems"]:
        tables.show(console, "Malformed, dropped and unusual", [Column("counter"), Column("count", right=True)],
                    [[name, f"{count:,}"] for name, count in data["problems"].items()])
    else:
        console.print(Text.assemble(("Malformed or dropped", "bold"), ": nothing"))


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
          [[p["client"], endpoint(p["server"], p["port"]), p["proto"], p["pdus"], ", ".join(p["functions"])]
           for p in data["pairs"]])
    table("Assets seen in this run", ["ip", "mac", "vendor", "model", "firmware", "serial", "role (guess)",
                                      "protocols", "posture findings"],
          [[a["ip"], a["mac"] or "-", a["vendor"] or "-", a["model"] or "-", a["firmware"] or "-", a["serial"] or "-",
            a["role"], ", ".join(a["protocols"]), ", ".join(a["posture"]) or "-"] for a in data["assets"]])
    table("Alerts", ["id", "severity", "rule", "title", "src", "dst", "count"],
          [[a["id"], a["severity"], a["rule"], a["title"], a["src"], a["dst"], a["count"]] for a in data["alerts"]])
    if data["drifts"]:
        table(DRIFT_TITLE, list(DRIFT_COLUMNS), drift_rows(data["drifts"]))
    table("Malformed, dropped and unusual", ["counter", "count"], [[k, v] for k, v in data["problems"].items()])
    return "\n".join(lines)
