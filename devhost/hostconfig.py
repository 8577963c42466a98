"""The parts of host.json that devhost honours, with the Functions host's defaults."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# An app setting AzureFunctionsJobHost__a__b overrides host.json's a.b, as the Functions host does
# (https://learn.microsoft.com/azure/azure-functions/functions-app-settings#azurefunctionsjobhost__).
OVERRIDE_PREFIX = "AzureFunctionsJobHost__"

# https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#host-json
_QUEUE_DEFAULTS = {
    "maxPollingInterval": "00:01:00",
    "visibilityTimeout": "00:00:00",
    "batchSize": 16,
    "maxDequeueCount": 5,
    "newBatchThreshold": None,
    "messageEncoding": "base64",
}
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?$")


def timespan_seconds(value: str) -> float:
    """Seconds in a .NET TimeSpan string such as ``00:00:30`` or ``1.02:00:00``."""
    m = _TIMESPAN.match(value.strip())
    if not m:
        raise ValueError(f"not a TimeSpan (d.hh:mm:ss): {value!r}")
    days, hours, minutes, seconds, fraction = m.groups()
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    return total + (float(f"0.{fraction}") if fraction else 0.0)


@dataclass(frozen=True)
class QueueOptions:
    """host.json ``extensions.queues``."""

    max_polling_interval: float
    visibility_timeout: float
    batch_size: int
    max_dequeue_count: int
    new_batch_threshold: int
    base64: bool


@dataclass(frozen=True)
class HostConfig:
    """What devhost reads from host.json."""

    route_prefix: str
    queues: QueueOptions
    function_timeout: float | None

    @classmethod
    def load(cls, path: Path, env: Mapping[str, str] | None = None) -> HostConfig:
        """Read host.json at ``path`` (a missing file means every default), with ``env``'s
        ``AzureFunctionsJobHost__`` overrides applied on top."""
        raw: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        for name, value in (env or {}).items():
            if name.startswith(OVERRIDE_PREFIX):
                _override(raw, name[len(OVERRIDE_PREFIX) :].split("__"), value)
        ext = raw.get("extensions", {})
        prefix = str(ext.get("http", {}).get("routePrefix", "api")).strip("/")
        q = {**_QUEUE_DEFAULTS, **ext.get("queues", {})}
        batch = int(q["batchSize"])
        threshold = q["newBatchThreshold"]
        queues = QueueOptions(
            max_polling_interval=timespan_seconds(str(q["maxPollingInterval"])),
            visibility_timeout=timespan_seconds(str(q["visibilityTimeout"])),
            batch_size=batch,
            max_dequeue_count=int(q["maxDequeueCount"]),
            # The host's default threshold is batchSize / 2 (per processor on some plans).
            new_batch_threshold=int(threshold) if threshold is not None else batch // 2,
            base64=str(q["messageEncoding"]).lower() != "none",
        )
        timeout = raw.get("functionTimeout")
        return cls(prefix, queues, timespan_seconds(timeout) if timeout and timeout != "-1" else None)


def _override(raw: dict[str, Any], path: list[str], value: str) -> None:
    """Set ``raw``'s value at ``path``; keys match case-insensitively, as the host reads them."""
    node = raw
    for key in path[:-1]:
        found = next((k for k in node if k.lower() == key.lower()), key)
        child = node.get(found)
        if not isinstance(child, dict):
            child = node[found] = {}
        node = child
    leaf = next((k for k in node if k.lower() == path[-1].lower()), path[-1])
    node[leaf] = value
