"""Acceptance: icsguard's OPC UA message tuples equal Wireshark's, frame by frame.

Every public capture in which Wireshark finds OPC UA (on port 4840, or on the server
ports that tshark_opcua_oracle.SERVER_PORTS decodes as OPC UA) is here, and so are this
project's own. Where the two differ for a reason found by reading the frame (tshark -V
and the icsguard JSON), the exact set of differing frames is pinned, so that any new
difference fails; so does a fixed one, whose frame must then leave the list.
bench/tshark_agreement.py --proto opcua --details prints the differing tuples.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import tshark_opcua_oracle as opcua_oracle
from tests.support import tshark_oracle as oracle

pytestmark = pytest.mark.skipif(oracle.TSHARK is None,
                                reason="tshark is not installed: the Wireshark cross-check needs it (apt-get install tshark)")

# The server's 13,990-byte CreateSessionResponse (frames 12..30) has two segments,
# 26 and 30, whose only copies were captured after the client's ACK for them: Wireshark
# calls both spurious retransmissions, leaves them out of reassembly and never completes
# the message; icsguard reassembles it and decodes it at 30 (request id 2 and request
# handle 1000001, those of the CreateSessionRequest in frame 10; result Good).
GAP = {30}

PUBLIC_EXPECTED = {
    "EmreEkin-ICS-Pcaps/opcua/opycua_share.pcap": set(),
    # port 12001; ERR messages (BadInternalError, BadDecodingError) answer two CallRequests broken
    # beyond parsing, for both tools
    "ITI-ICS-Security-Tools/opcua/opc-ua-ap-method-wireshark-freeze.pcap": set(),
    # policies None, Basic128Rsa15 and Basic256Sha256; frames that carry several messages
    "Malcolm-Test-Artifacts/OPCUA-Binary.pcap": set(),
    "icsnpp-opcua-binary/pcaps/open62541_browse_has_server_idx.pcap": set(),
    "icsnpp-opcua-binary/pcaps/open62541_browse_next.pcap": set(),
    "icsnpp-opcua-binary/pcaps/open62541_browse_request_with_results.pcap": set(),
    "icsnpp-opcua-binary/pcaps/open62541_browse_with_diagnostic_info.pcap": set(),
    "icsnpp-opcua-binary/pcaps/open62541_client-server-getEndpoints.pcap": set(),
    "icsnpp-opcua-binary/pcaps/open62541_client-server_encrypted.pcap": set(),
    "icsnpp-opcua-binary/pcaps/open62541_client-server_mainloop-4-InnerDiagInfo.pcap": set(),
    "icsnpp-opcua-binary/pcaps/open62541_client-server_mainloop-ActivateSession-diagInfo.pcap": set(),
    "icsnpp-opcua-binary/pcaps/open62541_client-server_mainloop-hasInnerDiagInfo.pcap": set(),
    "icsnpp-opcua-binary/pcaps/open62541_client-server_mainloop-hasInnerDiagInfohasAddlInfo.pcap": set(),
    "icsnpp-opcua-binary/pcaps/open62541_client-server_mainloop-hasInnerStatusCode.pcap": set(),
    "icsnpp-opcua-binary/pcaps/open62541_client-server_mainloop-not-localhost.pcap": set(),
    "icsnpp-opcua-binary/pcaps/open62541_client-server_mainloop-withStringTable.pcap": set(),
    "icsnpp-opcua-binary/pcaps/open62541_client-server_mainloop.pcap": set(),
    "icsnpp-opcua-binary/pcaps/open62541_client-server_minimal.pcap": set(),
    "icsnpp-opcua-binary/pcaps/open62541_create_monitored_items.pcap": set(),
    "icsnpp-opcua-binary/pcaps/open62541_discover_getendpoints_discover_urls.pcap": set(),
    "icsnpp-opcua-binary/pcaps/open62541_read_service_test_data.pcap": set(),
    "icsnpp-opcua-binary/pcaps/open62541_read_service_test_data_with_history.pcap": set(),
    "icsnpp-opcua-binary/pcaps/python_opcua-client-server_encrypted.pcap": set(),
    "icsnpp-opcua-binary/pcaps/python_opcua-client-server_minimal-2.pcap": set(),
    "icsnpp-opcua-binary/pcaps/python_opcua-client-server_minimal.pcap": set(),
    "icsnpp-opcua-binary/traces/opcua_with-gap.pcap": GAP,
    # the same connection as opcua_with-gap.pcap, then another one
    "icsnpp-opcua-binary/traces/opcua_with-gap_with-handshake.pcap": GAP,
    # joined mid-connection: no HEL or OPN, so icsguard knows no policy
    "icsnpp-opcua-binary/traces/open62541_client-server_mainloop-no-handshake.pcap": set(),
    # port 48010
    "icsnpp-opcua-binary/traces/open62541_client-server_mainloop-not-localhost-non-standard-port.pcap": set(),
    "icsnpp-opcua-binary/traces/open62541_client-server_mainloop.pcap": set(),
    # MSG-only connections whose CreateMonitoredItemsRequests come from port 4840
    "icsnpp-opcua-binary/traces/pending_overflow.pcap": set(),
    "opcua-security-research/anssi_normal.pcap": set(),
    "opcua-security-research/anssi_scenario/plaintext_test.pcap": set(),            # port 4850
    "opcua-security-research/anssi_scenario/scenario_baseline_none.pcap": set(),    # port 4850
    "opcua-security-research/auto_capture_20251026_014839.pcap": set(),             # ports 4840 and 4841
    "opcua-security-research/freeopcua_20251026_025314.pcap": set(),                # port 4842
    "opcua-security-research/freeopcua_test_20251026_024724.pcap": set(),           # port 4842
    "opcua-security-research/freeopcua_test_20251026_024950.pcap": set(),           # port 4842
    "opcua-security-research/nodeopcua_20251026_025314.pcap": set(),                # port 4841
    "opcua-security-research/nodeopcua_test_20251026_024950.pcap": set(),           # port 4841
    "opcua-security-research/python_username_normal.pcap": set(),
    "opcua-security-research/pythonopcua_20251026_025314.pcap": set(),
    "opcua-security-research/pythonopcua_test_20251026_024533.pcap": set(),
    "opcua-security-research/pythonopcua_test_20251026_024724.pcap": set(),
    "opcua-security-research/pythonopcua_test_20251026_024950.pcap": set(),
    "opcua-security-research/test_freeopcua.pcap": set(),                           # port 4843
    # SignAndEncrypt: headers only on both sides
    "opcua-security-research/test_signenc.pcap": set(),
}


results, test_own_capture, test_public_capture = oracle.acceptance_tests(
    opcua_oracle.crosscheck, "opcua_*.pcap", PUBLIC_EXPECTED)


def test_other_server_ports_are_checked():
    """Every capture that needs a decode-as is among those checked, under the same name."""
    names = {oracle.capture_name(Path(name)) for name in PUBLIC_EXPECTED}
    assert set(opcua_oracle.SERVER_PORTS) <= names
