"""Each PDU's length (``pdu_length``, all its fragments) against Wireshark's framing fields:
the MBAP length plus the 6 bytes before it, the TPKT length, the OPC UA message size.

A PDU reassembled from several TPKT fragments or OPC UA chunks is reported once, on the
frame that completed it, so the comparison is per capture and direction: the same total
of bytes as Wireshark frames. (TIA Portal's empty COTP data units, sent without the
end-of-unit mark, count towards the unit that follows them: Wireshark shows them apart.)
"""

from __future__ import annotations

from collections import Counter

import pytest

from icsguard.analysis import decode
from tests.support import PCAPS, public
from tests.support import tshark_oracle as oracle

pytestmark = pytest.mark.skipif(oracle.TSHARK is None, reason="tshark is not installed (apt-get install tshark)")

# capture -> (tshark field, bytes added to it, display filter)
CASES = {
    "modbus_polling.pcap": ("mbtcp.len", 6, "mbtcp"),
    "modbus_exceptions.pcap": ("mbtcp.len", 6, "mbtcp"),
    "s7_blocks.pcap": ("tpkt.length", 0, "tpkt"),
    "s7_reads_writes.pcap": ("tpkt.length", 0, "tpkt"),
    "opcua_none_anonymous.pcap": ("opcua.transport.size", 0, "opcua"),
    "public:EmreEkin-ICS-Pcaps/modbus/WriteMultipleCoil.pcap": ("mbtcp.len", 6, "mbtcp"),
    "public:gymgit-s7-pcaps/step7_s300_download.pcapng": ("tpkt.length", 0, "tpkt"),
}


def _path(name: str):
    return public(name.split(":", 1)[1]) if name.startswith("public:") else PCAPS / name


def _wireshark_bytes(path, field: str, extra: int, display: str) -> Counter:
    """Bytes per sender port, as Wireshark frames them (-2: every PDU in every segment)."""
    out = oracle.run_tshark(path, "-2", "-Y", display, "-T", "fields", "-E", "separator=/t",
                            "-e", "tcp.srcport", "-e", field)
    found: Counter = Counter()
    for line in out.splitlines():
        port, _, lengths = line.partition("\t")
        for length in filter(None, lengths.split(",")):
            found[int(port)] += int(length) + extra
    return found


@pytest.mark.parametrize("name", sorted(CASES))
def test_pdu_lengths_add_up_to_wiresharks(name):
    path = _path(name)
    field, extra, display = CASES[name]
    ours: Counter = Counter()
    for event in decode([str(path)]):
        assert event.pdu_length >= 8, event       # a header and something after it, whatever the protocol
        ours[event.sport] += event.pdu_length
    assert ours and ours == _wireshark_bytes(path, field, extra, display)
