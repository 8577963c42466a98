"""Stored backup policies: create or replace, read, list, delete, simulate.

A policy is validated by the policy engine before anything is written, so a refused policy
leaves no trace. The record keeps the engine's normalised form (Azure's bare ``properties``),
which is what GET returns, as Azure does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.errors import ErrorCode, UserError
from shared.immutability import Immutability, refuse_shorter_retention
from shared.policy import Policy, parse_policy, simulate
from shared.policy.model import RetentionDuration
from shared.policy.simulation import check_range
from shared.request_body import check_fields, parse_instant, require_object
from shared.schedule_index import ScheduleIndex
from shared.storage import layout
from shared.storage.limits import MAX_TABLE_PROPERTY_STRING_CHARS
from shared.storage.tables import Entity, EntityExists, ETagMismatch, StateStore
from shared.wire import dump
from shared.wire.check import shape_of
from shared.wire.policies import SimulateRequest, Simulation
from shared.wire.policies import StoredPolicy as StoredPolicyAnswer


def parse_simulation_request(body: Any) -> tuple[datetime, datetime]:
    """``{"from", "to"}`` of ``:simulate`` as UTC instants; ``InvalidRequest`` naming the field."""
    doc = require_object(body)
    # The instants are read here, with their own messages; the model gives the fields.
    check_fields(doc, shape_of(SimulateRequest))
    return parse_instant(doc.get("from"), "from"), parse_instant(doc.get("to"), "to")


@dataclass(frozen=True)
class StoredPolicy:
    """A policy as the API shows it."""

    name: str
    policy: Policy
    created: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """Azure's resource shape: ``{"name", "type", "properties": {...}}`` (``shared.wire.policies.StoredPolicy``)."""
        return dump(self.to_wire())

    def to_wire(self) -> StoredPolicyAnswer:
        """The policy as the API answers it."""
        return StoredPolicyAnswer(name=self.name, type="backupPolicies", properties=self.policy.to_dict())


def check_name(name: str, target: str = "name") -> None:
    """``InvalidRequest`` unless ``name`` is a valid resource name."""
    if not layout.valid_name(name):
        raise UserError(
            ErrorCode.INVALID_REQUEST,
            f"{target} {name!r} is not valid: use 1-150 letters, digits, '-', '_' or '.', starting with a letter "
            "or digit",
            target=target,
        )


def _shorter(new: RetentionDuration, old: RetentionDuration) -> bool:
    # Calendar durations (P1M, P30D) compare differently by start: shorter from any reference start.
    return any(new.after(start) < old.after(start) for start in _SHORTENING_STARTS)


_SHORTENING_STARTS = tuple(datetime(2024, month, day, tzinfo=UTC) for month in (1, 2, 3) for day in (1, 28, 29))


def retention_shortened(old: Policy, new: Policy) -> str | None:
    """Why ``new`` keeps some points for less time than ``old``, or None when it keeps every one as long.

    A rule removed, its vault or archive lifecycle shorter, or its archive copy dropped: each counts
    (a critical operation under multi-user authorization, shared/approvals.py).
    """
    reasons = []
    for rule in old.retention_rules:
        try:
            after = new.retention_rule(rule.name)
        except KeyError:
            reasons.append(f"retention rule {rule.name} removed")
            continue
        if _shorter(after.vault.delete_after, rule.vault.delete_after):
            reasons.append(
                f"{rule.name} keeps VaultStore points {after.vault.delete_after} instead of {rule.vault.delete_after}"
            )
        if rule.archive is not None:
            if after.archive is None:
                reasons.append(f"{rule.name} no longer keeps ArchiveStore points ({rule.archive.delete_after})")
            elif _shorter(after.archive.delete_after, rule.archive.delete_after):
                reasons.append(
                    f"{rule.name} keeps ArchiveStore points {after.archive.delete_after} instead of "
                    f"{rule.archive.delete_after}"
                )
    return "; ".join(reasons) or None


class PolicyService:
    """Backup policies kept in the state table."""

    def __init__(self, state: StateStore, *, immutability: Immutability = Immutability.DISABLED) -> None:
        self._state = state
        self._immutability = immutability

    def put(self, name: str, document: Any, now: datetime) -> tuple[StoredPolicy, bool]:
        """Create or replace policy ``name``; returns it and whether it was created.

        While the vault is immutable, a change that shortens a rule of a policy in use is refused
        (``UserErrorOperationBlockedByImmutability``, ``shared.immutability``).
        """
        check_name(name)
        policy = parse_policy(document)
        text = json.dumps(policy.to_dict(), separators=(",", ":"), sort_keys=True)
        if len(text) > MAX_TABLE_PROPERTY_STRING_CHARS:
            raise UserError(
                ErrorCode.INVALID_POLICY,
                f"the policy is {len(text)} characters once normalised; the limit is {MAX_TABLE_PROPERTY_STRING_CHARS}",
            )
        key = layout.row_key(name)
        for _ in range(5):
            current = self._state.get(layout.POLICY, key)
            try:
                if current is None:
                    # Insert, not upsert: two concurrent creates of one name cannot both report 201.
                    self._state.insert(
                        layout.POLICY, key, {"name": name, "policy": text, "created": now, "updated": now}
                    )
                    return StoredPolicy(name, policy, now), True
                if self._immutability.enabled:
                    old = self._load(current).policy
                    refuse_shorter_retention(self._immutability, name, old, policy, users=self.users(name), at=now)
                created = current.get("created", now)
                self._state.update(current, {"name": name, "policy": text, "created": created, "updated": now})
                # Its instances' next slots follow the new schedule (bounded by the policy's instances).
                ScheduleIndex(self._state).reindex_policy(key)
                return StoredPolicy(name, policy, created), False
            except (EntityExists, ETagMismatch):
                continue  # another request wrote it in between: read again and decide again
        raise UserError(ErrorCode.CONFLICT, f"policy {name!r} is being changed by other requests; retry")

    def shortening(self, name: str, document: Any) -> str | None:
        """Why storing ``document`` as ``name`` would shorten its retention (None: it would not, or
        the policy is new); an invalid document is refused here as ``put`` would refuse it."""
        check_name(name)
        new = parse_policy(document)
        current = self._state.get(layout.POLICY, layout.row_key(name))
        return None if current is None else retention_shortened(self._load(current).policy, new)

    def _load(self, entity: Entity) -> StoredPolicy:
        return StoredPolicy(str(entity["name"]), parse_policy(json.loads(str(entity["policy"]))), entity.get("created"))

    def get(self, name: str) -> StoredPolicy:
        """Policy ``name``; ``NotFound`` if there is none."""
        entity = self._state.get(layout.POLICY, layout.row_key(name))
        if entity is None:
            raise UserError(ErrorCode.NOT_FOUND, f"backup policy {name!r} does not exist", target="name")
        return self._load(entity)

    def all(self) -> list[StoredPolicy]:
        """Every policy, by name."""
        return [self._load(e) for e in self._state.partition(layout.POLICY)]

    def users(self, name: str) -> list[str]:
        """The backup instances that use policy ``name``."""
        return [
            str(e.get("name", e.row_key))
            for e in self._state.query(
                "PartitionKey eq @pk and policyKey eq @policy", {"pk": layout.INSTANCE, "policy": layout.row_key(name)}
            )
        ]

    def delete(self, name: str) -> None:
        """Delete policy ``name``: ``NotFound`` if absent, ``Conflict`` (409) while an instance uses it."""
        entity = self._state.get(layout.POLICY, layout.row_key(name))
        if entity is None:
            raise UserError(ErrorCode.NOT_FOUND, f"backup policy {name!r} does not exist", target="name")
        users = self.users(name)
        if users:
            shown = ", ".join(sorted(users)[:10]) + (" ..." if len(users) > 10 else "")
            raise UserError(
                ErrorCode.CONFLICT,
                f"backup policy {name!r} is used by {len(users)} backup instance(s): {shown}",
                target="name",
                recommended_action="Move those backup instances to another policy or stop their protection first.",
            )
        try:
            self._state.delete(entity)
        except ETagMismatch as exc:
            raise UserError(ErrorCode.CONFLICT, f"policy {name!r} changed while being deleted; retry") from exc

    def simulate(self, name: str, start: datetime, end: datetime) -> Simulation:
        """The dry run of policy ``name`` between ``start`` and ``end`` (the contract's simulation shape).

        ``InvalidRequest`` naming ``from`` or ``to`` for a range :func:`shared.policy.simulation.check_range` refuses.
        """
        check_range(start, end)
        return simulate(self.get(name).policy, start, end).to_wire()
