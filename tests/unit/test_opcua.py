"""OPC UA binary transport and service identity on a public capture and on asyncua's."""

from __future__ import annotations

from collections import Counter

from tests.support import PCAPS, decoded, public


def test_policy_endpoint_and_request_handles():
    events = [e for e in decoded(public("Malcolm-Test-Artifacts/OPCUA-Binary.pcap")) if e["proto"] == "opcua"]
    hello = next(e for e in events if e["function"] == "Hello")
    assert hello["endpoint_url"] == "opc.tcp://localhost:4840/freeopcua/server/"
    policies = {e["security_policy"].rsplit("#", 1)[1] for e in events if e["message_type"] == "OPN"}
    assert policies == {"None", "Basic128Rsa15", "Basic256Sha256"}
    secured = [e for e in events if e["message_type"] == "OPN" and not e["security_policy"].endswith("#None")]
    assert all(len(e["certificate_sha1"]) == 40 for e in secured if e["direction"] == "request")
    reads = [e for e in events if e["function"] == "ReadRequest"]
    answers = {e["request_handle"]: e for e in events if e["function"] == "ReadResponse"}
    assert reads and all(r["request_handle"] in answers for r in reads)
    assert all(answers[r["request_handle"]]["status_code"] == 0 for r in reads)



def test_asyncua_sessions_by_security_mode():
    """Policy None and Sign leave the services readable; SignAndEncrypt leaves the headers only."""
    def functions(name):
        return Counter(e["function"] for e in decoded(PCAPS / f"opcua_{name}.pcap"))

    assert functions("none_anonymous")["CallRequest"] == 1 and functions("none_anonymous")["WriteRequest"] == 3
    assert functions("sign")["WriteRequest"] == 1
    encrypted = functions("sign_and_encrypt")
    assert encrypted["SecureMessage"] == 8 and not [f for f in encrypted if f.endswith("Request")]
    faults = [e for e in decoded(PCAPS / "opcua_failed_login.pcap") if e["function"] == "ServiceFault"]
    assert [e["status_code"] for e in faults] == [0x801F0000] * 3          # BadUserAccessDenied

