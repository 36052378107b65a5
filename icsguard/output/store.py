"""The SQLite store: the system of record for runs, communications, assets and alerts.

One file, WAL mode, parameterised SQL only. The schema version lives in
``PRAGMA user_version``; each migration moves it forward by one.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from icsguard.detect.folding import Alert
from icsguard.output.inventory import Inventory
from icsguard.runstats import RunStats

if TYPE_CHECKING:
    import sqlite_utils

DEFAULT_DB = "icsguard.db"


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


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2]
ALL_SOURCES = "*"                 # a mute's src when it holds for every source
SCHEMA_VERSION = len(MIGRATIONS)


class Store:
    def __init__(self, path: str):
        self.path = path
        try:
            conn = sqlite3.connect(path, timeout=30)
            import sqlite_utils  # here: `decode` never needs it, and it may pull in pandas
            self.db = sqlite_utils.Database(conn)
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0 and self.db.table_names():
                raise StoreError(f"{path}: an SQLite database that icsguard did not create")
            if version > SCHEMA_VERSION:
                raise StoreError(f"{path}: made by a newer icsguard (schema {version}, this one knows {SCHEMA_VERSION})")
            self.db.enable_wal()
            self._migrate(version)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a usable icsguard database ({exc})") from None

    def _migrate(self, version: int) -> None:
        for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.db.conn:
                migration(self.db)
                self.db.execute(f"PRAGMA user_version = {int(number)}")

    def close(self) -> None:
        self.db.close()

    def start_run(self, command: str, captures: list[str]) -> int:
        with self.db.conn:
            return self.db["runs"].insert({"started": time.time(), "command": command,
                                           "captures": json.dumps(captures)}).last_pk

    def finish_run(self, run_id: int, stats: RunStats, inventory: Inventory) -> None:
        """Everything one run learned, in one transaction."""
        counters = {k: v for k, v in stats.counters.items() if v}
        if inventory.dropped_pairs:
            counters["inventory.dropped_pairs"] = inventory.dropped_pairs
        with self.db.conn:
            self.db["runs"].update(run_id, {
                "finished": stats.finished or time.time(), "packets": stats.packets, "bytes": stats.bytes,
                "pdus": stats.pdus, "malformed": stats.malformed, "first_ts": stats.first_ts,
                "last_ts": stats.last_ts, "counters": json.dumps(counters, sort_keys=True),
                "error": stats.error,
            })
            self.db["communications"].insert_all(
                ({"run_id": run_id, "client": k[0], "server": k[1], "port": k[2], "proto": k[3],
                  "function": k[4], "requests": c.requests, "responses": c.responses,
                  "exceptions": c.exceptions, "malformed": c.malformed,
                  "first_seen": c.first_seen, "last_seen": c.last_seen}
                 for k, c in inventory.pairs.items()), batch_size=1000)
            for asset in inventory.assets.values():
                self._merge_asset(run_id, asset)

    def add_alerts(self, run_id: int, alerts: Iterable[Alert]) -> None:
        rows = [{"ts": a.ts, "severity": a.severity, "rule": a.rule, "title": a.title, "proto": a.proto,
                 "src": a.src, "dst": a.dst, "detector": a.detector, "mitre": json.dumps(list(a.mitre)),
                 "count": a.count, "first_ts": a.first_ts, "last_ts": a.last_ts,
                 "evidence": json.dumps(a.evidence, default=str), "status": a.status, "run_id": run_id,
                 "sid": a.sid} for a in alerts]
        with self.db.conn:
            self.db["alerts"].insert_all(rows, batch_size=500)

    def acknowledge(self, alert_id: int) -> bool:
        with self.db.conn:
            cursor = self.db.execute("UPDATE alerts SET status = 'acknowledged' WHERE id = ?", [alert_id])
        return cursor.rowcount == 1

    def mute(self, rule: str, src: str | None) -> int:
        """Mute a rule for one source (or all); its stored alerts from there are marked muted."""
        with self.db.conn:
            self.db["mutes"].upsert({"rule": rule, "src": src or ALL_SOURCES, "ts": time.time()}, pk=("rule", "src"))
            if src is None:
                cursor = self.db.execute("UPDATE alerts SET status = 'muted' WHERE rule = ?", [rule])
            else:
                cursor = self.db.execute("UPDATE alerts SET status = 'muted' WHERE rule = ? AND src = ?", [rule, src])
        return cursor.rowcount

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
            mac, vendor = mac or known[2], vendor or known[3]
        self.db["assets"].upsert({
            "ip": asset.ip, "mac": mac, "vendor": vendor, "role": asset.role,
            "protocols": json.dumps(sorted(protocols)), "first_seen": first_seen,
            "last_seen": asset.last_seen, "last_run": run_id,
        }, pk="ip")

    def latest_run(self) -> dict[str, Any] | None:
        row = self.db.execute("SELECT id FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        return self.run(row[0]) if row else None

    def run(self, run_id: int) -> dict[str, Any]:
        return next(self.db.query("SELECT * FROM runs WHERE id = ?", [run_id]))

    def communications(self, run_id: int | None = None) -> Iterator[dict[str, Any]]:
        if run_id is None:
            return self.db.query("SELECT * FROM communications ORDER BY requests + responses DESC")
        return self.db.query("SELECT * FROM communications WHERE run_id = ? ORDER BY requests + responses DESC",
                             [run_id])

    def assets(self) -> Iterator[dict[str, Any]]:
        return self.db.query("SELECT * FROM assets ORDER BY ip")

    def alerts(self, since: float | None = None, severities: list[str] | None = None,
               run_id: int | None = None) -> Iterator[dict[str, Any]]:
        clauses, params = [], []
        if since is not None:
            clauses.append("last_ts >= ?")
            params.append(since)
        if severities:
            clauses.append(f"severity IN ({', '.join('?' for _ in severities)})")
            params.extend(severities)
        if run_id is not None:
            clauses.append("run_id = ?")
            params.append(run_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        order = ("CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 "
                 "WHEN 'medium' THEN 2 ELSE 3 END, last_ts DESC")
        return self.db.query(f"SELECT * FROM alerts {where} ORDER BY {order}", params)
