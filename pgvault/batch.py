"""``instance configure --file``: many instances at once, safe to send again.

Before the file is posted, each entry is compared with the instances the vault has: an entry
whose instance exists with the same definition is skipped (``status: Skipped``), one whose
instance exists with another definition fails here with what differs, and only the rest is
posted to ``POST /api/backupInstances``. Every entry's outcome is reported, each failure with
its code, message, target (the entry's index in the file) and recommended action.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pgvault.client import ApiError, Client
from shared.errors import ErrorCode

SKIPPED = "Skipped"
FAILED = "Failed"
_INDEX = re.compile(r"\binstances\[(\d+)\]")
# The fields of an entry that define an instance, in the order a difference is reported.
_DEFINING = ("server", "port", "database", "secretUri", "policyName", "serverRegion")
DEFAULT_PORT = 5432
"""The port of an entry without one, as the API stores it (shared.instances.DEFAULT_PORT)."""


@dataclass(frozen=True)
class Entry:
    """One entry of the file as it would be stored, for comparison with an existing instance."""

    index: int
    raw: dict[str, Any]

    @property
    def name(self) -> str | None:
        given = self.raw.get("name")
        if isinstance(given, str) and given.strip():
            return given.strip()
        server, database = self.raw.get("server"), self.raw.get("database")
        if isinstance(server, str) and isinstance(database, str) and server.strip() and database:
            # Imported here: shared.instances brings the storage and PostgreSQL clients, which only
            # this path of the CLI needs (every command starts faster without them).
            from shared.instances import default_name

            return default_name(server.strip(), database)
        return None

    def value(self, field: str) -> Any:
        """The entry's ``field`` normalised as the API stores it (None when the entry omits it)."""
        raw = self.raw.get(field)
        if field == "port":
            return DEFAULT_PORT if raw is None else raw
        if isinstance(raw, str):
            raw = raw.strip() if field != "database" else raw
            if field == "serverRegion":
                raw = raw.lower().replace(" ", "")
        return raw


def identity(server: Any, port: Any, database: Any) -> tuple[str, Any, Any]:
    """A database's identity in a vault: host without case or trailing dot, port, database."""
    host = server.strip().lower().rstrip(".") if isinstance(server, str) else server
    return (str(host), port, database)


def differences(entry: Entry, existing: dict[str, Any]) -> list[str]:
    """What differs between the file's entry and the stored instance, one phrase per field."""
    found = []
    for field in _DEFINING:
        mine, theirs = entry.value(field), existing.get(field)
        if field == "serverRegion" and mine is None:
            continue  # not given in the file: the stored region is not contradicted
        if field == "server" and isinstance(mine, str) and isinstance(theirs, str):
            same = identity(mine, 0, "")[0] == identity(theirs, 0, "")[0]
        else:
            same = mine == theirs
        if not same:
            found.append(f"{field} is {theirs!r} in the vault, {mine!r} in the file")
    return found


def _match(entry: Entry, existing: Sequence[dict[str, Any]]) -> tuple[dict[str, Any] | None, str]:
    """The stored instance this entry is about, and how it was found ("name" or "database")."""
    name = entry.name
    for instance in existing:
        if name is not None and str(instance.get("name", "")).lower() == name.lower():
            return instance, "name"
    mine = identity(entry.value("server"), entry.value("port"), entry.value("database"))
    for instance in existing:
        if identity(instance.get("server"), instance.get("port"), instance.get("database")) == mine:
            return instance, "database"
    return None, ""


def _refusal(entry: Entry, instance: dict[str, Any], found_by: str, diffs: list[str]) -> dict[str, Any]:
    target = f"instances[{entry.index}]"
    name = instance.get("name")
    where = f"{instance.get('database')!r} on {instance.get('server')}:{instance.get('port')}"
    if found_by == "database" and entry.name is not None and entry.name.lower() != str(name).lower():
        code = ErrorCode.DATABASE_ALREADY_PROTECTED
        message = (
            f"{target}: database {where} is already protected by backup instance {name!r} "
            f"(the file names it {entry.name!r})"
        )
        action = f"Use the name {name!r} in the file, or leave this entry out."
        field = "name"
    else:
        code = ErrorCode.CONFLICT
        message = f"{target}: backup instance {name!r} exists with another definition: {'; '.join(diffs)}"
        action = (
            f"To change its policy or secret: pgvault instance configure --name {name} --server ... (flags as in the "
            "file); to protect another database, give this entry another name."
        )
        field = diffs[0].split(" ", 1)[0] if diffs else "name"
    return {
        "name": entry.name,
        "status": FAILED,
        "error": {"code": code.value, "message": message, "target": f"{target}.{field}", "recommendedAction": action},
    }


def _being_deleted(entry: Entry, instance: dict[str, Any]) -> dict[str, Any]:
    target = f"instances[{entry.index}]"
    name = instance.get("name")
    purge = (instance.get("deletionInfo") or {}).get("scheduledPurgeTime") or "unknown"
    return {
        "name": entry.name,
        "status": FAILED,
        "error": {
            "code": ErrorCode.BACKUP_INSTANCE_SOFT_DELETED.value,
            "message": f"{target}: backup instance {name!r} is soft-deleted (stopProtection with retainData delete; "
            f"purged from {purge})",
            "target": f"{target}.name",
            "recommendedAction": f"Undelete it (pgvault instance undelete --name {name}), or wait until it is purged, "
            "then send the file again.",
        },
    }


def plan(entries: Sequence[Any], existing: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any] | None], list[int]]:
    """Each entry's outcome decided here (skipped, refused) or None, and the indexes still to send."""
    decided: list[dict[str, Any] | None] = []
    to_send: list[int] = []
    for index, raw in enumerate(entries):
        if not isinstance(raw, dict):
            decided.append(None)
            to_send.append(index)  # the API names what is wrong with it
            continue
        entry = Entry(index, raw)
        instance, found_by = _match(entry, existing)
        if instance is None:
            decided.append(None)
            to_send.append(index)
            continue
        diffs = differences(entry, instance)
        same_name = entry.name is not None and entry.name.lower() == str(instance.get("name", "")).lower()
        if instance.get("protectionStatus") == "SoftDeleted" or instance.get("retainData") == "delete":
            decided.append(_being_deleted(entry, instance))
        elif not diffs and same_name:
            state = instance.get("currentProtectionState") or instance.get("protectionStatus")
            decided.append(
                {
                    "name": instance.get("name"),
                    "status": SKIPPED,
                    "message": f"already configured with this definition ({state})",
                    "instance": instance,
                }
            )
        else:
            decided.append(_refusal(entry, instance, found_by, diffs))
    return decided, to_send


def _renumber(value: Any, indexes: Sequence[int]) -> Any:
    """An answer about the posted subset, with ``instances[i]`` naming the entry's index in the file."""

    def fix(text: str) -> str:
        return _INDEX.sub(lambda m: f"instances[{indexes[int(m[1])]}]" if int(m[1]) < len(indexes) else m[0], text)

    if isinstance(value, str):
        return fix(value)
    if isinstance(value, dict):
        return {k: _renumber(v, indexes) for k, v in value.items()}
    if isinstance(value, list):
        return [_renumber(v, indexes) for v in value]
    return value


def configure_file(client: Client, document: dict[str, Any]) -> list[dict[str, Any]]:
    """Configure every entry of ``{"instances": [...]}``: one outcome per entry, in the file's order.

    ``ApiError`` only when the API refuses the request as a whole (not one entry of it).
    """
    entries = document.get("instances")
    if not isinstance(entries, list) or not entries or set(document) != {"instances"}:
        return _post(client, document, None)  # the API says what is wrong with the document
    decided, to_send = plan(entries, list(client.pages("/backupInstances")))
    if to_send:
        sent = _post(client, {"instances": [entries[i] for i in to_send]}, to_send)
        for index, result in zip(to_send, sent, strict=True):
            decided[index] = result
    return [result for result in decided if result is not None]


def _post(client: Client, body: dict[str, Any], indexes: Sequence[int] | None) -> list[dict[str, Any]]:
    try:
        results = client.request("POST", "/backupInstances", body=body).body["value"]
    except ApiError as error:
        # Every entry failed: the API answers 400 with each entry's outcome, not one error.
        value = error.body.get("value") if isinstance(error.body, dict) else None
        if not isinstance(value, list):
            raise
        results = value
    return list(results) if indexes is None else _renumber(list(results), indexes)
