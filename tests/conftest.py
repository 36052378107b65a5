"""Shared helpers: where captures live, and running icsguard as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PCAPS = REPO / "pcaps"
PUBLIC = REPO.parent / "shared" / "pcaps" / "public"

sys.path.insert(0, str(PCAPS))      # the real-peer harness (peers.py) lives beside the captures
sys.path.insert(0, str(Path(__file__).resolve().parent))


def public(relative: str) -> Path:
    """A public capture, read in place; tests that need one skip when the folder is absent."""
    path = PUBLIC / relative
    if not path.exists():
        pytest.skip(f"public capture {relative} is not available")
    return path


def run_icsguard(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "icsguard", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def decoded(*paths) -> list[dict]:
    """Events of captures as the JSON dicts ``icsguard decode`` prints."""
    from icsguard.analysis import decode
    import json
    return [json.loads(e.to_json()) for e in decode([str(p) for p in paths])]
