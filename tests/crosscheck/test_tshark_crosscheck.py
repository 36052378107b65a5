"""Acceptance: icsguard's Modbus tuples equal Wireshark's, frame by frame.

Where the two differ for a reason found by reading the frame (tshark -V and the
icsguard JSON), the exact set of differing frames is pinned, so that any new
difference fails; so does a fixed one, whose frame must then leave the list.
bench/tshark_agreement.py --details prints the differing tuples.
"""

from __future__ import annotations

import pytest

from tests.support import tshark_oracle as oracle

pytestmark = pytest.mark.skipif(oracle.TSHARK is None,
                                reason="tshark is not installed: the Wireshark cross-check needs it (apt-get install tshark)")

OWN_EXPECTED: dict[str, set[int]] = {}

PUBLIC_EXPECTED = {
    "EmreEkin-ICS-Pcaps/modbus/IllegalFunction.pcap": set(),
    "EmreEkin-ICS-Pcaps/modbus/WriteMultipleCoil.pcap": set(),
    "EmreEkin-ICS-Pcaps/modbus/modbus-encapsulated-transport.pcap": set(),
    "EmreEkin-ICS-Pcaps/modbus/modbus-mask-write-register.pcap": set(),
    "EmreEkin-ICS-Pcaps/modbus/modbus-read-write-multiple-registers.pcap": set(),
    "nDPI/pcap/umas.pcap": set(),
    "zeek/traces/modbus/4SICS-GeekLounge-151022-min.pcap": set(),
    "zeek/traces/modbus/modbus-eit.pcap": set(),
    "zeek/traces/modbus/modbusSmall.pcap": set(),
    "icsnpp-modbus/traces/modbus_example.pcap": set(),
    # Wireshark ignores the new bytes of retransmissions that extend an earlier segment
    # (1131, 13176) and dissects 3008 ahead of a hole that 3674 fills again.
    "ITI-ICS-Security-Tools/modbus/mb2.pcap": {1131, 3008, 3674, 13176},
    # Not Modbus on port 502: MBAP length 34820 (76); the stream is out of step after an
    # FC 42 response whose MBAP length is 3 bytes short (113). Only icsguard reports them.
    "ITI-ICS-Security-Tools/modbus/modbus_test_data_part1.pcap": {76, 113},
    "ITI-ICS-Security-Tools/modbus/modbus_test_data_part2.pcap": set(),
    # Fuzzed sequence numbers: Wireshark calls 4 a retransmission and does not dissect it.
    "zeek/traces/modbus/fuzz-1011.pcap": {4},
    # HTTP, TLS and RPC on port 502: only icsguard reports them ("not modbus"); the COTP
    # connection request at 80 is decoded as COTP, not Modbus.
    "zeek/traces/modbus/modbus-and-non-modbus-p502.pcap": {29, 39, 49, 65, 70},
}


results, test_own_capture, test_public_capture = oracle.acceptance_tests(
    oracle.crosscheck, "modbus_*.pcap", PUBLIC_EXPECTED, OWN_EXPECTED)
