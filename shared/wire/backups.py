"""``:backup``: Azure's TriggerBackupRequest."""

from __future__ import annotations

from pydantic import Field

from shared.wire.common import Request


class TriggerOption(Request):
    """The retention tag the point gets."""

    retentionTagOverride: str | None = Field(None, description="Default|Weekly|Monthly|Yearly")


class BackupRuleOptions(Request):
    """Which backup rule, and which retention tag."""

    ruleName: str | None = Field(None, description="the policy's backup rule, e.g. BackupWeekly")
    triggerOption: TriggerOption | None = None


class TriggerBackupRequest(Request):
    """Azure's TriggerBackupRequest; the body may be empty (the Default tag)."""

    backupRuleOptions: BackupRuleOptions | None = None
