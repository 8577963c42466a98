"""The CLI's argument parsing and the request bodies it builds (no server needed)."""

from __future__ import annotations

import json
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
    files = parse("restore", "files", *restore, "--container-url", "https://acct.blob.core.windows.net/restores",
                  "--file-prefix", "orders", "--rehydration-priority", "High")  # fmt: skip
    assert parse_restore_request(restore_files_body(files), allow_env=True).file_prefix == "orders"
    verify = parse("restore", "verify", *restore, "--target-secret-uri", "env:PGVAULT_SECRET_T")
    assert parse_verify_request(verify_body(verify), allow_env=True).secret_uri == "env:PGVAULT_SECRET_T"
    assert parse_trigger(trigger_body("BackupWeekly", "Weekly"), "BackupWeekly") == ("BackupWeekly", "Weekly")
    flags = ("--server", "db1", "-d", "a", "--secret-uri", "env:PGVAULT_SECRET_A", "--policy", "p")
    _, many = instance_body(parse("instance", "configure", *flags))
    assert parse_spec(many["instances"][0], "instances[0]", allow_env_secrets=True, vault_region=None).server == "db1"
