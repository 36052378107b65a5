"""Acceptance: icsguard's S7comm tuples equal Wireshark's, frame by frame.

The public captures here are a representative set that runs in seconds (every kind
of difference found is among them); bench/tshark_agreement.py --proto s7 covers all
of them. Where the two differ for a reason found by reading the frame (tshark -V and
the icsguard JSON), the exact set of differing frames is pinned, so that any new
difference fails; so does a fixed one, whose frame must then leave the list.
"""

from __future__ import annotations

import pytest

from tests.support import tshark_oracle as oracle
from tests.support import tshark_s7_oracle as s7_oracle

pytestmark = pytest.mark.skipif(oracle.TSHARK is None,
                                reason="tshark is not installed: the Wireshark cross-check needs it (apt-get install tshark)")

QUT = "2017QUT_S7comm/attacks/20161215180642.ChangeUpperThreshold/20161215180642.ChangeUpperThreshold.master.pcap"

PUBLIC_EXPECTED = {
    QUT: set(),
    "EmreEkin-ICS-Pcaps/s7/1-S7comm-VarService-Read-DB1DBD0.pcap": set(),
    "ITI-ICS-Security-Tools/s7/s7comm_downloading_block_db1.pcap": set(),
    "ITI-ICS-Security-Tools/s7/s7comm_program_blocklist_onlineview.pcap": set(),
    "ITI-ICS-Security-Tools/s7/s7comm_reading_plc_status.pcap": set(),     # Read SZL answers in parts
    "ITI-ICS-Security-Tools/s7/s7comm_reading_setting_plc_time.pcap": set(),
    "ITI-ICS-Security-Tools/s7/s7comm_varservice_libnodavedemo.pcap": set(),
    "gymgit-s7-pcaps/snap7_s300_stop.pcapng": set(),
    "gymgit-s7-pcaps/step7_s300_AuthPassword.pcapng": set(),
    "gymgit-s7-pcaps/step7_s300_download.pcapng": set(),
    "gymgit-s7-pcaps/tia_s300_goOnline.pcapng": set(),
    "icsnpp-s7comm/traces/snap7.pcap": set(),
    "nDPI/pcap/s7comm.pcap": set(),
    "s7comm_investigation/s7comm_traffic.pcapng": set(),
    # cyclic subscriptions (userdata group 2): S7ANY items, answers and pushes
    "EmreEkin-ICS-Pcaps/s7/2-S7comm-VarService-CyclicData-1s.pcap": set(),
    # variable tables of programmer commands: "Modify variable" writes M and I addresses
    "gymgit-s7-pcaps/step7_s300_rwVarTab.pcapng": set(),
    # mode-transition pushes whose parameter head announces 16 bytes in an 8-byte block
    "gymgit-s7-pcaps/step7_s300_stop.pcapng": set(),
    "gymgit-s7-pcaps/tia_s300_downloadHwConfig.pcapng": set(),
    # A lost 7-byte empty COTP DT before the Read Var job of 421; the retransmission 422
    # fills the hole. Wireshark dissects the job ahead of the hole (421), icsguard in
    # stream order (422): the same PDU, keyed by different frames.
    "gymgit-s7-pcaps/wincc_s300_setup-alarm-read_2.pcapng": {421, 422},
    # five "object does not exist" items of 4 header bytes each
    "icsnpp-s7comm/traces/s7ident.pcap": set(),
    # one-byte TCP keep-alives on port 102 are no PDU of anything
    "icsnpp-s7comm/traces/s7comm_plus.pcap": set(),
    "S7comm-Plus-Anomaly-Detection/3.pcapng": set(),
    # The only copy of a segment, captured after the peer's ACK for it: Wireshark calls it a
    # spurious retransmission and does not dissect it; icsguard decodes it.
    "ITI-ICS-Security-Tools/s7/s7comm_clean.pcap": {398, 412, 1273, 1456, 1611, 1746, 2002, 2296, 2299, 2859,
                                                   3654, 4060},
    # Spurious retransmissions as above.
    "S7comm-Plus-Anomaly-Detection/2.pcapng": {3574, 6934},
    # Every Ack_Data from the PLC was captured three times (same IP id): Wireshark dissects
    # the two copies too.
    "S7comm-Plus-Anomaly-Detection/teb.pcapng": {856, 857, 1289, 1290, 1752, 1753, 2211, 2213, 2664, 2665, 3101,
                                                 3102, 4260, 4261, 4706, 4707, 5159, 5160, 5612, 5613, 6064, 6065},
}


results, test_own_capture, test_public_capture = oracle.acceptance_tests(
    s7_oracle.crosscheck, "s7_*.pcap", PUBLIC_EXPECTED)
