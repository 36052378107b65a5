"""A scan's verdicts for a terminal, Markdown or a CI system (JUnit XML); JSON is the scan itself."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

from rich.console import Console
from rich.text import Text

from icsguard.output import tables
from icsguard.output.notation import utc_time
from icsguard.output.report import markdown_text
from icsguard.output.tables import Column

STATUS_STYLE = {"PASS": "bold green", "FAIL": "bold red", "NOT_ASSESSED": "yellow"}
EVIDENCE_SHOWN = 5          # per failed check in a terminal; the JSON and HTML have them all


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, default=list)


def _headline(report: dict[str, Any]) -> str:
    s = report["summary"]
    return (f"icsguard scan {report['id']}: {report['result']} ({s['FAIL']} failed, {s['PASS']} passed, "
            f"{s['NOT_ASSESSED']} not assessed) - policy {report['policy']}, {report['scope']}")


def change_lines(report: dict[str, Any]) -> list[str]:
    if report["previous_scan"] is None:
        return ["first scan of this scope"]
    if not report["changes"]:
        return [f"no change since scan {report['previous_scan']}"]
    return [f"since scan {report['previous_scan']}: {c['id']} {c['before'] or 'not run'} -> {c['now']}"
            for c in report["changes"]]


def evidence_text(item: dict[str, Any]) -> str:
    when = ""
    if item.get("first_seen"):
        when = f" [{utc_time(item['first_seen'])} .. {utc_time(item.get('last_seen'))} UTC]"
    frames = f" frames {', '.join(item['frames'][:5])}" if item.get("frames") else ""
    alert = f" (alert {item['alert_id']})" if item.get("alert_id") else ""
    return f"{item['detail']}{alert}{when}{frames}"


def render_terminal(report: dict[str, Any], console: Console) -> None:
    console.print(Text(_headline(report), style=STATUS_STYLE[report["result"]]))
    for line in change_lines(report):
        console.print(Text(line))
    tables.show(console, None, [Column("status"), Column("check"), Column("IEC 62443-3-3", wraps=True),
                                Column("summary", wraps=True)],
                [[Text(c["status"], style=STATUS_STYLE[c["status"]]), c["id"], ", ".join(c["iec62443"]),
                  c["summary"]] for c in report["checks"]])
    for check in report["checks"]:
        if check["status"] != "FAIL":
            continue
        console.print(Text.assemble(("FAIL ", "bold red"), (check["id"], "bold"), f": {check['title']}"))
        for item in check["evidence"][:EVIDENCE_SHOWN]:
            console.print(Text(f"  - {evidence_text(item)}"))
        if len(check["evidence"]) > EVIDENCE_SHOWN:
            console.print(Text(f"  ... {len(check['evidence']) - EVIDENCE_SHOWN} more: --format json"))


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# {markdown_text(_headline(report))}", ""]
    lines += [f"- {markdown_text(line)}" for line in change_lines(report)]
    lines += ["", "| status | check | IEC 62443-3-3 | NIST SP 800-82r3 | summary |", "|---|---|---|---|---|"]
    lines += [f"| {c['status']} | {markdown_text(c['id'])} | {markdown_text(', '.join(c['iec62443']))} | "
              f"{markdown_text('; '.join(c['nist_800_82']))} | {markdown_text(c['summary'])} |"
              for c in report["checks"]]
    for check in report["checks"]:
        if check["evidence"]:
            lines += ["", f"## {check['status']} {markdown_text(check['id'])}: {markdown_text(check['title'])}", ""]
            lines += [f"- {markdown_text(evidence_text(item))}" for item in check["evidence"]]
    return "\n".join(lines) + "\n"


def render_junit(report: dict[str, Any]) -> str:
    """One test suite, one test case per check: FAIL a failure, NOT_ASSESSED skipped."""
    s = report["summary"]
    suite = ET.Element("testsuite", name=f"icsguard scan: {report['policy']}", tests=str(len(report["checks"])),
                       failures=str(s["FAIL"]), skipped=str(s["NOT_ASSESSED"]), errors="0",
                       timestamp=utc_time(report["ts"]).replace(" ", "T"))
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", name="scope", value=report["scope"])
    for check in report["checks"]:
        case = ET.SubElement(suite, "testcase", classname=f"icsguard.scan.{check['id'].split('.')[0]}",
                             name=check["id"])
        details = "\n".join([check["title"], "IEC 62443-3-3: " + ", ".join(check["iec62443"]),
                             "NIST SP 800-82r3: " + "; ".join(check["nist_800_82"])]
                            + [evidence_text(item) for item in check["evidence"]])
        if check["status"] == "FAIL":
            ET.SubElement(case, "failure", message=check["summary"], type="FAIL").text = details
        elif check["status"] == "NOT_ASSESSED":
            ET.SubElement(case, "skipped", message=check["summary"])
        else:
            ET.SubElement(case, "system-out").text = details
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
