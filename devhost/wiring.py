"""Read a FunctionApp's registered functions into what devhost serves.

Everything comes from ``app.get_functions()``: HTTP routes (route template, methods, auth level),
queue triggers (queue name, connection), timers (schedule, runOnStartup) and queue output
bindings. ``%SETTING%`` placeholders are resolved from the settings, as the host does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

_PLACEHOLDER = re.compile(r"%([^%]+)%")
_ROUTE_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+)(?:\([^)]*\))?)?(\?)?\}")
_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "alpha": r"[A-Za-z]+",
    "bool": r"(?:true|false|True|False)",
    "guid": r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}",
}


class WiringError(Exception):
    """The app registers something devhost cannot run as the host would."""


def resolve(value: str, settings: Mapping[str, str]) -> str:
    """Replace each ``%NAME%`` with the setting ``NAME``; a missing setting is an error."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in settings:
            raise WiringError(f"binding expression %{name}% names a setting that is not set")
        return settings[name]

    return _PLACEHOLDER.sub(sub, value)


@dataclass(frozen=True)
class QueueOutput:
    """A queue output binding: the argument name (or ``$return``), the queue and its connection."""

    name: str
    queue: str
    connection: str


@dataclass(frozen=True)
class Function:
    """One registered function with what devhost needs to invoke it."""

    name: str
    user_function: Callable[..., Any]
    trigger_arg: str
    outputs: tuple[QueueOutput, ...]


@dataclass(frozen=True)
class HttpRoute:
    """An HTTP trigger: its compiled route and the methods it accepts."""

    function: Function
    template: str
    pattern: re.Pattern[str]
    methods: frozenset[str]
    auth_level: str
    literal_weight: int

    def match(self, path: str) -> dict[str, str] | None:
        """The route parameters when ``path`` (after the prefix) matches, else None."""
        m = self.pattern.fullmatch(path)
        if m is None:
            return None
        return {k: v for k, v in m.groupdict().items() if v is not None}


@dataclass(frozen=True)
class QueueTrigger:
    """A queue trigger on a queue of a storage connection."""

    function: Function
    queue: str
    connection: str


@dataclass(frozen=True)
class TimerTrigger:
    """A timer with its six-field NCRONTAB schedule."""

    function: Function
    schedule: str
    run_on_startup: bool


@dataclass
class Wiring:
    """Everything an app registers, sorted by trigger kind."""

    routes: list[HttpRoute] = field(default_factory=list)
    queues: list[QueueTrigger] = field(default_factory=list)
    timers: list[TimerTrigger] = field(default_factory=list)

    def route_for(self, method: str, path: str) -> tuple[HttpRoute | None, dict[str, str], bool]:
        """The route for ``method`` and ``path``, its parameters, and whether any route matched the path.

        Routes with more literal text win, as ASP.NET routing prefers complex segments
        (``{name}:backup``) over a bare parameter (``{name}``).
        """
        path_matched = False
        for route in self.routes:
            params = route.match(path)
            if params is None:
                continue
            path_matched = True
            if method.upper() in route.methods:
                return route, params, True
        return None, {}, path_matched


def compile_route(template: str) -> tuple[re.Pattern[str], int]:
    """A regex for an Azure Functions route template and the amount of literal text in it."""
    template = template.strip("/")
    out: list[str] = []
    pos = 0
    literal = 0
    for m in _ROUTE_PARAM.finditer(template):
        text = template[pos : m.start()]
        literal += len(text)
        catch_all, name, constraint, optional = m.groups()
        body = ".*" if catch_all else _CONSTRAINTS.get((constraint or "").lower(), r"[^/]+")
        group = f"(?P<{name}>{body})"
        # An optional last segment takes its slash with it: "items/{id?}" matches "items".
        if optional and text.endswith("/") and m.end() == len(template):
            out.append(re.escape(text[:-1]) + f"(?:/{group})?")
        else:
            out.append(re.escape(text) + (f"{group}?" if optional else group))
        pos = m.end()
    tail = template[pos:]
    literal += len(tail)
    out.append(re.escape(tail))
    return re.compile("".join(out), re.IGNORECASE), literal


def _value(x: Any) -> str:
    return str(getattr(x, "value", x))


def read_app(app: Any, settings: Mapping[str, str]) -> Wiring:
    """Build the wiring of ``app`` (a FunctionApp). Calls ``app.get_functions()`` exactly once."""
    wiring = Wiring()
    for fn in app.get_functions():
        trigger = fn.get_trigger().get_dict_repr()
        outputs: list[QueueOutput] = []
        for binding in fn.get_bindings():
            b = binding.get_dict_repr()
            if getattr(b["direction"], "name", str(b["direction"])).upper() != "OUT":
                continue
            if b["type"] == "queue":
                outputs.append(
                    QueueOutput(
                        b["name"], resolve(b["queueName"], settings), b.get("connection") or "AzureWebJobsStorage"
                    )
                )
            elif b["type"] != "http":
                raise WiringError(f"{fn.get_function_name()}: output binding type {b['type']!r} is not supported")
        function = Function(fn.get_function_name(), fn.get_user_function(), trigger["name"], tuple(outputs))
        kind = trigger["type"]
        if kind == "httpTrigger":
            pattern, weight = compile_route(trigger.get("route") or function.name)
            methods = frozenset(_value(m).upper() for m in trigger.get("methods") or ["GET", "POST"])
            auth = _value(trigger.get("authLevel", "function")).lower()
            wiring.routes.append(
                HttpRoute(function, trigger.get("route") or function.name, pattern, methods, auth, weight)
            )
        elif kind == "queueTrigger":
            wiring.queues.append(
                QueueTrigger(
                    function,
                    resolve(trigger["queueName"], settings),
                    trigger.get("connection") or "AzureWebJobsStorage",
                )
            )
        elif kind == "timerTrigger":
            wiring.timers.append(
                TimerTrigger(function, resolve(trigger["schedule"], settings), bool(trigger.get("runOnStartup")))
            )
        else:
            raise WiringError(f"{function.name}: trigger type {kind!r} is not supported by devhost")
    wiring.routes.sort(key=lambda r: -r.literal_weight)
    return wiring
