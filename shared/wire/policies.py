"""Backup policies: the document's envelope (``shared.policy.parse`` keeps its own rules), the stored
policy, and the simulation."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from shared.policy.model import CopyOption
from shared.wire.common import Request, Response, UtcTime


class BackupPolicy(Request):
    """Azure Data Protection BackupPolicy, wrapped in {"properties": ...} (with Azure's resource fields id, name,
    type, eTag, systemData) or bare (examples: tests/policy-examples/). Checked completely by the policy parser; a
    refused one is 400 InvalidPolicy. A field Azure's BackupPolicy does not have, at any level (such as timezone for
    timeZone), is refused naming its path, e.g. properties.policyRules[0].trigger.schedule.timezone."""

    properties: dict[str, Any] | None = Field(
        None, description="Azure's BackupPolicy properties: objectType, datasourceTypes, policyRules"
    )
    objectType: Literal["BackupPolicy"] | None = None
    datasourceTypes: list[str] | None = None
    policyRules: list[dict[str, Any]] | None = None
    id: str | None = None
    name: str | None = None
    type: str | None = None
    eTag: str | None = None
    systemData: dict[str, Any] | None = None


class StoredPolicy(Response):
    """A policy as stored: Azure's resource shape, its properties as the parser normalised them."""

    name: str
    type: Literal["backupPolicies"]
    properties: dict[str, Any] = Field(description="Azure's BackupPolicy properties (PUT them back unchanged)")


class PolicyList(Response):
    """Every policy."""

    value: list[StoredPolicy]


class SimulateRequest(Request):
    """The date range of a dry run."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)

    start: str = Field(alias="from", description="date or date-time, from 1900-01-01")
    end: str = Field(alias="to", description="exclusive; at most 7320 days after from and at most 9900-01-01")


class SimulatedBackup(Response):
    """One scheduled backup and the life of its point. ``archiveMove`` is when it reaches ArchiveStore: at vault
    expiry for CopyOnExpiryOption, at backup time for ImmediateCopyOption (``copyOption`` says which)."""

    time: UtcTime
    tag: str
    vaultExpiry: UtcTime
    archiveMove: UtcTime | None = None
    archiveExpiry: UtcTime | None = None
    copyOption: CopyOption | None = None
    deletion: UtcTime


class SimulationSummary(Response):
    """Totals of the simulated range."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    start: UtcTime = Field(alias="from")
    end: UtcTime = Field(alias="to")
    timeZone: str
    backups: int
    backupsPerTag: dict[str, int]
    livePoints: dict[str, int] = Field(description="points alive at the end, per datastore")
    archiveMoves: int
    deletions: int
    immediateArchiveCopies: int
    firstBackup: UtcTime | None
    lastBackup: UtcTime | None


class Simulation(Response):
    """A dry run of a policy: every backup of the range, and the totals."""

    backups: list[SimulatedBackup]
    summary: SimulationSummary
