"""The progress bar shows only on a terminal, and only once a run has taken longer than its delay."""

from __future__ import annotations

import io

from rich.console import Console

from icsguard.capture.files import read_capture
from icsguard.output import progress
from tests.support import PCAPS

POLLING = PCAPS / "modbus_polling.pcap"


def _run(monkeypatch, delay: float, terminal: bool) -> str:
    monkeypatch.setattr(progress, "DELAY", delay)
    out = io.StringIO()
    bar = progress.progress_bar([str(POLLING)], Console(file=out, force_terminal=terminal, width=100))
    if bar is None:
        return out.getvalue()
    for _ in range(3):                       # the bar checks the clock every 1024 frames
        for frame in read_capture(str(POLLING)):
            bar(frame)
    bar.close()
    return out.getvalue()


def test_bar_appears_after_the_delay_on_a_terminal(monkeypatch):
    assert "decoding" in _run(monkeypatch, 0.0, True)


def test_no_bar_for_quick_runs_or_pipes(monkeypatch):
    assert _run(monkeypatch, 3600.0, True) == ""
    assert _run(monkeypatch, 0.0, False) == ""
    assert progress.progress_bar([str(POLLING)], Console(file=io.StringIO(), force_terminal=False)) is None
