"""Starting backups: on demand (HTTP) and on schedule (timer).

Both end the same way: a Backup job in the state table and a message on the backup queue.
A scheduled job's id is derived from the instance and the slot, so a timer that fires twice,
or in three processes at once, makes one job per slot. An on-demand request that finds a backup
of the instance already running is refused with ``UserErrorMaxConcurrentOperationLimitReached``.

An on-demand request records its job and returns the job's message (``Started``) for the HTTP
handler to hand to the host through its queue output binding: the host sends it after the
function returns and polls its backup queue at once (``shared.jobs.messages``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from shared.errors import ErrorCode, UserError
from shared.fanout import WAITING, BackupLimits, FanOut
from shared.instances import Instance, InstanceStore, ProtectionStatus, Readiness, soft_deleted_error
from shared.jobs import Job, JobStatus, JobStore, Operation, new_job_id
from shared.jobs.messages import JobMessage, Started
from shared.locks import InstanceLocks
from shared.policies import PolicyService
from shared.policy import next_occurrence, occurrences, tag_on_demand
from shared.schedule_index import DueRow, ScheduleIndex, read_keys, schedulable
from shared.storage import layout
from shared.storage.queues import QueueSender
from shared.storage.tables import StateStore
from shared.wire import iso_z
from shared.wire.backups import TriggerBackupRequest
from shared.wire.check import parse

log = logging.getLogger(__name__)

# An on-demand backup still queued (not started) this long counts as running for collisions.
QUEUED_WINDOW = timedelta(minutes=15)
# Most due index rows one tick takes (the rest are due at the next tick): keeps a tick in its timeout.
MAX_DUE_PER_TICK = 20_000
# Job writes in flight at once during a tick (each is a small table request; the service takes many).
PARALLEL_WRITES = 8


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

    def __init__(self, state: StateStore, queues: QueueSender, limits: BackupLimits | None = None) -> None:
        self._state = state
        self._queues = queues
        self._jobs = JobStore(state)
        self._instances = InstanceStore(state)
        self._policies = PolicyService(state)
        self._locks = InstanceLocks(state)
        self._index = ScheduleIndex(state)
        self._fanout = FanOut(state, queues, limits)

    def on_demand(self, name: str, body: Any, now: datetime) -> Started:
        """Record an on-demand backup of instance ``name`` with the tag the request asks for; the job and
        the message that runs it, which the caller sends (the HTTP handler: through its output binding)."""
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
        # The job first, then its message (sent by the host once the handler returns): a refused or
        # failed request never leaves a message behind, and no worker ever meets a message whose job
        # is not recorded yet. A message the host then fails to send leaves the job queued without
        # one (the request answers 500): it counts as running for QUEUED_WINDOW, and the hung-jobs
        # timer sends it again well within that (shared/hung_jobs.py, NEVER_TAKEN).
        job, _ = self._jobs.create(job)
        return Started(job, JobMessage.of(layout.BACKUP_QUEUE, job))

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

        Work is proportional to what is due (``shared.schedule_index``): one range query of the due
        index; with nothing due, that, the index's marker and an empty backlog are all it reads. The
        jobs wait in line for their seats (``shared.fanout``): the tick sends only the messages the
        backup limits leave room for.
        """
        self._index = ScheduleIndex(self._state)  # each policy read once per tick: a fresh cache
        self._index.backfill()
        due = self._index.due(now, MAX_DUE_PER_TICK)
        started = self._schedule_due(due, now) if due else []
        self._fanout.dispatch(now)
        return started

    def _schedule_due(self, due: list[DueRow], now: datetime) -> list[Job]:
        keys = {layout.row_key(r.instance) for r in due}
        records = read_keys(self._state, layout.INSTANCE, keys)
        markers = self._index.markers(keys)
        tick = timedelta(microseconds=1)
        rows: list[tuple[str, dict[str, Any]]] = []
        marks: list[tuple[str, dict[str, Any]]] = []
        stale: set[str] = set()
        jobs: list[tuple[Job, str]] = []
        done: set[str] = set()
        for row in due:
            key = layout.row_key(row.instance)
            record = records.get(key)
            if key in done or not schedulable(record.data if record is not None else None):
                stale.add(row.key)  # a second row of one instance, or one not schedulable any more
                continue
            assert record is not None
            instance = Instance.from_entity(record)
            policy = self._index.policies.get(instance.spec.policy_name)
            if policy is None:
                continue  # logged by the cache; the row stays, as the instance's policy is needed
            done.add(key)
            marker = markers.get(key)
            since = marker["through"] if marker is not None else instance.created
            # Slots in (since, now]: occurrences() is [start, end).
            slots = occurrences(policy.schedule, since + tick, now + tick)
            server = layout.server_key(instance.spec.server, instance.spec.port)
            jobs.extend(
                (self._slot_job(instance, slot, policy.backup_rule_name, skipped=True), server) for slot in slots[:-1]
            )
            if slots:
                jobs.append((self._slot_job(instance, slots[-1], policy.backup_rule_name), server))
            nxt = next_occurrence(policy.schedule, now)
            new_key = layout.slot_row(nxt, instance.spec.name)
            rows.append(
                (
                    new_key,
                    {
                        "instance": instance.spec.name,
                        "slot": nxt,
                        "policyKey": layout.row_key(instance.spec.policy_name),
                    },
                )
            )
            marks.append((key, {"through": max(now, since), "instance": instance.spec.name, "next": new_key}))
            stale.update(k for k in (row.key, marker.get("next") if marker is not None else None) if k and k != new_key)
        # The jobs, then their places in line, then the index moves on: a crash anywhere leaves the
        # index where it was, and the next tick makes the same jobs (found, not made twice) and
        # puts in line those of them that wait and are not there.
        created = self._create_all(jobs)
        line: list[tuple[str, dict[str, Any]]] = []
        started: list[Job] = []
        for (_, server), (stored, new) in zip(jobs, created, strict=True):
            if stored.status.finished or stored.start_time is not None:
                continue
            key, entry = self._fanout.entry(stored, server, stored.created)
            if new:
                started.append(stored)
                line.append((key, entry))
            elif not self._fanout.in_line(key):
                line.append((key, entry))  # made by a tick that died before its line was written
        self._fanout.enqueue(line)
        new_keys = {k for k, _ in rows}
        self._state.write_batch(layout.NEXT_BACKUP, rows, sorted(stale - new_keys))
        self._state.write_batch(layout.SCHEDULE, marks)
        return started

    def _create_all(self, jobs: list[tuple[Job, str]]) -> list[tuple[Job, bool]]:
        """Create the jobs: their rows 100 to a transaction, then each one's summary in its instance's
        partition (one request each: they cannot share a transaction) for the skipped ones only, the
        waiting ones' when they are sent (``FanOut``); both ``PARALLEL_WRITES`` at once.
        A failure stops the tick after the requests in flight end: the index has not moved, so the
        next tick makes the same jobs (found, not made twice) and the summaries still missing."""
        with ThreadPoolExecutor(max_workers=PARALLEL_WRITES) as pool:

            def run(f: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
                return [f(i) for i in items] if len(items) <= 1 else list(pool.map(f, items))

            # A job waiting in line gets its summary when the dispatcher sends it (``FanOut``), a
            # skipped one now: 10,000 due slots cost 10,000 summaries less (one request each).
            return self._jobs.create_many([job for job, _ in jobs], run, defer=lambda job: not job.status.finished)

    def _slot_job(self, instance: Instance, slot: datetime, rule: str, *, skipped: bool = False) -> Job:
        job_id = new_job_id(slot, key=f"{layout.row_key(instance.spec.name)}@{slot.isoformat()}")
        details: dict[str, Any] = {"trigger": "Schedule", "slot": iso_z(slot)}
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
        key = layout.slot_row(slot, instance.spec.name)
        details[WAITING] = FanOut.waiting(key, "in line for a backup seat (shared/fanout.py)", slot)
        return Job(
            job_id, Operation.BACKUP, instance.spec.name, JobStatus.IN_PROGRESS, slot, rule_name=rule, details=details
        )
