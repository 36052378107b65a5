"""YAML files that remember where each thing was written, so that a mistake in a rule or
site file is reported with its file and line. Loaded with PyYAML's safe loader only (libyaml's
when PyYAML has it: several times faster)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class FileError(Exception):
    """A problem in a user's file: ``path:line: what is wrong``, one line."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path, self.line, self.message = str(path), line, message
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


class Mapping(dict):
    """A YAML mapping with the line of each key (1-based) and of the mapping itself."""
    line: int = 0
    key_lines: dict

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> Mapping:
    loader.flatten_mapping(node)
    result = Mapping()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise FileError(loader.name, key_node.start_mark.line + 1, f"a key must be text, not {key!r}")
        if key in result:
            raise FileError(loader.name, key_node.start_mark.line + 1, f"{key!r} is given twice")
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load(path: str | Path, text: str | None = None) -> Any:
    """The document in ``path`` (or ``text``, named ``path``); FileError when it is not YAML."""
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise FileError(path, None, f"cannot be read: {exc.strerror if isinstance(exc, OSError) else exc}") from None
    loader = _Loader(text)
    loader.name = str(path)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FileError(path, mark.line + 1 if mark else None, f"not valid YAML: {problem}") from None
    finally:
        loader.dispose()
