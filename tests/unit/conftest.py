"""The unit tier starts no process: a test that needs tcpdump, tshark or the command line
belongs in e2e/ or crosscheck/."""

from __future__ import annotations

import subprocess

import pytest


@pytest.fixture(autouse=True)
def no_subprocess(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"a unit test started a process: {args[0] if args else kwargs.get('args')}")
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
