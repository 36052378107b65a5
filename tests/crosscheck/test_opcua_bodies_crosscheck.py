"""OPC UA service bodies cross-checked with two independent decoders.

1. ICSNPP (CISA's Zeek OPC UA analyzer): the btest baselines of icsnpp-opcua-binary, one
   folder per trace (ZEEK_TRACES). The baselines are header-less (upstream pipes them
   through ``zeek-cut -n``, which drops the header and every *_link_id column; btest masks
   the timestamps), so column names come from baseline/COLUMNS.txt and rows are matched
   without link ids or timestamps:

   * opcua_binary.log has a row per request/response pair with the request id: it is
     matched to icsguard's messages by connection (the 4-tuple of the row's uid) and
     request id, and compared on service ids, request handles and channel ids.
   * a per-service log has its rows in capture order: its k-th request (is_orig T) or
     response (F) row is the k-th such message of the connection that opcua_binary.log
     has. Logs with a row per item (nodes to read, browse references, endpoints
     offered...) are compared as the connection's sequence of items.
   * opcua_binary_status_code_detail.log has a ResponseHeader row per response, followed
     by that response's per-operation results, in capture order (opcua_binary.log writes a
     response whose request was not captured only when the connection ends).
   * a response's node ids (attribute ids, client handles, subscription id, identity) are
     checked against its request's rows too: icsguard copies them over by request id.

   Zeek prints a GUID's 16 bytes in wire order; OPC UA (and Wireshark, and icsguard) read
   its first three groups little-endian: the GUIDs are normalised, not counted as wrong.
   Where Zeek stops logging (after the gap of opcua_with-gap.pcap) nothing is compared.

2. Wireshark (tshark PDML): every OPC UA message of the Malcolm capture and of the repo's
   own asyncua captures, matched by (frame, message type, request id); responses are paired
   with their requests by request id on the connection, and Publish notifications with the
   node of their client handle. NodeIds are rebuilt from opcua.nodeid.* in icsguard's text
   form ("ns=N;i=X", "ns=N;s=...", ns left out when 0, "b=" + hex for opaque ids). Float
   and Double values come from the field's raw bytes (the PDML ``show`` rounds them); a
   DateTime of 0 ticks is "no time" (null) for icsguard. Not compared: DiagnosticInfo and
   XmlElement variants (icsguard does not print them), status names Wireshark 4.0 does not
   know ("Unknown Status Code"), bodies Wireshark cannot read (encrypted, or an OPN under
   a real security policy).

Only fields an oracle really shows are compared. Per capture, the number of values
compared is pinned (so that an oracle cannot silently go quiet) and so is every
disagreement, with its explanation: a new difference fails, and so does a fixed one.
``python -m tests.crosscheck.test_opcua_bodies_crosscheck`` prints the agreement table per field.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support import PCAPS, decoded, public
from tests.support import tshark_oracle as oracle

ICSNPP = "icsnpp-opcua-binary"
MALCOLM = "Malcolm-Test-Artifacts/OPCUA-Binary.pcap"

# Which trace each baseline folder was made from: the folder's connections (4-tuples in
# opcua_binary.log) are exactly the trace's, which test_zeek_folders_match_their_traces checks.
ZEEK_TRACES = {
    "analyzer.basic": "open62541_client-server_mainloop.pcap",
    "analyzer.data-gap": "opcua_with-gap.pcap",
    "analyzer.data-gap_with-handshake": "opcua_with-gap_with-handshake.pcap",
    "analyzer.no-handshake": "open62541_client-server_mainloop-no-handshake.pcap",
    "analyzer.non-standard-port": "open62541_client-server_mainloop-not-localhost-non-standard-port.pcap",
}
OWN = sorted(p.name for p in PCAPS.glob("opcua_*.pcap"))


# --- tallying ---------------------------------------------------------------------------

class Tally:
    """Per field: values compared, values equal, and each disagreement as (frame, oracle, icsguard)."""

    def __init__(self) -> None:
        self.fields: dict[str, list] = {}

    def check(self, field: str, frame: Any, expected: Any, got: Any) -> None:
        entry = self.fields.setdefault(field, [0, 0, []])
        entry[0] += 1
        if expected == got:
            entry[1] += 1
        else:
            entry[2].append((frame, expected, got))

    def each(self, field: str, frames: list, expected: list, got: list) -> None:
        """Item by item: an item only one side has is a disagreement too."""
        for i in range(max(len(expected), len(got))):
            self.check(field, frames[min(i, len(frames) - 1)] if frames else None,
                       expected[i] if i < len(expected) else "<absent>", got[i] if i < len(got) else "<absent>")

    def compared(self) -> dict[str, int]:
        return {field: entry[0] for field, entry in sorted(self.fields.items())}

    def differing(self) -> dict[str, set]:
        return {field: {frame for frame, _, _ in entry[2]} for field, entry in sorted(self.fields.items()) if entry[2]}

    def lines(self) -> Iterator[str]:
        for field, (compared, equal, wrong) in sorted(self.fields.items()):
            yield f"  {field}: {equal}/{compared} identical"
            for frame, expected, got in wrong:
                yield f"      frame {frame}: oracle {expected!r}, icsguard {got!r}"


def connection(event: dict) -> tuple:
    """(client address, client port, server address, server port) of an event."""
    if event["direction"] == "request":
        return event["src"], event["sport"], event["dst"], event["dport"]
    return event["dst"], event["dport"], event["src"], event["sport"]


def node_text(namespace: int, kind: str, identifier: str, uri: str | None = None) -> str:
    prefix = f"nsu={uri};" if uri else f"ns={namespace};" if namespace else ""
    return f"{prefix}{kind}={identifier}"


def wire_guid(text: str) -> str:
    """A GUID printed in wire byte order (as Zeek does), read as OPC UA encodes it."""
    raw = bytes.fromhex(text.replace("-", ""))
    a, b, c = struct.unpack_from("<IHH", raw)
    return f"{a:08x}-{b:04x}-{c:04x}-{raw[8:10].hex()}-{raw[10:16].hex()}"


def der_sha1(data: bytes) -> str:
    """SHA-1 of the first DER element (the leaf certificate of a chain)."""
    length = len(data)
    if len(data) > 2 and data[0] == 0x30:
        if data[1] < 0x80:
            length = 2 + data[1]
        else:
            count = data[1] & 0x7F
            length = 2 + count + int.from_bytes(data[2:2 + count], "big")
    return hashlib.sha1(data[:length]).hexdigest()


TOKEN_TYPES = {0: "anonymous", 1: "username", 2: "x509", 3: "issued"}
SECURITY_MODES = {1: "None", 2: "Sign", 3: "SignAndEncrypt"}
REQUEST_TYPES = {0: "issue", 1: "renew"}
ATTRIBUTES = {name: number for number, name in enumerate(
    ("NodeId NodeClass BrowseName DisplayName Description WriteMask UserWriteMask IsAbstract Symmetric "
     "InverseName ContainsNoLoops EventNotifier Value DataType ValueRank ArrayDimensions AccessLevel "
     "UserAccessLevel MinimumSamplingInterval Historizing Executable UserExecutable DataTypeDefinition "
     "RolePermissions UserRolePermissions AccessRestrictions AccessLevelEx").split(), start=1)}


# --- oracle 1: the ICSNPP Zeek baselines --------------------------------------------------

def zeek_columns(base: Path) -> dict[tuple[str, str], list[str]]:
    """Column names per (folder, log) from COLUMNS.txt, for the header-less baselines."""
    columns, folder = {}, None
    for line in (base / "COLUMNS.txt").read_text().splitlines():
        if line.startswith("## "):
            folder = line[3:].strip()
        elif folder and (match := re.match(r"(opcua_binary\w*): (.*?)\s{2,}\[", line)):
            columns[folder, match.group(1)] = match.group(2).split()
    return columns


def zeek_log(base: Path, folder: str, name: str, columns: dict) -> list[dict[str, str]]:
    """Rows of a Zeek TSV log: named by its #fields header, else by COLUMNS.txt."""
    path = base / folder / f"{name}.log"
    if not path.exists():
        return []
    names, rows = columns.get((folder, name)), []
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            names = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            values = line.split("\t")
            assert names and len(values) == len(names), f"{path}: {len(values)} columns, expected {names}"
            rows.append(dict(zip(names, values)))
    return rows


def unset(text: str) -> str | None:
    return None if text == "-" else "" if text == "(empty)" else text


def zeek_node(row: dict, prefix: str) -> str | None:
    mask = row[f"{prefix}_encoding_mask"]
    if mask == "-":
        return None
    kind = int(mask, 16) & 0x0F
    namespace = 0 if row[f"{prefix}_namespace_idx"] == "-" else int(row[f"{prefix}_namespace_idx"])
    uri = unset(row.get(f"{prefix}_namespace_uri", "-"))
    if kind <= 2:
        return node_text(namespace, "i", row[f"{prefix}_numeric"], uri)
    if kind == 3:
        return node_text(namespace, "s", unset(row[f"{prefix}_string"]) or "", uri)
    if kind == 4:
        return node_text(namespace, "g", wire_guid(row[f"{prefix}_guid"]), uri)
    return node_text(namespace, "b", row[f"{prefix}_opaque"].removeprefix("0x"), uri)


class ZeekCheck:
    """One baseline folder against icsguard's events of its trace."""

    def __init__(self, base: Path, folder: str, events: list[dict], columns: dict):
        self.base, self.folder, self.columns = base, folder, columns
        self.tally = Tally()
        self.events = [e for e in events if e["proto"] == "opcua"]
        self.by_request: dict[tuple, dict] = {}
        self.hellos: dict[tuple, list[dict]] = defaultdict(list)
        for event in self.events:
            if event["message_type"] == "HEL":
                self.hellos[connection(event)].append(event)
            elif "request_id" in event:
                self.by_request.setdefault((connection(event), event["request_id"], event["direction"]), event)
        self.main = self.log("opcua_binary")
        self.uids = {r["uid"]: (r["id.orig_h"], int(r["id.orig_p"]), r["id.resp_h"], int(r["id.resp_p"]))
                     for r in self.main}
        # per (uid, "T"/"F", service name): icsguard's messages in opcua_binary.log order
        self.messages: dict[tuple, list] = defaultdict(list)
        self.responses: dict[str, list] = defaultdict(list)
        self.order = {id(event): index for index, event in enumerate(self.events)}

    def log(self, name: str) -> list[dict[str, str]]:
        return zeek_log(self.base, self.folder, name, self.columns)

    def run(self) -> Tally:
        self.check_main()
        self.check_status_codes()
        self.check_sessions()
        self.check_endpoints()
        self.check_nodes()
        self.check_subscriptions()
        return self.tally

    # opcua_binary.log: transport and service identity per message
    def check_main(self) -> None:
        check = self.tally.check
        for row in self.main:
            conn = self.uids[row["uid"]]
            if row["msg_type"] == "HEL":
                hello = self.hellos[conn].pop(0) if self.hellos[conn] else {}
                check("hello endpoint url", hello.get("frame"), row["endpoint_url"], hello.get("endpoint_url"))
            if row["msg_type"] not in ("OPN", "MSG", "CLO"):
                continue
            channels = row["sec_channel_id"].split(",")
            request_id = int(row["request_id"])
            for side, prefix, direction, channel in (("T", "req", "request", channels[0]),
                                                     ("F", "res", "response", channels[-1])):
                if row[f"{prefix}_identifier"] == "-":
                    continue
                event = self.by_request.get((conn, request_id, direction), {})
                self.messages[row["uid"], side, row[f"{prefix}_identifier_str"]].append(event)
                if side == "F":
                    self.responses[row["uid"]].append(event)
                frame = event.get("frame", f"request id {request_id}")
                check("service id", frame, int(row[f"{prefix}_identifier"]), event.get("function_code"))
                check("request handle", frame, int(row[f"{prefix}_hdr_request_handle"]), event.get("request_handle"))
                check("secure channel id", frame, int(channel), event.get("secure_channel_id"))
                if row["msg_type"] == "OPN" and side == "T":
                    check("security policy (OPN)", frame, row["sec_policy_uri"], event.get("security_policy"))

    def rows(self, name: str, side: str) -> dict[str, list[dict]]:
        by_uid: dict[str, list[dict]] = defaultdict(list)
        for row in self.log(name):
            if row["is_orig"] == side:
                by_uid[row["uid"]].append(row)
        return by_uid

    def found(self, uid: str, side: str, services: tuple[str, ...], answered: bool) -> list[dict]:
        """icsguard's messages of these services on a connection, in order; with ``answered``,
        the responses to these requests instead (which carry over what their request named)."""
        if answered:
            side, services = "F", tuple(s.replace("Request", "Response") for s in services)
        events = [e for s in services for e in self.messages[uid, side, s]]
        return self.in_order(events)

    def in_order(self, events: list[dict]) -> list[dict]:
        """In capture order, as Zeek parses them: opcua_binary.log writes a row when the response
        comes, and a response without its request only when the connection ends."""
        return sorted(events, key=lambda e: self.order.get(id(e), -1))

    def pairs(self, name: str, side: str, *services: str, answered: bool = False) -> Iterator[tuple[dict, dict]]:
        """(row, icsguard message) of a log with one row per message."""
        for uid, rows in self.rows(name, side).items():
            events = self.found(uid, side, services, answered)
            self.tally.check(f"{name} rows" + (" (answered)" if answered else ""), uid, len(rows), len(events))
            yield from zip(rows, events)

    def sequences(self, name: str, side: str, *services: str,
                  answered: bool = False) -> Iterator[tuple[list[dict], list[dict]]]:
        """(rows, icsguard messages) per connection, for a log with one row per item."""
        for uid, rows in self.rows(name, side).items():
            yield rows, self.found(uid, side, services, answered)

    def items(self, field: str, rows: list, events: list, expected, got) -> None:
        """One field of a per-item log: the rows' values against the messages' items in order."""
        frames = [e.get("frame") for e in events for _ in got(e)] or [e.get("frame") for e in events]
        self.tally.each(field, frames, [expected(r) for r in rows], [v for e in events for v in got(e)])

    def check_status_codes(self) -> None:
        """ResponseHeader rows start a response's group; the rows after it are its results."""
        groups: dict[str, list[list[dict]]] = defaultdict(list)
        for row in self.log("opcua_binary_status_code_detail"):
            if row["source_str"] == "ResponseHeader" or not groups[row["uid"]]:
                groups[row["uid"]].append([])
            groups[row["uid"]][-1].append(row)
        for uid, responses in groups.items():
            events = self.in_order(self.responses[uid])
            self.tally.check("status_code_detail responses", uid, len(responses), len(events))
            for (header, *results), event in zip(responses, events):
                frame = event.get("frame")
                self.tally.check("status code", frame, int(header["status_code"], 16), event.get("status_code"))
                self.tally.check("status name", frame, header["sub_code_str"], event.get("status_name"))
                if results:
                    self.tally.each("operation results", [frame], [r["sub_code_str"] for r in results],
                                    event.get("results") or [])

    def check_sessions(self) -> None:
        check = self.tally.check
        for row, event in self.pairs("opcua_binary_opensecure_channel", "T", "OpenSecureChannelRequest"):
            check("OPN request type", event.get("frame"), REQUEST_TYPES[int(row["sec_token_request_type"])],
                  event.get("request_type"))
            check("OPN security mode", event.get("frame"), SECURITY_MODES[int(row["message_security_mode"])],
                  event.get("security_mode"))
            check("OPN lifetime", event.get("frame"), int(row["req_lifetime"]), event.get("lifetime"))
        for row, event in self.pairs("opcua_binary_opensecure_channel", "F", "OpenSecureChannelResponse"):
            check("OPN channel id", event.get("frame"), int(row["sec_token_sec_channel_id"]),
                  event.get("secure_channel_id"))
            check("OPN token id", event.get("frame"), int(row["sec_token_id"]), event.get("token_id"))
            check("OPN lifetime", event.get("frame"), int(row["sec_token_revised_time"]), event.get("lifetime"))
        for row, event in self.pairs("opcua_binary_create_session", "T", "CreateSessionRequest"):
            frame = event.get("frame")
            check("session endpoint url", frame, unset(row["endpoint_url"]), event.get("endpoint_url"))
            check("application uri", frame, unset(row["application_uri"]), event.get("application_uri"))
            check("application name", frame, unset(row["text"]), event.get("application_name"))
            check("session name", frame, unset(row["session_name"]), event.get("session_name"))
        for row, event in self.pairs("opcua_binary_create_session", "F", "CreateSessionResponse"):
            check("session id", event.get("frame"), zeek_node(row, "session_id"), event.get("session_node_id"))
        tokens = {"AnonymousIdentityToken": "anonymous", "UserNameIdentityToken": "username",
                  "X509IdentityToken": "x509", "IssuedIdentityToken": "issued"}
        for row, event in self.pairs("opcua_binary_activate_session", "T", "ActivateSessionRequest"):
            frame, kind = event.get("frame"), tokens[row["ext_obj_type_id_str"]]
            check("identity token", frame, kind, event.get("identity_token"))
            check("user name", frame, unset(row["ext_obj_user_name"]), event.get("user_name"))
            if kind == "username":
                check("password in clear", frame, row["ext_obj_encryption_algorithom"] == "-",
                      event.get("password_in_clear"))
        for row, event in self.pairs("opcua_binary_activate_session", "T", "ActivateSessionRequest", answered=True):
            check("inherited identity_token", event.get("frame"), tokens[row["ext_obj_type_id_str"]],
                  event.get("identity_token"))
            check("inherited user_name", event.get("frame"), unset(row["ext_obj_user_name"]), event.get("user_name"))
        for row, event in self.pairs("opcua_binary_close_session", "T", "CloseSessionRequest"):
            check("delete subscriptions", event.get("frame"), row["del_subscriptions"] == "T",
                  event.get("delete_subscriptions"))

    def check_endpoints(self) -> None:
        for row, event in self.pairs("opcua_binary_get_endpoints", "T", "GetEndpointsRequest"):
            self.tally.check("discovery endpoint url", event.get("frame"), row["endpoint_url"],
                             event.get("endpoint_url"))
        for descriptions, tokens, service, url in (
                ("get_endpoints_description", "get_endpoints_user_token", "GetEndpointsResponse", "endpoint_uri"),
                ("create_session_endpoints", "create_session_user_token", "CreateSessionResponse", "endpoint_url")):
            for rows, events in self.sequences(f"opcua_binary_{descriptions}", "F", service):
                for field, column, key, convert in (
                        ("offered endpoint url", url, "endpoint_url", str),
                        ("offered security policy", "security_policy_uri", "security_policy", str),
                        ("offered security mode", "message_security_mode", "security_mode",
                         lambda text: SECURITY_MODES[int(text)]),
                        ("offered security level", "security_level", "security_level", int)):
                    self.items(field, rows, events, lambda r, c=column, f=convert: f(r[c]),
                               lambda e, k=key: [p[k] for p in e.get("endpoints") or []])
            for rows, events in self.sequences(f"opcua_binary_{tokens}", "F", service):
                self.items("offered token type", rows, events, lambda r: TOKEN_TYPES[int(r["user_token_type"])],
                           lambda e: [t for p in e.get("endpoints") or [] for t in p["token_types"]])

    def check_nodes(self) -> None:
        """Node ids (and attribute ids, client handles) of requests, and of the responses that
        carry them over from their request."""
        node_logs = (
            ("read", "opcua_binary_read_nodes_to_read", "ReadRequest", "node_id", "attribute_id"),
            ("written", "opcua_binary_write", "WriteRequest", "node_id", "attribute_id"),
            ("browsed", "opcua_binary_browse_description", "BrowseRequest", "browse_description", None),
            ("monitored", "opcua_binary_create_monitored_items_create_item", "CreateMonitoredItemsRequest",
             "item_to_monitor_node_id", "item_to_monitor_attribute_id"))
        for name, log, service, node, attribute in node_logs:
            for answered in (False, True):
                def field(what):
                    return f"inherited {what}" if answered else f"{name} {what.removesuffix('s').replace('_', ' ')}"
                for rows, events in self.sequences(log, "T", service, answered=answered):
                    self.items(field("node_ids"), rows, events, lambda r: zeek_node(r, node),
                               lambda e: e.get("node_ids") or [])
                    if attribute:
                        self.items(field("attribute_ids"), rows, events,
                                   lambda r: int(r[attribute]) if r[attribute].isdigit() else ATTRIBUTES[r[attribute]],
                                   lambda e: e.get("attribute_ids") or [])
                    if name == "monitored":
                        self.items(field("client_handles"), rows, events,
                                   lambda r: int(r["monitoring_parameters_client_handle"]),
                                   lambda e: e.get("client_handles") or [])
        for rows, events in self.sequences("opcua_binary_browse_response_references", "F",
                                           "BrowseResponse", "BrowseNextResponse"):
            # Zeek's "browse_response_ref_type_*" columns hold the reference's target NodeId
            self.items("browse target", rows, events, lambda r: zeek_node(r, "browse_response_ref_type"),
                       lambda e: e.get("targets") or [])

    def check_subscriptions(self) -> None:
        check = self.tally.check
        for row, event in self.pairs("opcua_binary_create_subscription", "T", "CreateSubscriptionRequest"):
            check("publishing interval", event.get("frame"), float(row["requested_publishing_interval"]),
                  event.get("publishing_interval"))
        for row, event in self.pairs("opcua_binary_create_subscription", "F", "CreateSubscriptionResponse"):
            check("subscription id", event.get("frame"), int(row["subscription_id"]), event.get("subscription_id"))
            check("publishing interval", event.get("frame"), float(row["revised_publishing_interval"]),
                  event.get("publishing_interval"))
        for answered in (False, True):
            for row, event in self.pairs("opcua_binary_create_monitored_items", "T", "CreateMonitoredItemsRequest",
                                         answered=answered):
                check("inherited subscription_id" if answered else "subscription id", event.get("frame"),
                      int(row["subscription_id"]), event.get("subscription_id"))


# --- oracle 2: Wireshark -----------------------------------------------------------------

FLAGS = ("opcua.returndiag", "opcua.diag.has_", "opcua.datavalue.has_", "opcua.loctext.has_", "opcua.extobj.has_",
         "opcua.expandednodeid.has_", "opcua.nodeclassmask", "opcua.resultmask")   # bit fields: not needed


class Node:
    """A PDML field: unnamed fields (Wireshark's subtrees) are labelled by their text."""
    __slots__ = ("label", "kind", "name", "show", "showname", "value", "kids")

    def __init__(self, element):
        self.name = element.get("name") or ""
        self.show = element.get("show") or ""
        self.showname = element.get("showname") or ""
        self.value = element.get("value") or ""
        label, _, kind = self.show.partition(":") if not self.name else (self.name.removeprefix("opcua."), "", "")
        self.label, self.kind = label.strip(), kind.strip()
        self.kids = [Node(child) for child in element.findall("field") if not child.get("name", "").startswith(FLAGS)]

    def select(self, path: str) -> list[Node]:
        """Descendants along labels; "*" stands for any array element ("[3]")."""
        found = [self]
        for step in path.split("/"):
            found = [k for n in found for k in n.kids
                     if k.label == step or (step == "*" and k.label.startswith("["))]
        return found

    def get(self, path: str) -> Node | None:
        found = self.select(path)
        return found[0] if found else None

    def walk(self) -> Iterator[Node]:
        for kid in self.kids:
            yield kid
            yield from kid.walk()

    def node_id(self) -> str:
        values = {n.name: n.show for n in self.walk()}
        namespace = int(values.get("opcua.nodeid.nsindex") or 0)
        uri = values.get("opcua.NamespaceUri")
        for name, kind in (("numeric", "i"), ("string", "s"), ("guid", "g"), ("bytestring", "b")):
            if f"opcua.nodeid.{name}" in values:
                identifier = values[f"opcua.nodeid.{name}"]
                return node_text(namespace, kind, identifier.replace(":", "") if kind == "b" else identifier, uri)
        raise AssertionError(f"NodeId without identifier: {values}")


def ws_text(node: Node | None) -> str | None:
    """A String field: the null string (length -1) is None."""
    if node is None or (node.show == "" and node.value == "ffffffff"):
        return None
    return node.show


def ws_status_name(node: Node) -> str | None:
    name = node.showname.rsplit("[", 1)[-1].rstrip("]")
    return None if name == "Unknown Status Code" else name


def ws_int(node: Node | None) -> int | None:
    return None if node is None else int(node.show, 0)


def ws_datetime(text: str) -> str | None:
    stamp, _, fraction = text.removesuffix(" UTC").partition(".")
    moment = datetime.strptime(stamp, "%b %d, %Y %H:%M:%S").replace(tzinfo=timezone.utc)
    if (moment == datetime(1601, 1, 1, tzinfo=timezone.utc) and not int(fraction or 0)) or moment.year >= 9999:
        return None                      # 0 ticks and the maximum mean "no time"
    return (moment + timedelta(microseconds=int(fraction[:6] or 0))).isoformat()


SKIPPED = object()   # a value not compared
VARIANT_TYPES = {1: "Boolean", 2: "SByte", 3: "Byte", 4: "Int16", 5: "UInt16", 6: "Int32", 7: "UInt32", 8: "Int64",
                 9: "UInt64", 10: "Float", 11: "Double", 12: "String", 13: "DateTime", 14: "Guid", 15: "ByteString",
                 17: "NodeId", 18: "ExpandedNodeId", 19: "StatusCode", 20: "QualifiedName", 21: "LocalizedText",
                 22: "ExtensionObject", 23: "DataValue", 24: "Variant"}
STRUCTURED = {"NodeId", "ExpandedNodeId", "QualifiedName", "LocalizedText", "ExtensionObject", "DataValue", "Variant"}


def ws_element(kind: str, node: Node) -> Any:
    """One value of a Variant, in icsguard's JSON form."""
    if kind in ("NodeId", "ExpandedNodeId"):
        return node.node_id()
    if kind == "QualifiedName":
        return ws_qualified_name(node)
    if kind == "LocalizedText":
        return ws_text(node.get("loctext.Text"))
    if kind == "ExtensionObject":
        return {"type_id": node.get("TypeId").node_id()}
    if kind == "DataValue":
        return ws_data_value(node)
    if kind == "Variant":
        return ws_variant(node)
    if kind == "Boolean":
        return node.show == "1"
    if kind == "Float":
        return struct.unpack("<f", bytes.fromhex(node.value))[0]
    if kind == "Double":
        return struct.unpack("<d", bytes.fromhex(node.value))[0]
    if kind == "String":
        return ws_text(node)
    if kind == "DateTime":
        return ws_datetime(node.show)
    if kind == "Guid":
        return node.show
    if kind == "ByteString":
        return None if node.value == "ffffffff" and not node.show else node.show.replace(":", "")
    return int(node.show, 0)


def ws_qualified_name(node: Node) -> str:
    namespace, name = ws_int(node.get("qualname.Id")), ws_text(node.get("qualname.Name")) or ""
    return f"{namespace}:{name}" if namespace else name


def ws_data_value(node: Node) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if node.get("Value") is not None:
        out["value"] = ws_variant(node.get("Value"))
    if node.get("StatusCode") is not None:
        out["status_code"] = ws_int(node.get("StatusCode"))
    for name, key in (("datavalue.SourceTimestamp", "source_timestamp"),
                      ("datavalue.ServerTimestamp", "server_timestamp")):
        if node.get(name) is not None:
            out[key] = ws_datetime(node.get(name).show)
    return out


def ws_variant(variant: Node | None) -> Any:
    """A Variant's value as icsguard prints it: a scalar, or the elements of an array or matrix
    (Wireshark shows a primitive element as an opcua.<Type> field, a structured one as a subtree
    whose text ends in ": <Type>"; the ArrayDimensions of a matrix are not elements)."""
    if variant is None:
        return None
    mask = ws_int(variant.get("variant.has_value"))
    if mask is None or mask & 0x3F == 0:
        return None
    kind = VARIANT_TYPES.get(mask & 0x3F)
    if kind is None:                              # XmlElement, DiagnosticInfo
        return SKIPPED
    structured = kind in STRUCTURED
    values, stack = [], list(reversed([k for k in variant.kids if k.label != "ArrayDimensions"]))
    while stack:
        node = stack.pop()
        if (structured and not node.name and node.kind == kind) or \
                (not structured and node.name == f"opcua.{kind}"):
            values.append(ws_element(kind, node))
        else:
            stack.extend(reversed(node.kids))
    if mask & 0x80:
        return values
    return values[0] if values else SKIPPED


class WiresharkCheck:
    """One capture: Wireshark's OPC UA messages against icsguard's events.

    A request's body function compares the request and returns what it names (in
    icsguard's field names); its response, the message with the same request id on the same
    connection, must carry the same, since icsguard copies it over. Client handles of
    CreateMonitoredItems name the nodes of later Publish notifications on the connection.
    """

    def __init__(self, path: Path, events: list[dict]):
        self.path, self.tally = path, Tally()
        self.events: dict[tuple, dict] = {}
        for event in events:
            if event["proto"] == "opcua":
                self.events.setdefault((event["frame"], event["message_type"], event.get("request_id")), event)
        self.asked: dict[tuple, tuple[str, dict]] = {}
        self.handles: dict[tuple, dict[int, str]] = defaultdict(dict)
        self.connection: tuple = ()

    def run(self) -> Tally:
        matched = set()
        for frame, packet in oracle.pdml_packets(self.path, "opcua", "opcua"):
            for proto in packet.findall("proto[@name='opcua']"):
                message = Node(proto)
                kind = message.get("transport.type").show
                # where the sequence header is encrypted (no service readable) its request id
                # is ciphertext, which icsguard does not show
                encrypted = kind in ("OPN", "MSG", "CLO") and \
                    not any(n.label == "servicenodeid.numeric" for n in message.walk())
                key = (frame, kind, None if encrypted else ws_int(message.get("security.rqid")))
                event = self.events.get(key)
                self.tally.check("message", frame, key, key if event else None)
                if event is not None:
                    matched.add(key)
                    self.message(frame, kind, key[2], message, event)
        for key in self.events.keys() - matched:
            self.tally.check("message", key[0], None, key)
        return self.tally

    def message(self, frame: int, kind: str, request_id: int | None, message: Node, event: dict) -> None:
        check = self.tally.check
        if kind == "HEL":
            check("hello endpoint url", frame, ws_text(message.get("transport.endpoint")), event.get("endpoint_url"))
            return
        if kind not in ("OPN", "MSG", "CLO"):
            return
        self.connection = connection(event)
        check("secure channel id", frame, ws_int(message.get("transport.scid")), event.get("secure_channel_id"))
        if kind == "OPN":
            check("security policy (OPN)", frame, ws_text(message.get("security.spu")), event.get("security_policy"))
            _certificate(self, frame, message.get("security.scert"), event)
            thumbprint = message.get("security.rcthumb")
            if thumbprint is not None and thumbprint.show:
                check("receiver thumbprint", frame, thumbprint.show.replace(":", ""), event.get("receiver_thumbprint"))
        else:
            check("token id", frame, ws_int(message.get("security.tokenid")), event.get("token_id"))
        root = message.get("OpcUa Service") or message.get("Message")
        if root is None:                          # encrypted: nothing more Wireshark can read
            return
        check("service id", frame, ws_int(root.get("TypeId/servicenodeid.numeric")), event.get("function_code"))
        service = next((k for k in root.kids if k.label != "TypeId"), None)
        if service is None:
            return
        name = service.label
        check("service", frame, name, event.get("service"))
        header = service.get("RequestHeader") or service.get("ResponseHeader")
        if header is not None:
            check("request handle", frame, ws_int(header.get("RequestHandle")), event.get("request_handle"))
            result = header.get("ServiceResult")
            if result is not None:
                check("status code", frame, ws_int(result), event.get("status_code"))
                if ws_status_name(result):
                    check("status name", frame, ws_status_name(result), event.get("status_name"))
        body = BODIES.get(name)
        named = (body(self, frame, service, event) if body else None) or {}
        if name.endswith("Request"):
            self.asked[self.connection, request_id] = name, named
            return
        asked, named = self.asked.pop((self.connection, request_id), (None, {}))
        for field, value in named.items():
            check(f"inherited {field}", frame, value, event.get(field))
        if asked == "CreateMonitoredItemsRequest" and name == "CreateMonitoredItemsResponse":
            self.handles[self.connection].update(zip(named["client_handles"], named["node_ids"]))

    # helpers for the bodies
    def nodes(self, field: str, frame: int, service: Node, path: str, got: list | None) -> list[str]:
        expected = [n.node_id() for n in service.select(path)]
        self.tally.each(field, [frame], expected, got or [])
        return expected

    def numbers(self, field: str, frame: int, service: Node, path: str, got: list | None) -> list[int]:
        expected = [ws_int(n) for n in service.select(path)]
        self.tally.each(field, [frame], expected, got or [])
        return expected

    def results(self, frame: int, service: Node, path: str, event: dict, default_good: bool = False) -> None:
        """Per-operation status names, where Wireshark knows the name."""
        expected = []
        for node in service.select(path):
            status = node if node.name else node.get("StatusCode")
            expected.append("Good" if status is None and default_good else ws_status_name(status) if status else None)
        got = event.get("results") or []
        if len(expected) != len(got):
            self.tally.each("operation results", [frame], expected, got)
            return
        for want, have in zip(expected, got):
            if want is not None:
                self.tally.check("operation results", frame, want, have)

    def values(self, field: str, frame: int, expected: list, got: list | None) -> None:
        got = got or []
        if len(expected) != len(got):
            self.tally.each(field, [frame], expected, got)
            return
        for want, have in zip(expected, got):
            if want is not SKIPPED:
                self.tally.check(field, frame, want, have)

    def endpoints(self, frame: int, nodes: list[Node], event: dict) -> None:
        got = event.get("endpoints") or []
        each = self.tally.each
        each("offered endpoint url", [frame], [ws_text(n.get("EndpointUrl")) for n in nodes],
             [e["endpoint_url"] for e in got])
        each("offered security policy", [frame], [ws_text(n.get("SecurityPolicyUri")) for n in nodes],
             [e["security_policy"] for e in got])
        each("offered security mode", [frame],
             [SECURITY_MODES.get(ws_int(n.get("MessageSecurityMode"))) for n in nodes],
             [e["security_mode"] for e in got])
        each("offered security level", [frame], [ws_int(n.get("SecurityLevel")) for n in nodes],
             [e["security_level"] for e in got])
        each("offered token type", [frame],
             [TOKEN_TYPES.get(ws_int(t)) for n in nodes for t in n.select("UserIdentityTokens/*/UserTokenType")],
             [t for e in got for t in e["token_types"]])


def _open_request(check: WiresharkCheck, frame, service, event):
    tally = check.tally
    tally.check("OPN request type", frame, REQUEST_TYPES.get(ws_int(service.get("SecurityTokenRequestType"))),
                event.get("request_type"))
    tally.check("OPN security mode", frame, SECURITY_MODES.get(ws_int(service.get("MessageSecurityMode"))),
                event.get("security_mode"))
    tally.check("OPN lifetime", frame, ws_int(service.get("RequestedLifetime")), event.get("lifetime"))


def _open_response(check: WiresharkCheck, frame, service, event):
    tally = check.tally
    tally.check("OPN channel id", frame, ws_int(service.get("SecurityToken/ChannelId")), event.get("secure_channel_id"))
    tally.check("OPN token id", frame, ws_int(service.get("SecurityToken/TokenId")), event.get("token_id"))
    tally.check("OPN lifetime", frame, ws_int(service.get("SecurityToken/RevisedLifetime")), event.get("lifetime"))


def _create_session_request(check: WiresharkCheck, frame, service, event):
    tally = check.tally
    tally.check("session endpoint url", frame, ws_text(service.get("EndpointUrl")), event.get("endpoint_url"))
    tally.check("application uri", frame, ws_text(service.get("ClientDescription/ApplicationUri")),
                event.get("application_uri"))
    tally.check("application name", frame, ws_text(service.get("ClientDescription/ApplicationName/loctext.Text")),
                event.get("application_name"))
    tally.check("session name", frame, ws_text(service.get("SessionName")), event.get("session_name"))
    _certificate(check, frame, service.get("ClientCertificate"), event)


def _create_session_response(check: WiresharkCheck, frame, service, event):
    check.tally.check("session id", frame, service.get("SessionId").node_id(), event.get("session_node_id"))
    check.endpoints(frame, service.select("ServerEndpoints/*"), event)
    _certificate(check, frame, service.get("ServerCertificate"), event)


def _certificate(check: WiresharkCheck, frame, node: Node | None, event):
    if node is not None and node.show:
        check.tally.check("certificate sha1", frame, der_sha1(bytes.fromhex(node.show.replace(":", ""))),
                          event.get("certificate_sha1"))


def _activate_session_request(check: WiresharkCheck, frame, service, event):
    tally = check.tally
    tokens = {321: "anonymous", 324: "username", 327: "x509", 940: "issued"}
    type_id = service.get("UserIdentityToken/TypeId")
    kind = tokens.get(int(type_id.node_id().removeprefix("i="))) if type_id is not None else None
    if kind is None:
        return {}
    tally.check("identity token", frame, kind, event.get("identity_token"))
    token = service.get("UserIdentityToken/UserNameIdentityToken")
    user = None
    if token is not None:
        user = ws_text(token.get("UserName"))
        tally.check("user name", frame, user, event.get("user_name"))
        tally.check("password in clear", frame, not ws_text(token.get("EncryptionAlgorithm")),
                    event.get("password_in_clear"))
    return {"identity_token": kind, "user_name": user}


def _close_session_request(check: WiresharkCheck, frame, service, event):
    check.tally.check("delete subscriptions", frame, ws_int(service.get("DeleteSubscriptions")) == 1,
                      event.get("delete_subscriptions"))


def _read_request(check: WiresharkCheck, frame, service, event):
    return {"node_ids": check.nodes("read node id", frame, service, "NodesToRead/*/NodeId", event.get("node_ids")),
            "attribute_ids": check.numbers("read attribute id", frame, service, "NodesToRead/*/AttributeId",
                                           event.get("attribute_ids"))}


def _read_response(check: WiresharkCheck, frame, service, event):
    results = service.select("Results/*")
    check.values("read value", frame, [ws_variant(r.get("Value")) for r in results], event.get("values"))
    check.results(frame, service, "Results/*", event, default_good=True)


def _write_request(check: WiresharkCheck, frame, service, event):
    check.values("written value", frame, [ws_variant(n) for n in service.select("NodesToWrite/*/Value/Value")],
                 event.get("values"))
    return {"node_ids": check.nodes("written node id", frame, service, "NodesToWrite/*/NodeId", event.get("node_ids")),
            "attribute_ids": check.numbers("written attribute id", frame, service, "NodesToWrite/*/AttributeId",
                                           event.get("attribute_ids"))}


def _browse_request(check: WiresharkCheck, frame, service, event):
    return {"node_ids": check.nodes("browsed node id", frame, service, "NodesToBrowse/*/NodeId",
                                    event.get("node_ids"))}


def _browse_response(check: WiresharkCheck, frame, service, event):
    check.nodes("browse target", frame, service, "Results/*/References/*/NodeId", event.get("targets"))
    check.results(frame, service, "Results/*", event)


def _translate_request(check: WiresharkCheck, frame, service, event):
    paths = ["/" + "/".join(ws_qualified_name(e) for e in p.select("RelativePath/Elements/*/TargetName"))
             for p in service.select("BrowsePaths/*")]
    check.tally.each("translate browse path", [frame], paths, event.get("browse_paths") or [])
    return {"node_ids": check.nodes("translate starting node", frame, service, "BrowsePaths/*/StartingNode",
                                    event.get("node_ids")),
            "browse_paths": paths}


def _translate_response(check: WiresharkCheck, frame, service, event):
    check.nodes("translate target", frame, service, "Results/*/Targets/*/TargetId", event.get("targets"))
    check.results(frame, service, "Results/*", event)


def _call_request(check: WiresharkCheck, frame, service, event):
    got = event.get("values") or []
    for index, call in enumerate(service.select("MethodsToCall/*")):
        check.values("call argument", frame, [ws_variant(v) for v in call.select("InputArguments/*")],
                     got[index] if index < len(got) else [])
    return {"object_node_ids": check.nodes("call object id", frame, service, "MethodsToCall/*/ObjectId",
                                           event.get("object_node_ids")),
            "node_ids": check.nodes("call method id", frame, service, "MethodsToCall/*/MethodId",
                                    event.get("node_ids"))}


def _call_response(check: WiresharkCheck, frame, service, event):
    got = event.get("values") or []
    for index, result in enumerate(service.select("Results/*")):
        check.values("call output", frame, [ws_variant(v) for v in result.select("OutputArguments/*")],
                     got[index] if index < len(got) else [])
    check.results(frame, service, "Results/*", event)


def _add_nodes_request(check: WiresharkCheck, frame, service, event):
    return {"node_ids": check.nodes("added node id", frame, service, "NodesToAdd/*/RequestedNewNodeId",
                                    event.get("node_ids"))}


def _simple_results(check: WiresharkCheck, frame, service, event):
    check.results(frame, service, "Results/Results", event)


def _create_subscription_request(check: WiresharkCheck, frame, service, event):
    check.tally.check("publishing interval", frame, float(service.get("RequestedPublishingInterval").show),
                      event.get("publishing_interval"))


def _create_subscription_response(check: WiresharkCheck, frame, service, event):
    check.tally.check("subscription id", frame, ws_int(service.get("SubscriptionId")), event.get("subscription_id"))
    check.tally.check("publishing interval", frame, float(service.get("RevisedPublishingInterval").show),
                      event.get("publishing_interval"))


def _monitored_items_request(check: WiresharkCheck, frame, service, event):
    subscription = ws_int(service.get("SubscriptionId"))
    check.tally.check("subscription id", frame, subscription, event.get("subscription_id"))
    items = "ItemsToCreate/*/"
    return {"subscription_id": subscription,
            "node_ids": check.nodes("monitored node id", frame, service, items + "ItemToMonitor/NodeId",
                                    event.get("node_ids")),
            "attribute_ids": check.numbers("monitored attribute id", frame, service,
                                           items + "ItemToMonitor/AttributeId", event.get("attribute_ids")),
            "client_handles": check.numbers("monitored client handle", frame, service,
                                            items + "RequestedParameters/ClientHandle", event.get("client_handles"))}


def _monitored_items_response(check: WiresharkCheck, frame, service, event):
    check.results(frame, service, "Results/*", event)


def _delete_subscriptions_request(check: WiresharkCheck, frame, service, event):
    check.numbers("deleted subscription id", frame, service, "SubscriptionIds/SubscriptionIds",
                  event.get("subscription_ids"))


def _publish_response(check: WiresharkCheck, frame, service, event):
    tally = check.tally
    tally.check("subscription id", frame, ws_int(service.get("SubscriptionId")), event.get("subscription_id"))
    tally.check("notification sequence", frame, ws_int(service.get("NotificationMessage/SequenceNumber")),
                event.get("notification_sequence"))
    items = service.select("NotificationMessage/NotificationData/*/DataChangeNotification/MonitoredItems/*")
    if items:
        handles = [ws_int(i.get("ClientHandle")) for i in items]
        tally.each("notified client handle", [frame], handles, event.get("client_handles") or [])
        tally.each("notified node id", [frame], [check.handles[check.connection].get(h) for h in handles],
                   event.get("node_ids") or [])
        check.values("notified value", frame, [ws_variant(i.get("Value/Value")) for i in items], event.get("values"))


def _endpoint_url_request(check: WiresharkCheck, frame, service, event):
    check.tally.check("discovery endpoint url", frame, ws_text(service.get("EndpointUrl")), event.get("endpoint_url"))


def _get_endpoints_response(check: WiresharkCheck, frame, service, event):
    check.endpoints(frame, service.select("Endpoints/*"), event)


def _find_servers_response(check: WiresharkCheck, frame, service, event):
    servers = service.select("Servers/*")
    got = event.get("servers") or []
    each = check.tally.each
    each("server application uri", [frame], [ws_text(s.get("ApplicationUri")) for s in servers],
         [s["application_uri"] for s in got])
    each("server application name", [frame], [ws_text(s.get("ApplicationName/loctext.Text")) for s in servers],
         [s["application_name"] for s in got])
    each("server discovery urls", [frame], [[ws_text(u) for u in s.select("DiscoveryUrls/DiscoveryUrls")]
                                            for s in servers], [s["discovery_urls"] for s in got])


BODIES = {
    "OpenSecureChannelRequest": _open_request, "OpenSecureChannelResponse": _open_response,
    "CreateSessionRequest": _create_session_request, "CreateSessionResponse": _create_session_response,
    "ActivateSessionRequest": _activate_session_request, "ActivateSessionResponse": _simple_results,
    "CloseSessionRequest": _close_session_request,
    "GetEndpointsRequest": _endpoint_url_request, "GetEndpointsResponse": _get_endpoints_response,
    "FindServersRequest": _endpoint_url_request, "FindServersResponse": _find_servers_response,
    "ReadRequest": _read_request, "ReadResponse": _read_response,
    "WriteRequest": _write_request, "WriteResponse": _simple_results,
    "BrowseRequest": _browse_request, "BrowseResponse": _browse_response, "BrowseNextResponse": _browse_response,
    "TranslateBrowsePathsToNodeIdsRequest": _translate_request,
    "TranslateBrowsePathsToNodeIdsResponse": _translate_response,
    "CallRequest": _call_request, "CallResponse": _call_response,
    "AddNodesRequest": _add_nodes_request,
    "CreateSubscriptionRequest": _create_subscription_request,
    "CreateSubscriptionResponse": _create_subscription_response,
    "CreateMonitoredItemsRequest": _monitored_items_request,
    "CreateMonitoredItemsResponse": _monitored_items_response,
    "DeleteSubscriptionsRequest": _delete_subscriptions_request, "DeleteSubscriptionsResponse": _simple_results,
    "PublishResponse": _publish_response,
}


# --- the tests ---------------------------------------------------------------------------

pytestmark = pytest.mark.skipif(oracle.TSHARK is None, reason="tshark is not installed (apt-get install tshark)")

# Values compared per capture (all fields together; the table per field is what
# ``python -m tests.crosscheck.test_opcua_bodies_crosscheck`` prints). A change means an oracle or
# icsguard now shows more or fewer messages or items: look, then update.
ZEEK_COMPARED = {
    "analyzer.basic": 360,
    "analyzer.data-gap": 27,
    "analyzer.data-gap_with-handshake": 399,
    "analyzer.no-handshake": 299,
    "analyzer.non-standard-port": 372,
}
WIRESHARK_COMPARED = {
    MALCOLM: 12361,
    "opcua_failed_login.pcap": 303,
    "opcua_none_anonymous.pcap": 381,
    "opcua_none_plaintext_password.pcap": 129,
    "opcua_none_username.pcap": 121,
    "opcua_sign.pcap": 132,
    "opcua_sign_and_encrypt.pcap": 51,
}
# Disagreements, per capture: {field: {frames}}, each with its explanation. There are
# none: every value either oracle shows is icsguard's too (after the normalisations the
# module docstring lists: Zeek's wire-order GUIDs, NodeId text, raw Float/Double bytes).
ZEEK_DIFFERENCES: dict[str, dict[str, set]] = {}
WIRESHARK_DIFFERENCES: dict[str, dict[str, set]] = {}

# Fields each oracle must have compared on its richest capture, so that neither goes quiet.
ZEEK_HEADLINE = ("read node id", "written node id", "browsed node id", "browse target", "monitored node id",
                 "inherited node_ids", "user name", "identity token", "password in clear", "offered endpoint url",
                 "offered security policy", "offered security mode", "offered token type", "session name",
                 "application uri", "session id", "subscription id", "publishing interval", "status code",
                 "operation results", "service id", "request handle")
WIRESHARK_HEADLINE = ZEEK_HEADLINE + ("read value", "written value", "call method id", "call argument",
                                      "translate target", "certificate sha1", "receiver thumbprint",
                                      "notification sequence", "server application uri")


def available(relative: str) -> Path | None:
    """A public capture, or None where it is absent (its own tests then skip)."""
    try:
        return public(relative)
    except pytest.skip.Exception:
        return None


class Decoded(dict):
    """Events of captures by name, each capture decoded once, when first asked for."""

    def __init__(self, paths: dict[str, Path]):
        super().__init__()
        self.paths = paths

    def __missing__(self, name: str) -> list[dict]:
        self[name] = decoded(self.paths[name])
        return self[name]


def zeek_tallies(events: Decoded) -> dict[str, Tally]:
    base = public(f"{ICSNPP}/baseline")
    columns = zeek_columns(base)
    return {folder: ZeekCheck(base, folder, events[trace], columns).run() for folder, trace in ZEEK_TRACES.items()}


def wireshark_tallies(events: Decoded) -> dict[str, Tally]:
    names = [name for name in (MALCOLM, *OWN) if events.paths.get(name)]
    for name in names:                 # decoded here, not in the threads that wait on tshark
        events[name]
    return oracle.compare_all(names, lambda name: WiresharkCheck(events.paths[name], events[name]).run())


def captures() -> Decoded:
    paths = {trace: available(f"{ICSNPP}/traces/{trace}") for trace in ZEEK_TRACES.values()}
    return Decoded({**paths, MALCOLM: available(MALCOLM), **{name: PCAPS / name for name in OWN}})


@pytest.fixture(scope="module")
def events() -> Decoded:
    return captures()


@pytest.fixture(scope="module")
def zeek(events) -> dict[str, Tally]:
    for trace in ZEEK_TRACES.values():
        public(f"{ICSNPP}/traces/{trace}")
    return zeek_tallies(events)


@pytest.fixture(scope="module")
def wireshark(events) -> dict[str, Tally]:
    return wireshark_tallies(events)


def _differences(tally: Tally) -> str:
    return "\n".join(line for line in tally.lines() if line.startswith("      ") or "frame" in line)


def test_zeek_folders_match_their_traces(events):
    """A folder's connections (uids' 4-tuples) are exactly those of the trace it is paired with."""
    base = public(f"{ICSNPP}/baseline")
    columns = zeek_columns(base)
    for folder, trace in ZEEK_TRACES.items():
        public(f"{ICSNPP}/traces/{trace}")
        rows = zeek_log(base, folder, "opcua_binary", columns)
        theirs = {(r["id.orig_h"], int(r["id.orig_p"]), r["id.resp_h"], int(r["id.resp_p"])) for r in rows}
        ours = {connection(e) for e in events[trace] if e["proto"] == "opcua"}
        assert theirs == ours, folder


@pytest.mark.parametrize("folder", list(ZEEK_TRACES))
def test_bodies_agree_with_icsnpp_zeek(folder, zeek):
    tally = zeek[folder]
    assert tally.differing() == ZEEK_DIFFERENCES.get(folder, {}), _differences(tally)
    assert sum(tally.compared().values()) == ZEEK_COMPARED[folder], tally.compared()


@pytest.mark.parametrize("name", [MALCOLM, *OWN])
def test_bodies_agree_with_wireshark(name, wireshark):
    if name == MALCOLM:
        public(MALCOLM)
    tally = wireshark[name]
    assert tally.differing() == WIRESHARK_DIFFERENCES.get(name, {}), _differences(tally)
    assert sum(tally.compared().values()) == WIRESHARK_COMPARED[name], tally.compared()


def test_headline_fields_are_compared(zeek, wireshark):
    public(MALCOLM)
    assert not [f for f in ZEEK_HEADLINE if not zeek["analyzer.basic"].compared().get(f)]
    assert not [f for f in WIRESHARK_HEADLINE if not wireshark[MALCOLM].compared().get(f)]
    assert wireshark["opcua_none_anonymous.pcap"].compared().get("notified value")


def test_checks_catch_a_wrong_value(events):
    """The harness itself: one corrupted value per kind of field, and each is reported."""
    import copy

    def corrupt(capture: list[dict]) -> list[dict]:
        """The first of each: a read node id, a browse target, a user name, an offered
        endpoint's mode, a session name, a response's status code, all made wrong."""
        capture = copy.deepcopy(capture)
        wrong = {"ReadRequest": lambda e: e["node_ids"].__setitem__(0, "ns=9;s=wrong"),
                 "BrowseResponse": lambda e: e["targets"].pop(),
                 "ActivateSessionRequest": lambda e: e.__setitem__("user_name", f"{e.get('user_name')}x"),
                 "endpoints": lambda e: e["endpoints"][0].__setitem__("security_mode", "Sign"),
                 "CreateSessionRequest": lambda e: e.__setitem__("session_name", "wrong"),
                 "CloseSessionResponse": lambda e: e.__setitem__("status_code", 1)}
        for event in capture:
            for what in [event.get("service"), "endpoints" if event.get("endpoints") else None]:
                if what in wrong:
                    wrong.pop(what)(event)
        return capture

    base = public(f"{ICSNPP}/baseline")
    trace = ZEEK_TRACES["analyzer.basic"]
    public(f"{ICSNPP}/traces/{trace}")
    zeek = ZeekCheck(base, "analyzer.basic", corrupt(events[trace]), zeek_columns(base)).run().differing()
    assert {"read node id", "browse target", "user name", "offered security mode", "status code"} <= set(zeek)
    name = "opcua_none_username.pcap"
    wireshark = WiresharkCheck(PCAPS / name, corrupt(events[name])).run().differing()
    assert {"read node id", "user name", "offered security mode", "session name", "status code"} <= set(wireshark)


if __name__ == "__main__":        # the agreement table, per capture and field
    everything = captures()
    for title, tallies in (("ICSNPP Zeek baselines", zeek_tallies(everything)),
                           ("Wireshark", wireshark_tallies(everything))):
        for name, tally in tallies.items():
            print(f"== {title}: {name} ({sum(tally.compared().values())} values compared)")
            print("\n".join(tally.lines()))
