"""Compliance scans: a policy's checks evaluated over what a database holds of one scope (a run,
or every run), each PASS, FAIL or NOT_ASSESSED with its evidence. No evidence either way is
never a PASS: a check passes only on traffic that could have failed it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from icsguard.detect.folding import MANY
from icsguard.detect.site import Site
from icsguard.events import CONVERSATIONS, function_kind
from icsguard.net.conversations import is_group_address
from icsguard.output.notation import endpoint
from icsguard.output.policy import CheckSpec, Policy
from icsguard.output.store import Store

PASS, FAIL, NOT_ASSESSED = "PASS", "FAIL", "NOT_ASSESSED"
MAX_EVIDENCE = 25               # items per check; the rest are counted
OPN = frozenset({"OpenSecureChannelRequest", "OpenSecureChannel"})
OPCUA_PLUMBING = frozenset({"Hello", "Acknowledge", "ReverseHello", "Error", *OPN, "OpenSecureChannelResponse",
                            "CloseSecureChannel", "CloseSecureChannelRequest", "SecureMessage", "malformed"})
PROGRAM_RULES = frozenset({"s7.program_upload", "s7.program_download", "s7.block_delete", "s7.plc_stop",
                           "s7.plc_start", "s7.memory_reset", "s7plus.cpu_state_change", "s7plus.program_upload",
                           "s7plus.program_download"})
SILENCING_RULES = frozenset({"modbus.force_listen_only", "modbus.restart_communications"})
CLEAR_PASSWORD_RULES = frozenset({"opcua.password_in_clear", "s7.password_presented", "s7.password_guessing"})
SITE_FILE = "needs a site file (--site) that gives "


@dataclass
class Verdict:
    status: str
    summary: str
    evidence: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Facts:
    """What the scanned scope holds: its communications, alerts and runs, and the site."""
    communications: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    site: Site | None
    identities: list[dict[str, Any]] = field(default_factory=list)
    muted: set = field(default_factory=set)          # (rule, source or None) muted in the database

    def silenced(self, rules: frozenset[str] | set[str]) -> list[str]:
        """Those of ``rules`` whose findings may be missing: muted, or not checked by a run."""
        gone = {rule for rule, _src in self.muted if rule in rules}
        for run in self.runs:
            if run.get("rules"):                   # (runs of older versions did not say)
                gone |= set(rules) - set(json.loads(run["rules"]))
        return sorted(gone)

    def unassessable(self, rules: frozenset[str] | set[str]) -> Verdict | None:
        """NOT_ASSESSED when a rule the check reads was muted or not run: its silence proves nothing."""
        gone = self.silenced(rules)
        if gone:
            return Verdict(NOT_ASSESSED, f"{', '.join(gone)} muted or not checked in the scanned runs: "
                                         "no alert from it proves nothing")
        return None

    def industrial(self) -> list[dict[str, Any]]:
        return [c for c in self.communications if c["proto"] not in CONVERSATIONS]

    def seen(self, proto: str, functions: frozenset[str] | None = None) -> list[dict[str, Any]]:
        return [c for c in self.communications
                if c["proto"] == proto and (functions is None or c["function"] in functions)]

    def alerts_of(self, rules: frozenset[str] | set[str]) -> list[dict[str, Any]]:
        return [a for a in self.alerts if a["rule"] in rules]


def gather(store: Store, run_ids: list[int] | None, site: Site | None) -> Facts:
    """The facts of some runs (None: every run in the database)."""
    wanted = set(run_ids) if run_ids is not None else None
    runs = [dict(r, counters=json.loads(r["counters"] or "{}")) for r in store.runs()
            if wanted is None or r["id"] in wanted]
    comms = [c for c in store.communications() if wanted is None or c["run_id"] in wanted]
    alerts = [dict(a, evidence=json.loads(a["evidence"] or "[]")) for a in store.alerts()
              if wanted is None or a["run_id"] in wanted]
    identities = [row for rows in store.identities().values() for row in rows
                  if wanted is None or row["last_run"] in wanted]
    return Facts(comms, alerts, runs, site, identities, store.mutes())


# --------------------------------------------------------------------------- evidence

def _alert_item(alert: dict[str, Any]) -> dict[str, Any]:
    return {"detail": f"{alert['rule']}: {alert['title']} ({alert['count']}x)", "hosts": [alert["src"], alert["dst"]],
            "first_seen": alert["first_ts"], "last_seen": alert["last_ts"], "alert_id": alert["id"],
            "frames": [f"{e.get('capture')}#{e.get('frame')}" for e in alert["evidence"] if e.get("frame")]}


def _pair_item(c: dict[str, Any], detail: str) -> dict[str, Any]:
    return {"detail": detail, "hosts": [c["client"], c["server"]], "first_seen": c["first_seen"],
            "last_seen": c["last_seen"]}


def _pairs(comms: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """Communications folded per (client, server, port, proto): PDUs, functions, first and last seen."""
    pairs: dict[tuple, dict[str, Any]] = {}
    for c in comms:
        key = (c["client"], c["server"], c["port"], c["proto"])
        p = pairs.setdefault(key, {"client": c["client"], "server": c["server"], "port": c["port"],
                                   "proto": c["proto"], "pdus": 0, "functions": set(),
                                   "first_seen": c["first_seen"], "last_seen": c["last_seen"]})
        p["pdus"] += c["requests"] + c["responses"]
        p["functions"].add(c["function"])
        p["first_seen"], p["last_seen"] = min(p["first_seen"], c["first_seen"]), max(p["last_seen"], c["last_seen"])
    return pairs


def _observed(pairs: dict[tuple, dict[str, Any]], what: str) -> dict[str, Any]:
    pdus = sum(p["pdus"] for p in pairs.values())
    first = min((p["first_seen"] for p in pairs.values()), default=None)
    last = max((p["last_seen"] for p in pairs.values()), default=None)
    hosts = sorted({h for p in pairs.values() for h in (p["client"], p["server"])})
    return {"detail": f"{what}: {pdus:,} PDUs between {len(pairs)} client/server pair(s)", "hosts": hosts,
            "first_seen": first, "last_seen": last}


def _fail(summary: str, items: list[dict[str, Any]]) -> Verdict:
    return Verdict(FAIL, summary, items)


# --------------------------------------------------------------------------- checks

def _channel_rule(facts: Facts, rule: str, failing: str, passing: str) -> Verdict:
    """A check that one rule about OPC UA secure channels never fired on channels that were seen."""
    opened = facts.seen("opcua", OPN)
    if not opened:
        return Verdict(NOT_ASSESSED, "no OPC UA secure channel was opened in the scanned traffic")
    bad = facts.alerts_of({rule})
    if bad:
        return _fail(f"{len(bad)} client/server pair(s) {failing}", [_alert_item(a) for a in bad])
    if (unknown := facts.unassessable({rule})):
        return unknown
    return Verdict(PASS, passing, [_observed(_pairs(opened), "secure channels opened")])


def _opcua_secure_channel(facts: Facts, params: dict) -> Verdict:
    return _channel_rule(facts, "opcua.security_policy_none", "opened channels with security policy None",
                         "every OPC UA secure channel seen used a security policy")


def _opcua_no_deprecated_policy(facts: Facts, params: dict) -> Verdict:
    return _channel_rule(facts, "opcua.deprecated_security_policy", "used Basic128Rsa15 or Basic256",
                         "no secure channel used a deprecated policy")


def _opcua_no_anonymous_session(facts: Facts, params: dict) -> Verdict:
    bad = facts.alerts_of({"opcua.anonymous_session"})
    if bad:
        return _fail(f"{len(bad)} pair(s) activated anonymous sessions", [_alert_item(a) for a in bad])
    if (unknown := facts.unassessable({"opcua.anonymous_session"})):
        return unknown
    activated = facts.seen("opcua", frozenset({"ActivateSessionRequest"}))
    if activated:
        return Verdict(PASS, "every session activation seen named a user or a certificate",
                       [_observed(_pairs(activated), "session activations")])
    if facts.seen("opcua", frozenset({"SecureMessage"})):
        return Verdict(NOT_ASSESSED, "sessions ran over encrypted channels: their identity tokens are not visible")
    return Verdict(NOT_ASSESSED, "no OPC UA session activation in the scanned traffic")


def _credentials_none_in_clear(facts: Facts, params: dict) -> Verdict:
    bad = facts.alerts_of(CLEAR_PASSWORD_RULES)
    if bad:
        return _fail(f"{len(bad)} pair(s) sent passwords readable", [_alert_item(a) for a in bad])
    if (unknown := facts.unassessable(CLEAR_PASSWORD_RULES)):
        return unknown
    logins = facts.seen("opcua", frozenset({"ActivateSessionRequest"})) + facts.seen("opcua", OPN)
    if logins:
        return Verdict(PASS, "OPC UA sessions seen carried no password in clear, and no S7 password was presented",
                       [_observed(_pairs(logins), "OPC UA channels and logins")])
    return Verdict(NOT_ASSESSED, "no login (OPC UA session, S7 password) in the scanned traffic")


def _opcua_certificates(facts: Facts, params: dict) -> Verdict:
    found = facts.alerts_of({"opcua.self_signed_or_expired_certificate"})
    pki = facts.site is not None and facts.site.pki_required
    bad, self_signed_only = [], []
    for alert in found:
        events = alert["evidence"]
        invalid = any(e.get("certificate_error") or _expired(e) for e in events)
        (bad if invalid or pki else self_signed_only).append(alert)
    if bad:
        why = "expired, not yet valid or unreadable" + (", or self-signed where the site requires PKI" if pki else "")
        return _fail(f"{len(bad)} pair(s) presented certificates {why}", [_alert_item(a) for a in bad])
    certificates = [i for i in facts.identities if i["proto"] == "opcua" and i["attribute"] == "certificate_sha1"]
    if not certificates:
        return Verdict(NOT_ASSESSED, "no OPC UA certificate was exchanged in the scanned traffic")
    if (unknown := facts.unassessable({"opcua.self_signed_or_expired_certificate"})):
        return unknown
    note = (f"; {len(self_signed_only)} pair(s) self-signed, allowed as the site does not require PKI"
            if self_signed_only else "")
    return Verdict(PASS, f"the {len(certificates)} certificate(s) seen were within their validity" + note,
                   [{"detail": f"{c['ip']} certificate sha1 {c['value']} ({c['message']}, {c['capture']} frame "
                               f"{c['frame']})", "hosts": [c["ip"]], "first_seen": c["first_seen"],
                     "last_seen": c["last_seen"], "frames": [f"{c['capture']}#{c['frame']}"]} for c in certificates]
                   + [_alert_item(a) for a in self_signed_only])


def _expired(event: dict[str, Any]) -> bool:
    ts = event.get("ts")
    for key, late in (("certificate_not_after", True), ("certificate_not_before", False)):
        value = event.get(key)
        if ts is None or not value:
            continue
        try:
            moment = datetime.fromisoformat(str(value)).timestamp()
        except ValueError:
            return True
        if (late and moment < ts) or (not late and moment > ts):
            return True
    return False


def _confidentiality(facts: Facts, params: dict) -> Verdict:
    pairs = _pairs(facts.industrial())
    if not pairs:
        return Verdict(NOT_ASSESSED, "no industrial traffic in the scanned scope")
    clear = [p for p in pairs.values()
             if p["proto"] != "opcua" or (p["functions"] - OPCUA_PLUMBING)]
    if clear:
        return _fail(f"{len(clear)} pair(s) carried industrial traffic readable on the wire",
                     [_pair_item(p, f"{p['proto']} to {endpoint(p['server'], p['port'])}: {p['pdus']:,} PDUs in "
                                    f"clear ({', '.join(sorted(p['functions'])[:6])})") for p in clear])
    return Verdict(PASS, "all industrial traffic seen was encrypted (OPC UA SignAndEncrypt)",
                   [_observed(pairs, "encrypted industrial traffic")])


def _needs_site(facts: Facts, what: str) -> Verdict | None:
    if facts.site is None:
        return Verdict(NOT_ASSESSED, SITE_FILE + what)
    return None


def _writes_permitted(facts: Facts, params: dict) -> Verdict:
    missing = _needs_site(facts, "its permitted writers (writers:)")
    if missing or not facts.site.writers:
        return missing or Verdict(NOT_ASSESSED, SITE_FILE + "its permitted writers (writers:)")
    writes = [c for c in facts.industrial() if c["requests"] and function_kind(c["function"]) == "write"]
    bad = [c for c in writes if not facts.site.may_write(c["client"], c["server"])]
    if bad:
        return _fail(f"{len({(c['client'], c['server']) for c in bad})} pair(s) wrote without permission",
                     [_pair_item(c, f"{c['client']} {c['proto']} {c['function']} to {c['server']}: "
                                    f"{c['requests']:,} request(s)") for c in bad])
    controllers = [c for c in facts.industrial()]
    if not controllers:
        return Verdict(NOT_ASSESSED, "no industrial traffic in the scanned scope")
    return Verdict(PASS, f"{len(writes)} kind(s) of write seen, all from permitted writers",
                   [_observed(_pairs(controllers), "industrial traffic checked")])


def _program_engineering(facts: Facts, params: dict) -> Verdict:
    ops = facts.alerts_of(PROGRAM_RULES)
    site = facts.site
    if site is None or not site.windows:
        if ops:
            return Verdict(NOT_ASSESSED, SITE_FILE + "its engineering stations (roles: ews) and maintenance "
                           f"windows; {len(ops)} program or CPU operation(s) seen", [_alert_item(a) for a in ops])
        return Verdict(NOT_ASSESSED, SITE_FILE + "its engineering stations (roles: ews) and maintenance windows")
    bad = []
    for alert in ops:
        times = [e["ts"] for e in alert["evidence"] if "ts" in e] or [alert["first_ts"], alert["last_ts"]]
        from_ews = alert["src"] != MANY and alert["src"] in site.groups["ews"]      # a flood is from many
        if not from_ews or not all(site.in_maintenance(t) for t in times):
            bad.append(alert)
    if bad:
        return _fail(f"{len(bad)} program or CPU operation(s) from a host that is not an engineering station, or "
                     "outside the maintenance windows", [_alert_item(a) for a in bad])
    s7 = facts.seen("s7comm") + facts.seen("s7comm-plus")
    if not s7 and not ops:
        return Verdict(NOT_ASSESSED, "no S7 traffic in the scanned scope")
    if (unknown := facts.unassessable(PROGRAM_RULES)):
        return unknown
    return Verdict(PASS, f"{len(ops)} program or CPU operation(s), all from engineering stations in maintenance",
                   [_alert_item(a) for a in ops] or [_observed(_pairs(s7), "S7 traffic checked")])


def _no_silencing(facts: Facts, params: dict) -> Verdict:
    found = facts.alerts_of(SILENCING_RULES)
    windows = facts.site is not None and facts.site.windows
    bad = [a for a in found if not (windows and all(facts.site.in_maintenance(t) for t in (a["first_ts"], a["last_ts"])))]
    if bad:
        return _fail(f"{len(bad)} device(s) forced to listen only or restarted" + (
            " outside the maintenance windows" if windows else ""), [_alert_item(a) for a in bad])
    modbus = facts.seen("modbus")
    if not modbus:
        return Verdict(NOT_ASSESSED, "no Modbus traffic in the scanned scope")
    if (unknown := facts.unassessable(SILENCING_RULES)):
        return unknown
    return Verdict(PASS, "no device was silenced or restarted in production",
                   [_observed(_pairs(modbus), "Modbus traffic checked")] + [_alert_item(a) for a in found])


def _zones(facts: Facts) -> Verdict | None:
    if facts.site is None or not facts.site.zone_names:
        return Verdict(NOT_ASSESSED, SITE_FILE + "its zones (zones:)")
    return None


def _within_zones(facts: Facts, params: dict) -> Verdict:
    missing = _zones(facts)
    if missing:
        return missing
    site, bad, checked = facts.site, [], _pairs(facts.industrial())
    for p in checked.values():
        a, b = site.zone_of(p["client"]), site.zone_of(p["server"])
        if a and b and a != b and not site.conduit_allows(a, b, p["proto"]):
            bad.append(_pair_item(p, f"{p['proto']} from {p['client']} ({a}) to {endpoint(p['server'], p['port'])} "
                                     f"({b}) with no conduit"))
    if bad:
        return _fail(f"{len(bad)} pair(s) crossed zones outside a declared conduit", bad)
    if not checked:
        return Verdict(NOT_ASSESSED, "no industrial traffic in the scanned scope")
    return Verdict(PASS, "industrial traffic stayed within zones or declared conduits",
                   [_observed(checked, "industrial traffic checked")])


def _no_outside_hosts(facts: Facts, params: dict) -> Verdict:
    missing = _zones(facts)
    if missing:
        return missing
    checked = _pairs(facts.industrial())
    bad = [_pair_item(p, f"{p['proto']} {p['client']} -> {endpoint(p['server'], p['port'])}: "
                         f"{', '.join(h for h in (p['client'], p['server']) if not facts.site.zone_of(h))} "
                         "in no zone")
           for p in checked.values() if not (facts.site.zone_of(p["client"]) and facts.site.zone_of(p["server"]))]
    if bad:
        return _fail(f"{len(bad)} pair(s) spoke an industrial protocol with a host outside the zones", bad)
    if not checked:
        return Verdict(NOT_ASSESSED, "no industrial traffic in the scanned scope")
    return Verdict(PASS, "every industrial peer lies in a zone", [_observed(checked, "industrial traffic checked")])


def _no_it_services(facts: Facts, params: dict) -> Verdict:
    missing = _zones(facts)
    if missing:
        return missing
    site = facts.site
    services = set(params.get("services", [])) - site.allowed_services
    conversations = [c for c in facts.communications if c["proto"] in CONVERSATIONS]
    if not conversations:
        return Verdict(NOT_ASSESSED, "the scanned scope holds no record of TCP/UDP conversations")
    bad = [c for c in conversations if c["function"] in services and site.zone_of(c["server"]) in site.control_zones]
    if bad:
        return _fail(f"{len(bad)} IT service conversation(s) inside control zones",
                     [_pair_item(c, f"{c['function']} ({c['proto']}/{c['port']}) {c['client']} -> "
                                    f"{c['server']} in zone {site.zone_of(c['server'])}") for c in bad])
    return Verdict(PASS, "no IT service other than those allowed inside the control zones",
                   [_observed(_pairs(conversations), "conversations checked")])


def _known_assets(facts: Facts, params: dict) -> Verdict:
    missing = _needs_site(facts, "its assets (roles:, known_hosts:)")
    if missing:
        return missing
    hosts: dict[str, dict[str, Any]] = {}
    for c in facts.communications:
        for host in (c["client"], c["server"]):
            if not is_group_address(host):
                h = hosts.setdefault(host, {"first_seen": c["first_seen"], "last_seen": c["last_seen"], "with": set()})
                h["with"].add(c["server"] if host == c["client"] else c["client"])
                h["first_seen"], h["last_seen"] = min(h["first_seen"], c["first_seen"]), max(h["last_seen"],
                                                                                            c["last_seen"])
    if not hosts:
        return Verdict(NOT_ASSESSED, "no host talked in the scanned scope")
    unknown = sorted(h for h in hosts if not facts.site.is_known(h))
    if unknown:
        return _fail(f"{len(unknown)} host(s) talked that the site file does not know",
                     [{"detail": f"{h} talked with {', '.join(sorted(hosts[h]['with'])[:5])}", "hosts": [h],
                       "first_seen": hosts[h]["first_seen"], "last_seen": hosts[h]["last_seen"]} for h in unknown])
    return Verdict(PASS, f"all {len(hosts)} hosts that talked are known assets",
                   [{"detail": f"{len(hosts)} hosts", "hosts": sorted(hosts)}])


def _s7_protection(facts: Facts, params: dict) -> Verdict:
    """SZL 0x0132/0x0232 index 4: the CPU's valid protection level, 1 (none) to 3 (read and write)."""
    least = int(params.get("min_level", 2))
    latest: dict[str, dict[str, Any]] = {}
    for row in facts.identities:
        if row["attribute"] == "protection_level" and (row["ip"] not in latest
                                                       or row["last_seen"] > latest[row["ip"]]["last_seen"]):
            latest[row["ip"]] = row
    if not latest:
        return Verdict(NOT_ASSESSED, "no S7 CPU's protection level seen (no SZL 0x0232 index 4 answer)")
    items = [{"detail": f"{ip} protection level {row['value']} ({row['message']}, {row['capture']} frame "
                        f"{row['frame']})", "hosts": [ip], "first_seen": row["first_seen"],
              "last_seen": row["last_seen"], "frames": [f"{row['capture']}#{row['frame']}"]}
             for ip, row in sorted(latest.items())]
    weak = [item for (ip, row), item in zip(sorted(latest.items()), items) if not row["value"].isdigit()
            or int(row["value"]) < least]
    if weak:
        return _fail(f"{len(weak)} CPU(s) below protection level {least} (1: no protection)", weak)
    return Verdict(PASS, f"every CPU seen runs at protection level {least} or above", items)


def _capture_loss(facts: Facts, params: dict) -> Verdict:
    limit = float(params.get("max_loss_percent", 1.0))
    items: list[tuple[float, dict[str, Any]]] = []
    for run in facts.runs:
        c = run["counters"]
        packets = (run["packets"] or 0)
        lost = c.get("capture.kernel_drops", 0) + sum(v for k, v in c.items() if k.endswith("_over_budget"))
        gap_bytes = c.get("tcp.gap_bytes", 0)
        if not packets and not lost:
            continue
        packet_loss = 100.0 * lost / max(packets + lost, 1)
        byte_loss = 100.0 * gap_bytes / max((run["bytes"] or 0) + gap_bytes, 1)
        loss = max(packet_loss, byte_loss)
        items.append((loss, {"detail": f"run {run['id']} ({run['command']}): {packets:,} packets, {lost:,} dropped, "
                                       f"{gap_bytes:,} TCP bytes never seen: {loss:.2f}% lost",
                             "hosts": [], "first_seen": run["first_ts"], "last_seen": run["last_ts"],
                             "run": run["id"]}))
    if not items:
        return Verdict(NOT_ASSESSED, "no traffic in the scanned scope")
    worst = max(loss for loss, _ in items)
    if worst > limit:
        return _fail(f"up to {worst:.2f}% of the traffic was lost (limit {limit:g}%)",
                     [item for loss, item in items if loss > limit])
    return Verdict(PASS, f"at most {worst:.2f}% lost (limit {limit:g}%)", [item for _, item in items])


def _silent_gap(facts: Facts, params: dict) -> Verdict:
    limit = float(params.get("silent_seconds", 300))
    silent = facts.alerts_of({"sensor.tap_silent"})
    items = [_alert_item(a) for a in silent]
    longest = 0.0
    for run in facts.runs:
        quiet = run["counters"].get("capture.longest_silence_ms", 0) / 1000
        longest = max(longest, quiet)
        if quiet > limit:
            items.append({"detail": f"run {run['id']}: no packet for {quiet:,.0f} s", "hosts": [],
                          "first_seen": run["first_ts"], "last_seen": run["last_ts"], "run": run["id"]})
    if items:
        return _fail(f"the traffic went silent for more than {limit:g} s", items)
    if not any(run["packets"] for run in facts.runs):
        return Verdict(NOT_ASSESSED, "no traffic in the scanned scope")
    return Verdict(PASS, f"the longest silence was {longest:,.1f} s (limit {limit:g} s)",
                   [{"detail": f"{len(facts.runs)} run(s) checked", "hosts": []}])


CHECKS: dict[str, Callable[[Facts, dict], Verdict]] = {
    "opcua.secure_channel": _opcua_secure_channel,
    "opcua.no_deprecated_policy": _opcua_no_deprecated_policy,
    "opcua.no_anonymous_session": _opcua_no_anonymous_session,
    "credentials.none_in_clear": _credentials_none_in_clear,
    "opcua.certificates": _opcua_certificates,
    "confidentiality.encrypted_in_transit": _confidentiality,
    "writes.permitted_writers": _writes_permitted,
    "program.engineering_in_maintenance": _program_engineering,
    "diagnostics.no_silencing": _no_silencing,
    "segmentation.within_zones": _within_zones,
    "segmentation.no_outside_hosts": _no_outside_hosts,
    "segmentation.no_it_services": _no_it_services,
    "inventory.known_assets": _known_assets,
    "hardening.s7_protection_level": _s7_protection,
    "monitoring.capture_loss": _capture_loss,
    "monitoring.no_silent_gap": _silent_gap,
}


def evaluate(policy: Policy, facts: Facts) -> list[dict[str, Any]]:
    """Every enabled check of the policy, as the JSON layout of DESIGN.md's scans."""
    results = []
    for spec in policy.checks:
        if spec.enabled:
            results.append(_result(spec, CHECKS[spec.id](facts, spec.params)))
    return results


def _result(spec: CheckSpec, verdict: Verdict) -> dict[str, Any]:
    evidence = verdict.evidence[:MAX_EVIDENCE]
    if len(verdict.evidence) > MAX_EVIDENCE:
        evidence.append({"detail": f"{len(verdict.evidence) - MAX_EVIDENCE} more", "hosts": []})
    return {"id": spec.id, "title": spec.title, "status": verdict.status, "summary": verdict.summary,
            "iec62443": spec.iec62443, "nist_800_82": spec.nist_800_82, "evidence": evidence}


def scan(store: Store, policy: Policy, site: Site | None, run_ids: list[int] | None, scope: str) -> dict[str, Any]:
    """Evaluate, compare with the previous scan of the same scope, and store the scan."""
    checks = evaluate(policy, gather(store, run_ids, site))
    result = FAIL if any(c["status"] == FAIL for c in checks) else PASS
    previous = store.previous_scan(scope)
    report = {"result": result, "policy": policy.name, "scope": scope, "ts": time.time(),
              "site": site.path if site else None, "runs": run_ids,
              "summary": {s: sum(c["status"] == s for c in checks) for s in (PASS, FAIL, NOT_ASSESSED)},
              "checks": checks, "changes": changes(previous, checks),
              "previous_scan": previous["id"] if previous else None}
    report["id"] = store.add_scan(report, run_ids[-1] if run_ids else None)
    return report


def changes(previous: dict[str, Any] | None, checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Checks whose status differs from the previous scan of the scope (new checks included)."""
    if previous is None:
        return []
    before = {c["id"]: c["status"] for c in previous["checks"]}
    return [{"id": c["id"], "before": before.get(c["id"]), "now": c["status"]} for c in checks
            if before.get(c["id"]) != c["status"]]
