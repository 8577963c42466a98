"""A small reader for the ARM template and its Bicep form, for tests/unit/test_infra.py.

Not a Bicep compiler and not a full ARM engine: an ARM expression parser and evaluator for the
functions infra/main.json uses, and a line-based reader of main.bicep's declarations (resources,
parameters with their decorators, variables, outputs, role assignments, the app-settings objects).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ARM_PATH = REPO / "infra" / "main.json"
BICEP_PATH = REPO / "infra" / "main.bicep"


# ---------------------------------------------------------------- ARM expressions


@dataclass(frozen=True)
class Call:
    """``name(args...)`` followed by property accesses (``.a.b``)."""

    name: str
    args: tuple[Any, ...]
    props: tuple[str, ...] = ()


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<sym>[(),.\[\]]))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos:].strip() == "":
                break
            raise ValueError(f"cannot read ARM expression at {text[pos:]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def parse_expression(text: str) -> Any:
    """``"[f(x)]"`` -> a ``Call`` tree; a plain string stays a string; ``"[[x"`` is the literal ``[x``."""
    if not (text.startswith("[") and text.endswith("]")) or text.startswith("[["):
        return text
    toks = _tokens(text[1:-1])
    value, pos = _parse(toks, 0)
    if pos != len(toks):
        raise ValueError(f"trailing tokens in {text!r}")
    return value


def _parse(toks: list[tuple[str, str]], pos: int) -> tuple[Any, int]:
    kind, val = toks[pos]
    if kind == "str":
        return val[1:-1].replace("''", "'"), pos + 1
    if kind == "num":
        return int(val), pos + 1
    if kind != "name":
        raise ValueError(f"unexpected {val!r}")
    if val in ("true", "false"):
        if pos + 2 < len(toks) + 1 and toks[pos + 1 : pos + 3] == [("sym", "("), ("sym", ")")]:
            return val == "true", pos + 3  # true() and false(): ARM's function form, as Bicep writes it
        return val == "true", pos + 1
    pos += 1
    assert toks[pos] == ("sym", "("), f"{val} is not called"
    pos += 1
    args: list[Any] = []
    while toks[pos] != ("sym", ")"):
        arg, pos = _parse(toks, pos)
        args.append(arg)
        if toks[pos] == ("sym", ","):
            pos += 1
    pos += 1
    props: list[str] = []
    while pos < len(toks) and toks[pos] == ("sym", "."):
        props.append(toks[pos + 1][1])
        pos += 2
    return Call(val, tuple(args), tuple(props)), pos


@dataclass
class Evaluator:
    """Evaluates expressions of main.json with the parameters' defaults (or ``overrides``).

    ``reference(...)`` and ``resourceId(...)`` become readable placeholders; ``uniqueString`` is a
    stable 13-character hash, as ARM's is.
    """

    template: dict[str, Any]
    overrides: dict[str, Any] = field(default_factory=dict)
    location: str = "westeurope"

    def value(self, raw: Any) -> Any:
        if isinstance(raw, str):
            return self.eval(parse_expression(raw))
        if isinstance(raw, dict):
            return {self.value(k): self.value(v) for k, v in raw.items()}
        if isinstance(raw, list):
            return [self.value(v) for v in raw]
        return raw

    def eval(self, node: Any) -> Any:  # noqa: PLR0912 - one branch per ARM function
        if not isinstance(node, Call):
            return node
        a = [self.eval(x) for x in node.args] if node.name not in ("if",) else []
        n = node.name
        if n == "parameters":
            if a[0] in self.overrides:
                out: Any = self.overrides[a[0]]
            else:
                out = self.value(self.template["parameters"][a[0]].get("defaultValue"))
        elif n == "variables":
            out = self.value(self.template["variables"][a[0]])
        elif n == "if":
            out = self.eval(node.args[1] if self.eval(node.args[0]) else node.args[2])
        elif n == "equals":
            out = a[0] == a[1]
        elif n == "greater":
            out = a[0] > a[1]
        elif n == "not":
            out = not a[0]
        elif n == "null":
            out = None
        elif n == "empty":
            out = a[0] is None or len(a[0]) == 0
        elif n == "createArray":
            out = list(a)
        elif n == "format":
            out = re.sub(r"\{(\d+)\}", lambda m: str(a[1 + int(m.group(1))]), a[0])
        elif n == "string":
            out = str(a[0])
        elif n == "true":
            out = True
        elif n == "toLower":
            out = str(a[0]).lower()
        elif n == "take":
            out = a[0][: a[1]]
        elif n == "uniqueString":
            out = hashlib.sha256("|".join(map(str, a)).encode()).hexdigest()[:13]
        elif n == "createObject":
            out = {a[i]: a[i + 1] for i in range(0, len(a), 2)}
        elif n == "union":
            out = {}
            for part in a:
                out.update(part)
        elif n == "resourceGroup":
            out = {"id": "/subscriptions/s/resourceGroups/rg", "location": self.location}
        elif n == "subscription":
            out = {"id": "/subscriptions/s", "tenantId": "t"}
        elif n in ("resourceId", "subscriptionResourceId"):
            out = f"<{n}:{'/'.join(map(str, a))}>"
        elif n == "guid":
            out = hashlib.sha256("|".join(map(str, a)).encode()).hexdigest()[:32]
        elif n == "reference":
            out = _Ref(str(a[0]))
        else:
            raise ValueError(f"ARM function {n} is not known to this reader")
        for prop in node.props:
            out = out[prop] if isinstance(out, dict) else getattr(out, prop) if isinstance(out, _Ref) else None
        return out


class _Ref:
    """A runtime property of a deployed resource: ``<reference:identity.clientId>``."""

    def __init__(self, name: str, path: str = "") -> None:
        self.name, self.path = name, path

    def __getattr__(self, prop: str) -> Any:
        if prop.startswith("_"):
            raise AttributeError(prop)
        return _Ref(self.name, f"{self.path}.{prop}")

    def __str__(self) -> str:
        return f"<reference:{self.name}{self.path}>"

    def __repr__(self) -> str:
        return str(self)

    def __eq__(self, other: object) -> bool:
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


def load_arm() -> dict[str, Any]:
    return json.loads(ARM_PATH.read_text())


def arm_app_settings(template: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """The app settings main.json gives the Function App, evaluated with the parameters' defaults."""
    config = template["resources"]["appSettings"]
    return Evaluator(template, overrides).value(config["properties"])


# ---------------------------------------------------------------- Bicep


@dataclass
class BicepParam:
    name: str
    type: str
    default: str | None
    decorators: dict[str, str]


@dataclass
class BicepResource:
    name: str
    type: str
    api_version: str
    conditional: bool
    body: str


@dataclass
class Bicep:
    params: dict[str, BicepParam]
    resources: dict[str, BicepResource]
    variables: dict[str, str]
    outputs: dict[str, str]
    objects: dict[str, dict[str, str]]


def load_bicep() -> Bicep:
    """Read main.bicep's top-level declarations (one per line, blocks closed by a ``}`` at column 0)."""
    lines = BICEP_PATH.read_text().splitlines()
    params: dict[str, BicepParam] = {}
    resources: dict[str, BicepResource] = {}
    variables: dict[str, str] = {}
    outputs: dict[str, str] = {}
    objects: dict[str, dict[str, str]] = {}
    decorators: dict[str, str] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := re.match(r"^@(\w+)\((.*)\)\s*$", line):
            decorators[m.group(1)] = m.group(2)
        elif m := re.match(r"^param (\w+) (\w+)(?: = (.*))?$", line):
            params[m.group(1)] = BicepParam(m.group(1), m.group(2), m.group(3), decorators)
            decorators = {}
        elif m := re.match(r"^resource (\w+) '([^@']+)@([^']+)' = (if \(.*\) )?\{$", line):
            start = i
            while lines[i] != "}":
                i += 1
            resources[m.group(1)] = BicepResource(
                m.group(1), m.group(2), m.group(3), m.group(4) is not None, "\n".join(lines[start : i + 1])
            )
        elif m := re.match(r"^var (\w+) = \{$", line):
            entries: dict[str, str] = {}
            i += 1
            while lines[i] != "}":
                if kv := re.match(r"^\s+(\w+): (.*)$", lines[i]):
                    entries[kv.group(1)] = kv.group(2).strip()
                i += 1
            objects[m.group(1)] = entries
        elif m := re.match(r"^var (\w+) = (.*)$", line):
            variables[m.group(1)] = m.group(2).strip()
        elif m := re.match(r"^output (\w+) (\w+) = ", line):
            outputs[m.group(1)] = m.group(2)
        i += 1
    return Bicep(params, resources, variables, outputs, objects)


def bicep_literal(text: str) -> Any:
    """A Bicep literal as Python (``'x'``, ``12``, ``true``, ``['a', 'b']``); None for an expression."""
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"'(?:[^'\\$]|\\.)*'", text):
        return text[1:-1].replace("\\'", "'")
    if text.startswith("[") and text.endswith("]"):
        items = [bicep_literal(x) for x in re.findall(r"'[^']*'|-?\d+", text)]
        return items
    return None
