"""The CLI's argument parsing and the request bodies it builds (no server needed)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from pgvault.__main__ import build_parser, main
from pgvault.client import Client
from pgvault.commands import (
    EXIT_JOB_FAILED,
    EXIT_OK,
    UsageError,
    instance_body,
    job_exit,
    restore_database_body,
    restore_files_body,
    trigger_body,
    verify_body,
)


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return build_parser().parse_args(list(argv))


def test_backup_now_parses_rule_tag_and_wait() -> None:
    args = parse("backup", "now", "--instance", "orders", "--rule", "BackupWeekly", "--tag", "Monthly", "--wait")
    assert (args.instance, args.rule, args.tag, args.wait, args.timeout) == (
        "orders",
        "BackupWeekly",
        "Monthly",
        True,
        3600,
    )
    assert trigger_body(args.rule, args.tag) == {
        "backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTagOverride": "Monthly"}}
    }
    assert trigger_body(None, None) == {}


def test_restore_database_builds_azures_restore_request() -> None:
    args = parse(
        "restore",
        "database",
        "-i",
        "orders",
        "--recovery-point",
        "rp1",
        "--target-database",
        "orders_copy",
        "--target-secret-uri",
        "https://kv1.vault.azure.net/secrets/target",
        "--schema",
        "sales",
        "--schema",
        "hr",
    )
    body = restore_database_body(args)
    assert body["objectType"] == "AzureBackupRecoveryPointBasedRestoreRequest"
    assert body["recoveryPointId"] == "rp1" and "sourceDataStoreType" not in body
    target = body["restoreTargetInfo"]
    assert target["objectType"] == "RestoreTargetInfo" and target["recoveryOption"] == "FailIfExists"
    assert target["datasourceInfo"]["resourceName"] == "orders_copy"
    assert target["datasourceAuthCredentials"] == {
        "objectType": "SecretStoreBasedAuthCredentials",
        "secretStoreResource": {
            "uri": "https://kv1.vault.azure.net/secrets/target",
            "secretStoreType": "AzureKeyVault",
        },
    }
    assert body["restoreOptions"] == {"schemas": ["sales", "hr"]}


def test_restore_of_an_archived_point_asks_for_rehydration() -> None:
    args = parse(
        "restore",
        "database",
        "-i",
        "orders",
        "--recovery-point",
        "rp1",
        "--target-database",
        "x",
        "--target-secret-uri",
        "env:PGVAULT_SECRET_T",
        "--rehydration-priority",
        "High",
        "--rehydration-duration",
        "P20D",
    )
    body = restore_database_body(args)
    assert body["objectType"] == "AzureBackupRestoreWithRehydrationRequest"
    assert (body["sourceDataStoreType"], body["rehydrationPriority"], body["rehydrationRetentionDuration"]) == (
        "ArchiveStore",
        "High",
        "P20D",
    )


def test_restore_files_builds_a_files_target() -> None:
    args = parse(
        "restore",
        "files",
        "-i",
        "orders",
        "--recovery-point",
        "rp1",
        "--container-url",
        "https://acct.blob.core.windows.net/restores",
        "--file-prefix",
        "orders-2026",
        "--zstd",
    )
    body = restore_files_body(args)
    assert body["restoreTargetInfo"] == {
        "objectType": "RestoreFilesTargetInfo",
        "recoveryOption": "FailIfExists",
        "targetDetails": {
            "url": "https://acct.blob.core.windows.net/restores",
            "filePrefix": "orders-2026",
            "restoreTargetLocationType": "AzureBlobs",
        },
    }
    assert body["restoreOptions"] == {"fileFormat": "zstd"}


def test_instance_configure_from_flags_puts_one_named_instance() -> None:
    args = parse(
        "instance",
        "configure",
        "-n",
        "orders",
        "--server",
        "db1",
        "--port",
        "5433",
        "-d",
        "orders",
        "--secret-uri",
        "env:PGVAULT_SECRET_CS",
        "--policy",
        "weekly",
    )
    assert instance_body(args) == (
        "orders",
        {
            "server": "db1",
            "port": 5433,
            "database": "orders",
            "secretUri": "env:PGVAULT_SECRET_CS",
            "policyName": "weekly",
        },
    )


def test_instance_configure_from_a_file_of_many_posts_it_as_is(tmp_path: Path) -> None:
    doc = {"instances": [{"server": "db1", "database": "a", "secretUri": "env:PGVAULT_SECRET_A", "policyName": "p"}]}
    (tmp_path / "many.json").write_text(json.dumps(doc))
    assert instance_body(parse("instance", "configure", "--file", str(tmp_path / "many.json"))) == (None, doc)
    with pytest.raises(UsageError, match="no other instance flags"):
        instance_body(parse("instance", "configure", "--file", str(tmp_path / "many.json"), "--policy", "q"))


def test_instance_configure_names_the_missing_flags() -> None:
    with pytest.raises(UsageError, match="--database, --secret-uri, --policy"):
        instance_body(parse("instance", "configure", "--server", "db1"))


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["backup", "now"])
    assert exit_.value.code == 2
    assert "--instance" in capsys.readouterr().err
    assert main(["instance", "configure", "--server", "db1", "-o", "json"]) == 2
    assert "--database" in capsys.readouterr().err


def test_job_exit_code_follows_the_job_and_prints_its_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert job_exit({"jobId": "j", "status": "Completed"}) == EXIT_OK
    assert job_exit({"jobId": "j", "status": "CompletedWithWarnings"}) == EXIT_OK
    failed = {
        "jobId": "j",
        "status": "Failed",
        "error": {"code": "UserErrorDBUserAuthFailed", "message": "bad password", "recommendedAction": "fix"},
    }
    assert job_exit(failed) == EXIT_JOB_FAILED
    err = capsys.readouterr().err
    assert err.startswith("pgvault: UserErrorDBUserAuthFailed: job j Failed: bad password")
    assert "Recommended action: fix" in err


def test_client_reads_url_and_key_from_the_environment() -> None:
    client = Client.from_env({"PGVAULT_URL": "https://vault.example.net/", "PGVAULT_KEY": "k"})
    assert (client.base, client.key) == ("https://vault.example.net/api", "k")
    assert Client.from_env({}).base == "http://127.0.0.1:7071/api"
    assert Client.from_env({"PGVAULT_URL": "http://h:1/api"}).base == "http://h:1/api"


def test_unreachable_api_exits_3_with_a_code(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from devhost.services import free_port

    monkeypatch.setenv("PGVAULT_URL", f"http://127.0.0.1:{free_port()}")
    assert main(["job", "list", "-o", "json"]) == 3
    assert "pgvault: ConnectionFailed" in capsys.readouterr().err


def test_restore_verify_sends_the_point_and_the_scratch_servers_secret() -> None:
    from pgvault.commands import verify_body

    args = parse(
        "restore", "verify", "-i", "orders", "--recovery-point", "rp1", "--target-secret-uri", "env:PGVAULT_SECRET_T"
    )
    assert verify_body(args) == {
        "recoveryPointId": "rp1",
        "datasourceAuthCredentials": {
            "objectType": "SecretStoreBasedAuthCredentials",
            "secretStoreResource": {"uri": "env:PGVAULT_SECRET_T", "secretStoreType": "AzureKeyVault"},
        },
    }


class _StuckJobServer:
    """A tiny real HTTP server whose one job never finishes (and which records the keys it was sent)."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        keys: list[str | None] = []
        self.keys = keys

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                keys.append(self.headers.get("x-functions-key"))
                body = json.dumps(
                    {
                        "jobId": "j1",
                        "status": "InProgress",
                        "progress": 0.25,
                        "bytes": 2048,
                        "steps": [{"name": "Dump"}],
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_watch_gives_up_after_timeout_with_exit_4_and_sends_the_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = _StuckJobServer()
    try:
        monkeypatch.setenv("PGVAULT_URL", server.url)
        monkeypatch.setenv("PGVAULT_KEY", "the-key")
        assert main(["job", "watch", "j1", "--timeout", "0.2", "--poll", "0.05", "-o", "json"]) == 4
    finally:
        server.close()
    captured = capsys.readouterr()
    assert "still InProgress" in captured.err and "j1: InProgress Dump 2.0 KiB" in captured.err
    assert json.loads(captured.out) == {"jobId": "j1"}
    assert server.keys and set(server.keys) == {"the-key"}


def test_progress_bar_on_a_terminal_redraws_one_line() -> None:
    import io

    from pgvault.output import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    bar = Progress(screen)
    bar.show({"status": "InProgress", "progress": 0.5, "bytes": 3 * 2**20, "steps": [{"name": "Dump"}]})
    bar.show({"status": "Completed", "progress": 1.0, "bytes": 6 * 2**20, "steps": [{"name": "Commit"}]})
    bar.done()
    text = screen.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    assert "[" + "#" * 15 + "." * 15 + "]  50%" in text and "6.0 MiB  Completed Commit" in text


# --- a scripted real HTTP server, for the client's behaviour on real answers -----------------------


Script = Mapping[tuple[str, str], Sequence[tuple[int, Mapping[str, str], object]]]


class _ScriptedServer:
    """A real HTTP server answering each (method, path) with the next of its scripted answers.

    An answer is (status, headers, JSON body); the last one repeats. Every request is recorded
    as (method, path, parsed JSON body or None).
    """

    def __init__(self, script: Script) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        queues = {route: list(answers) for route, answers in script.items()}

        requests: list[tuple[str, str, object]] = []
        self.requests = requests

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0]
                requests.append((self.command, path, json.loads(raw) if raw else None))
                answers = queues.get((self.command, path)) or [(404, {}, {"error": {"code": "NotFound"}})]
                status, headers, body = answers.pop(0) if len(answers) > 1 else answers[0]
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> _ScriptedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


UNAVAILABLE = {"error": {"code": "ServiceUnavailable", "message": "storage unavailable", "recommendedAction": "wait"}}
JOB = {"jobId": "j1", "operation": "Backup", "status": "Completed", "instance": "orders", "bytes": 2048}


def test_a_503_with_retry_after_is_sent_again_after_the_delay_it_asks_for(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    script: Script = {("GET", "/api/backupJobs/j1"): [(503, {"Retry-After": "0"}, UNAVAILABLE)] * 2 + [(200, {}, JOB)]}
    with _ScriptedServer(script) as server:
        monkeypatch.setenv("PGVAULT_URL", server.url)
        assert main(["job", "show", "j1", "-o", "json"]) == 0
        assert len(server.requests) == 3
    captured = capsys.readouterr()
    assert json.loads(captured.out)["jobId"] == "j1"
    assert "HTTP 503, retrying in 0 s (1/3)" in captured.err and "(2/3)" in captured.err

    slept: list[float] = []
    script = {("GET", "/api/backupJobs/j1"): [(503, {"Retry-After": "7"}, UNAVAILABLE), (200, {}, JOB)]}
    with _ScriptedServer(script) as server:
        assert Client(server.url, None, sleep=slept.append).get("/backupJobs/j1")["status"] == "Completed"
    assert slept == [7.0]


def test_a_503_that_lasts_gives_up_after_bounded_retries_with_exit_3(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgvault.client import MAX_RETRIES

    with _ScriptedServer({("GET", "/api/backupJobs/j1"): [(503, {"Retry-After": "0"}, UNAVAILABLE)]}) as server:
        monkeypatch.setenv("PGVAULT_URL", server.url)
        assert main(["job", "show", "j1", "-o", "json"]) == 3
        assert len(server.requests) == MAX_RETRIES + 1
    err = capsys.readouterr().err
    assert "pgvault: ServiceUnavailable: storage unavailable (HTTP 503)" in err and "Recommended action: wait" in err
    # Without Retry-After a 503 is answered at once: the server did not ask for a retry.
    with _ScriptedServer({("GET", "/api/backupJobs/j1"): [(503, {}, UNAVAILABLE)]}) as server:
        monkeypatch.setenv("PGVAULT_URL", server.url)
        assert main(["job", "show", "j1", "-o", "json"]) == 3
        assert len(server.requests) == 1


def test_retry_after_reads_seconds_and_http_dates_and_is_capped() -> None:
    import datetime as dt

    from pgvault.client import MAX_RETRY_AFTER, retry_after

    now = dt.datetime(2026, 12, 1, 10, 0, 0, tzinfo=dt.UTC)
    assert retry_after("5") == 5.0 and retry_after(" 2.5 ") == 2.5
    assert retry_after("Tue, 01 Dec 2026 10:00:30 GMT", now) == 30.0
    assert retry_after("Tue, 01 Dec 2026 09:00:00 GMT", now) == 0.0
    assert retry_after("86400") == MAX_RETRY_AFTER and retry_after("inf") == MAX_RETRY_AFTER
    assert retry_after(None) is None and retry_after("soon") is None and retry_after("nan") is None


def test_json_output_of_a_list_is_the_apis_shape(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    page2 = {"value": [{**JOB, "jobId": "j2"}]}
    script: Script = {
        ("GET", "/api/backupJobs"): [(200, {}, {"value": [JOB], "nextLink": "/api/backupJobs?continuationToken=x"}),
                                     (200, {}, page2)],
        ("GET", "/api/backupInstances"): [(200, {}, {"value": []})],
    }  # fmt: skip
    with _ScriptedServer(script) as server:
        monkeypatch.setenv("PGVAULT_URL", server.url)
        assert main(["job", "list", "-o", "json"]) == 0
        assert json.loads(capsys.readouterr().out) == {"value": [JOB, {**JOB, "jobId": "j2"}]}
        assert main(["instance", "list", "-o", "json"]) == 0
        assert json.loads(capsys.readouterr().out) == {"value": []}


def test_table_shows_durations_as_time_and_only_progress_as_a_percentage() -> None:
    import io

    from pgvault.commands import JOB_DETAIL
    from pgvault.output import emit

    out = io.StringIO()
    job = {**JOB, "durationSeconds": 0.996, "progress": 1.0, "throughputBytesPerSecond": 3 * 2**20}
    emit(job, "table", JOB_DETAIL, out)
    header, row = out.getvalue().splitlines()
    cells = dict(zip(header.split("  "), [c.strip() for c in row.split("  ") if c.strip()], strict=False))
    assert "996 ms" in row and row.count("%") == 1 and "100%" in row and "3.0 MiB/s" in row, row
    assert "DURATION" in header and "RATE" in header and "PROGRESS" in header, cells
    long_job = {**JOB, "durationSeconds": 75.4, "progress": 0.5}
    out = io.StringIO()
    emit(long_job, "table", JOB_DETAIL, out)
    assert "1 min 15 s" in out.getvalue() and "50%" in out.getvalue()


def test_a_sub_second_duration_is_shown_in_milliseconds_never_as_zero_seconds() -> None:
    from pgvault.output import seconds_text

    assert [seconds_text(v) for v in (0, 0.0004, 0.04, 0.4996, 0.9996, 1.25, 59.96)] == [
        "<1 ms", "<1 ms", "40 ms", "500 ms", "1.0 s", "1.2 s", "1 min 00 s"
    ]  # fmt: skip


def test_number_cells_are_printed_as_numbers() -> None:
    import io

    from pgvault.output import emit

    out = io.StringIO()
    emit([{"x": 0.996}, {"x": 0.5}, {"x": True}], "table", [("X", lambda r: r["x"])], out)
    assert out.getvalue().split() == ["X", "0.996", "0.5", "yes"]


def test_progress_on_a_pipe_shows_step_bytes_rate_and_eta_in_plain_lines() -> None:
    import io

    from pgvault.output import Progress

    now = [0.0]
    log = io.StringIO()
    bar = Progress(log, clock=lambda: now[0])
    running = {"jobId": "j1", "status": "InProgress", "steps": [{"name": "CheckPrivileges", "status": "Completed"}]}
    bar.show({**running, "progress": 0.0, "bytes": 0})
    now[0] = 10.0
    dump = [*running["steps"], {"name": "Dump", "status": "InProgress"}]
    bar.show({**running, "steps": dump, "progress": 0.5, "bytes": 10 * 2**20})
    now[0] = 12.0
    bar.show({**running, "steps": dump, "progress": 0.6, "bytes": 12 * 2**20})  # same step, too soon: no line
    now[0] = 25.0
    bar.show({**running, "steps": dump, "progress": 0.9, "bytes": 18 * 2**20})  # 10 s on, bytes moved: a line
    lines = log.getvalue().splitlines()
    assert lines[0] == "j1: InProgress CheckPrivileges 0 B  0%"
    assert lines[1] == "j1: InProgress Dump 10.0 MiB  50%  1.0 MiB/s  ETA 10.0 s", lines
    assert len(lines) == 3 and lines[2].startswith("j1: InProgress Dump 18.0 MiB  90%  ") and "ETA " in lines[2]
    assert "\r" not in log.getvalue()


def test_progress_on_a_terminal_shows_rate_and_eta_on_one_line() -> None:
    import io

    from pgvault.output import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    now = [0.0]
    screen = Terminal()
    bar = Progress(screen, clock=lambda: now[0])
    steps = [{"name": "Dump", "status": "InProgress"}]
    bar.show({"status": "InProgress", "progress": 0.25, "bytes": 2**20, "steps": steps})
    now[0] = 2.0
    bar.show({"status": "InProgress", "progress": 0.5, "bytes": 2 * 2**20, "steps": steps})
    bar.done()
    last = screen.getvalue().split("\r")[-1]
    assert "50%" in last and "2.0 MiB" in last and "Dump" in last and "512.0 KiB/s" in last and "ETA 4.0 s" in last
    assert screen.getvalue().count("\n") == 1


def test_every_command_has_examples_and_the_exit_codes_in_its_help() -> None:
    import argparse

    from pgvault.help import EXIT_CODES, _commands

    parser = build_parser()
    leaves = [
        (group, name, command)
        for group, group_parser in _commands(parser).items()
        for name, command in _commands(group_parser).items()
    ]
    assert len(leaves) >= 25
    for group, name, command in leaves:
        text = command.format_help()
        assert f"examples:\n  pgvault {group} {name}" in text, (group, name)
        assert EXIT_CODES in text, (group, name)
    assert EXIT_CODES in parser.format_help()
    assert isinstance(parser, argparse.ArgumentParser)


STORED = {
    "name": "orders",
    "server": "db1.example.com",
    "port": 5432,
    "database": "orders",
    "secretUri": "env:PGVAULT_SECRET_A",
    "policyName": "weekly",
    "serverRegion": None,
    "protectionStatus": "ProtectionConfigured",
}


def test_a_resent_entry_configured_alike_is_skipped_and_one_that_differs_says_what() -> None:
    from pgvault.batch import plan

    same = {"name": "Orders", "server": "DB1.example.com.", "database": "orders", "secretUri": "env:PGVAULT_SECRET_A",
            "policyName": "weekly"}  # fmt: skip
    other_policy = {**same, "policyName": "daily", "port": 5432}
    other_name = {**same, "name": "orders-again"}
    unnamed_same = {k: v for k, v in same.items() if k != "name"}  # default name: db1-orders, not orders
    new = {**same, "name": "billing", "database": "billing"}
    decided, to_send = plan([same, other_policy, other_name, new, unnamed_same, "junk"], [STORED])
    assert decided[0] is not None and decided[0]["status"] == "Skipped" and decided[0]["name"] == "orders"
    refused = decided[1]
    assert refused is not None and refused["status"] == "Failed"
    assert refused["error"]["code"] == "Conflict" and refused["error"]["target"] == "instances[1].policyName"
    assert "policyName is 'weekly' in the vault, 'daily' in the file" in refused["error"]["message"]
    assert "pgvault instance configure --name orders" in refused["error"]["recommendedAction"]
    taken = decided[2]
    assert taken is not None and taken["error"]["code"] == "UserErrorDatabaseAlreadyProtected"
    assert taken["error"]["target"] == "instances[2].name" and "'orders-again'" in taken["error"]["message"]
    assert decided[4] is not None and decided[4]["error"]["code"] == "UserErrorDatabaseAlreadyProtected"
    assert decided[3] is None and decided[5] is None and to_send == [3, 5]
    purge = "2026-12-20T10:00:00Z"
    deleting = {
        **STORED,
        "protectionStatus": "SoftDeleted",
        "retainData": "delete",
        "currentProtectionState": "SoftDeleted",
        "deletionInfo": {"deletionTime": "2026-12-06T10:00:00Z", "scheduledPurgeTime": purge},
    }
    decided, to_send = plan([same], [deleting])
    assert decided[0] is not None and decided[0]["status"] == "Failed" and to_send == []
    error = decided[0]["error"]
    assert error["code"] == "UserErrorBackupInstanceSoftDeleted" and "is soft-deleted" in error["message"]
    assert purge in error["message"] and "pgvault instance undelete --name orders" in error["recommendedAction"]


def test_configure_file_prints_every_entrys_error_when_all_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def failed(i: int, code: str, field: str) -> dict[str, object]:
        return {"name": None, "status": "Failed", "error": {"code": code, "message": f"instances[{i}].{field} is bad",
                "target": f"instances[{i}].{field}", "recommendedAction": f"fix {field}"}}  # fmt: skip

    answer = {"value": [failed(0, "InvalidRequest", "server"), failed(1, "UserErrorDatabaseNotSupported", "database")]}
    script: Script = {
        ("GET", "/api/backupInstances"): [(200, {}, {"value": [STORED]})],
        ("POST", "/api/backupInstances"): [(400, {}, answer)],
    }
    alike = {k: v for k, v in STORED.items() if k not in ("serverRegion", "protectionStatus")}
    entries = [
        alike,  # configured alike: skipped, not sent
        {"server": "bad host", "database": "x", "secretUri": "env:PGVAULT_SECRET_A", "policyName": "weekly"},
        {"server": "db1.example.com", "database": "template1", "secretUri": "env:PGVAULT_SECRET_A", "policyName": "p"},
    ]
    (tmp_path / "many.json").write_text(json.dumps({"instances": entries}))
    with _ScriptedServer(script) as server:
        monkeypatch.setenv("PGVAULT_URL", server.url)
        assert main(["instance", "configure", "--file", str(tmp_path / "many.json"), "-o", "json"]) == 2
        posted = [body for method, _, body in server.requests if method == "POST"]
    assert posted == [{"instances": entries[1:]}]
    captured = capsys.readouterr()
    assert "HTTP 400" not in captured.err
    # The API numbered the two entries it was sent 0 and 1: they are entries 1 and 2 of the file.
    for code, field, i in (("InvalidRequest", "server", 1), ("UserErrorDatabaseNotSupported", "database", 2)):
        assert f"pgvault: {code}: (unnamed entry): instances[{i}].{field} is bad" in captured.err
        assert f"Target: instances[{i}].{field}" in captured.err and f"Recommended action: fix {field}" in captured.err
    shown = json.loads(captured.out)["value"]
    assert [r["status"] for r in shown] == ["Skipped", "Failed", "Failed"]


def test_policy_show_gives_the_schedule_in_the_policys_zone_and_locally_and_every_rule_in_full() -> None:
    import datetime as dt
    from zoneinfo import ZoneInfo

    from pgvault.commands_policy import describe_policy
    from shared.policy import parse_policy
    from tests.examples import EXAMPLES

    def stored(example: str) -> dict[str, object]:
        document = json.loads((EXAMPLES / example).read_text())
        return {"name": "weekly", "properties": parse_policy(document).to_dict()}

    now = dt.datetime(2026, 3, 25, 12, 0, tzinfo=dt.UTC)
    text = describe_policy(stored("sunday-default-only.json"), now, ZoneInfo("America/New_York"))
    assert "Schedule: weekly, Sunday 03:30 (W. Europe Standard Time, Europe/Berlin)" in text
    # The first Sunday is after Berlin's change to summer time; New York changed two weeks before.
    assert "Sun 2026-03-29 03:30 CEST  Sat 2026-03-28 21:30 EDT  2026-03-29 01:30Z" in text
    assert "Default  VaultStore  P7D (7 days)" in text and "untagged backups (Default)" in text
    text = describe_policy(stored("weekly-mon-wed-fri-with-archive.json"), now, ZoneInfo("UTC"))
    assert "Monday 22:00, Wednesday 22:00, Friday 22:00" in text
    assert "Yearly: the first backup of the year (priority 10)" in text
    monthly = next(line for line in text.splitlines() if line.strip().startswith("Monthly  "))
    assert "P6M (6 months)" in monthly and "the first backup of the month" in monthly
    assert "moved to ArchiveStore on expiry, kept there P24M (24 months), then deleted" in monthly
    assert "P12W (84 days)" in text


def test_instance_delete_asks_first_and_sends_nothing_without_consent(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from pgvault.commands_protection import confirmed

    accepted = {"jobId": "d1", "instance": STORED}
    with _ScriptedServer({("POST", "/api/backupInstances/orders:stopProtection"): [(202, {}, accepted)]}) as server:
        monkeypatch.setenv("PGVAULT_URL", server.url)
        monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: --yes is required
        assert main(["instance", "delete", "--name", "orders", "-o", "json"]) == 2
        assert "add --yes" in capsys.readouterr().err and server.requests == []
        assert main(["instance", "delete", "--name", "orders", "--yes", "-o", "json"]) == 0
        assert server.requests == [("POST", "/api/backupInstances/orders:stopProtection", {"retainData": "delete"})]
    assert json.loads(capsys.readouterr().out) == {"jobId": "d1"}

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    prompt = io.StringIO()
    assert confirmed("orders", given=False, stdin=Terminal("y\n"), err=prompt) is True
    assert "Delete backup instance 'orders' and every one of its recovery points? [y/N]" in prompt.getvalue()
    assert confirmed("orders", given=False, stdin=Terminal("\n"), err=io.StringIO()) is False


def test_stop_resume_and_list_databases_send_the_apis_requests(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped = {**STORED, "protectionStatus": "ProtectionStopped", "currentProtectionState": "BackupSchedulesSuspended"}
    databases = {"server": "db1", "port": 5432, "value": [{"database": "orders", "protected": True, "instance": "o"}]}
    script: Script = {
        ("POST", "/api/backupInstances/orders:stopProtection"): [(200, {}, stopped)],
        ("POST", "/api/backupInstances/orders:resumeProtection"): [(200, {}, STORED)],
        ("POST", "/api/servers:listDatabases"): [(200, {}, databases)],
        ("POST", "/api/backupInstances/orders:undelete"): [(200, {}, stopped)],
    }
    with _ScriptedServer(script) as server:
        monkeypatch.setenv("PGVAULT_URL", server.url)
        assert main(["instance", "stop-protection", "-n", "orders", "--retain-data", "asPerPolicy", "-o", "table"]) == 0
        assert "BackupSchedulesSuspended" in capsys.readouterr().out
        assert main(["instance", "resume-protection", "-n", "orders", "-o", "json"]) == 0
        assert json.loads(capsys.readouterr().out) == STORED
        argv = ["server", "list-databases", "--secret-uri", "env:PGVAULT_SECRET_A", "--port", "5432", "-o", "json"]
        assert main(argv) == 0
        assert json.loads(capsys.readouterr().out) == databases
        assert main(["server", "list-databases", "--secret-uri", "env:PGVAULT_SECRET_A", "-o", "table"]) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[0] == "server db1:5432" and table[1].split() == ["DATABASE", "PROTECTED", "INSTANCE"]
        assert table[2].split() == ["orders", "yes", "o"]
        assert main(["instance", "undelete", "-n", "orders", "-o", "json"]) == 0
        assert json.loads(capsys.readouterr().out) == stopped
        bodies = [body for _, _, body in server.requests]
    assert bodies == [
        {"retainData": "asPerPolicy"},
        None,
        {"secretUri": "env:PGVAULT_SECRET_A", "port": 5432},
        {"secretUri": "env:PGVAULT_SECRET_A"},
        None,
    ]
    with pytest.raises(SystemExit):
        parse("instance", "stop-protection", "-n", "orders", "--retain-data", "delete")  # that is 'instance delete'


def test_job_show_gives_each_steps_duration(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = [
        {"name": "Dump", "status": "Completed", "startTime": "2026-12-01T10:00:00+00:00",
         "endTime": "2026-12-01T10:01:05.500000+00:00"},
        {"name": "Commit", "status": "InProgress", "startTime": "2026-12-01T10:01:06+00:00"},
    ]  # fmt: skip
    with _ScriptedServer({("GET", "/api/backupJobs/j1"): [(200, {}, {**JOB, "steps": steps})]}) as server:
        monkeypatch.setenv("PGVAULT_URL", server.url)
        assert main(["job", "show", "j1", "-o", "table"]) == 0
    out = capsys.readouterr().out
    assert "  step Dump: Completed (1 min 06 s)\n" in out and "  step Commit: InProgress\n" in out


def test_a_misspelled_field_in_an_instance_file_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    # The CLI builds its bodies from the API's own models: the API's message, without a round trip.
    one = {"server": "db1", "database": "a", "secretUri": "env:PGVAULT_SECRET_A", "polcyName": "p"}
    (tmp_path / "one.json").write_text(json.dumps(one))
    with pytest.raises(UsageError, match="polcyName: unknown field; did you mean policyName"):
        instance_body(parse("instance", "configure", "--file", str(tmp_path / "one.json"), "--policy", "p"))


def test_every_body_the_cli_builds_is_one_the_api_accepts() -> None:
    from shared.backups import parse_trigger
    from shared.instances import parse_spec
    from shared.restore.request import parse_restore_request, parse_verify_request

    restore = ("-i", "orders", "--recovery-point", "rp1")
    database = parse("restore", "database", *restore, "--target-database", "copy", "--target-secret-uri",
                     "env:PGVAULT_SECRET_T", "--table", "sales.orders", "--keep-owner")  # fmt: skip
    assert parse_restore_request(restore_database_body(database), allow_env=True).database == "copy"
    keep = parse("restore", "database", *restore, "--target-database", "copy", "--target-secret-uri",
                 "env:PGVAULT_SECRET_T", "--create-missing-roles")  # fmt: skip
    kept = parse_restore_request(restore_database_body(keep), allow_env=True).options
    assert (kept.roles, kept.no_owner, kept.no_acl) == ("CreateMissing", False, False)
    files = parse("restore", "files", *restore, "--container-url", "https://acct.blob.core.windows.net/restores",
                  "--file-prefix", "orders", "--rehydration-priority", "High")  # fmt: skip
    assert parse_restore_request(restore_files_body(files), allow_env=True).file_prefix == "orders"
    verify = parse("restore", "verify", *restore, "--target-secret-uri", "env:PGVAULT_SECRET_T")
    assert parse_verify_request(verify_body(verify), allow_env=True).secret_uri == "env:PGVAULT_SECRET_T"
    assert parse_trigger(trigger_body("BackupWeekly", "Weekly"), "BackupWeekly") == ("BackupWeekly", "Weekly")
    flags = ("--server", "db1", "-d", "a", "--secret-uri", "env:PGVAULT_SECRET_A", "--policy", "p")
    _, many = instance_body(parse("instance", "configure", *flags))
    assert parse_spec(many["instances"][0], "instances[0]", allow_env_secrets=True, vault_region=None).server == "db1"


def test_validate_for_backup_posts_the_would_be_instance_and_waits_for_its_job(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.instances import parse_spec

    error = {"code": "UserErrorMissingDBPermissions", "message": "SELECT on orders", "recommendedAction": "grant"}
    failed = {**JOB, "operation": "Validate", "status": "Failed", "error": error, "jobId": "v1"}
    script: Script = {
        ("POST", "/api/backupInstances:validateForBackup"): [(202, {}, {"jobId": "v1"})],
        ("GET", "/api/backupJobs/v1"): [(200, {}, {**failed, "status": "InProgress"}), (200, {}, failed)],
        ("GET", "/api/backupJobs/v1/grantScript"): [(200, {}, "#!/bin/sh\npsql ...")],
    }
    flags = ["--server", "db1", "-d", "orders", "--secret-uri", "env:PGVAULT_SECRET_A", "--policy", "weekly"]
    with _ScriptedServer(script) as server:
        monkeypatch.setenv("PGVAULT_URL", server.url)
        argv = ["instance", "validate-for-backup", *flags, "--wait", "--poll", "0.05", "-o", "json"]
        assert main(argv) == EXIT_JOB_FAILED
        captured = capsys.readouterr()
        assert json.loads(captured.out)["status"] == "Failed"
        assert "UserErrorMissingDBPermissions" in captured.err and "grant" in captured.err
        assert main(["job", "grant-script", "v1", "--format", "sh"]) == EXIT_OK
        assert capsys.readouterr().out.startswith("#!/bin/sh")
        posted = server.requests[0][2]
    assert posted == {
        "server": "db1", "database": "orders", "secretUri": "env:PGVAULT_SECRET_A", "policyName": "weekly"
    }  # fmt: skip
    assert parse_spec(posted, "body", allow_env_secrets=True, vault_region=None).name == "db1-orders"
