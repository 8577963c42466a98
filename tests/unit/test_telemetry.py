"""Job id and instance on every log record; Application Insights only where configured."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from shared.settings import load_settings
from shared.telemetry import configure_telemetry, install_record_factory, job_context, redact_keys
from shared.vault import log_client_tools

CHILD = Path(__file__).resolve().parents[1] / "telemetry_child.py"
PG15 = Path("/usr/lib/postgresql/15/bin")


def test_every_record_inside_a_job_names_the_job_and_the_instance(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with job_context("0123-abc", "orders"):
        logging.getLogger("shared.backup_runner").info("ours")
        logging.getLogger("azure.storage.blob").info("a library's")
    logging.getLogger("shared.scheduler").info("after")
    got = [(r.getMessage(), r.job_id, r.instance) for r in caplog.records]  # type: ignore[attr-defined]
    assert got == [("ours", "0123-abc", "orders"), ("a library's", "0123-abc", "orders"), ("after", "-", "-")]


def test_job_contexts_nest_and_restore_the_outer_job(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with job_context("outer", "a"):
        with job_context("inner", None):
            logging.getLogger("x").info("inner")
        logging.getLogger("x").info("outer")
    got = [(r.job_id, r.instance) for r in caplog.records]  # type: ignore[attr-defined]
    assert got == [("inner", "-"), ("outer", "a")]


def test_without_a_connection_string_telemetry_stays_off() -> None:
    assert configure_telemetry({}) is False
    assert configure_telemetry({"APPLICATIONINSIGHTS_CONNECTION_STRING": "  "}) is False


def test_with_a_connection_string_records_reach_opentelemetry_with_job_and_instance() -> None:
    # In a child process: OpenTelemetry's providers are global and would outlive this test.
    out = subprocess.run(
        [sys.executable, str(CHILD)], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["configured"] is True and result["again"] is False  # configured once per process
    by_body = {r["body"]: r["attributes"] for r in result["records"]}
    assert by_body["inside the job"] == {"job_id": "0123-job", "instance": "orders"}
    assert by_body["outside any job"] == {"job_id": "-", "instance": "-"}
    assert "CHILD-KEY-0123" not in out, "a function key reached OpenTelemetry"
    redacted = [body for body in by_body if "REDACTED" in body]
    assert any(b.startswith("POST http://127.0.0.1/api/x?code=REDACTED failed") for b in redacted), redacted
    assert any("days=7&code=REDACTED answered 500" in b for b in redacted), redacted  # the traceback's text
    assert "request headers {'x-functions-key': 'REDACTED'}" in redacted, redacted


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /api/backupJobs?code=abc%2B1== HTTP/1.1", "GET /api/backupJobs?code=REDACTED HTTP/1.1"),
        ("http://h/api/x?days=7&code=k3y&top=5", "http://h/api/x?days=7&code=REDACTED&top=5"),
        ("http://h/api/x?CODE=k3y", "http://h/api/x?CODE=REDACTED"),
        ("GET http://h/api/x?code=k3y: storage down", "GET http://h/api/x?code=REDACTED: storage down"),
        ("next=http%3A%2F%2Fh%2Fapi%3Fcode%3Dk3y", "next=http%3A%2F%2Fh%2Fapi%3Fcode%3DREDACTED"),
        ("{'X-Functions-Key': 'k3y', 'Host': 'h'}", "{'X-Functions-Key': 'REDACTED', 'Host': 'h'}"),
        ('{"x-functions-key":"k3y"}', '{"x-functions-key":"REDACTED"}'),
        ("x-functions-key: k3y", "x-functions-key: REDACTED"),
        ("this route needs a function key: x-functions-key header or code=", None),
        ("errorcode=5 and ?zipcode=1", None),
    ],
)
def test_function_keys_are_taken_out_of_text(text: str, expected: str | None) -> None:
    assert redact_keys(text) == (text if expected is None else expected)


def test_no_log_record_carries_a_function_key(caplog: pytest.LogCaptureFixture) -> None:
    install_record_factory()
    caplog.set_level(logging.INFO)
    log = logging.getLogger("functions.http")
    log.warning("%s %s: %s", "GET", "http://127.0.0.1:7071/api/backupPolicies?code=UNIT-KEY", "storage down")
    try:
        raise ValueError("headers {'x-functions-key': 'UNIT-KEY'}")
    except ValueError:
        log.exception("failed")
    text = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert "UNIT-KEY" not in text and text.count("REDACTED") >= 2, text


@pytest.mark.skipif(not (PG15 / "pg_dump").exists(), reason="needs the PostgreSQL 15 client of the test machine")
def test_start_up_names_the_pg_dump_versions_it_found(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="shared.vault")
    settings = load_settings(
        {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "PGVAULT_SCHEDULER_SCHEDULE": "0 */5 * * * *",
         "PGVAULT_RETENTION_SCHEDULE": "0 17 * * * *",
         "PGVAULT_PG_BIN_DIR": str(PG15)}
    )
    lines = log_client_tools(settings)
    assert lines[0].startswith("pg_dump found: ") and "15." in lines[0] and f"({PG15 / 'pg_dump'})" in lines[0]
    assert lines[1].startswith("pg_restore found: ") and f"({PG15 / 'pg_restore'})" in lines[1]
    assert lines[2].startswith("psql found: ") and "15." in lines[2] and f"({PG15 / 'psql'})" in lines[2]
    assert [r.getMessage() for r in caplog.records if r.name == "shared.vault"] == lines
