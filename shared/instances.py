"""Backup instances: the databases this vault protects.

Configuring one writes two records: a claim on the database's identity (host, port, database,
compared after normalising host case, a trailing dot and the default port) and the instance
itself. The claim is an insert, so of two requests for one database exactly one wins, however
they interleave. A claim left by a request that died before writing its instance is taken over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from shared.errors import ErrorCode, TransientError, UserError
from shared.jobs import Job, JobStatus, JobStore, Operation, new_job_id
from shared.pg.connstring import check_server, parse_connection_string
from shared.pg.grants import ScriptFormat, grant_script
from shared.policies import PolicyService, check_name
from shared.request_body import check_fields
from shared.schedule_index import ScheduleIndex, schedulable
from shared.secrets import SecretProvider, validate_secret_reference
from shared.storage import layout
from shared.storage.tables import Entity, EntityExists, ETagMismatch, StateStore

if TYPE_CHECKING:  # the wire models import this module's enums
    from shared.backup_times import BackupTimes
    from shared.recovery_points import Usage
    from shared.wire import instances as wire_instances

log = logging.getLogger(__name__)

DEFAULT_PORT = 5432
# Azure Backup refuses these: service databases of Azure Database for PostgreSQL and templates.
UNSUPPORTED_DATABASES = frozenset({"azure_maintenance", "azure_sys", "template0", "template1"})
# Most entries one configure-many request may carry (each is a few table writes and a message).
MAX_BATCH = 100
# A claim whose instance record is still missing after this long belongs to a request that died.
STALE_CLAIM = timedelta(minutes=2)
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$")
_IPV6 = re.compile(r"^\[?[0-9A-Fa-f:.]+\]?$")


class Readiness(StrEnum):
    """Whether an instance can be backed up, as its last validation found."""

    VALIDATING = "Validating"
    SUCCESS = "Success"
    FAILED = "Failed"


class ProtectionStatus(StrEnum):
    """Whether scheduled backups run for an instance."""

    CONFIGURING = "ConfiguringProtection"
    PROTECTED = "ProtectionConfigured"
    CONFIGURING_FAILED = "ConfiguringProtectionFailed"
    STOPPED = "ProtectionStopped"
    SOFT_DELETED = "SoftDeleted"
    """Stopped with ``retainData: delete``: no backups, no restores, its points kept (held) until its
    purge time (``PGVAULT_SOFT_DELETE_DAYS`` later), when the retention sweep deletes them for real;
    ``:undelete`` before then brings it back as ProtectionStopped with every point."""


class RetainData(StrEnum):
    """What happens to a stopped instance's recovery points (``:stopProtection``'s ``retainData``)."""

    FOREVER = "forever"
    """Kept as they are: no backups, no deletions, no archive moves (Azure: StopProtection, retain data)."""
    AS_PER_POLICY = "asPerPolicy"
    """Retention continues, but the latest point is kept forever (Azure: SuspendBackups)."""
    DELETE = "delete"
    """Soft delete: the instance is SoftDeleted with its points kept until its purge time, when every
    point is deleted (each a Delete job, blob first), then the instance and its claim."""


# Azure's ``currentProtectionState`` for each way of stopping (KnownCurrentProtectionState).
STOPPED_STATE: dict[RetainData, str] = {
    RetainData.FOREVER: "ProtectionStopped",
    RetainData.AS_PER_POLICY: "BackupSchedulesSuspended",
    RetainData.DELETE: "SoftDeleted",
}


@dataclass(frozen=True)
class InstanceSpec:
    """What a user asks to protect, checked and normalised."""

    name: str
    server: str
    port: int
    database: str
    secret_uri: str
    policy_name: str
    server_region: str | None = None

    @property
    def identity(self) -> str:
        """The database's identity in this vault: host (lowercase, no trailing dot), port, database."""
        return f"{self.server.lower().rstrip('.')}\x00{self.port}\x00{self.database}"

    @property
    def claim_key(self) -> str:
        """The row key of the claim (database names may hold any character; keys may not)."""
        return hashlib.sha256(self.identity.encode()).hexdigest()


@dataclass(frozen=True)
class Instance:
    """A backup instance as stored and shown."""

    spec: InstanceSpec
    protection_status: ProtectionStatus
    readiness: Readiness
    readiness_job_id: str | None
    readiness_error: dict[str, str] | None
    created: datetime
    etag: str | None = None
    retain_data: RetainData | None = None
    """How its points are kept while protection is stopped; None while protected."""
    stopped_at: datetime | None = None
    delete_job_id: str | None = None
    """The instance's Delete job while ``retain_data`` is ``delete``."""
    protected_server: str | None = None
    """The protected server whose discovery configured this instance (``shared.protected_servers``)."""
    """The Delete job that soft-deleted the instance, while it is SoftDeleted."""
    deleted_at: datetime | None = None
    """When it was soft-deleted (``:stopProtection`` with ``retainData: delete``)."""
    purge_at: datetime | None = None
    """When the retention sweep starts deleting its points for real (``deleted_at`` + soft-delete days)."""
    purge_job_id: str | None = None
    """The Delete job of the purge, once the sweep has begun it (from then on it cannot be undeleted)."""

    @property
    def soft_deleted(self) -> bool:
        """Whether the instance is soft-deleted (kept until ``purge_at``, or being purged)."""
        return self.protection_status is ProtectionStatus.SOFT_DELETED

    @property
    def current_protection_state(self) -> str:
        """Azure's ``currentProtectionState``: the protection status, refined for a stopped instance."""
        if self.soft_deleted:
            return "SoftDeleting" if self.purge_job_id is not None else "SoftDeleted"
        if self.protection_status is ProtectionStatus.STOPPED and self.retain_data is not None:
            return STOPPED_STATE[self.retain_data]
        return self.protection_status.value

    def to_dict(self, times: BackupTimes | None = None) -> dict[str, Any]:
        """The public backup instance shape (README, API), with its backup times when given."""
        from shared.wire import dump

        return dump(self.to_wire(times))

    def to_wire(
        self, times: BackupTimes | None = None, usage: Usage | None = None, *, storage: bool = False
    ) -> wire_instances.BackupInstance:
        """The instance as the API answers it (``lastBackup``, ``nextScheduledBackup`` with ``times``;
        with ``storage``, ``storage`` from ``usage``, null when it is not known)."""
        from shared.wire import instances as wire
        from shared.wire.common import ErrorDetail

        s = self.spec
        error = self.readiness_error
        when: dict[str, Any] = {}
        if times is not None:
            when = {"lastBackup": times.last_backup_wire(), "nextScheduledBackup": times.next_scheduled}
        if self.protected_server is not None:
            when["protectedServer"] = self.protected_server
        deletion = None
        if self.soft_deleted and self.deleted_at is not None and self.purge_at is not None:
            deletion = wire.DeletionInfo(
                deletionTime=self.deleted_at,
                scheduledPurgeTime=self.purge_at,
                deleteJobId=self.delete_job_id,
                purgeJobId=self.purge_job_id,
            )
        if storage:
            when["storage"] = None if usage is None else usage.to_wire()
        return wire.BackupInstance(
            currentProtectionState=self.current_protection_state,
            retainData=self.retain_data,
            stoppedAt=self.stopped_at,
            name=s.name,
            server=s.server,
            port=s.port,
            database=s.database,
            secretUri=s.secret_uri,
            policyName=s.policy_name,
            serverRegion=s.server_region,
            protectionStatus=self.protection_status,
            backupReadiness=wire.BackupReadiness(
                status=self.readiness,
                jobId=self.readiness_job_id,
                error=ErrorDetail.model_validate(error) if error else None,
            ),
            deletionInfo=deletion,
            **when,
        )

    def data(self) -> dict[str, Any]:
        s = self.spec
        return {
            "name": s.name,
            "server": s.server,
            "port": s.port,
            "database": s.database,
            "secretUri": s.secret_uri,
            "policyName": s.policy_name,
            "policyKey": layout.row_key(s.policy_name),
            "serverRegion": s.server_region,
            "claimKey": s.claim_key,
            "protectionStatus": self.protection_status.value,
            "readiness": self.readiness.value,
            "readinessJobId": self.readiness_job_id,
            "readinessError": None if self.readiness_error is None else _json(self.readiness_error),
            "created": self.created,
            "retainData": self.retain_data.value if self.retain_data else None,
            "stoppedAt": self.stopped_at,
            "deleteJobId": self.delete_job_id,
            "protectedServer": self.protected_server,
            "deletedAt": self.deleted_at,
            "purgeAt": self.purge_at,
            "purgeJobId": self.purge_job_id,
        }

    @classmethod
    def from_entity(cls, e: Entity) -> Instance:
        """The instance stored in ``e``."""
        spec = InstanceSpec(
            str(e["name"]),
            str(e["server"]),
            int(e["port"]),
            str(e["database"]),
            str(e["secretUri"]),
            str(e["policyName"]),
            e.get("serverRegion"),
        )
        err = e.get("readinessError")
        status = ProtectionStatus(e["protectionStatus"])
        retain = RetainData(e["retainData"]) if e.get("retainData") else None
        deleted_at, purge_at, purge_job = e.get("deletedAt"), e.get("purgeAt"), e.get("purgeJobId")
        if retain is RetainData.DELETE and status is ProtectionStatus.STOPPED:
            # Written before soft delete existed, when stop with delete deleted at once: its purge
            # goes on under the Delete job it had.
            status = ProtectionStatus.SOFT_DELETED
            deleted_at = purge_at = e.get("stoppedAt") or e["created"]
            purge_job = e.get("deleteJobId")
        return cls(
            spec,
            status,
            Readiness(e["readiness"]),
            e.get("readinessJobId"),
            json.loads(err) if err else None,
            e["created"],
            e.etag,
            retain,
            e.get("stoppedAt"),
            e.get("deleteJobId"),
            e.get("protectedServer"),
            deleted_at,
            purge_at,
            purge_job,
        )


def when_text(at: datetime | None) -> str:
    """An instant for a message (ISO 8601), or "unknown"."""
    return at.isoformat() if at is not None else "unknown"


def soft_deleted_error(instance: Instance, consequence: str, target: str = "name") -> UserError:
    """``UserErrorBackupInstanceSoftDeleted`` (409) for ``instance``, saying until when it is kept."""
    return UserError(
        ErrorCode.BACKUP_INSTANCE_SOFT_DELETED,
        f"backup instance {instance.spec.name!r} is soft-deleted (since {when_text(instance.deleted_at)}, purged from "
        f"{when_text(instance.purge_at)}): {consequence}",
        target=target,
        recommended_action=f"Undelete it first (POST /api/backupInstances/{instance.spec.name}:undelete), or wait "
        f"until its purge after {when_text(instance.purge_at)}.",
    )


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _bad(message: str, target: str, code: ErrorCode = ErrorCode.INVALID_REQUEST) -> UserError:
    return UserError(code, message, target=target)


def default_name(server: str, database: str) -> str:
    """The name given to an instance configured without one: ``<server's first label>-<database>``."""
    raw = f"{server.split('.', maxsplit=1)[0]}-{database}"
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-.") or "instance"
    return cleaned[:150]


def parse_spec(
    raw: Any, target: str, *, allow_env_secrets: bool, vault_region: str | None, name: str | None = None
) -> InstanceSpec:
    """Check one instance entry of a request; ``UserError`` naming the field (``target.field``)."""
    if not isinstance(raw, dict):
        raise _bad(f"{target} must be an object with server, database, secretUri and policyName", target)
    from shared.wire import instances as wire
    from shared.wire.check import parse

    entry = parse(wire.InstanceSpec, raw, root=target if target != "body" else "")

    def text(field: str, value: str | None, required: bool = True) -> str | None:
        if value is None and not required:
            return None
        if value is None or not value.strip():
            raise _bad(f"{target}.{field} is required and must be a non-empty string", f"{target}.{field}")
        return value.strip()

    server = str(text("server", entry.server))
    database = entry.database
    secret_uri = str(text("secretUri", entry.secretUri))
    policy_name = str(text("policyName", entry.policyName))
    if not (_HOST.match(server) or _IPV6.match(server)):
        raise _bad(f"{target}.server {server!r} is not a host name or IP address", f"{target}.server")
    if len(database.encode()) > 63 or any(ord(c) < 32 or ord(c) == 127 for c in database):
        raise _bad(
            f"{target}.database must be a PostgreSQL database name (1-63 bytes, no control characters)",
            f"{target}.database",
        )
    if database in UNSUPPORTED_DATABASES:
        raise _bad(
            f"{target}.database {database!r} cannot be protected: azure_maintenance, azure_sys, template0 and "
            "template1 are not supported",
            f"{target}.database",
            ErrorCode.DATABASE_NOT_SUPPORTED,
        )
    port = entry.port
    region = text("serverRegion", entry.serverRegion, required=False)
    if region is not None:
        region = region.lower().replace(" ", "")
        if vault_region is not None and region != vault_region:
            raise _bad(
                f"{target}.serverRegion {region!r} differs from the vault's region {vault_region!r}: a vault protects "
                "servers in its own region",
                f"{target}.serverRegion",
            )
    try:
        validate_secret_reference(secret_uri, allow_env_secrets)
    except UserError as exc:
        raise UserError(
            exc.code, exc.message, target=f"{target}.secretUri", recommended_action=exc.recommended_action
        ) from exc
    given = name if name is not None else text("name", entry.name, required=False)
    instance_name = given or default_name(server, database)
    check_name(instance_name, f"{target}.name" if name is None else "name")
    check_name(policy_name, f"{target}.policyName")
    return InstanceSpec(instance_name, server, port, database, secret_uri, policy_name, region)


def check_secret_server(
    spec: InstanceSpec, secrets: SecretProvider | None, allowed_servers: Sequence[str], target: str
) -> None:
    """Refuse ``spec`` (400 naming ``target.server``) when its secret may not be used for its server.

    Nothing is checked without ``secrets``, or when the secret cannot be read or parsed now:
    the validation job reports that, and every run checks the server again.
    """
    if secrets is None:
        return
    try:
        params = parse_connection_string(secrets.get_secret(spec.secret_uri))
    except (UserError, TransientError) as exc:
        log.info("instance %s: secret not readable at configure time (%s); validation will say", spec.name, exc.code)
        return
    check_server(params, spec.server, spec.port, allowed_servers=allowed_servers, target=f"{target}.server")


@dataclass(frozen=True)
class Configured:
    """The answer for one entry of a configure request."""

    name: str | None
    instance: Instance | None = None
    job: Job | None = None
    error: UserError | None = None

    def to_dict(self) -> dict[str, Any]:
        """The entry's outcome as the API answers it (``shared.wire.instances.Configured``)."""
        from shared.wire import dump

        return dump(self.to_wire())

    def to_wire(self) -> wire_instances.Configured:
        """The entry's outcome: Validating with its job and instance, or Failed with the error."""
        from shared.wire import instances as wire
        from shared.wire.common import ErrorDetail

        if self.error is not None:
            return wire.Configured(
                name=self.name, status="Failed", error=ErrorDetail.model_validate(self.error.to_dict())
            )
        assert self.instance is not None and self.job is not None
        return wire.Configured(
            name=self.name, status="Validating", validationJobId=self.job.job_id, instance=self.instance.to_wire()
        )


# Called with (job, instance) after a validation job is recorded: puts its message on the queue.
Enqueue = Callable[[Job, Instance], None]


class InstanceStore:
    """Instance records and their claims in the state table: reads, ETag-guarded writes, claims.

    The one place that knows where instances and claims live (``layout.INSTANCE``,
    ``layout.CLAIM``); every service that reads an instance or lets one go asks this.
    """

    def __init__(self, state: StateStore) -> None:
        self._state = state

    @property
    def state(self) -> StateStore:
        """The state table the instances live in."""
        return self._state

    def find(self, name: str) -> Instance | None:
        """Instance ``name``, or None."""
        entity = self._state.get(layout.INSTANCE, layout.row_key(name))
        return None if entity is None else Instance.from_entity(entity)

    def get(self, name: str) -> Instance:
        """Instance ``name``; ``NotFound`` if there is none."""
        instance = self.find(name)
        if instance is None:
            raise UserError(ErrorCode.NOT_FOUND, f"backup instance {name!r} does not exist", target="name")
        return instance

    def all(self) -> Iterator[Instance]:
        """Every instance, by name."""
        return (Instance.from_entity(e) for e in self._state.partition(layout.INSTANCE))

    def insert(self, instance: Instance) -> Instance:
        """Write a new instance record; ``EntityExists`` if one of that name exists."""
        data = instance.data()
        if schedulable(data):
            self._index().put(instance.spec.name, instance.spec.policy_name, instance.created)
        written = self._state.insert(layout.INSTANCE, layout.row_key(instance.spec.name), data)
        return replace(instance, etag=written.etag)

    def save(self, old: Instance, new: Instance) -> Instance:
        """Write ``new`` over ``old`` if the instance is unchanged since ``old`` was read (else ``ETagMismatch``).

        Keeps the scheduler's due index a superset of the schedulable instances
        (``shared.schedule_index``): indexed before it becomes schedulable, dropped after it stops."""
        was, data = old.data(), new.data()
        if schedulable(data) and (not schedulable(was) or was["policyKey"] != data["policyKey"]):
            self._index().put(new.spec.name, new.spec.policy_name, new.created)
        entity = Entity(layout.INSTANCE, layout.row_key(old.spec.name), {}, old.etag)
        written = self._state.update(entity, data)
        if schedulable(was) and not schedulable(data):
            self._index().drop(old.spec.name)
        return replace(new, etag=written.etag)

    def delete(self, instance: Instance) -> None:
        """Delete the record if unchanged since read (``ETagMismatch`` otherwise); gone is fine."""
        self._state.delete(Entity(layout.INSTANCE, layout.row_key(instance.spec.name), {}, instance.etag))
        self._index().drop(instance.spec.name)

    def _index(self) -> ScheduleIndex:
        return ScheduleIndex(self._state)

    def holder(self, spec: InstanceSpec) -> str | None:
        """The name of the instance whose claim holds ``spec``'s database, or None when unclaimed."""
        claim = self._state.get(layout.CLAIM, spec.claim_key)
        return None if claim is None else str(claim["instance"])

    def claim(self, spec: InstanceSpec, target: str, now: datetime) -> None:
        """Claim ``spec``'s database for instance ``spec.name``: of two claimants exactly one wins.

        ``DatabaseAlreadyProtected`` when another instance holds it; a claim whose instance was
        never written (its request died ``STALE_CLAIM`` ago) is taken over, ETag-guarded.
        """
        data = {"instance": spec.name, "instanceKey": layout.row_key(spec.name), "claimedAt": now}
        for _ in range(3):
            try:
                self._state.insert(layout.CLAIM, spec.claim_key, data)
                return
            except EntityExists:
                pass
            held = self._state.get(layout.CLAIM, spec.claim_key)
            if held is None:
                continue
            refusal = self._refusal(held, spec, target)
            if refusal is not None:
                raise refusal
            if now - held["claimedAt"] < STALE_CLAIM:
                break  # its request may still be writing the instance
            # The claim's instance was never written (its request died): take the claim over.
            try:
                self._state.update(held, data)
                return
            except ETagMismatch:
                continue
        raise UserError(ErrorCode.CONFLICT, "another request is configuring this database; retry", target=target)

    def refusal(self, spec: InstanceSpec, target: str) -> UserError | None:
        """Why configuring ``spec`` would be refused because another instance holds its database, or None."""
        held = self._state.get(layout.CLAIM, spec.claim_key)
        return None if held is None else self._refusal(held, spec, target)

    def _refusal(self, held: Entity, spec: InstanceSpec, target: str) -> UserError | None:
        owner = self._state.get(layout.INSTANCE, str(held["instanceKey"]))
        if owner is None or owner.get("claimKey") != spec.claim_key:
            return None  # a claim whose instance was never written (or was moved): not a refusal
        holder = Instance.from_entity(owner)
        if holder.soft_deleted:
            return soft_deleted_error(
                holder,
                f"database {spec.database!r} on {spec.server}:{spec.port} stays claimed by it, and cannot be "
                "protected again until it is undeleted (then use that instance) or purged",
                target=f"{target}.database",
            )
        by_server = owner.get("protectedServer")
        of_server = f" of protected server {by_server!r}" if by_server else ""
        return UserError(
            ErrorCode.DATABASE_ALREADY_PROTECTED,
            f"database {spec.database!r} on {spec.server}:{spec.port} is already protected by backup instance "
            f"{held['instance']!r}{of_server}",
            target=f"{target}.database",
            recommended_action=(
                f"Exclude the database from protected server {by_server!r} (excludePatterns) before "
                "protecting it on its own."
                if by_server
                else "Use the instance that protects it; stopped with retainData delete, it frees the "
                "database once its soft-deleted data is purged."
            ),
        )

    def release(self, spec: InstanceSpec) -> None:
        """Let go of ``spec``'s claim if instance ``spec.name`` holds it (a claim changed meanwhile is left)."""
        held = self._state.get(layout.CLAIM, spec.claim_key)
        if held is not None and held.get("instanceKey") == layout.row_key(spec.name):
            try:
                self._state.delete(held)
            except ETagMismatch:
                log.info("claim for instance %s changed before release; left as is", spec.name)


class InstanceService:
    """Configure, read and list backup instances."""

    def __init__(self, state: StateStore, enqueue_validation: Enqueue) -> None:
        self.store = InstanceStore(state)
        self._jobs = JobStore(state)
        self._policies = PolicyService(state)
        self._enqueue = enqueue_validation

    def configure_many(
        self,
        body: Any,
        now: datetime,
        *,
        allow_env_secrets: bool,
        vault_region: str | None,
        secrets: SecretProvider | None = None,
        allowed_servers: Sequence[str] = (),
        protected_server: str | None = None,
    ) -> list[Configured]:
        """Configure every entry of ``{"instances": [...]}``; one bad entry does not stop the others.

        With ``secrets``, each entry's secret is read now and an entry whose server the secret
        may not be used for is refused (``check_server``); see ``configure_one``. A database that a
        protected server covers is refused (``DatabaseAlreadyProtected`` naming it) unless
        ``protected_server`` says the request is that server's discovery; its instances say so.
        """
        if not isinstance(body, dict) or not isinstance(body.get("instances"), list):
            raise _bad(
                'the body must be {"instances": [{"server", "database", "secretUri", "policyName"}, ...]}', "instances"
            )
        from shared.wire.instances import ConfigureManyRequest

        # Only the envelope here: each entry is checked on its own, one bad entry does not stop the others.
        check_fields(body, dict.fromkeys(ConfigureManyRequest.model_fields))
        entries = body["instances"]
        if not entries:
            raise _bad("instances must list at least one database", "instances")
        if len(entries) > MAX_BATCH:
            raise _bad(f"at most {MAX_BATCH} instances per request; send {len(entries)} in several", "instances")
        results: list[Configured] = []
        seen: set[str] = set()
        for i, raw in enumerate(entries):
            target = f"instances[{i}]"
            try:
                spec = parse_spec(raw, target, allow_env_secrets=allow_env_secrets, vault_region=vault_region)
                check_secret_server(spec, secrets, allowed_servers, target)
                if layout.row_key(spec.name) in seen:
                    raise _bad(
                        f"{target}.name {spec.name!r} appears twice in this request",
                        f"{target}.name",
                        ErrorCode.CONFLICT,
                    )
                seen.add(layout.row_key(spec.name))
                results.append(self._create(spec, now, target, protected_server))
            except UserError as exc:
                name = raw.get("name") if isinstance(raw, dict) and isinstance(raw.get("name"), str) else None
                results.append(Configured(name, error=exc))
        return results

    def configure_one(
        self,
        name: str,
        body: Any,
        now: datetime,
        *,
        allow_env_secrets: bool,
        vault_region: str | None,
        secrets: SecretProvider | None = None,
        allowed_servers: Sequence[str] = (),
    ) -> Configured:
        """Create instance ``name``, or update its policy and secret if it protects the same database.

        With ``secrets``, the secret is read now: when it names another server than the
        instance's, or names none and the server matches no ``allowed_servers``, the request is
        refused (400) and nothing is stored. A secret that cannot be read now is left to the
        validation job, which reads it again (as every backup does: a secret can change).
        """
        check_name(name)
        spec = parse_spec(body, "body", allow_env_secrets=allow_env_secrets, vault_region=vault_region, name=name)
        check_secret_server(spec, secrets, allowed_servers, "body")
        current = self.store.find(name)
        if current is None:
            result = self._create(spec, now, "body", None)
            if result.error is not None:
                raise result.error
            return result
        if current.spec.identity != spec.identity:
            raise UserError(
                ErrorCode.CONFLICT,
                f"backup instance {name!r} protects {current.spec.database!r} on "
                f"{current.spec.server}:{current.spec.port}; "
                "an instance cannot be moved to another database",
                target="name",
                recommended_action="Configure the other database under a new name.",
            )
        self._require_policy(spec.policy_name, "policyName")
        job = self._validation_job(spec.name, now)
        if current.soft_deleted:
            raise soft_deleted_error(current, "it cannot be configured before it is undeleted")
        # replace() keeps what configuring does not change (a stopped instance stays stopped).
        updated = replace(
            current, spec=spec, readiness=Readiness.VALIDATING, readiness_job_id=job.job_id, readiness_error=None
        )
        try:
            updated = self.store.save(current, updated)
        except ETagMismatch as exc:
            raise UserError(ErrorCode.CONFLICT, f"backup instance {name!r} changed during this request; retry") from exc
        job, _ = self._jobs.create(job)
        self._enqueue(job, updated)
        return Configured(name, updated, job)

    def _require_policy(self, name: str, target: str) -> None:
        try:
            self._policies.get(name)
        except UserError as exc:
            raise UserError(ErrorCode.NOT_FOUND, exc.message, target=target) from exc

    def _validation_job(self, name: str, now: datetime) -> Job:
        return Job(new_job_id(now), Operation.VALIDATE, name, JobStatus.IN_PROGRESS, now)

    def _create(self, spec: InstanceSpec, now: datetime, target: str, protected_server: str | None) -> Configured:
        self._require_policy(spec.policy_name, f"{target}.policyName")
        if protected_server is None:
            from shared.protected_servers import refuse_if_covered

            refuse_if_covered(self.store, spec, target)
        self.store.claim(spec, target, now)
        job = self._validation_job(spec.name, now)
        instance = Instance(
            spec,
            ProtectionStatus.CONFIGURING,
            Readiness.VALIDATING,
            job.job_id,
            None,
            now,
            protected_server=protected_server,
        )
        try:
            instance = self.store.insert(instance)
        except EntityExists as exc:
            self.store.release(spec)
            raise UserError(
                ErrorCode.CONFLICT,
                f"a backup instance named {spec.name!r} exists already",
                target=f"{target}.name",
                recommended_action="Choose another name, or PUT /api/backupInstances/{name} to change that instance.",
            ) from exc
        job, _ = self._jobs.create(job)
        self._enqueue(job, instance)
        return Configured(spec.name, instance, job)

    def save(self, old: Instance, new: Instance) -> Instance:
        """Write ``new`` over ``old`` (``InstanceStore.save``)."""
        return self.store.save(old, new)

    def revalidate(self, name: str, now: datetime) -> Job:
        """Start a new validation of ``name``: readiness goes back to Validating under a new job.

        The instance is written before the job's message is sent, so the worker always finds the
        instance pointing at its job; a validation still running is superseded (its job ends
        Cancelled).
        """
        for _ in range(3):
            instance = self.get(name)
            if instance.soft_deleted:
                raise soft_deleted_error(instance, "it is not validated before it is undeleted")
            job = self._validation_job(instance.spec.name, now)
            updated = replace(
                instance, readiness=Readiness.VALIDATING, readiness_job_id=job.job_id, readiness_error=None
            )
            try:
                updated = self.save(instance, updated)
            except ETagMismatch:
                continue
            job, _ = self._jobs.create(job)
            self._enqueue(job, updated)
            return job
        raise UserError(ErrorCode.CONFLICT, f"backup instance {name!r} is being changed by other requests; retry")

    def grant_script(self, name: str, fmt: str, secrets: SecretProvider) -> str:
        """The grant script for instance ``name``'s database and its secret's user, in ``fmt``."""
        try:
            script_format = ScriptFormat(fmt)
        except ValueError as exc:
            raise _bad("format must be sql, sh or ps1", "format") from exc
        instance = self.get(name)
        user = parse_connection_string(secrets.get_secret(instance.spec.secret_uri)).user
        return grant_script(instance.spec.database, user, instance.spec.server, instance.spec.port, script_format)

    def get(self, name: str) -> Instance:
        """Instance ``name``; ``NotFound`` if there is none."""
        return self.store.get(name)

    def all(self) -> Iterator[Instance]:
        """Every instance, by name."""
        return self.store.all()
