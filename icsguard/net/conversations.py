"""Every TCP and UDP conversation, industrial or not.

A control network's traffic is mostly a few known exchanges; an SMB session, a TLS
channel or a port scan appearing in it is what an intrusion looks like. Each new
(client, server, transport, server port) becomes one Event of protocol ``tcp`` or
``udp`` whose function names the service, so the baseline, the rules and the
inventory see the conversation even when no industrial PDU ever crosses it.
"""

from __future__ import annotations

from collections import Counter

from icsguard.bounded import remember
from icsguard.budget import Budget
from icsguard.events import Event
from icsguard.net.netstack import IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, Segment
from icsguard.net.reassembly import community_id

# Well-known services, by server port. Names are what an analyst searches for.
TCP_SERVICES = {
    20: "ftp_data", 21: "ftp", 22: "ssh", 23: "telnet", 25: "smtp", 53: "dns", 80: "http", 88: "kerberos",
    102: "iso_tsap", 110: "pop3", 111: "rpcbind", 135: "msrpc", 139: "netbios_session", 143: "imap",
    389: "ldap", 443: "tls", 445: "smb", 465: "smtps", 502: "modbus", 514: "rsh", 593: "msrpc_http",
    636: "ldaps", 993: "imaps", 1089: "ff_annunciation", 1433: "mssql", 1883: "mqtt", 2404: "iec104",
    2455: "codesys", 3306: "mysql", 3389: "rdp", 4840: "opcua", 4843: "opcua_tls", 5007: "melsec",
    5094: "hart_ip", 5432: "postgresql", 5900: "vnc", 5985: "winrm", 5986: "winrm_tls", 8080: "http_alt",
    8443: "tls_alt", 8883: "mqtt_tls", 9600: "omron_fins", 18245: "ge_srtp", 20000: "dnp3",
    44818: "ethernet_ip", 1911: "niagara_fox", 4911: "niagara_fox_tls", 1962: "pcworx", 789: "redlion_crimson",
}
UDP_SERVICES = {
    53: "dns", 67: "dhcp", 68: "dhcp", 69: "tftp", 546: "dhcpv6", 547: "dhcpv6", 123: "ntp", 137: "netbios_name", 138: "netbios_datagram",
    161: "snmp", 162: "snmp_trap", 500: "ike", 514: "syslog", 1900: "ssdp", 2222: "ethernet_ip_io",
    2404: "iec104", 3702: "ws_discovery", 4840: "opcua_discovery", 5353: "mdns", 5355: "llmnr", 9600: "omron_fins",
    20000: "dnp3", 34962: "profinet_rt", 34963: "profinet_rt", 34964: "profinet_cm", 44818: "ethernet_ip",
    47808: "bacnet", 2455: "codesys", 1217: "codesys_gateway", 48898: "ads",
}
# Industrial protocols icsguard names by their port but does not decode
INDUSTRIAL_SERVICES = frozenset({"iec104", "dnp3", "ethernet_ip", "ethernet_ip_io", "bacnet", "omron_fins",
                                 "ge_srtp", "melsec", "hart_ip", "codesys", "codesys_gateway", "niagara_fox",
                                 "niagara_fox_tls", "pcworx", "redlion_crimson", "profinet_rt", "profinet_cm",
                                 "ads", "ff_annunciation", "iso_tsap", "opcua_tls", "opcua_discovery"})
# Hosts announcing themselves to the local network: a Windows host that did it one way
# while learning may do it any of these ways.
ANNOUNCEMENTS = frozenset({"netbios_name", "netbios_datagram", "llmnr", "mdns", "ssdp", "ws_discovery"})
SERVICES = {(IPPROTO_TCP, port): name for port, name in TCP_SERVICES.items()} | \
    {(IPPROTO_UDP, port): name for port, name in UDP_SERVICES.items()}
TRANSPORTS = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp"}
ENDS = TCP_FIN | TCP_RST
ENDING = 4096                 # finished directions remembered for the segments that trail them


def service_name(transport: int, port: int) -> str:
    return SERVICES.get((transport, port)) or f"port_{port}"


class Conversations:
    """Spots conversations as they start; bounded memory of the ones already seen."""

    def __init__(self, budget: Budget | None = None, counters: Counter | None = None) -> None:
        """``budget``: how many conversations (client, server, transport, port) and 5-tuples
        already looked at (the fast way past known connections) are remembered; beyond, the
        oldest go."""
        self.capacity = (budget or Budget()).entries("conversations") // 2
        self.counters = counters if counters is not None else Counter()
        self.seen: dict[tuple, None] = {}
        self.flows: dict[tuple, None] = {}
        self.ending: dict[tuple, None] = {}       # directions that sent a FIN or RST: their last ACKs

    def feed(self, ts: float, segment: Segment, capture: str, frame: int) -> Event | None:
        """The Event of a conversation this segment starts, or None for one already known. A
        direction that finishes leaves the 5-tuples (a few in ``ending`` for the segments that
        trail it), so they hold the connections alive, not every one a capture ever opened."""
        flow = (segment.src, segment.sport, segment.dst, segment.dport, segment.transport)
        if flow in self.flows:
            if segment.flags & ENDS and segment.transport == IPPROTO_TCP:
                ended = [flow, (flow[2], flow[3], flow[0], flow[1], flow[4])] if segment.flags & TCP_RST else [flow]
                for each in ended:          # (a reset ends both directions)
                    self.flows.pop(each, None)
                    remember(self.ending, each, None, ENDING)
            return None
        if flow in self.ending:
            return None
        self.counters["conversations.flows_forgotten"] += remember(self.flows, flow, None, self.capacity)
        if (segment.dst, segment.dport, segment.src, segment.sport, segment.transport) in self.flows:
            return None
        client, server = _orient(segment)
        transport = segment.transport
        key = (transport, client[0], server[0], server[1])
        if key in self.seen:
            return None
        self.counters["conversations.forgotten"] += remember(self.seen, key, None, self.capacity)
        return Event(ts, TRANSPORTS[transport], client[0], client[1], server[0], server[1], "request",
                     service_name(transport, server[1]), server[1],
                     community_id(client[0], client[1], server[0], server[1], transport),
                     capture, frame, {})


def _orient(segment: Segment) -> tuple[tuple[str, int], tuple[str, int]]:
    """(client, server) ends: who sent the SYN; else the sender of a multicast or broadcast
    (a group address never asks); else the end on a known service port; else the lower
    port (services listen low, clients pick high ephemeral ports)."""
    here, there = (segment.src, segment.sport), (segment.dst, segment.dport)
    flags = segment.flags
    if segment.transport == IPPROTO_TCP and flags & TCP_SYN:
        return (there, here) if flags & TCP_ACK else (here, there)
    if is_group_address(segment.dst):
        return here, there
    known_here = (segment.transport, segment.sport) in SERVICES
    known_there = (segment.transport, segment.dport) in SERVICES
    if known_here != known_there:
        return (there, here) if known_here else (here, there)
    return (there, here) if segment.sport < segment.dport else (here, there)


def is_group_address(ip: str) -> bool:
    """Multicast (224.0.0.0/4, ff00::/8) or the limited broadcast: many receivers, never one client."""
    if ":" in ip:
        return ip[:2].lower() == "ff"
    first = ip.partition(".")[0]
    return ip == "255.255.255.255" or (first.isdigit() and 224 <= int(first) <= 239)
