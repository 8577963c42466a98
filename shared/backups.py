"""Starting backups: on demand (HTTP) and on schedule (timer).

Both end the same way: a Backup job in the state table and a message on the backup queue.
A scheduled job's id is derived from the instance and the slot, so a timer that fires twice,
or in three processes at once, makes one job per slot. An on-demand request that finds a backup
of the instance already running is refused with ``UserErrorMaxConcurrentOperationLimitReached``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.errors import ErrorCode, UserError
from shared.instances import Instance, InstanceService, ProtectionStatus, Readiness
from shared.jobs import Job, JobStatus, JobStore, Operation, new_job_id
from shared.locks import InstanceLocks
from shared.policies import PolicyService
from shared.policy import occurrences, tag_on_demand
from shared.storage import layout
from shared.storage.queues import QueueSender
from shared.storage.tables import StateTable

log = logging.getLogger(__name__)

# How far back the scheduler looks for slots it has not turned into jobs yet. Slots older than
# this (the vault was down) are skipped: a backup a day late is taken at the next slot instead.
LOOKBACK = timedelta(hours=6)
# A scheduled job still not started this long after its slot lost its message: send it again.
RESEND_AFTER = timedelta(minutes=15)


@dataclass(frozen=True)
class BackupRequest:
    """What a backup job is asked to do (carried on the job and in its queue message)."""

    instance: str
    rule_name: str
    retention_tag: str | None  # None: the scheduler's tagging decides when the backup succeeds
    on_demand: bool


def parse_trigger(body: Any, policy_rule: str) -> tuple[str, str | None]:
    """Azure's TriggerBackupRequest → (rule name, requested tag); ``InvalidRequest`` naming the field."""
    if body is None:
        return policy_rule, None
    if not isinstance(body, dict):
        raise UserError(ErrorCode.INVALID_REQUEST, "the body must be a JSON object", target="body")
    options = body.get("backupRuleOptions")
    if options is None:
        return policy_rule, None
    if not isinstance(options, dict):
        raise UserError(ErrorCode.INVALID_REQUEST, "backupRuleOptions must be an object", target="backupRuleOptions")
    rule = options.get("ruleName", policy_rule)
    if not isinstance(rule, str) or rule != policy_rule:
        raise UserError(
            ErrorCode.INVALID_REQUEST,
            f"backupRuleOptions.ruleName must name the policy's backup rule {policy_rule!r}",
            target="backupRuleOptions.ruleName",
        )
    trigger = options.get("triggerOption") or {}
    if not isinstance(trigger, dict):
        raise UserError(
            ErrorCode.INVALID_REQUEST,
            "backupRuleOptions.triggerOption must be an object",
            target="backupRuleOptions.triggerOption",
        )
    tag = trigger.get("retentionTagOverride")
    if tag is not None and not isinstance(tag, str):
        raise UserError(
            ErrorCode.INVALID_REQUEST,
            "retentionTagOverride must be a string naming a retention rule",
            target="backupRuleOptions.triggerOption.retentionTagOverride",
        )
    return rule, tag


class BackupStarter:
    """Creates backup jobs and queues them."""

    def __init__(self, state: StateTable, queues: QueueSender) -> None:
        self._state = state
        self._queues = queues
        self._jobs = JobStore(state)
        self._instances = InstanceService(state, lambda job, instance: None)
        self._policies = PolicyService(state)
        self._locks = InstanceLocks(state)

    def _send(self, job: Job) -> None:
        self._queues.send(layout.BACKUP_QUEUE, {"jobId": job.job_id, "instance": job.instance})

    def on_demand(self, name: str, body: Any, now: datetime) -> Job:
        """Start an on-demand backup of instance ``name`` with the tag the request asks for."""
        instance = self._instances.get(name)
        if instance.readiness is not Readiness.SUCCESS:
            raise UserError(
                ErrorCode.CONFLICT,
                f"backup instance {name!r} is not ready for backups (readiness {instance.readiness.value})",
                target="name",
                recommended_action="Fix what its validation job reports, re-validate, then back up.",
            )
        policy = self._policies.get(instance.spec.policy_name).policy
        rule, tag = parse_trigger(body, policy.backup_rule_name)
        tag = tag_on_demand(policy, tag) if tag is not None else policy.default_tag
        running = self.running(instance.spec.name, now)
        if running is not None:
            raise UserError(
                ErrorCode.MAX_CONCURRENT_OPERATION_LIMIT_REACHED,
                f"a backup of {name!r} is queued or running (job {running})",
                target="name",
            )
        job = Job(
            new_job_id(now),
            Operation.BACKUP,
            instance.spec.name,
            JobStatus.IN_PROGRESS,
            now,
            retention_tag=tag,
            rule_name=rule,
            details={"trigger": "OnDemand"},
        )
        job, _ = self._jobs.create(job)
        self._send(job)
        return job

    def running(self, instance: str, now: datetime) -> str | None:
        """The id of a backup of ``instance`` that runs (holds the lock) or waits in the queue, else None.

        A queued job counts for ``RESEND_AFTER``; older unstarted ones lost their message and are
        sent again by the scheduler.
        """
        holder = self._locks.holder(instance)
        if holder is not None and not holder.stale(now) and not self._finished(holder.job_id):
            return holder.job_id
        for job in self._jobs.recent(
            now, days=1, instance=instance, status=JobStatus.IN_PROGRESS, operation=Operation.BACKUP
        ):
            if job.start_time is None and now - job.created <= RESEND_AFTER:
                return job.job_id
        return None

    def _finished(self, job_id: str) -> bool:
        try:
            return self._jobs.get(job_id).status.finished
        except UserError:
            return True

    def due(self, instance: Instance, now: datetime) -> Iterator[datetime]:
        """The instance's schedule slots in the lookback window up to ``now``."""
        policy = self._policies.get(instance.spec.policy_name).policy
        start = max(now - LOOKBACK, instance.created)
        yield from occurrences(policy.schedule, start, now + timedelta(microseconds=1))

    def schedule(self, now: datetime) -> list[Job]:
        """Create and queue a job for each due slot of every protected, ready instance (idempotent)."""
        started: list[Job] = []
        for instance in self._instances.all():
            if (
                instance.protection_status is not ProtectionStatus.PROTECTED
                or instance.readiness is not Readiness.SUCCESS
            ):
                continue
            try:
                slots = list(self.due(instance, now))
            except UserError as exc:
                log.error(
                    "instance %s: cannot evaluate policy %s: %s", instance.spec.name, instance.spec.policy_name, exc
                )
                continue
            if not slots:
                continue
            slot = slots[-1]  # only the latest: missed earlier slots are not run late, one after another
            policy_rule = self._policies.get(instance.spec.policy_name).policy.backup_rule_name
            job = Job(
                new_job_id(slot, key=f"{layout.row_key(instance.spec.name)}@{slot.isoformat()}"),
                Operation.BACKUP,
                instance.spec.name,
                JobStatus.IN_PROGRESS,
                slot,
                rule_name=policy_rule,
                details={"trigger": "Schedule", "slot": slot.isoformat()},
            )
            job, created = self._jobs.create(job)
            lost = job.start_time is None and not job.status.finished and now - job.created > RESEND_AFTER
            if created or lost:
                # A duplicate message is harmless: the worker takes the instance's lock.
                self._send(job)
                started.append(job)
        return started
