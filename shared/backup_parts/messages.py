"""The message of ``pgvault-backup-part``: one data part of one attempt, and what may go in it."""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.jobs import _JOB_ID
from shared.storage import layout
from shared.storage.limits import MAX_QUEUE_MESSAGE_BYTES

PART_QUEUE = layout.BACKUP_PART_QUEUE
# Data parts of one backup, at most: part blobs are numbered with three digits (layout.part_blob_name).
MAX_PARTS = 999
# Above this a message carries a pointer to the plan blob instead of its tables (64 KiB, base64-encoded,
# Azure's limit: learn.microsoft.com/azure/storage/queues/scalability-targets), with room to spare.
INLINE_LIMIT = MAX_QUEUE_MESSAGE_BYTES - 4096


class PartMessage(BaseModel):
    """A message of ``pgvault-backup-part``: one data part of one attempt. Never a credential."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    jobId: str = Field(pattern=_JOB_ID.pattern)
    instance: str = Field(pattern=layout.NAME_PATTERN)
    attempt: str = Field(pattern=r"^[0-9a-f]{1,64}$")
    """The attempt's lock token (also in its blob names)."""
    part: int = Field(ge=1, le=MAX_PARTS)
    blobName: str
    snapshot: str
    serverMajor: int
    pgDumpVersion: str
    """The coordinator's pg_dump (``--version``): every part of a point is dumped by the same one."""
    expectedBytes: int = 0
    tables: list[tuple[str, str]] | None = None
    """(schema, table) of every table whose rows the part holds; None when ``plan`` names them."""
    plan: str | None = None
    """The blob holding every part's tables (``{"<part>": [[schema, table], ...]}``) when a message cannot."""
    digests: bool | None = None
    """True: the worker digests the part's stream as it dumps it (the stream manifest) and keeps the digests
    in ``layout.part_digests_name(blobName)`` before it records the part."""

    def wire(self) -> dict[str, Any]:
        """The message as it goes on the queue (``QueueSender.send``; measured with ``payload_size``)."""
        return self.model_dump(mode="json", exclude_none=True)

    def digest(self) -> str:
        """SHA-256 of the message as its coordinator made it: the part's row keeps it, so a worker acts only on
        a message that is, field for field, the one sent (not a copy with other tables, plan or blob)."""
        return hashlib.sha256(self.model_dump_json(exclude_none=True).encode()).hexdigest()
