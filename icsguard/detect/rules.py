"""Rules: detections written as YAML data and compiled into matchers — never code, never eval.

A rule file is a list of rules::

    - id: modbus.force_listen_only
      title: Modbus device forced into listen-only mode
      severity: high                       # low, medium, high, critical
      proto: modbus                        # or a list; omitted: any protocol
      direction: request                   # request, response, notification
      match: {function: diagnostics, subfunction: 4}
      threshold: {count: 5, seconds: 60, by: [src]}     # optional; or distinct: FIELD
      mitre: [T0814]
      category: attack                     # or posture: a weak configuration, raised once per client and server
      description: Why it matters and what to check.
      references: [https://...]

``match`` holds conditions on Event fields, all of which must hold; ``any`` is a list of
such mappings of which one must. A field is any Event field or a dotted path into one
(``items.area``, ``cpu_info.module``). A condition is a plain value (equals), a plain list
(in), or one of:

    {equals: v}  {not_equals: v}  {in: [..]}  {not_in: [..]}  {gt: n}  {gte: n}  {lt: n}
    {lte: n}  {range: [lo, hi]}  {regex: "..."}  {exists: true|false}  {contains: v}
    {not_contains: v}  {not_permitted: write}  {before: FIELD}  {after: FIELD}

``in``/``not_in`` lists may name site groups — ``$plc``, ``$hmi``, a zone,
``$maintenance`` for the maintenance windows (tested against ``ts``), or ``$ports`` for the
ports the site file gives the event's protocol (tested against ``sport``/``dport``; none
without a site file). A group name ending in ``?`` (``"$hmi?"``, quoted in a YAML flow
list) is the group when a site file is given and nothing when not, so the rule runs either way.
``before``/``after`` compare a time (epoch seconds or ISO 8601) with another field of the
same event, e.g. ``certificate_not_after: {before: ts}`` for an expired certificate.
``not_permitted: write`` holds when the site's writers do not let ``src`` write to
``dst``. A list-valued field satisfies equals, in, regex and the ranges when one of its
elements does, and not_equals and not_in when none does. Rules that name site groups
(other than ``$ports`` and ``$name?``) are inactive until a site file is given, and rules
that name ``$maintenance`` until it gives maintenance windows.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable

from netaddr import AddrFormatError

from icsguard.detect import yamlfile
from icsguard.detect.site import MAINTENANCE, PORTS, Site
from icsguard.detect.yamlfile import FileError
from icsguard.events import COMMON_FIELDS, PROTOCOL_FIELDS, PROTOCOLS, Event

SEVERITIES = ("low", "medium", "high", "critical")
DIRECTIONS = ("request", "response", "notification")
RULE_KEYS = ("id", "title", "severity", "proto", "direction", "match", "any", "threshold", "mitre",
             "description", "references", "sid", "category")
RULE_CATEGORIES = ("attack", "posture")     # a rule's; anomaly and health are the detectors' own
REQUIRED = ("id", "title", "severity")
THRESHOLD_KEYS = ("count", "seconds", "by", "distinct")
FIELDS = frozenset(COMMON_FIELDS) | PROTOCOL_FIELDS
COMMON_INDEX = {name: index for index, name in enumerate(COMMON_FIELDS)}     # an Event's tuple position
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_MITRE = re.compile(r"^T0\d{3}(\.\d{3})?$")
_MISSING = object()

Predicate = Callable[[Any, Event], bool]


class GroupNeeded(Exception):
    """A rule names a site group and no site file was given."""


@dataclass(frozen=True)
class Threshold:
    count: int
    seconds: float
    by: tuple[str, ...] = ("src",)
    distinct: str | None = None          # count distinct values of this field, not matches


@dataclass(frozen=True)
class Condition:
    path: tuple[str, ...]
    test: Predicate
    text: str                            # how it reads, for `rules test`
    equal_to: frozenset | None = None    # the literal values it accepts, when that is all it does
    value_only: bool = True              # False when the test looks at the site or another field

    def value(self, event: Event) -> Any:
        return resolve(event, self.path)


@dataclass
class Rule:
    id: str
    title: str
    severity: str
    proto: tuple[str, ...] | None
    direction: str | None
    alternatives: list[tuple[Condition, ...]]
    threshold: Threshold | None = None
    mitre: tuple[str, ...] = ()
    description: str = ""
    references: tuple[str, ...] = ()
    sid: int = 0
    path: str = ""
    line: int = 0
    category: str = "attack"

    def why(self, event: Event) -> list[str] | None:
        """The conditions that hold, when the rule matches the event; None when it does not."""
        if self.direction is not None and event.direction != self.direction:
            return None
        if self.proto is not None and event.proto not in self.proto:
            return None
        for conditions in self.alternatives:
            if all(c.test(c.value(event), event) for c in conditions):
                return [f"{'.'.join(c.path)} {c.text} (is {_show(c.value(event))})" for c in conditions]
        return None


MAX_GROUPS = 4096      # (protocol, function, direction) indexes kept
MAX_ANSWERS = 4096     # match lists remembered per group
MAX_FIELD_ANSWERS = 1024   # answers remembered per field; a field with more values (a client's
                           # ephemeral port) is not remembered at all: its tests run each time
MAX_LIST_KEY = 256     # longest list whose answers are remembered


@dataclass(frozen=True)
class _Alternative:
    """One alternative of a rule, taken apart for the index."""
    order: int
    rule: Rule
    functions: frozenset | None          # the functions it demands (None: any)
    on_key: tuple[Condition, ...]        # other conditions on the protocol, function or direction
    rest: tuple[Condition, ...]          # the conditions on other fields


class _Group:
    """The index for one (protocol, function, direction). Every test the group's rules make
    of a single field is one bit; a field's tests run together and their answers are
    remembered per value (bounded). An event's bits then name, through a second bounded
    memory, the rules it matches. Polling repeats the same few answers, so an event costs
    one look-up per field the rules test, however many rules there are."""

    def __init__(self, alternatives: list[_Alternative]) -> None:
        tests: dict[str, list] = {}                         # field name -> [(bit, test)]
        self.plain: list[tuple[int, int, Rule]] = []        # (need, order, rule)
        self.extra: list[tuple[int, int, Rule, Callable[[Event], bool]]] = []
        self.order: dict[str, int] = {alt.rule.id: alt.order for alt in alternatives}
        self.matches: dict[int, list[Rule]] = {}           # bits -> the plain rules they match
        bit = 1
        for alt in alternatives:
            need, others = 0, []
            for c in alt.rest:
                if len(c.path) == 1 and c.value_only:
                    tests.setdefault(c.path[0], []).append((bit, c.test))
                    need |= bit
                    bit <<= 1
                else:
                    others.append(c)
            if others:
                self.extra.append((need, alt.order, alt.rule, _compile(others)))
            else:
                self.plain.append((need, alt.order, alt.rule))
        # per field tested: [name, its position in an Event when common, answers per value, its tests]
        self.tested = [[name, COMMON_INDEX.get(name), {}, each] for name, each in tests.items()]

    def matching(self, event: Event) -> list[Rule]:
        mask = 0
        carried = event.fields
        for tested in self.tested:
            name, index, answers, tests = tested
            value = carried.get(name, _MISSING)        # as in the event's JSON: its fields over the common
            if value is _MISSING and index is not None:
                value = event[index]
            kind = value.__class__
            key = value if kind is str or kind is int or kind is float or value is _MISSING else _answer_key(value)
            bits = answers.get(key) if key is not None else None
            if bits is None:
                bits = 0
                for bit, test in tests:
                    if test(value, event):
                        bits |= bit
                if key is not None and answers is not _UNREMEMBERED:
                    if len(answers) >= MAX_FIELD_ANSWERS:
                        tested[2] = _UNREMEMBERED
                    else:
                        answers[key] = bits
            mask |= bits
        found = self.matches.get(mask)
        if found is None:
            found = self._plain(mask)
        if self.extra:
            more = {order: rule for need, order, rule, check in self.extra if mask & need == need and check(event)}
            if more:
                more.update((self.order[rule.id], rule) for rule in found)
                found = [more[order] for order in sorted(more)]
        return found

    def _plain(self, mask: int) -> list[Rule]:
        found: dict[int, Rule] = {}
        for need, order, rule in self.plain:
            if mask & need == need:
                found.setdefault(order, rule)
        rules = [found[order] for order in sorted(found)]
        if len(self.matches) >= MAX_ANSWERS:
            self.matches.clear()
        self.matches[mask] = rules
        return rules


_UNREMEMBERED: dict = {}      # the answers of a field with too many values to remember: never written


def _answer_key(value: Any) -> Any:
    """What a field's answers are remembered under: the value itself when it is a plain
    scalar, a list of scalars (a PDU's registers) as a tuple, otherwise None (not
    remembered). Booleans are keyed apart from the numbers they equal."""
    kind = value.__class__
    if kind is str or kind is int or kind is float or value is _MISSING:
        return value
    if kind is bool:
        return (bool, value)
    if (kind is tuple or kind is list) and len(value) <= MAX_LIST_KEY and \
            all(v.__class__ in (str, int, float) for v in value):
        return (tuple, *value)
    return None


@dataclass
class RuleSet:
    """Rules, indexed for speed. For each (protocol, function, direction) that occurs, the
    index holds the alternatives that can apply — their function conditions, regexes
    included, decided once for that function — and answers their other tests field by
    field (see _Group), so the cost per event grows with the fields the rules test, not
    with the number of rules."""
    rules: list[Rule] = field(default_factory=list)
    inactive: dict[str, str] = field(default_factory=dict)    # rule id -> why it cannot run
    _alternatives: list[_Alternative] | None = field(default=None, repr=False)
    _groups: dict[tuple, _Group] = field(default_factory=dict, repr=False)

    def matching(self, event: Event) -> list[Rule]:
        """The rules the event matches, in rule order (thresholds not applied)."""
        where = (event.proto, event.function, event.direction)
        group = self._groups.get(where)
        if group is None:
            group = self._group(*where)
        return group.matching(event)

    def _group(self, proto: str, function: str, direction: str) -> _Group:
        """The index for one (protocol, function, direction): made when first needed."""
        if self._alternatives is None:
            self._alternatives = [_Alternative(order, rule, *_split(conditions))
                                  for order, rule in enumerate(self.rules) for conditions in rule.alternatives]
        here = {"proto": proto, "function": function, "direction": direction}
        group = _Group([alt for alt in self._alternatives
                        if (alt.rule.proto is None or proto in alt.rule.proto)
                        and (alt.rule.direction is None or alt.rule.direction == direction)
                        and (alt.functions is None or function in alt.functions)
                        and all(c.test(here[c.path[0]], None) for c in alt.on_key)])
        if len(self._groups) >= MAX_GROUPS:
            self._groups.clear()
        self._groups[(proto, function, direction)] = group
        return group

    def by_id(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def across_servers(self) -> RuleSet:
        """The rules whose alerts no shard of the traffic can decide alone. A shard holds whole
        servers: a rule without a threshold, or one counting per server, sees all it counts; one
        counting per client (a scan of many servers) does not."""
        return RuleSet([r for r in self.rules if not (r.threshold is None or _per_server(r))])


def _per_server(rule: Rule) -> bool:
    """Whether a rule's threshold groups by the server: ``dst`` of a request, ``src`` of a response."""
    by = set(rule.threshold.by)
    if rule.direction == "request":
        return "dst" in by
    if rule.direction == "response":
        return "src" in by
    return {"src", "dst"} <= by


def _split(conditions: tuple[Condition, ...]) -> tuple:
    """One alternative's conditions: the functions it demands, its other conditions on
    the group's key, and the rest."""
    functions, on_key, rest = None, [], []
    for c in conditions:
        name = c.path[0] if len(c.path) == 1 else None
        if name == "function" and c.equal_to is not None and functions is None:
            functions = c.equal_to
        elif name in ("proto", "function", "direction") and c.value_only:
            on_key.append(c)
        else:
            rest.append(c)
    return functions, tuple(on_key), tuple(rest)


def _compile(conditions: list[Condition]) -> Callable[[Event], bool]:
    """Conditions that look into a list or at more than their own field, as one function
    of the event."""
    parts = tuple((c.path, c.test) for c in conditions)
    return lambda event: all(test(resolve(event, path), event) for path, test in parts)


def resolve(event: Event, path: tuple[str, ...]) -> Any:
    """A field's value, following a dotted path into mappings and through lists."""
    value = event.get(path[0], _MISSING)
    for key in path[1:]:
        if isinstance(value, dict):
            value = value.get(key, _MISSING)
        elif isinstance(value, (list, tuple)):
            value = [item.get(key) for item in value if isinstance(item, dict) and key in item]
        else:
            return _MISSING
    return value


def signature_id(rule_id: str) -> int:
    """The EVE signature id of a rule or detector finding that gives none: stable, from its id."""
    return zlib.crc32(rule_id.encode()) & 0x7FFFFFFF


def shipped_rules() -> list[Path]:
    """The rule packs that come with icsguard."""
    folder = resources.files("icsguard.rulepacks")
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith((".yaml", ".yml")))


def rule_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        elif path.exists():
            files.append(path)
        else:
            raise FileError(path, None, "no such rule file or folder")
    return files


def load_rules(paths: Iterable[str | Path] | None = None, site: Site | None = None,
               check_groups: bool = True) -> RuleSet:
    """Rules from files and folders (default: the shipped packs). Any mistake is a FileError
    naming the file and line: a broken rule file stops icsguard rather than being skipped.
    Without a site, rules that name its groups are set aside as inactive (``check_groups``
    False: accepted as written, for validating rules without a site file)."""
    ruleset = RuleSet()
    seen: dict[str, str] = {}
    loaded: set[Path] = set()
    for path in rule_files(shipped_rules() if paths is None else paths):
        if Path(path).resolve() in loaded:        # the shipped packs named again, or a file twice
            continue
        loaded.add(Path(path).resolve())
        document = yamlfile.load(path)
        if document is None:
            continue
        if not isinstance(document, list):
            raise FileError(path, getattr(document, "line", None), "a rule file is a list of rules")
        for entry in document:
            rule = None
            try:
                rule = compile_rule(path, entry, site, check_groups)
            except GroupNeeded as exc:
                ruleset.inactive[entry["id"]] = str(exc)
            rule_id = rule.id if rule else entry["id"]
            if rule_id in seen:
                raise FileError(path, getattr(entry, "line", None), f"rule id {rule_id!r} is also in {seen[rule_id]}")
            seen[rule_id] = f"{path}:{getattr(entry, 'line', '?')}"
            if rule:
                ruleset.rules.append(rule)
    return ruleset


def compile_rule(path: Path, entry: Any, site: Site | None, check_groups: bool = True) -> Rule:
    if not isinstance(entry, yamlfile.Mapping):
        raise FileError(path, getattr(entry, "line", None), f"a rule is a mapping, not {type(entry).__name__}")
    line = entry.line

    def fail(key: str | None, message: str):
        raise FileError(path, entry.line_of(key) if key else line, f"rule {entry.get('id', '?')}: {message}")

    for key in entry:
        if key not in RULE_KEYS:
            fail(key, f"unknown key {key!r} (known: {', '.join(RULE_KEYS)})")
    for key in REQUIRED:
        if not entry.get(key):
            fail(None, f"missing {key!r}")
    rule_id = str(entry["id"])
    if not _ID.match(rule_id):
        fail("id", f"id {rule_id!r} must be lower case letters, digits, '.', '_' or '-'")
    if entry["severity"] not in SEVERITIES:
        fail("severity", f"severity {entry['severity']!r} is not one of {', '.join(SEVERITIES)}")
    proto = entry.get("proto")
    protos = tuple([proto] if isinstance(proto, str) else proto) if proto is not None else None
    if protos is not None and (not protos or any(p not in PROTOCOLS for p in protos)):
        fail("proto", f"proto {proto!r}: known protocols are {', '.join(PROTOCOLS)}")
    direction = entry.get("direction")
    if direction is not None and direction not in DIRECTIONS:
        fail("direction", f"direction {direction!r} is not one of {', '.join(DIRECTIONS)}")
    if ("match" in entry) == ("any" in entry):
        fail(None, "needs exactly one of 'match' or 'any'")
    groups = [entry["match"]] if "match" in entry else entry["any"]
    if not isinstance(groups, list) or not groups:
        fail("any", "'any' is a list of match mappings")
    alternatives = []
    for group in groups:
        if not isinstance(group, yamlfile.Mapping) or not group:
            fail("match" if "match" in entry else "any", "a match is a mapping of field: condition")
        alternatives.append(tuple(_condition(path, rule_id, group, name, group[name], site, check_groups)
                                  for name in group))
    mitre = entry.get("mitre") or []
    mitre = [mitre] if isinstance(mitre, str) else mitre
    bad = [m for m in mitre if not _MITRE.match(str(m))]
    if bad:
        fail("mitre", f"{bad[0]!r} is not an ATT&CK for ICS technique id (T0xxx)")
    references = entry.get("references") or []
    sid = entry.get("sid", signature_id(rule_id))
    if not isinstance(sid, int) or sid <= 0:
        fail("sid", "sid must be a positive integer")
    category = entry.get("category", "attack")
    if category not in RULE_CATEGORIES:
        fail("category", f"category {category!r} is not one of {', '.join(RULE_CATEGORIES)}")
    return Rule(rule_id, str(entry["title"]), entry["severity"], protos, direction, alternatives,
                _threshold(path, entry, fail), tuple(map(str, mitre)), str(entry.get("description") or ""),
                tuple(map(str, references if isinstance(references, list) else [references])), sid,
                str(path), line, category)


def _threshold(path, entry, fail) -> Threshold | None:
    spec = entry.get("threshold")
    if spec is None:
        return None
    if not isinstance(spec, dict) or any(k not in THRESHOLD_KEYS for k in spec):
        fail("threshold", f"threshold takes {', '.join(THRESHOLD_KEYS)}")
    count, seconds = spec.get("count"), spec.get("seconds")
    if not isinstance(count, int) or count < 1 or not isinstance(seconds, (int, float)) or seconds <= 0:
        fail("threshold", "threshold needs a positive count and seconds")
    by = spec.get("by", ["src"])
    by = [by] if isinstance(by, str) else by
    for name in [*by, *([spec["distinct"]] if spec.get("distinct") else [])]:
        if str(name).split(".")[0] not in FIELDS:
            fail("threshold", f"unknown field {name!r}")
    return Threshold(count, float(seconds), tuple(by), spec.get("distinct"))


def _condition(path, rule_id: str, group, name, spec, site: Site | None, check_groups: bool) -> Condition:
    line = group.line_of(name)

    def fail(message: str):
        raise FileError(path, line, f"rule {rule_id}: {name}: {message}")

    dotted = tuple(str(name).split("."))
    if dotted[0] not in FIELDS:
        fail(f"unknown field {dotted[0]!r}")
    if isinstance(spec, list):
        spec = {"in": spec}
    elif not isinstance(spec, dict):
        spec = {"equals": spec}
    if len(spec) != 1:
        fail("one operator per field (write several fields, or use 'any')")
    (operator, operand), = spec.items()
    maker = OPERATORS.get(operator)
    if maker is None:
        fail(f"unknown operator {operator!r} (known: {', '.join(OPERATORS)})")
    try:
        test = maker(operand, site, check_groups)
    except GroupNeeded:
        raise GroupNeeded(f"needs the site group(s) named in {name}: {operand}") from None
    except (ValueError, TypeError, re.error) as exc:
        fail(f"{operator}: {exc}")
    return Condition(dotted, test, f"{operator} {_show(operand)}", _literal_values(operator, operand),
                     operator not in ("not_permitted", "before", "after"))


def _literal_values(operator: str, operand: Any) -> frozenset | None:
    """What an equality accepts, for the index: a scalar for equals, all-literal lists for in."""
    scalar = (str, int, float, bool)
    if operator == "equals" and isinstance(operand, scalar):
        return frozenset([operand])
    if operator == "in" and isinstance(operand, list) and operand and all(
            isinstance(v, scalar) and not (isinstance(v, str) and v.startswith("$")) for v in operand):
        return frozenset(operand)
    return None


def _show(value: Any) -> str:
    text = "missing" if value is _MISSING else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- operators: each turns its operand into a test of (value, event) ---

def _elements(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _passes(value, test: Callable[..., bool], *args) -> bool:
    """Whether ``test`` passes for an element of a list field, or for a scalar field (a port, a
    unit) as it is, with no list made for it."""
    if isinstance(value, (list, tuple)):
        return any(test(v, *args) for v in value)
    return test(value, *args)


def _any_element(test: Callable[[Any], bool]) -> Predicate:
    def check(value, event):
        return value is not _MISSING and value is not None and _passes(value, test)
    return check


def _equals(operand, site, check_groups) -> Predicate:
    if isinstance(operand, list):
        return lambda value, event: value is not _MISSING and list(_elements(value)) == operand
    return _any_element(lambda v: v == operand)


def _not_equals(operand, site, check_groups) -> Predicate:
    positive = _equals(operand, site, check_groups)
    return lambda value, event: not positive(value, event)


def _members(operand, site: Site | None, check_groups: bool) -> Callable[[Any, Event], bool]:
    """Membership in literal values and site groups ($plc, a zone, $maintenance for ts,
    $ports for the event's protocol; $name? only when there is a site)."""
    if not isinstance(operand, list):
        operand = [operand]
    literals = {v for v in operand if not (isinstance(v, str) and v.startswith("$"))}
    names = [v[1:] for v in operand if isinstance(v, str) and v.startswith("$")]
    sets = []
    windows = ports = False
    for name in names:
        optional = name.endswith("?")
        name = name[:-1] if optional else name
        if name == PORTS:
            ports = site is not None
            continue
        if site is None:
            if check_groups and not optional:
                raise GroupNeeded(name)
            continue
        if name == MAINTENANCE:
            if not site.windows:           # a site that names no windows does not police writes by time
                if check_groups and not optional:
                    raise GroupNeeded(name)
                continue
            windows = True
        elif site.group(name) is None:
            raise ValueError(f"unknown site group ${name} (in {site.path or 'the site file'})")
        else:
            sets.append(site.group(name))

    known: dict[str, bool] = {}       # address -> in a group: netaddr's lookup is slow

    def in_groups(address: str) -> bool:
        found = known.get(address)
        if found is None:
            try:
                found = any(address in s for s in sets)
            except (AddrFormatError, ValueError, TypeError):   # not an address at all
                found = False
            if len(known) >= 4096:
                known.clear()
            known[address] = found
        return found

    def member(v, event) -> bool:
        if isinstance(v, (str, int, float)) and v in literals:
            return True
        if windows and isinstance(v, (int, float)) and site.in_maintenance(v):
            return True
        if ports and event is not None and isinstance(v, int) and site.has_port(event.proto, v):
            return True
        return bool(sets) and isinstance(v, str) and in_groups(v)
    return member


def _membership(inside: bool):
    def make(operand, site, check_groups) -> Predicate:
        member = _members(operand, site, check_groups)

        def check(value, event):
            return value is not _MISSING and value is not None and _passes(value, member, event) == inside
        return check
    return make


_in, _not_in = _membership(True), _membership(False)


def _number(operand) -> float:
    if isinstance(operand, bool) or not isinstance(operand, (int, float)):
        raise ValueError(f"{operand!r} is not a number")
    return operand


def _compare(compare: Callable[[float, float], bool]):
    def make(operand, site, check_groups) -> Predicate:
        limit = _number(operand)
        return _any_element(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and compare(v, limit))
    return make


def _range(operand, site, check_groups) -> Predicate:
    if not isinstance(operand, list) or len(operand) != 2:
        raise ValueError("range is [low, high]")
    low, high = map(_number, operand)
    return _any_element(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high)


def _regex(operand, site, check_groups) -> Predicate:
    pattern = re.compile(str(operand))
    return _any_element(lambda v: v is not None and pattern.search(str(v)) is not None)


def _exists(operand, site, check_groups) -> Predicate:
    if not isinstance(operand, bool):
        raise ValueError("exists is true or false")
    return lambda value, event: (value is not _MISSING and value is not None) == operand


def _contains(operand, site, check_groups) -> Predicate:
    return lambda value, event: isinstance(value, (list, tuple)) and operand in value


def _not_contains(operand, site, check_groups) -> Predicate:
    return lambda value, event: not (isinstance(value, (list, tuple)) and operand in value)


def _not_permitted(operand, site: Site | None, check_groups: bool) -> Predicate:
    if operand != "write":
        raise ValueError("not_permitted takes 'write'")
    if site is None:
        if check_groups:
            raise GroupNeeded("writers")
        return lambda value, event: False
    return lambda value, event: not site.may_write(event.src, event.dst)


def _time(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def _relative_time(earlier: bool):
    def make(operand, site, check_groups) -> Predicate:
        if not isinstance(operand, str) or operand.split(".")[0] not in FIELDS:
            raise ValueError(f"{operand!r} is not a field to compare with")
        other = tuple(operand.split("."))

        def check(value, event):
            mine, theirs = _time(value), _time(resolve(event, other))
            if mine is None or theirs is None:
                return False
            return mine < theirs if earlier else mine > theirs
        return check
    return make


OPERATORS: dict[str, Callable[..., Predicate]] = {
    "equals": _equals, "not_equals": _not_equals, "in": _in, "not_in": _not_in,
    "gt": _compare(lambda v, n: v > n), "gte": _compare(lambda v, n: v >= n),
    "lt": _compare(lambda v, n: v < n), "lte": _compare(lambda v, n: v <= n),
    "range": _range, "regex": _regex, "exists": _exists, "contains": _contains,
    "not_contains": _not_contains, "not_permitted": _not_permitted,
    "before": _relative_time(True), "after": _relative_time(False),
}
