"""Scan policies: which checks a scan runs, titled and mapped to the standards, with their
parameters. The shipped default lives in ``rules/policy/``; a site's file disables, retitles or
tunes its checks (data only, read with the same safe YAML loader as rules)."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from icsguard.detect import yamlfile
from icsguard.detect.yamlfile import FileError

META = ("title", "iec62443", "nist_800_82", "enabled")


@dataclass
class CheckSpec:
    id: str
    title: str
    iec62443: list[str]
    nist_800_82: list[str]
    enabled: bool = True
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Policy:
    name: str
    checks: list[CheckSpec]
    files: list[str]


def shipped_policy() -> Path:
    return Path(str(resources.files("icsguard.rulepacks") / "policy" / "default.yaml"))


def load_policy(path: str | Path | None = None, known: frozenset[str] = frozenset()) -> Policy:
    """The shipped policy, with a site's file (``path``) over it. ``known``: the check ids the
    scanner implements; a policy naming another is refused, as is a parameter it does not take."""
    base = _document(shipped_policy())
    checks: dict[str, CheckSpec] = {}
    for check_id, entry in base["checks"].items():
        checks[check_id] = CheckSpec(str(check_id), str(entry["title"]), list(entry["iec62443"]),
                                     list(entry["nist_800_82"]), bool(entry.get("enabled", True)),
                                     {k: v for k, v in entry.items() if k not in META})
    unimplemented = sorted(set(checks) - known) if known else []
    if unimplemented:
        raise FileError(shipped_policy(), None, f"check {unimplemented[0]} has no implementation")
    name, files = str(base.get("name") or "icsguard default"), [str(shipped_policy())]
    if path is not None:
        document = _document(path)
        name, files = str(document.get("name") or f"{name} + {Path(path).name}"), files + [str(path)]
        for check_id, entry in (document.get("checks") or {}).items():
            _tune(path, document["checks"], checks, str(check_id), entry)
    return Policy(name, list(checks.values()), files)


def _document(path: str | Path) -> yamlfile.Mapping:
    document = yamlfile.load(path)
    if not isinstance(document, yamlfile.Mapping) or not isinstance(document.get("checks"), dict):
        raise FileError(path, None, "a policy is a mapping with 'checks': check id -> settings")
    for key in document:
        if key not in ("name", "checks"):
            raise FileError(path, document.line_of(key), f"unknown key {key!r} (known: name, checks)")
    return document


def _tune(path, entries: yamlfile.Mapping, checks: dict[str, CheckSpec], check_id: str, entry: Any) -> None:
    line = entries.line_of(check_id)
    spec = checks.get(check_id)
    if spec is None:
        raise FileError(path, line, f"unknown check {check_id!r} (checks: {', '.join(checks)})")
    if not isinstance(entry, dict):
        raise FileError(path, line, f"{check_id}: give a mapping such as {{enabled: false}}")
    for key, value in entry.items():
        if key == "enabled":
            if not isinstance(value, bool):
                raise FileError(path, line, f"{check_id}: enabled is true or false")
            spec.enabled = value
        elif key == "title":
            spec.title = str(value)
        elif key in ("iec62443", "nist_800_82"):
            raise FileError(path, line, f"{check_id}: {key} is the standard's mapping, not a setting")
        elif key in spec.params:
            if type(value) is not type(spec.params[key]) and not (
                    isinstance(value, (int, float)) and isinstance(spec.params[key], (int, float))
                    and not isinstance(value, bool)):
                raise FileError(path, line, f"{check_id}: {key} takes a value like {spec.params[key]!r}")
            spec.params[key] = value
        else:
            takes = ", ".join(["enabled", "title", *spec.params])
            raise FileError(path, line, f"{check_id}: unknown setting {key!r} (takes: {takes})")
