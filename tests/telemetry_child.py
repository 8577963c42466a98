"""Run by tests/unit/test_telemetry.py in a child process: OpenTelemetry's providers are global.

Configures telemetry as the deployed app does (an Application Insights connection string that
points at a closed local port), adds an in-memory exporter beside Azure Monitor's, logs inside
and outside a job context, and prints what OpenTelemetry exported as JSON.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry._logs import get_logger_provider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from shared.telemetry import configure_telemetry, job_context

CONNECTION = (
    "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
    "IngestionEndpoint=http://127.0.0.1:9/;LiveEndpoint=http://127.0.0.1:9/"
)

configured = configure_telemetry({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION})
again = configure_telemetry({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION})
memory = InMemoryLogRecordExporter()
get_logger_provider().add_log_record_processor(SimpleLogRecordProcessor(memory))  # type: ignore[attr-defined]
with job_context("0123-job", "orders"):
    logging.getLogger("azure.storage.blob").warning("inside the job")
logging.getLogger("shared.scheduler").warning("outside any job")
# Function keys, in a message, in its arguments and in a traceback: none may reach the exporter.
try:
    raise RuntimeError("GET http://127.0.0.1/api/backupJobs?days=7&code=CHILD-KEY-0123 answered 500")
except RuntimeError:
    logging.getLogger("functions.http").exception("POST %s failed", "http://127.0.0.1/api/x?code=CHILD-KEY-0123")
logging.getLogger("devhost").warning("request headers %s", {"x-functions-key": "CHILD-KEY-0123"})
records = []
for item in memory.get_finished_logs():
    record = getattr(item, "log_record", item)
    records.append({"body": str(record.body), "attributes": {k: str(v) for k, v in (record.attributes or {}).items()}})
print(json.dumps({"configured": configured, "again": again, "records": records}, default=str))
