"""Starting backups: on demand (HTTP) and on schedule (timer).

Both end the same way: a Backup job in the state table and a message on the backup queue.
A scheduled job's id is derived from the instance and the slot, so a timer that fires twice,
or in three processes at once, makes one job per slot. An on-demand request that finds a backup
of the instance already running is refused with ``UserErrorMaxConcurrentOperationLimitReached``.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from shared.errors import ErrorCode, PgVaultError, UserError
from shared.instances import Instance, InstanceStore, ProtectionStatus, Readiness, soft_deleted_error
from shared.jobs import Job, JobStatus, JobStore, Operation, new_job_id
from shared.locks import InstanceLocks
from shared.policies import PolicyService
from shared.policy import occurrences, tag_on_demand
from shared.storage import layout
from shared.storage.queues import QueueSender
from shared.storage.tables import EntityExists, ETagMismatch, StateStore
from shared.wire import iso_z
from shared.wire.backups import TriggerBackupRequest
from shared.wire.check import parse

log = logging.getLogger(__name__)

# An on-demand backup still queued (not started) this long counts as running for collisions.
QUEUED_WINDOW = timedelta(minutes=15)


def parse_trigger(body: Any, policy_rule: str) -> tuple[str, str | None]:
    """Azure's TriggerBackupRequest → (rule name, requested tag); ``InvalidRequest`` naming the field."""
    if body is None:
        return policy_rule, None
    if not isinstance(body, dict):
        raise UserError(ErrorCode.INVALID_REQUEST, "the body must be a JSON object", target="body")
    parse(TriggerBackupRequest, body)
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

    def __init__(self, state: StateStore, queues: QueueSender) -> None:
        self._state = state
        self._queues = queues
        self._jobs = JobStore(state)
        self._instances = InstanceStore(state)
        self._policies = PolicyService(state)
        self._locks = InstanceLocks(state)

    def _send(self, job: Job) -> None:
        self._queues.send(layout.BACKUP_QUEUE, {"jobId": job.job_id, "instance": job.instance})

    def on_demand(self, name: str, body: Any, now: datetime) -> Job:
        """Start an on-demand backup of instance ``name`` with the tag the request asks for."""
        instance = self._instances.get(name)
        if instance.soft_deleted:
            raise soft_deleted_error(instance, "it takes no backups")
        if instance.protection_status is ProtectionStatus.STOPPED:
            raise UserError(
                ErrorCode.CONFLICT,
                f"protection of backup instance {name!r} is stopped ({instance.current_protection_state}); "
                "it takes no backups",
                target="name",
                recommended_action="Resume protection (POST .../{name}:resumeProtection), then back up.",
            )
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
        # The job first, then its message: a refused or failed request never leaves a message
        # behind, and no worker ever meets a message whose job is not recorded yet. A message
        # that cannot be sent fails the job at once (the hung-jobs timer is the net under a crash).
        job, _ = self._jobs.create(job)
        try:
            self._send(job)
        except PgVaultError as exc:
            with contextlib.suppress(PgVaultError):
                self._jobs.fail(
                    job,
                    UserError(ErrorCode.SERVICE_UNAVAILABLE, f"the backup could not be queued: {exc}"),
                    now,
                    [],
                )
            raise
        return job

    def running(self, instance: str, now: datetime) -> str | None:
        """The id of a backup of ``instance`` that runs (holds the lock) or waits in the queue, else None.

        A queued job counts for ``QUEUED_WINDOW``: one still waiting after that lost its message.
        """
        holder = self._locks.holder(instance)
        if holder is not None and not holder.stale() and not self._finished(holder.job_id):
            return holder.job_id
        for job in self._jobs.recent(
            now, days=1, instance=instance, status=JobStatus.IN_PROGRESS, operation=Operation.BACKUP
        ):
            if job.start_time is None and now - job.created <= QUEUED_WINDOW:
                return job.job_id
        return None

    def _finished(self, job_id: str) -> bool:
        try:
            return self._jobs.get(job_id).status.finished
        except UserError:
            return True

    def schedule(self, now: datetime) -> list[Job]:
        """Turn the slots that fell due since the last evaluation into jobs, for every ready instance.

        Per instance, of the slots since its last evaluation only the latest runs; earlier ones (the
        vault was down) are recorded as skipped jobs, so a gap never fires a burst. Job ids derive
        from instance and slot, so a timer that fires twice, or in two processes, makes each job once.
        """
        started: list[Job] = []
        for instance in self._instances.all():
            if (
                instance.protection_status is not ProtectionStatus.PROTECTED
                or instance.readiness is not Readiness.SUCCESS
            ):
                continue
            try:
                started.extend(self._schedule_one(instance, now))
            except UserError as exc:
                log.error(
                    "instance %s: cannot evaluate policy %s: %s", instance.spec.name, instance.spec.policy_name, exc
                )
        return started

    def _schedule_one(self, instance: Instance, now: datetime) -> list[Job]:
        key = layout.row_key(instance.spec.name)
        marker = self._state.get(layout.SCHEDULE, key)
        since = marker["through"] if marker is not None else instance.created
        policy = self._policies.get(instance.spec.policy_name).policy
        # Slots in (since, now]: occurrences() is [start, end).
        tick = timedelta(microseconds=1)
        slots = occurrences(policy.schedule, since + tick, now + tick)
        started: list[Job] = []
        for slot in slots[:-1]:
            self._jobs.create(self._slot_job(instance, slot, policy.backup_rule_name, skipped=True))
        if slots:
            job = self._slot_job(instance, slots[-1], policy.backup_rule_name)
            if not self._jobs.exists(job.job_id):
                # The message first, then the job: a crash in between leaves a message whose job the
                # worker does not find (it retries, then drops it) and no job, so the next tick makes
                # both again. The other order could leave a job that no message ever starts.
                self._send(job)
                job, created = self._jobs.create(job)
                if created:
                    started.append(job)
        data = {"through": now, "instance": instance.spec.name}
        try:
            if marker is None:
                self._state.insert(layout.SCHEDULE, key, data)
            elif now > marker["through"]:
                self._state.update(marker, data)
        except (EntityExists, ETagMismatch):
            log.info("instance %s: another scheduler evaluated it at the same time", instance.spec.name)
        return started

    def _slot_job(self, instance: Instance, slot: datetime, rule: str, *, skipped: bool = False) -> Job:
        job_id = new_job_id(slot, key=f"{layout.row_key(instance.spec.name)}@{slot.isoformat()}")
        details = {"trigger": "Schedule", "slot": iso_z(slot)}
        if skipped:
            details["skipped"] = "the vault did not run at this slot; only the latest missed slot is backed up"
            return Job(
                job_id,
                Operation.BACKUP,
                instance.spec.name,
                JobStatus.CANCELLED,
                slot,
                end_time=slot,
                rule_name=rule,
                details=details,
            )
        return Job(
            job_id, Operation.BACKUP, instance.spec.name, JobStatus.IN_PROGRESS, slot, rule_name=rule, details=details
        )
