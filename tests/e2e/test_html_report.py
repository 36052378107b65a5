"""The HTML reports in a real browser (Debian's Chromium, driven by Playwright; no browser is
ever downloaded): they open offline with no network request and no console error, their charts
are drawn, their links land, and markup from the wire or a file name stays text."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import PCAPS, run_icsguard
from tests.support.rewrite import frames, write_pcap

playwright = pytest.importorskip("playwright.sync_api")
INJECTED = b"<script>alert(1)</script>"          # as long as the client URI it replaces
CLIENT_URI = b"urn:icsguard:opcua:client"
SESSION_RULE = """\
- id: site.opcua_session
  title: OPC UA session created
  severity: low
  proto: opcua
  direction: request
  match: {function: CreateSessionRequest}
"""


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: make test installs it (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()


def _open(browser, path: Path):
    """The page, with what it asked of the network and what its console said."""
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    seen = {"requests": [], "console": [], "errors": [], "dialogs": []}
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.on("console", lambda m: seen["console"].append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, seen


def _drawn(page, selector: str) -> int:
    """Shapes under ``selector`` that the browser laid out with a size."""
    return page.eval_on_selector_all(selector, "els => els.filter(e => { const b = e.getBoundingClientRect();"
                                               " return b.width > 0 && b.height > 0; }).length")


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("html")
    db = folder / "plant.db"
    captures = [PCAPS / "modbus_writes.pcap", PCAPS / "s7_control.pcap", PCAPS / "opcua_none_plaintext_password.pcap"]
    assert run_icsguard("scan", "--db", db, *captures).returncode == 1
    report, scan = folder / "report.html", folder / "scan.html"
    assert run_icsguard("report", "--db", db, "--format", "html", "--output", report).returncode == 0
    assert run_icsguard("scan", "--db", db, "--format", "html", "--output", scan).returncode == 1
    return report, scan


def test_the_report_opens_offline_with_its_charts_and_links(browser, reports, tmp_path):
    report, _ = reports
    page, seen = _open(browser, report)
    assert seen["requests"] == [report.as_uri()] and not seen["console"] and not seen["errors"]
    bars = page.eval_on_selector_all("#timeline svg rect", "rs => rs.filter(r => r.textContent.includes('alert(s)')"
                                                           " && r.getBoundingClientRect().height > 0).length")
    assert bars >= 3                                            # alerts of three severities
    assert _drawn(page, "#mix svg rect") >= 10                  # the functions of three protocols
    assert _drawn(page, "#map svg circle") == 2 and _drawn(page, "#map svg line") >= 3
    assert _drawn(page, "#scan svg rect") == 3                  # FAIL, PASS, NOT_ASSESSED
    assert page.locator("#alerts tr[id^=alert-]").count() == 7
    targets = page.eval_on_selector_all("a[href^='#']", "as => as.map(a => a.getAttribute('href').slice(1))")
    assert targets and all(page.locator(f"[id='{t}']").count() == 1 for t in targets)
    assert "alert-1" in targets and "asset-127.0.0.2" in targets
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 50_000
    page.close()


def test_the_scan_page_shows_each_check_with_its_evidence(browser, reports):
    _, scan = reports
    page, seen = _open(browser, scan)
    assert seen["requests"] == [scan.as_uri()] and not seen["console"] and not seen["errors"]
    assert page.locator("tr[id^=check-]").count() == 16
    failed = page.locator("#check-opcua\\.secure_channel")
    assert "FAIL" in failed.inner_text() and "SR 4.1" in failed.inner_text()
    assert "opcua_none_plaintext_password.pcap#8" in failed.inner_text()
    page.close()


def test_markup_from_the_wire_and_a_file_name_stays_text(browser, tmp_path):
    found = frames(PCAPS / "opcua_none_username.pcap")
    assert any(CLIENT_URI in f.data for f in found)
    capture = write_pcap(tmp_path / "<script>alert(2)<script>.pcap",
                         [(f.ts, f.data.replace(CLIENT_URI, INJECTED)) for f in found], found[0].link_type)
    rules = tmp_path / "session.yaml"
    rules.write_text(SESSION_RULE)
    db = tmp_path / "x.db"
    assert run_icsguard("analyze", "--db", db, "--rules", rules, capture).returncode == 0
    report = tmp_path / "x.html"
    assert run_icsguard("report", "--db", db, "--format", "html", "--output", report).returncode == 0
    assert b"<script>" not in report.read_bytes()
    page, seen = _open(browser, report)
    assert not seen["dialogs"] and not seen["errors"] and page.locator("script").count() == 0
    assert "application_uri=<script>alert(1)</script>" in page.locator("#alerts").inner_text()
    assert "<script>alert(2)<script>.pcap" in page.locator("#summary").inner_text()
    page.close()
