"""HTML reports: one self-contained file (no script, no network request, a strict
Content-Security-Policy) that opens offline and can be mailed. Everything from the wire or from
users is escaped: Jinja2 autoescapes the template, and the charts, drawn here as SVG, escape
every text they hold."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
from collections import Counter, defaultdict
from importlib import resources
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from icsguard.events import CONVERSATIONS
from icsguard.output.exports import COMMON
from icsguard.output.notation import details, endpoint, utc_time
from icsguard.output.report import DRIFT_COLUMNS, DRIFT_TITLE, drift_rows, sensor_summary, status_text
from icsguard.output.scan_report import change_lines, evidence_text

SEVERITIES = ("critical", "high", "medium", "low")
TIME_BINS = 24
TOP_FUNCTIONS = 15
MAP_HOSTS = 60            # hosts drawn on the map; the tables list them all
DETAILS_SHOWN = 300       # characters of an alert's first PDU in the alerts table


def _environment() -> Environment:
    folder = str(resources.files("icsguard.templates"))
    return Environment(loader=FileSystemLoader(folder), autoescape=select_autoescape(["html"], default=True))


def _page(**context: Any) -> str:
    """The page, with a policy that allows nothing but its own stylesheet (by hash)."""
    css = (resources.files("icsguard.templates") / "report.css").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    csp = (f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'none'; script-src 'none'; "
           "base-uri 'none'; form-action 'none'")
    return _environment().get_template("report.html").render(css=Markup(css), csp=csp, **context)


def render_report(data: dict[str, Any], scan: dict[str, Any] | None = None) -> str:
    """A run's report (``report.gather``), with the database's latest scan when there is one."""
    run = data["run"]
    if run is None:
        return _page(title="icsguard report", subtitle="The database holds no runs yet.", run=None, scan=None)
    alerts = [dict(a, first=utc_time(a["first_ts"]), last=utc_time(a["last_ts"]), details=_first_pdu(a))
              for a in data["alerts"]]
    by_host: dict[str, list[int]] = defaultdict(list)
    for a in alerts:
        for host in {a["src"], a["dst"]}:
            by_host[host].append(a["id"])
    assets = [dict(a, alert_ids=sorted(by_host.get(a["ip"], []))) for a in data["assets"]]
    facts = [("captures", ", ".join(run["captures"])),
             ("traffic", f"{utc_time(run['first_ts'])} → {utc_time(run['last_ts'])} UTC"),
             ("packets", f"{run['packets']:,} ({run['bytes']:,} bytes)"),
             ("PDUs", f"{run['pdus']:,} decoded, {run['malformed']:,} malformed"),
             ("status", status_text(run))]
    if run["command"] == "sense":
        facts.append(("sensor", sensor_summary(data["counters"])))
    context = _scan_context(scan, {a["ip"] for a in assets}, {a["id"] for a in alerts})
    zones_note = ("Hosts are grouped by /24 network (IPv6: /64); lines are conversations, dashed for "
                  "non-industrial ones.")
    return _page(title=f"icsguard run {run['id']}", subtitle=", ".join(run["captures"]), run=run, facts=facts,
                 alerts=alerts, assets=assets, timeline=Markup(timeline(data["alerts"], run)),
                 mix=Markup(function_mix(data["functions"])), map=Markup(asset_map(data["assets"], data["pairs"])),
                 map_note=zones_note, drifts=drift_rows(data["drifts"]), drift_title=DRIFT_TITLE,
                 drift_columns=DRIFT_COLUMNS, **context)


def _first_pdu(alert: dict[str, Any]) -> str:
    """What the alert's first PDU did, in analyst notation (wire text: escaped by the template)."""
    evidence = json.loads(alert["evidence"] or "[]")
    if not evidence:
        return ""
    first = evidence[0]
    text = f"{first.get('function', '')} {details({k: v for k, v in first.items() if k not in COMMON and k != 'function'})}"
    return text if len(text) <= DETAILS_SHOWN else text[:DETAILS_SHOWN] + "…"


def render_scan(scan: dict[str, Any]) -> str:
    return _page(title=f"icsguard scan {scan['id']}: {scan['result']}", subtitle=scan["scope"], run=None,
                 **_scan_context(scan, set(), set()))


def _scan_context(scan: dict[str, Any] | None, asset_ips: set[str], alert_ids: set[int]) -> dict[str, Any]:
    if scan is None:
        return {"scan": None, "asset_ips": asset_ips, "alert_ids": alert_ids}
    checks = [dict(c, evidence=[dict(item, text=evidence_text(item)) for item in c["evidence"]])
              for c in scan["checks"]]
    return {"scan": dict(scan, checks=checks), "scan_time": utc_time(scan["ts"]), "changes": change_lines(scan),
            "scan_chart": Markup(verdict_bars(scan)), "asset_ips": asset_ips, "alert_ids": alert_ids}


# --------------------------------------------------------------------------- charts (SVG)

def _text(x: float, y: float, value: Any, anchor: str = "start", css: str = "") -> str:
    extra = f' class="{escape(css)}"' if css else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{escape(str(value))}</text>'


def _rect(x: float, y: float, w: float, h: float, css: str, tip: str) -> str:
    return (f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" class="{escape(css)}">'
            f"<title>{escape(tip)}</title></rect>")


def _svg(width: int, height: int, parts: list[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{escape(label)}">{"".join(parts)}</svg>')


def timeline(alerts: list[dict[str, Any]], run: dict[str, Any]) -> str:
    """Alerts by the time they began, in TIME_BINS bins over the run's traffic, stacked by severity."""
    width, height, left, bottom = 900, 220, 40, 30
    start = run["first_ts"] or 0.0
    span = max((run["last_ts"] or start) - start, 1e-6)
    bins = [Counter() for _ in range(TIME_BINS)]
    for a in alerts:
        index = min(int((a["first_ts"] - start) / span * TIME_BINS), TIME_BINS - 1) if a["first_ts"] else 0
        bins[max(index, 0)][a["severity"]] += 1
    peak = max((sum(b.values()) for b in bins), default=0) or 1
    step = (width - left - 10) / TIME_BINS
    parts = [f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}"/>',
             _text(left - 6, 16, peak, "end"), _text(left - 6, height - bottom, 0, "end"),
             _text(left, height - 8, utc_time(start)), _text(width - 10, height - 8, utc_time(run["last_ts"]), "end")]
    for i, counts in enumerate(bins):
        y = height - bottom
        for severity in SEVERITIES:
            if counts[severity]:
                h = counts[severity] / peak * (height - bottom - 20)
                y -= h
                begin = utc_time(start + span * i / TIME_BINS)
                parts.append(_rect(left + i * step + 1, y, step - 2, h, f"bar-{severity}",
                                   f"{counts[severity]} {severity} alert(s) from {begin} UTC"))
    for i, severity in enumerate(SEVERITIES):          # the legend
        parts.append(_rect(width - 330 + i * 80, 4, 12, 12, f"bar-{severity}", severity))
        parts.append(_text(width - 314 + i * 80, 14, severity))
    if not alerts:
        parts.append(_text(width / 2, height / 2, "no alerts", "middle"))
    return _svg(width, height, parts, "alerts over time")


def function_mix(functions: list[dict[str, Any]]) -> str:
    """The most used functions, as horizontal bars of their PDUs."""
    shown = sorted(functions, key=lambda f: -(f["requests"] + f["responses"]))[:TOP_FUNCTIONS]
    row, left, width = 20, 300, 900
    height = max(row * len(shown) + 10, 40)
    peak = max((f["requests"] + f["responses"] for f in shown), default=0) or 1
    parts = []
    for i, f in enumerate(shown):
        pdus = f["requests"] + f["responses"]
        y = 5 + i * row
        parts.append(_text(left - 8, y + 13, f"{f['proto']} {f['function']}", "end"))
        parts.append(_rect(left, y + 2, pdus / peak * (width - left - 80), row - 6, "bar-fn",
                           f"{f['proto']} {f['function']}: {f['requests']:,} requests, {f['responses']:,} responses"))
        parts.append(_text(left + pdus / peak * (width - left - 80) + 6, y + 13, f"{pdus:,}"))
    if not shown:
        parts.append(_text(width / 2, 25, "no industrial protocol decoded", "middle"))
    return _svg(width, height, parts, "protocol and function mix")


def verdict_bars(scan: dict[str, Any]) -> str:
    counts = scan["summary"]
    total = max(sum(counts.values()), 1)
    width, x, parts = 600, 0.0, []
    for status in ("FAIL", "PASS", "NOT_ASSESSED"):
        w = counts[status] / total * width
        if w:
            parts.append(_rect(x, 0, w, 22, f"bar-{status}", f"{counts[status]} {status}"))
            parts.append(_text(x + 4, 15, f"{counts[status]} {status}"))
        x += w
    return _svg(width, 24, parts, "checks by verdict")


def _zone(ip: str) -> str:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return "other"
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def asset_map(assets: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> str:
    """Zones as columns, the busiest hosts as dots in them, conversations as lines."""
    roles = {a["ip"]: a["role"] for a in assets}
    weight: Counter = Counter()
    for p in pairs:
        weight[p["client"]] += p["pdus"]
        weight[p["server"]] += p["pdus"]
    hosts = [h for h, _ in weight.most_common(MAP_HOSTS)]
    zones: dict[str, list[str]] = defaultdict(list)
    for h in sorted(hosts, key=lambda h: (_zone(h), h)):
        zones[_zone(h)].append(h)
    column, row, top = 260, 34, 40
    width = max(column * len(zones), 300)
    height = top + row * max((len(v) for v in zones.values()), default=1) + 20
    where: dict[str, tuple[float, float]] = {}
    parts = []
    for z, (name, members) in enumerate(zones.items()):
        x = z * column
        parts.append(f'<rect class="zone" x="{x + 6}" y="6" width="{column - 12}" height="{height - 12}" rx="8"/>')
        parts.append(_text(x + column / 2, 26, name, "middle", "zone-label"))
        for i, host in enumerate(members):     # controllers to the right: lines to them stay visible
            where[host] = (x + (130 if roles.get(host) == "plc" else 24), top + i * row + 10)
    for p in pairs:
        if p["client"] in where and p["server"] in where:
            (x1, y1), (x2, y2) = where[p["client"]], where[p["server"]]
            css = "link link-it" if p["proto"] in CONVERSATIONS else "link"
            parts.append(f'<line class="{css}" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}">'
                         f"<title>{escape(p['client'])} → {escape(endpoint(p['server'], p['port']))} "
                         f"{escape(p['proto'])}: {p['pdus']:,} PDUs</title></line>")
    for host, (x, y) in where.items():
        role = roles.get(host, "unknown")
        parts.append(f'<circle class="host role-{escape(role)}" cx="{x:.1f}" cy="{y:.1f}" r="7">'
                     f"<title>{escape(host)} ({escape(role)})</title></circle>")
        parts.append(_text(x + 11, y - 9, f"{host} {role}"))
    if not where:
        parts.append(_text(width / 2, height / 2, "no conversations", "middle"))
    return _svg(width, height, parts, "assets and conversations by zone")
