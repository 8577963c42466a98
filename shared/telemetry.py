"""Logging with job id and instance on every record, sent to Application Insights where configured.

``job_context(job_id, instance)`` marks the work of one job: every log record made inside it, by
any logger in the process (ours, the Azure SDK's, psycopg's), carries ``job_id`` and ``instance``
attributes, through a log-record factory installed once per process. Outside a job they are "-".

No record carries a function key: the same factory rewrites a record whose text (message,
arguments or traceback) holds a ``code=`` query value or an ``x-functions-key`` header value, so
no handler, ours, the host's or OpenTelemetry's, ever sees one (``redact_keys``).

``configure_telemetry()`` runs once per process when the vault is first built (shared/vault.py),
never at import. With ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set and the
``azure-monitor-opentelemetry`` distro installed, records go to Application Insights through
OpenTelemetry, the attributes as custom dimensions (``customDimensions.job_id``). Without the
setting nothing changes: the Functions host still forwards the records' text to its own logs.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any

log = logging.getLogger(__name__)

CONNECTION_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
NONE = "-"

_job_id: contextvars.ContextVar[str] = contextvars.ContextVar("pgvault_job_id", default=NONE)
_instance: contextvars.ContextVar[str] = contextvars.ContextVar("pgvault_instance", default=NONE)
_lock = threading.Lock()
REDACTED = "REDACTED"
# A function key in a URL's query (``?code=...``, also percent-encoded inside another URL) or in
# the ``x-functions-key`` header, however it is printed (``name: value``, ``'name': 'value'``, ``name=value``).
_KEY_PATTERNS = (
    re.compile(r"(?i)((?:[?&;]|%3F|%26)code(?:=|%3D))[^&;:#\s'\"<>]+"),
    re.compile(r"(?i)(x-functions-key['\"]?\s*[:=]\s*['\"]?)[^\s'\",;}\]]+"),
)
_MARKERS = ("code=", "code%3d", "x-functions-key")
_factory_installed = False
_configured = False


def redact_keys(text: str) -> str:
    """``text`` with every function key (``code=`` query values, ``x-functions-key`` values) replaced."""
    lowered = text.lower()
    if not any(marker in lowered for marker in _MARKERS):
        return text
    for pattern in _KEY_PATTERNS:
        text = pattern.sub(rf"\g<1>{REDACTED}", text)
    return text


def _redact_record(record: logging.LogRecord) -> None:
    """Take function keys out of the record's message and traceback (rendered once, here)."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: the logging module reports it when a handler formats it
        return
    clean = redact_keys(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info:
        text = logging.Formatter().formatException(record.exc_info)
        clean = redact_keys(text)
        if clean != text:
            # Handlers (OpenTelemetry's too) would render the exception again: they get the text only.
            record.msg, record.args, record.exc_info = f"{record.getMessage()}\n{clean}", None, None


def install_record_factory() -> None:
    """Give every log record of this process ``job_id`` and ``instance``, and no function key (idempotent)."""
    global _factory_installed  # noqa: PLW0603 - the record factory is process-wide by nature
    with _lock:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            record.job_id = _job_id.get()
            record.instance = _instance.get()
            _redact_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True


@contextlib.contextmanager
def job_context(job_id: str | None, instance: str | None) -> Iterator[None]:
    """Within this block every log record names ``job_id`` and ``instance``."""
    install_record_factory()
    job_token = _job_id.set(job_id or NONE)
    instance_token = _instance.set(instance or NONE)
    try:
        yield
    finally:
        _job_id.reset(job_token)
        _instance.reset(instance_token)


def configure_telemetry(env: Mapping[str, str]) -> bool:
    """Send logs to Application Insights when the connection string is set (once per process).

    True when Azure Monitor was configured; False when not asked for, or when the distro is not
    installed (logged as a warning: the app runs on, with the host's logging only).
    """
    global _configured  # noqa: PLW0603 - OpenTelemetry's providers are process-wide
    install_record_factory()
    # The Azure SDK logs every HTTP request at INFO: a backup stages thousands of blocks.
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
    connection = env.get(CONNECTION_SETTING, "").strip()
    with _lock:
        if _configured or not connection:
            return False
        try:
            from azure.monitor.opentelemetry import configure_azure_monitor
        except ImportError:
            log.warning(
                "%s is set but azure-monitor-opentelemetry is missing; logs stay with the host", CONNECTION_SETTING
            )
            return False
        credential = None
        if "Authorization=AAD" in env.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", ""):
            from azure.identity import ManagedIdentityCredential

            client_id = env.get("AZURE_CLIENT_ID") or None
            credential = ManagedIdentityCredential(client_id=client_id)
        configure_azure_monitor(
            connection_string=connection,
            credential=credential,
            # The root logger: every record of the process, with job_id and instance as dimensions.
            logger_name="",
            # No span per blob block or table write: a backup stages thousands of them.
            instrumentation_options={"azure_sdk": {"enabled": False}},
        )
        _configured = True
    log.info("telemetry: logs go to Application Insights")
    return True
