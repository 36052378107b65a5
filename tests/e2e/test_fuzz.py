"""A short fixed-seed run of the fuzz harness (bench/fuzz.py; its long runs are in the docs):
mutated Modbus, S7 and OPC UA PDUs in valid frames through the whole of icsguard, from the
netstack to every output format, with no exception escaping."""

from __future__ import annotations

import pytest

from bench import fuzz


@pytest.fixture(scope="module")
def learned():
    return fuzz.trained()


@pytest.mark.parametrize("proto", ["modbus", "s7", "opcua"])
def test_mutated_pdus_never_crash(proto, learned):
    result = fuzz.run(proto, cases=1500, seed=1, batch=750, learned=learned)
    assert result.crashes == [], result.crashes[0]
    assert result.cases == 1500 and len(result.mutations) == len(fuzz.MUTATIONS)
    assert result.events > 3 * result.cases              # the real PDUs around each mutated one decode
    assert 0.2 * result.cases < result.malformed < result.events
    assert result.alerts > 0                              # and the detectors ran on them
