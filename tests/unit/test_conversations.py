"""Conversations of every kind (tcp/udp Events): services named and oriented, and only when asked."""

from __future__ import annotations

from icsguard.analysis import decode
from icsguard.net.conversations import service_name
from tests.support import MIXED_TRAFFIC, PCAPS, public


def test_services_are_named_and_oriented():
    path = public(MIXED_TRAFFIC[0])
    events = {(e.src, e.dst, e.function) for e in decode([str(path)], proto="tcp")}
    assert ("192.168.1.101", "192.168.1.105", "smb") in events           # the MS08-067 exploit
    assert ("192.168.1.101", "192.168.1.105", "port_4444") in events     # its bind-shell attempts (SYN, refused)
    assert ("192.168.1.100", "192.168.1.102", "modbus") in events        # the polling master
    assert service_name(17, 47808) == "bacnet" and service_name(6, 47808) == "port_47808"


def test_conversations_only_when_asked():
    path = PCAPS / "modbus_polling.pcap"
    plain = list(decode([str(path)]))
    with_conversations = list(decode([str(path)], conversations=True))
    assert all(e.proto == "modbus" for e in plain)
    added = [e for e in with_conversations if e.proto == "tcp"]
    assert [(e.src, e.dst, e.dport, e.function, e.direction) for e in added] == \
        [("127.0.0.10", "127.0.0.2", 502, "modbus", "request")]
    assert len(with_conversations) == len(plain) + 1



def test_finished_connections_leave_the_flows_held():
    """Polling that connects, polls and disconnects, a thousand times over on new ports: the
    5-tuples held are those of live connections (a FIN ends its direction, a reset both; the
    ACKs trailing them start nothing), while each conversation is still told once."""
    from icsguard.net.conversations import Conversations
    from icsguard.net.netstack import Segment
    conversations = Conversations()
    told = []
    for n in range(1000):
        client, server = ("10.0.0.1", 20000 + n), ("10.0.0.2", 502)
        reset = n % 2
        for src, dst, flags in [(client, server, 0x02), (server, client, 0x12), (client, server, 0x18),
                                (server, client, 0x18), (client, server, 0x14 if reset else 0x11),
                                *([] if reset else [(server, client, 0x11)]), (client, server, 0x10)]:
            found = conversations.feed(float(n), Segment(*src, *dst, 0, 0, flags, b"", None), "x.pcap", 1)
            if found is not None:
                told.append(found)
        assert not conversations.flows
    assert [(e.src, e.dst, e.function) for e in told] == [("10.0.0.1", "10.0.0.2", "modbus")]
