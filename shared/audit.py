"""The audit trail: every mutating call, who made it, what it asked, how it ended.

Records live in the state table, one partition per UTC day (``audit-YYYYMMDD``), row keys the
inverted time plus a random tail, so a day reads newest first and a page of ``GET /api/auditLog``
is one filtered query per day it touches. Records are kept ``PGVAULT_AUDIT_RETENTION_DAYS``
(at least 10 years: the longest retention a policy can give a point, docs/rules.md C1, so the
calls that made and changed any point outlive it); ``AuditLog.expire`` (run by the retention
timer) deletes whole days older than that.

Bodies are redacted before they are stored (``redact``): passwords, keys, tokens, connection
strings and SAS signatures never reach a record, nor function keys (``shared.telemetry``).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shared.errors import ErrorCode, UserError
from shared.jobs.model import _inverted
from shared.page_token import seal, unseal
from shared.storage.ports import StateStore
from shared.telemetry import REDACTED, redact_keys
from shared.wire.access import AuditOutcome, AuditRecord

log = logging.getLogger(__name__)

AUDIT_PREFIX = "audit-"
DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_DAYS = 3653
# A table property holds 32 K characters (Azure Tables' limit): a stored body is cut well before.
MAX_BODY_CHARS = 8000

# Field names whose values are secrets whatever they hold (compared without case, '_' and '-').
_SECRET_FIELDS = re.compile(
    r"(password|passwd|pwd|accountkey|sharedaccesskey|sharedaccesssignature|sas|token|connectionstring|"
    r"credential|clientsecret|apikey|functionkey|^key$|^code$|^sig$)"
)
# Values that carry a secret inline: ADO.NET / storage connection strings, SAS query strings.
_SECRET_VALUES = re.compile(r"(?i)(password|pwd|accountkey|sharedaccesskey|sharedaccesssignature)\s*=|[?&]sig=")


def _secret_field(name: str) -> bool:
    return bool(_SECRET_FIELDS.search(name.lower().replace("_", "").replace("-", "")))


def _clean_string(value: str) -> str:
    if _SECRET_VALUES.search(value):
        parts = urlsplit(value) if "://" in value else None
        if parts is not None and parts.scheme in ("http", "https") and not _SECRET_VALUES.search(parts.path):
            # A URL with a SAS: keep where it points, drop the query that authorises.
            return urlunsplit((parts.scheme, parts.netloc, parts.path, REDACTED, ""))
        return REDACTED
    return redact_keys(value)


def redact(body: Any) -> Any:
    """``body`` with every secret replaced by ``REDACTED``: secret-named fields, connection strings,
    SAS query strings and function keys, at any depth."""
    if isinstance(body, Mapping):
        return {str(k): (REDACTED if _secret_field(str(k)) else redact(v)) for k, v in body.items()}
    if isinstance(body, list):
        return [redact(v) for v in body]
    if isinstance(body, str):
        return _clean_string(body)
    return body


def body_for_audit(raw: bytes) -> Any:
    """What the audit record keeps of a request body: the redacted JSON, or a note when it is none."""
    if not raw:
        return None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {"unreadable": f"{len(raw)} bytes, not JSON"}
    clean = redact(doc)
    text = json.dumps(clean, separators=(",", ":"))
    if len(text) > MAX_BODY_CHARS:
        return {"truncated": f"{len(raw)} bytes; the first {MAX_BODY_CHARS} characters", "text": text[:MAX_BODY_CHARS]}
    return clean


def partition_for(at: datetime) -> str:
    """The audit partition of ``at``'s UTC day: the day inverted, so newer days sort first."""
    return f"{AUDIT_PREFIX}{_LAST_DAY - int(f'{at.astimezone(UTC):%Y%m%d}'):08d}"


_LAST_DAY = 99999999
_ABOVE_EVERY_PARTITION = f"{AUDIT_PREFIX}~"  # '~' sorts after every digit
_TOKEN = re.compile(r"^[0-9a-f-]*$")


@dataclass(frozen=True)
class AuditCursor:
    """Where the next page starts: after this record (partition, row key), in the first page's window."""

    partition: str
    after: str
    since: datetime
    until: datetime

    def encode(self) -> str:
        """Opaque URL-safe token with a checksum."""
        return seal([self.partition, self.after, int(self.since.timestamp()), int(self.until.timestamp())], "audit")

    @classmethod
    def decode(cls, token: str, target: str = "continuationToken") -> AuditCursor:
        """The cursor in ``token``; 400 naming ``target`` unless pgvault wrote it."""
        try:
            partition, after, since, until = unseal(token, "audit")
            if not re.fullmatch(rf"{AUDIT_PREFIX}\d{{8}}", partition) or not _TOKEN.match(after):
                raise ValueError("position")
            return cls(partition, after, datetime.fromtimestamp(since, UTC), datetime.fromtimestamp(until, UTC))
        except (ValueError, TypeError, UnicodeDecodeError, OverflowError) as exc:
            raise UserError(
                ErrorCode.INVALID_REQUEST,
                f"{target} is not a continuation token of the audit log",
                target=target,
                recommended_action="Follow the nextLink of the previous page as it is, or start again without "
                f"{target}.",
            ) from exc


class AuditLog:
    """The audit records in the state table."""

    def __init__(self, state: StateStore, retention_days: int) -> None:
        self._state = state
        self.retention_days = retention_days

    def record(
        self,
        now: datetime,
        *,
        principal: str,
        principal_id: str,
        method: str,
        route: str,
        target: str | None,
        body: Any,
        status: int,
        error_code: str | None = None,
        approval_id: str | None = None,
    ) -> AuditRecord:
        """Write one record (the body as given: redact it first, ``body_for_audit``)."""
        row = f"{_inverted(now)}-{secrets.token_hex(6)}"
        record = AuditRecord(
            id=row,
            time=now,
            principal=principal,
            principalId=principal_id,
            method=method,
            route=route,
            target=target,
            body=body,
            outcome=AuditOutcome(status=status, errorCode=error_code),
            approvalId=approval_id,
        )
        self._state.insert(partition_for(now), row, {"record": record.model_dump_json(), "time": now})
        return record

    def page(
        self, now: datetime, *, days: int = 7, top: int = DEFAULT_PAGE, cursor: AuditCursor | None = None
    ) -> tuple[list[AuditRecord], AuditCursor | None]:
        """Up to ``top`` records of the last ``days`` days, newest first, and where the next page starts.

        One range query over the window's day partitions (newest day first, newest record first in
        each), continued by the service when it splits its answer: a page costs one request, not one
        per day of the window.
        """
        if cursor is None:
            cursor = AuditCursor(partition_for(now), "", now - timedelta(days=days), now)
        where = (
            "( PartitionKey le @oldest ) and ( RowKey lt @before ) and "
            "( ( PartitionKey gt @pk ) or ( ( PartitionKey eq @pk ) and ( RowKey gt @after ) ) )"
        )
        params = {
            "oldest": partition_for(cursor.since),
            "before": f"{_inverted(cursor.since)}.",
            "pk": cursor.partition,
            "after": cursor.after,
        }
        out: list[tuple[str, AuditRecord]] = []
        continuation: Any = None
        while True:
            # One more than needed: it tells whether another page follows.
            items, continuation = self._state.page(
                where, params, page_size=top - len(out) + 1, continuation=continuation
            )
            for entity in items:
                if len(out) == top:
                    pk, record = out[-1]
                    return [r for _, r in out], AuditCursor(pk, record.id, cursor.since, cursor.until)
                out.append((entity.partition_key, AuditRecord.model_validate_json(str(entity["record"]))))
            if continuation is None:
                return [r for _, r in out], None

    def expire(self, now: datetime) -> int:
        """Delete the records older than the retention (whole days); returns how many went."""
        cutoff = partition_for(now - timedelta(days=self.retention_days))
        gone = 0
        # Older days have larger partition keys: everything after the cutoff day's partition.
        for entity in self._state.query(
            "( PartitionKey gt @cutoff ) and ( PartitionKey lt @end )",
            {"cutoff": cutoff, "end": _ABOVE_EVERY_PARTITION},
        ):
            self._state.delete(entity)
            gone += 1
        if gone:
            log.info("audit trail: %d records older than %d days deleted", gone, self.retention_days)
        return gone
