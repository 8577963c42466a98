"""Vault immutability (``PGVAULT_IMMUTABILITY``), as Azure Backup's immutable vaults have it.

``Disabled``: nothing extra. ``Unlocked`` and ``Locked``: no operation deletes a recovery point
before its expiry, and no change shortens retention:

* ``:stopProtection`` with ``retainData: delete`` is refused (Azure: an immutable vault blocks
  "stop protection and delete data"); stopping with ``forever`` or ``asPerPolicy`` is not.
* The purge of an instance soft-deleted before immutability was turned on deletes only the points
  whose retention has ended (their ``deletion`` time); the others wait for it.
* A policy PUT that would shorten the retention of a rule of a policy in use (or drop the rule) is
  refused. Stored points keep the dates fixed when they were recorded in any case (docs/rules.md C7);
  the refusal is Azure's ("modify backup policy to reduce retention" is blocked), so that a changed
  policy cannot shorten what future points of the same instances keep.

``Locked`` cannot be turned off by any API call, and the setting is an app setting, which an API
call cannot change either; what can change it is whoever edits app settings. So the first start
with ``Locked`` records the lock in the state table, and every later start whose setting says
otherwise is refused with a settings error naming ``PGVAULT_IMMUTABILITY`` (the app serves
nothing, and deletes nothing, until the setting says Locked again). The storage layer's own
guarantee (version-level WORM on the backup container) is infra's (DEPLOY.md).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from enum import StrEnum

from shared.errors import ErrorCode, SettingsError, UserError
from shared.policy import Policy, lifecycle
from shared.storage import layout
from shared.storage.tables import EntityExists, StateStore

log = logging.getLogger(__name__)

SETTING = "PGVAULT_IMMUTABILITY"
# The row that records the lock (partition ``layout.VAULT``).
LOCK_ROW = "immutability-lock"


class Immutability(StrEnum):
    """The vault's immutability state (Azure: Disabled, Enabled (unlocked), Enabled and locked)."""

    DISABLED = "Disabled"
    """Recovery points may be deleted early (stop with delete) and retention shortened."""
    UNLOCKED = "Unlocked"
    """Immutable; the setting may still be turned back to Disabled."""
    LOCKED = "Locked"
    """Immutable for good: once a start has recorded the lock, no later start runs without it."""

    @property
    def enabled(self) -> bool:
        """Whether points are protected from early deletion and shortened retention."""
        return self is not Immutability.DISABLED


def parse_immutability(raw: str | None) -> Immutability:
    """The setting's value in any letter case (empty: Disabled); ``ValueError`` naming the choices."""
    text = (raw or "").strip()
    if not text:
        return Immutability.DISABLED
    for option in Immutability:
        if option.value.lower() == text.lower():
            return option
    raise ValueError(f"must be Disabled, Unlocked or Locked, got {raw!r}")


def enforce_lock(state: StateStore, configured: Immutability, now: datetime) -> Immutability:
    """Record the lock on the first start with ``Locked``; refuse a start that would undo a recorded lock.

    Returns the immutability the app runs with (the configured one: a start that disagrees with a
    recorded lock raises ``SettingsError`` naming ``PGVAULT_IMMUTABILITY``).
    """
    lock = state.get(layout.VAULT, LOCK_ROW)
    if lock is not None and configured is not Immutability.LOCKED:
        raise SettingsError(
            {
                SETTING: f"the vault's immutability was locked on {lock['lockedAt'].isoformat()} and a locked vault "
                f"stays Locked; set {SETTING}=Locked again (it was {configured.value})"
            }
        )
    if lock is None and configured is Immutability.LOCKED:
        with contextlib.suppress(EntityExists):  # two instances starting at once: one lock
            state.insert(layout.VAULT, LOCK_ROW, {"lockedAt": now, "state": Immutability.LOCKED.value})
        log.warning("vault immutability is now Locked: it cannot be turned off")
    return configured


def refuse_early_deletion(immutability: Immutability, what: str, target: str | None = None) -> None:
    """Raise ``UserErrorOperationBlockedByImmutability`` for ``what`` when the vault is immutable."""
    if immutability.enabled:
        raise UserError(
            ErrorCode.OPERATION_BLOCKED_BY_IMMUTABILITY,
            f"{what} is blocked: the vault's immutability is {immutability.value}, so no recovery point is deleted "
            "before it expires",
            target=target,
        )


def shortened_rules(old: Policy, new: Policy, at: datetime) -> list[str]:
    """The retention rules of ``old`` whose points, taken at ``at``, ``new`` would keep for less time
    (in either datastore, or at all: a rule ``new`` drops counts), by name."""
    shorter = []
    for rule in old.retention_rules:
        before = lifecycle(old, rule.name, at)
        try:
            after = lifecycle(new, rule.name, at)
        except KeyError:
            shorter.append(rule.name)
            continue
        if after.vault_expiry < before.vault_expiry or after.deletion < before.deletion:
            shorter.append(rule.name)
    return shorter


def refuse_shorter_retention(
    immutability: Immutability, policy_name: str, old: Policy, new: Policy, *, users: list[str], at: datetime
) -> None:
    """Refuse (``UserErrorOperationBlockedByImmutability``) a policy change that shortens retention
    while the vault is immutable and instances use the policy."""
    if not immutability.enabled or not users:
        return
    shorter = shortened_rules(old, new, at)
    if shorter:
        raise UserError(
            ErrorCode.OPERATION_BLOCKED_BY_IMMUTABILITY,
            f"policy {policy_name!r} is used by {len(users)} backup instance(s) and the vault's immutability is "
            f"{immutability.value}: the change would shorten (or drop) retention rule(s) {', '.join(shorter)}",
            target="properties.policyRules",
            recommended_action="Keep each retention rule at least as long as it is; create a new policy for "
            "shorter retention and configure new instances with it.",
        )
