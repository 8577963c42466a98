"""The webhook channel: the JSON document of an alert and the one POST that delivers it.

The document is flat, so a Teams or Slack workflow (or any receiver) can pick fields without a
schema: vault, instance, jobId, operation, status, errorCode, errorMessage, recommendedAction, time,
a link to the job and a ready-made ``text`` line. It is built from the alert record only, which holds
no secret (shared/alerts/events.py); the webhook URL itself often is one (Slack and Teams put a token
in it), so it is never logged nor kept in a delivery error.

HTTP goes through ``requests`` (already installed with azure-core, a well-kept client with timeouts
and TLS verification by default); redirects are not followed, so a receiver cannot bounce the alert
elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from shared.alerts.model import Alert, AlertKind
from shared.telemetry import redact_keys
from shared.wire.common import iso_z

TIMEOUT_SECONDS = (5.0, 10.0)
"""Connect and read timeouts of one POST: a slow receiver delays the next alert only this long."""
SCHEMA = "pgvault.alert/v1"

_TITLE = {
    AlertKind.JOB_FAILED: "Job failed",
    AlertKind.JOB_COMPLETED_WITH_WARNINGS: "Job completed with warnings",
    AlertKind.RECOVERY_POINT_CORRUPTED: "Recovery point corrupted",
    AlertKind.MISSED_BACKUP: "Missed scheduled backup",
    AlertKind.PRIVILEGE_DRIFT: "Privilege drift",
}


def document(alert: Alert, vault: str, base_url: str | None = None) -> dict[str, Any]:
    """The JSON body POSTed for ``alert`` by vault ``vault``; links are absolute when ``base_url`` is known."""
    links = alert.links()
    base = (base_url or "").rstrip("/")
    job_link = f"{base}{links['job']}" if links["job"] else None
    instance_link = f"{base}{links['instance']}"
    what = f"{alert.operation} job {alert.job_id}" if alert.job_id and alert.operation else None
    text = f"[pgvault {vault}] {alert.severity.value}: {_TITLE[alert.kind]} on {alert.instance}. {alert.message}"
    if alert.recommended_action:
        text += f" Recommended action: {alert.recommended_action}"
    if job_link:
        text += f" Job: {job_link}"
    return {
        "schema": SCHEMA,
        "alertId": alert.alert_id,
        "kind": alert.kind.value,
        "severity": alert.severity.value,
        "title": _TITLE[alert.kind],
        "vault": vault,
        "instance": alert.instance,
        "jobId": alert.job_id,
        "operation": alert.operation,
        "status": alert.status,
        "errorCode": alert.error_code,
        "errorMessage": redact_keys(alert.message),
        "recommendedAction": alert.recommended_action,
        "recoveryPointId": alert.recovery_point_id,
        "slot": iso_z(alert.slot) if alert.slot else None,
        "time": iso_z(alert.time),
        "link": job_link or instance_link,
        "jobLink": job_link,
        "instanceLink": instance_link,
        "what": what,
        "text": redact_keys(text),
    }


@dataclass(frozen=True)
class PostResult:
    """How one POST went: delivered (2xx) or why not, in words that hold no URL."""

    delivered: bool
    error: str | None = None


Poster = Callable[[str, dict[str, Any]], PostResult]


def post(url: str, body: dict[str, Any]) -> PostResult:
    """POST ``body`` as JSON to ``url`` once; a 2xx answer is delivered, anything else is a failed try."""
    try:
        response = requests.post(url, json=body, timeout=TIMEOUT_SECONDS, allow_redirects=False)
    except requests.Timeout:
        return PostResult(False, "timeout")
    except requests.ConnectionError:
        return PostResult(False, "connection failed")
    except requests.RequestException as exc:  # its text names the URL: keep only the kind
        return PostResult(False, type(exc).__name__)
    with response:
        if 200 <= response.status_code < 300:
            return PostResult(True)
        return PostResult(False, f"HTTP {response.status_code}")
