"""The model file: what `learn` saved, as gzip'd JSON with a SHA-256 digest of its body.

Nothing in it is code: there is no pickle. The digest is checked before anything is
read, the format version must be this icsguard's, and the statistical model is numbers:
its training windows, its threshold and an isolation forest's trees (see model.py).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import time
import zlib
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import orjson

from icsguard.detect.baseline import Baseline, optional_time
from icsguard.detect.model import Model

FORMAT = "icsguard-model"
VERSION = 4
LIBRARIES = ("icsguard", "scikit-learn", "numpy")
MAX_JSON_BYTES = 256 * 1024 * 1024     # a model file's JSON at most (a full baseline is well under)


class ModelFileError(Exception):
    """A model file that cannot be used, with why, in one line."""


@dataclass
class LearnedModel:
    baseline: Baseline = field(default_factory=Baseline)
    model: Model = field(default_factory=Model)
    captures: list[str] = field(default_factory=list)
    first_ts: float | None = None
    last_ts: float | None = None
    packets: int = 0
    created: float = field(default_factory=time.time)
    updated: float | None = None
    libraries: dict[str, str] = field(default_factory=dict)
    # what devices said of themselves while learning: (ip, protocol, attribute) -> values
    identities: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)
    digests: list[str] = field(default_factory=list)       # SHA-256 of each capture learned


def library_versions() -> dict[str, str]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "unknown"
    return found


def save(learned: LearnedModel, path: str | Path) -> None:
    """Write the file whole, then put it in place, so a failure never leaves half a model."""
    body = {
        "training": {"captures": learned.captures, "first_ts": learned.first_ts, "last_ts": learned.last_ts,
                     "packets": learned.packets, "created": learned.created, "updated": learned.updated},
        "libraries": library_versions(),
        "baseline": learned.baseline.to_json(),
        "model": learned.model.to_json(),
        "identities": [[*key, sorted(values)] for key, values in sorted(learned.identities.items())],
        "digests": learned.digests,
    }
    learned.libraries = body["libraries"]
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    envelope = {"format": FORMAT, "version": VERSION,
                "digest": "sha256:" + hashlib.sha256(text.encode()).hexdigest(), "body": text}
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with gzip.open(partial, "wt", encoding="utf-8") as out:
        json.dump(envelope, out)
    os.replace(partial, path)


def load_shared(path: str) -> LearnedModel:
    """The model file loaded once per process while the file is unchanged, for callers that only
    read it (an analysis and its shards): a worker forked after its parent loaded it starts with
    it, and a model costs a fifth of a second to read and check."""
    return _load_version(path, file_version(path))


def file_version(path: str) -> tuple[int, int] | None:
    """What tells a file changed since it was loaded; None when it cannot be read (loading says why)."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size


@functools.lru_cache(maxsize=2)
def _load_version(path: str, _version: tuple | None) -> LearnedModel:
    return load(path)


def load(path: str | Path) -> LearnedModel:
    """A model file read, verified and made ready to detect; ModelFileError otherwise."""
    name = str(path)
    try:
        envelope = _parsed(_unpacked(path, name), name)
    except FileNotFoundError:
        raise ModelFileError(f"{name}: no such model file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{name}: is a folder, not a model file") from None
    except (gzip.BadGzipFile, EOFError, zlib.error, UnicodeDecodeError, json.JSONDecodeError, OSError):
        raise ModelFileError(f"{name}: not an icsguard model file (not gzip'd JSON, or cut short)") from None
    if not isinstance(envelope, dict) or envelope.get("format") != FORMAT:
        raise ModelFileError(f"{name}: not an icsguard model file")
    if envelope.get("version") != VERSION:
        raise ModelFileError(f"{name}: model format version {envelope.get('version')!r}; this icsguard reads "
                             f"version {VERSION}: learn the model again")
    text = envelope.get("body")
    digest = envelope.get("digest")
    if not isinstance(text, str) or digest != "sha256:" + hashlib.sha256(text.encode()).hexdigest():
        raise ModelFileError(f"{name}: corrupt model file (its digest does not match its contents)")
    try:
        body = _parsed(text, name)
        training = body["training"]
        learned = LearnedModel(
            Baseline.from_json(body["baseline"]), Model.from_json(body["model"]),
            list(training["captures"]), optional_time(training["first_ts"]),
            optional_time(training["last_ts"]), int(training["packets"]), float(training["created"]),
            optional_time(training["updated"]),
            dict(body["libraries"]),
            {(str(ip), str(proto), str(attribute)): set(map(str, values))
             for ip, proto, attribute, values in body.get("identities", [])},
            list(map(str, body.get("digests", []))))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{name}: unusable model file ({exc})") from None
    return learned


def _parsed(text: bytes | str, name: str) -> Any:
    """JSON as orjson reads it (several times faster than json for a model's arrays); JSON
    nested deeper than it follows is no model file icsguard made."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):
            raise ModelFileError(f"{name}: JSON nested too deep: not a model file icsguard made") from None
        raise


def _unpacked(path: str | Path, name: str) -> bytes:
    """The gzip'd contents, read no further than the limit (a small file may unpack to gigabytes)."""
    chunks, total = [], 0
    with gzip.open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            total += len(chunk)
            if total > MAX_JSON_BYTES:
                raise ModelFileError(f"{name}: unpacks to more than {MAX_JSON_BYTES >> 20} MiB: not a model file "
                                     f"icsguard made")
            chunks.append(chunk)
    return b"".join(chunks)


def describe(learned: LearnedModel) -> dict[str, Any]:
    """The file's metadata, for `model show`."""
    model = learned.model
    return {
        "captures": learned.captures, "first_ts": learned.first_ts, "last_ts": learned.last_ts,
        "packets": learned.packets, "created": learned.created, "updated": learned.updated,
        "libraries": learned.libraries, "estimator": model.estimator, "window_seconds": model.window_seconds,
        "false_alarm_rate": model.false_alarm_rate, "training_windows": len(model.rows),
        "threshold": model.threshold, "events": learned.baseline.events,
    }
