"""The tiers: each test is marked by the folder it lives in, so ``pytest -m unit`` (make
test-fast) runs the unit tier alone and ``make test`` runs all three."""

from __future__ import annotations

from pathlib import Path

import pytest

TIERS = {"unit": "one stage at a time: no subprocess, no capture tools",
         "e2e": "real peers, live tcpdump, the command line",
         "crosscheck": "decoding compared with tshark and Zeek's ICSNPP baselines"}
_HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    for tier, text in TIERS.items():
        config.addinivalue_line("markers", f"{tier}: {text}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(item.path).resolve().relative_to(_HERE).parts[0]
        if tier in TIERS:
            item.add_marker(tier)
