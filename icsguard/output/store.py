"""The SQLite store: the system of record for runs, communications, assets and alerts.

One file, WAL mode, parameterised SQL only. The schema version lives in
``PRAGMA user_version``; each migration moves it forward by one.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import urllib.parse
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from icsguard.detect.folding import Alert
from icsguard.output.inventory import Asset, Communication
from icsguard.runstats import RunStats

if TYPE_CHECKING:
    import sqlite_utils

DEFAULT_DB = "icsguard.db"
ALERT_STATUSES = ("new", "acknowledged", "muted")


class StoreError(Exception):
    """A database that cannot be used; the message is one line for the user."""


def _v1(db: sqlite_utils.Database) -> None:
    db["runs"].create({
        "id": int, "started": float, "finished": float, "command": str, "captures": str,
        "packets": int, "bytes": int, "pdus": int, "malformed": int,
        "first_ts": float, "last_ts": float, "counters": str, "error": str,
    }, pk="id")
    db["communications"].create({
        "run_id": int, "client": str, "server": str, "port": int, "proto": str, "function": str,
        "requests": int, "responses": int, "exceptions": int, "malformed": int,
        "first_seen": float, "last_seen": float,
    }, pk=("run_id", "client", "server", "port", "proto", "function"), foreign_keys=[("run_id", "runs", "id")])
    db["assets"].create({
        "ip": str, "mac": str, "vendor": str, "role": str, "protocols": str,
        "first_seen": float, "last_seen": float, "last_run": int,
    }, pk="ip")
    db["alerts"].create({
        "id": int, "ts": float, "severity": str, "rule": str, "title": str, "proto": str,
        "src": str, "dst": str, "detector": str, "mitre": str, "count": int,
        "first_ts": float, "last_ts": float, "evidence": str, "status": str, "run_id": int,
    }, pk="id")
    db["alerts"].create_index(["ts"])
    db["alerts"].create_index(["rule", "src"])
    db["scans"].create({
        "id": int, "ts": float, "policy": str, "result": str, "details": str, "run_id": int,
    }, pk="id")


def _v2(db: sqlite_utils.Database) -> None:
    """Muted rules (per source, or everywhere), and the rule's Suricata-style signature id."""
    db["mutes"].create({"rule": str, "src": str, "ts": float}, pk=("rule", "src"))
    db["alerts"].add_column("sid", int)


def _v3(db: sqlite_utils.Database) -> None:
    """Runs say how they ended (running, finished, interrupted, failed) and when their results
    were last committed; runs of older versions that never finished were cut short."""
    for column, kind in (("status", str), ("updated", float)):
        if column not in db["runs"].columns_dict:        # (a migration cut short by an older icsguard)
            db["runs"].add_column(column, kind)
    db.execute("UPDATE runs SET status = CASE WHEN finished IS NULL THEN 'interrupted' "
               "WHEN error IS NOT NULL THEN 'failed' ELSE 'finished' END, updated = finished")


# the shipped rules that were posture findings when alerts got their category
POSTURE_RULES = ("opcua.security_policy_none", "opcua.anonymous_session", "opcua.password_in_clear",
                 "opcua.self_signed_or_expired_certificate")


def _v4(db: sqlite_utils.Database) -> None:
    """Alerts say what kind they are (attack, anomaly, posture, health); stored ones take their
    detector's, and the shipped posture rules' alerts are posture."""
    if "category" not in db["alerts"].columns_dict:
        db["alerts"].add_column("category", str)
    db.execute("UPDATE alerts SET category = CASE detector WHEN 'baseline' THEN 'anomaly' WHEN 'ml' THEN 'anomaly' "
               "WHEN 'sensor' THEN 'health' ELSE 'attack' END")
    db.execute(f"UPDATE alerts SET category = 'posture' WHERE rule IN ({', '.join('?' for _ in POSTURE_RULES)})",
               POSTURE_RULES)
    db["alerts"].create_index(["category", "rule", "src", "dst"], if_not_exists=True)


def _v5(db: sqlite_utils.Database) -> None:
    """Scans say what they covered (their scope), to be compared with the previous one of it."""
    if "scope" not in db["scans"].columns_dict:
        db["scans"].add_column("scope", str)
    db["scans"].create_index(["scope", "id"], if_not_exists=True)


def _v6(db: sqlite_utils.Database) -> None:
    """What devices said about themselves: one row per (host, attribute, value), with where it was
    first seen (protocol, message, capture, frame, run) and when first and last."""
    db["identities"].create({"ip": str, "attribute": str, "value": str, "proto": str, "message": str,
                             "capture": str, "frame": int, "run_id": int, "first_seen": float, "last_seen": float,
                             "last_run": int}, pk=("ip", "attribute", "value"), if_not_exists=True)


def _v7(db: sqlite_utils.Database) -> None:
    """Evidence captures written for alerts, with their SHA-256 (chain of custody)."""
    db["evidence_captures"].create({"id": int, "alert_id": int, "path": str, "sha256": str, "frames": int,
                                    "written": float}, pk="id", if_not_exists=True)
    db["evidence_captures"].create_index(["alert_id"], if_not_exists=True)


def _v8(db: sqlite_utils.Database) -> None:
    """Runs say which rules they checked (a scan must not read a rule's silence as a PASS)."""
    if "rules" not in db["runs"].columns_dict:
        db["runs"].add_column("rules", str)


def _v9(db: sqlite_utils.Database) -> None:
    """Pollers a run saw off their learned period within the pace band: drift, noted, not alerted."""
    db["drifts"].create({"run_id": int, "client": str, "server": str, "proto": str, "function": str,
                         "period": float, "pace": float, "first_seen": float, "last_seen": float},
                        pk=("run_id", "client", "server", "proto", "function"), if_not_exists=True)


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8, _v9]
ALL_SOURCES = "*"                 # a mute's src when it holds for every source
SCHEMA_VERSION = len(MIGRATIONS)
TABLES = ("runs", "communications", "assets", "alerts", "scans", "mutes", "identities", "evidence_captures",
          "drifts")


class Store:
    """``readonly``: for commands that only read, so that a copy on write-protected media (or
    in a folder where WAL cannot make its files) can be read, and nothing is ever changed."""

    def __init__(self, path: str, readonly: bool = False):
        self.path = path
        try:
            if not readonly:
                _check_writable(path)
            conn = _connect_readonly(path) if readonly else sqlite3.connect(path, timeout=30)
            self.db = _sqlite_utils().Database(conn)
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0 and self.db.table_names():
                raise StoreError(f"{path}: an SQLite database that icsguard did not create")
            if version > SCHEMA_VERSION:
                raise StoreError(f"{path}: made by a newer icsguard (schema {version}, this one knows {SCHEMA_VERSION})")
            if readonly and version < SCHEMA_VERSION:
                raise StoreError(f"{path}: made by an older icsguard (schema {version}); run icsguard analyze "
                                 f"on a writable copy once to bring it up to date")
            if not readonly:
                self.db.enable_wal()
                self._migrate(version)
            missing = [t for t in TABLES if not self.db[t].exists()]
            if missing:
                raise StoreError(f"{path}: damaged icsguard database: table {', '.join(missing)} is missing")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a usable icsguard database ({exc})") from None

    def _migrate(self, version: int) -> None:
        for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction():
                migration(self.db)
                self.db.execute(f"PRAGMA user_version = {int(number)}")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction, committed whole or not at all (sqlite-utils commits each statement
        of its own unless a transaction is open)."""
        conn = self.db.conn
        conn.execute("BEGIN")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def start_run(self, command: str, captures: list[str], rules: Iterable[str] = ()) -> int:
        """``rules``: the ids of the rules the run checks."""
        now = time.time()
        with self.transaction():
            return self.db["runs"].insert({"started": now, "updated": now, "command": command, "status": "running",
                                           "captures": json.dumps(captures),
                                           "rules": json.dumps(sorted(rules))}).last_pk

    def record(self, run_id: int, stats: RunStats, status: str, alerts: Iterable[Alert],
               pairs: Iterable[tuple[tuple, Communication]], assets: Iterable[Asset],
               identities: Iterable[tuple[tuple[str, str, str], Any]] = (),
               drifts: Iterable[tuple[tuple, tuple]] = ()) -> None:
        """What a run has found since the last call, in one transaction: its counters and
        status, alerts new (their ids are set) or grown, communications, assets, identity
        sightings and pace drifts changed."""
        now = time.time()
        counters = {k: v for k, v in stats.counters.items() if v}
        if stats.longest_silence:
            counters["capture.longest_silence_ms"] = round(stats.longest_silence * 1000)
        with self.transaction():
            self.db.execute(
                "UPDATE runs SET status = ?, updated = ?, finished = ?, packets = ?, bytes = ?, pdus = ?, "
                "malformed = ?, first_ts = ?, last_ts = ?, counters = ?, error = ? WHERE id = ?",
                [status, now, None if status == "running" else (stats.finished or now), stats.packets, stats.bytes,
                 stats.pdus, stats.malformed, stats.first_ts, stats.last_ts,
                 json.dumps(counters, sort_keys=True), stats.error, run_id])
            self._write_alerts(run_id, alerts)
            self.db.conn.executemany(
                "INSERT INTO communications (run_id, client, server, port, proto, function, requests, responses, "
                "exceptions, malformed, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id, client, server, port, proto, function) DO UPDATE SET "
                "requests = excluded.requests, responses = excluded.responses, exceptions = excluded.exceptions, "
                "malformed = excluded.malformed, last_seen = excluded.last_seen",
                [(run_id, *key, c.requests, c.responses, c.exceptions, c.malformed, c.first_seen, c.last_seen)
                 for key, c in pairs])
            for asset in assets:
                self._merge_asset(run_id, asset)
            self.db.conn.executemany(
                "INSERT INTO identities (ip, attribute, value, proto, message, capture, frame, run_id, first_seen, "
                "last_seen, last_run) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ip, attribute, value) DO "
                "UPDATE SET first_seen = min(first_seen, excluded.first_seen), "
                "last_seen = max(last_seen, excluded.last_seen), last_run = excluded.last_run",
                [(*key, s.proto, s.message, s.capture, s.frame, run_id, s.first_seen, s.last_seen, run_id)
                 for key, s in identities])
            self.db.conn.executemany(
                "INSERT INTO drifts (run_id, client, server, proto, function, period, pace, first_seen, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, client, server, proto, function) DO UPDATE "
                "SET pace = excluded.pace, last_seen = excluded.last_seen",
                [(run_id, *key, *noted) for key, noted in drifts])

    def _write_alerts(self, run_id: int, alerts: Iterable[Alert]) -> None:
        """New alerts are inserted and take their id; known ones take their count, last time
        and evidence (folding changes nothing else). An alert stored before, by an earlier run
        over the same traffic (the same rule, hosts and first time), is that alert: it keeps its
        id and status (an acknowledgement holds) and moves to this run. A posture finding is
        one alert per (rule, client, server) in the database: seen again later, it adds its
        count to the stored one; seen again in the same traffic, it adds nothing."""
        grown, inserted = [], []
        try:
            for a in alerts:
                evidence = json.dumps(a.evidence, default=str)
                if a.id is None and a.category == "posture":
                    known = self.db.conn.execute(
                        "SELECT id, count, last_ts, status, first_ts FROM alerts WHERE category = 'posture' "
                        "AND rule = ? AND src = ? AND dst = ? LIMIT 1", [a.rule, a.src, a.dst]).fetchone()
                    if known is not None:
                        a.id, a.status = known[0], known[3]
                        a.count = known[1] + a.count if a.first_ts > known[2] else max(a.count, known[1])
                        a.first_ts, a.last_ts = min(a.first_ts, known[4]), max(a.last_ts, known[2])
                elif a.id is None:
                    known = self.db.conn.execute(
                        "SELECT id, count, last_ts, status FROM alerts WHERE rule = ? AND src = ? AND dst = ? "
                        "AND first_ts = ? LIMIT 1", [a.rule, a.src, a.dst, a.first_ts]).fetchone()
                    if known is not None:
                        a.id, a.status = known[0], known[3]
                        a.count, a.last_ts = max(a.count, known[1]), max(a.last_ts, known[2])
                if a.id is not None:
                    grown.append((a.count, a.first_ts, a.last_ts, evidence, run_id, a.id))
                    continue
                a.id = self.db.conn.execute(
                    "INSERT INTO alerts (ts, severity, rule, title, proto, src, dst, detector, mitre, count, "
                    "first_ts, last_ts, evidence, status, run_id, sid, category) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [a.ts, a.severity, a.rule, a.title, a.proto, a.src, a.dst, a.detector, json.dumps(list(a.mitre)),
                     a.count, a.first_ts, a.last_ts, evidence, a.status, run_id, a.sid, a.category]).lastrowid
                inserted.append(a)
            if grown:
                self.db.conn.executemany("UPDATE alerts SET count = ?, first_ts = ?, last_ts = ?, evidence = ?, "
                                         "run_id = ? WHERE id = ?", grown)
        except BaseException:         # the transaction is rolled back: those rows are not there
            for a in inserted:
                a.id = None
            raise

    def has_alerts_of(self, rule: str) -> bool:
        return self.db.execute("SELECT 1 FROM alerts WHERE rule = ? LIMIT 1", [rule]).fetchone() is not None

    def alert(self, alert_id: int) -> dict[str, Any] | None:
        return next(self.db.query("SELECT * FROM alerts WHERE id = ?", [alert_id]), None)

    def add_evidence_capture(self, alert_id: int, path: str, sha256: str, frames: int) -> None:
        with self.transaction():
            self.db["evidence_captures"].insert({"alert_id": alert_id, "path": path, "sha256": sha256,
                                                 "frames": frames, "written": time.time()})

    def acknowledge(self, alert_id: int) -> bool:
        with self.transaction():
            cursor = self.db.execute("UPDATE alerts SET status = 'acknowledged' WHERE id = ?", [alert_id])
        return cursor.rowcount == 1

    def mute(self, rule: str, src: str | None) -> int:
        """Mute a rule for one source (or all); its stored alerts from there are marked muted."""
        with self.transaction():
            self.db["mutes"].upsert({"rule": rule, "src": src or ALL_SOURCES, "ts": time.time()}, pk=("rule", "src"))
            if src is None:
                cursor = self.db.execute("UPDATE alerts SET status = 'muted' WHERE rule = ?", [rule])
            else:
                cursor = self.db.execute("UPDATE alerts SET status = 'muted' WHERE rule = ? AND src = ?", [rule, src])
        return cursor.rowcount

    def unmute(self, rule: str, src: str | None) -> tuple[bool, int]:
        """Lift a mute; its stored alerts become new again. Returns whether there was such a
        mute, and how many alerts it gave back."""
        where, params = ("rule = ?", [rule]) if src is None else ("rule = ? AND src = ?", [rule, src])
        with self.transaction():
            gone = self.db.execute("DELETE FROM mutes WHERE rule = ? AND src = ?",
                                   [rule, src or ALL_SOURCES]).rowcount
            back = self.db.execute(f"UPDATE alerts SET status = 'new' WHERE status = 'muted' AND {where} AND NOT "
                                   "EXISTS (SELECT 1 FROM mutes WHERE mutes.rule = alerts.rule AND "
                                   "(mutes.src = alerts.src OR mutes.src = ?))",
                                   [*params, ALL_SOURCES]).rowcount if gone else 0
        return gone == 1, back

    def mute_list(self) -> list[dict[str, Any]]:
        """The mutes, oldest first: rule, src (None: every source), since."""
        return [{"rule": rule, "src": None if src == ALL_SOURCES else src, "since": ts}
                for rule, src, ts in self.db.execute("SELECT rule, src, ts FROM mutes ORDER BY ts").fetchall()]

    def runs(self) -> list[dict[str, Any]]:
        """Every run, oldest first, with its alert count."""
        return list(self.db.query("SELECT runs.*, (SELECT COUNT(*) FROM alerts WHERE alerts.run_id = runs.id) "
                                  "AS alerts FROM runs ORDER BY id"))

    def add_scan(self, report: dict[str, Any], run_id: int | None) -> int:
        with self.transaction():
            return self.db["scans"].insert({"ts": report["ts"], "policy": report["policy"], "result": report["result"],
                                            "details": json.dumps(report, default=list), "run_id": run_id,
                                            "scope": report["scope"]}).last_pk

    def previous_scan(self, scope: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT id, details FROM scans WHERE scope = ? ORDER BY id DESC LIMIT 1",
                              [scope]).fetchone()
        return dict(json.loads(row[1]), id=row[0]) if row else None

    def scans(self) -> list[dict[str, Any]]:
        return [dict(json.loads(details), id=scan_id)
                for scan_id, details in self.db.execute("SELECT id, details FROM scans ORDER BY id").fetchall()]

    def mutes(self) -> set[tuple[str, str | None]]:
        return {(rule, None if src == ALL_SOURCES else src)
                for rule, src in self.db.execute("SELECT rule, src FROM mutes").fetchall()}

    def _merge_asset(self, run_id: int, asset) -> None:
        known = self.db.execute("SELECT protocols, first_seen, mac, vendor FROM assets WHERE ip = ?",
                                [asset.ip]).fetchone()
        protocols = set(asset.protocols)
        first_seen = asset.first_seen
        mac, vendor = asset.mac, asset.vendor
        if known:
            protocols |= set(json.loads(known[0] or "[]"))
            first_seen = min(first_seen, known[1] or first_seen)
            if not asset.gateway_mac:        # behind a gateway, the MAC known before was the gateway's
                mac, vendor = mac or known[2], vendor or known[3]
        self.db["assets"].upsert({
            "ip": asset.ip, "mac": mac, "vendor": vendor, "role": asset.role,
            "protocols": json.dumps(sorted(protocols)), "first_seen": first_seen,
            "last_seen": asset.last_seen, "last_run": run_id,
        }, pk="ip")

    def latest_run(self) -> dict[str, Any] | None:
        row = self.db.execute("SELECT id FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        return self.run(row[0]) if row else None

    def run(self, run_id: int) -> dict[str, Any] | None:
        return next(self.db.query("SELECT * FROM runs WHERE id = ?", [run_id]), None)

    def communications(self, run_id: int | None = None) -> Iterator[dict[str, Any]]:
        if run_id is None:
            return self.db.query("SELECT * FROM communications ORDER BY requests + responses DESC")
        return self.db.query("SELECT * FROM communications WHERE run_id = ? ORDER BY requests + responses DESC",
                             [run_id])

    def assets(self) -> list[dict[str, Any]]:
        """Every asset, with the posture findings about it (the server they were seen on) and
        what it said about itself: model, firmware, serial and every attribute with its source."""
        posture: dict[str, set[str]] = {}
        for rule, dst in self.db.execute("SELECT rule, dst FROM alerts WHERE category = 'posture'").fetchall():
            posture.setdefault(dst, set()).add(rule)
        identities = self.identities()
        return [dict(a, protocols=json.loads(a["protocols"] or "[]"), posture=sorted(posture.get(a["ip"], ())),
                     **identity_summary(a, identities.get(a["ip"], [])))
                for a in self.db.query("SELECT * FROM assets ORDER BY ip")]

    def identities(self) -> dict[str, list[dict[str, Any]]]:
        """ip → its identity sightings, latest first."""
        found: dict[str, list[dict[str, Any]]] = {}
        for row in self.db.query("SELECT * FROM identities ORDER BY ip, last_seen DESC"):
            found.setdefault(row["ip"], []).append(row)
        return found

    def drifts(self, run_id: int) -> list[dict[str, Any]]:
        """The pace drifts a run noted, the furthest off their period first."""
        rows = list(self.db.query("SELECT * FROM drifts WHERE run_id = ?", [run_id]))
        return sorted(rows, key=lambda row: -max(row["pace"] / row["period"], row["period"] / row["pace"]))

    def known_identities(self) -> tuple[dict[tuple[str, str, str], set[str]], dict[str, str]]:
        """(ip, protocol, attribute) → the values seen, and ip → the MAC known, for a run's
        identity detector."""
        known: dict[tuple[str, str, str], set[str]] = {}
        for ip, proto, attribute, value in self.db.execute(
                "SELECT ip, proto, attribute, value FROM identities").fetchall():
            known.setdefault((ip, proto, attribute), set()).add(value)
        macs = dict(self.db.execute("SELECT ip, mac FROM assets WHERE mac IS NOT NULL").fetchall())
        return known, macs

    def alerts(self, since: float | None = None, severities: list[str] | None = None,
               run_id: int | None = None, statuses: list[str] | None = None) -> Iterator[dict[str, Any]]:
        clauses, params = [], []
        for column, values in (("status", statuses), ("severity", severities)):
            if values:
                clauses.append(f"{column} IN ({', '.join('?' for _ in values)})")
                params.extend(values)
        if since is not None:
            clauses.append("last_ts >= ?")
            params.append(since)
        if run_id is not None:
            clauses.append("run_id = ?")
            params.append(run_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        order = ("CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 "
                 "WHEN 'medium' THEN 2 ELSE 3 END, last_ts DESC")
        return self.db.query(f"SELECT * FROM alerts {where} ORDER BY {order}", params)


def _sqlite_utils():
    """sqlite-utils, imported when a database is opened (decode never needs it), and without
    the pandas it would load, where pandas is installed, for column types icsguard never
    stores: 55 MB of a sensor's memory."""
    if "sqlite_utils" not in sys.modules and "pandas" not in sys.modules:
        sys.modules["pandas"] = None          # makes sqlite-utils' optional import fail, as if absent
        try:
            import sqlite_utils
        finally:
            del sys.modules["pandas"]
    import sqlite_utils
    return sqlite_utils


def _check_writable(path: str) -> None:
    """A command that writes needs the file and its folder (WAL keeps two files beside it)."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise StoreError(f"{path}: the database is read-only; commands that only read (report, alerts, "
                         f"assets) can still open it")
    if not os.access(folder, os.W_OK):
        raise StoreError(f"{path}: cannot write in {folder}")


def _connect_readonly(path: str) -> sqlite3.Connection:
    """Read-only. On write-protected media WAL cannot create its shared-memory file: the file
    is then read as immutable, or, when its write-ahead log still holds changes (a copy of a
    running sensor's database), the two are copied aside and the copy is read."""
    uri = "file:" + urllib.parse.quote(os.path.abspath(path))
    conn = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=30)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        if "locked" in str(exc):
            raise
    wal = path + "-wal"
    if not (os.path.exists(wal) and os.path.getsize(wal)):
        return sqlite3.connect(uri + "?immutable=1", uri=True)
    aside = tempfile.mkdtemp(prefix="icsguard-")
    copy = os.path.join(aside, os.path.basename(path))
    shutil.copyfile(path, copy)
    shutil.copyfile(wal, copy + "-wal")
    atexit.register(shutil.rmtree, aside, True)
    return sqlite3.connect("file:" + urllib.parse.quote(copy) + "?mode=ro", uri=True)


# attributes that make an asset's columns, in order of preference
MODEL_ATTRIBUTES = ("order_number", "model", "product_name", "product_code", "module_type")
FIRMWARE_ATTRIBUTES = ("firmware_version", "build_number")
DEVICE_VENDOR = ("vendor",)


def identity_summary(asset: dict[str, Any], sightings: list[dict[str, Any]]) -> dict[str, Any]:
    """An asset's vendor (the device's own word, else the MAC's registry), model, firmware and
    serial, from its latest sightings; and every sighting with where and when."""
    latest: dict[str, str] = {}
    for s in sightings:                       # latest first
        latest.setdefault(s["attribute"], s["value"])

    def first(names: tuple[str, ...]) -> str | None:
        return next((latest[n] for n in names if n in latest), None)

    return {"vendor": first(DEVICE_VENDOR) or asset["vendor"], "model": first(MODEL_ATTRIBUTES),
            "firmware": first(FIRMWARE_ATTRIBUTES), "serial": latest.get("serial"),
            "identity": [{k: s[k] for k in ("attribute", "value", "proto", "message", "capture", "frame", "run_id",
                                            "first_seen", "last_seen")} for s in sightings]}
