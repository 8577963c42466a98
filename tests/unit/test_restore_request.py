"""Restore requests in Azure's shapes, pg_restore's messages, and rehydration states: pure functions."""

from __future__ import annotations

from typing import Any

import pytest
from azure.storage.blob import BlobProperties

from shared.errors import UserError
from shared.pg.digests import compare_digests
from shared.pg.restore import RestoreOptions, classify
from shared.restore.rehydration import CopyState, copy_state
from shared.restore.request import RehydrationPriority, TargetKind, parse_restore_request, parse_verify_request
from shared.storage.blobs import BlobInfo, blob_info


def _database(**extra: Any) -> dict[str, Any]:
    # As Azure's documentation shows it for Azure Database for PostgreSQL (extra fields accepted).
    return {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": "rp1",
        "sourceDataStoreType": "VaultStore",
        "restoreTargetInfo": {
            "objectType": "RestoreTargetInfo",
            "recoveryOption": "FailIfExists",
            "restoreLocation": "westeurope",
            "datasourceInfo": {
                "objectType": "Datasource",
                "resourceID": "/subscriptions/x/resourceGroups/g/providers/Microsoft.DBforPostgreSQL/servers/s/databases/d",  # noqa: E501
                "resourceName": "new_db",
                "resourceType": "Microsoft.DBforPostgreSQL/servers/databases",
                "datasourceType": "Microsoft.DBforPostgreSQL/servers/databases",
            },
            "datasourceAuthCredentials": {
                "objectType": "SecretStoreBasedAuthCredentials",
                "secretStoreResource": {
                    "uri": "https://kv1.vault.azure.net/secrets/target",
                    "secretStoreType": "AzureKeyVault",
                },
            },
        },
        **extra,
    }


def _files(**details: Any) -> dict[str, Any]:
    return {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": "rp1",
        "sourceDataStoreType": "VaultStore",
        "restoreTargetInfo": {
            "objectType": "RestoreFilesTargetInfo",
            "recoveryOption": "FailIfExists",
            "targetDetails": {
                "url": "https://acct.blob.core.windows.net/exports",
                "filePrefix": "orders/2026-11-25",
                "restoreTargetLocationType": "AzureBlobs",
                **details,
            },
        },
    }


def test_azures_database_restore_request_is_accepted_with_safe_defaults() -> None:
    request = parse_restore_request(_database(), allow_env=False)
    assert request.kind is TargetKind.DATABASE and request.database == "new_db"
    assert request.secret_uri == "https://kv1.vault.azure.net/secrets/target"
    assert request.options == RestoreOptions(no_owner=True, no_acl=True)
    assert RestoreOptions().args() == ["--no-owner", "--no-acl"]


def test_a_request_round_trips_through_the_job_record() -> None:
    from shared.restore.request import RestoreRequest

    for body in (_database(restoreOptions={"schemas": ["sales"], "noAcl": False}), _files()):
        request = parse_restore_request(body, allow_env=False)
        assert RestoreRequest.from_dict(request.to_dict()) == request


def test_azures_files_restore_request_names_the_dump_and_manifest() -> None:
    request = parse_restore_request(_files(), allow_env=False)
    assert request.kind is TargetKind.FILES
    assert request.file_name == "orders/2026-11-25.dump"
    assert request.manifest_file_name == "orders/2026-11-25.manifest.json"
    zstd = parse_restore_request({**_files(), "restoreOptions": {"fileFormat": "zstd"}}, allow_env=False)
    assert zstd.file_name == "orders/2026-11-25.dump.zst"


def test_rehydration_fields_default_to_fifteen_days() -> None:
    body = _database(objectType="AzureBackupRestoreWithRehydrationRequest", rehydrationPriority="Standard")
    body["sourceDataStoreType"] = "ArchiveStore"
    request = parse_restore_request(body, allow_env=False)
    assert request.rehydration_priority is RehydrationPriority.STANDARD and request.rehydration_duration == "P15D"


@pytest.mark.parametrize(
    ("body", "target"),
    [
        (_database(objectType="AzureBackupRestoreWithRehydrationRequest"), "rehydrationPriority"),
        (
            _database(
                objectType="AzureBackupRestoreWithRehydrationRequest",
                rehydrationPriority="High",
                rehydrationRetentionDuration="P9D",
            ),
            "rehydrationRetentionDuration",
        ),
        (
            _database(
                objectType="AzureBackupRestoreWithRehydrationRequest",
                rehydrationPriority="High",
                rehydrationRetentionDuration="P31D",
            ),
            "rehydrationRetentionDuration",
        ),
        (_database(restoreOptions={"fileFormat": "zstd"}), "restoreOptions.fileFormat"),
        (_database(restoreOptions={"jobs": 4}), "restoreOptions.jobs"),
        (_files(url="ftp://x/y"), "restoreTargetInfo.targetDetails.url"),
        (_files(url="https://acct.blob.core.windows.net/"), "restoreTargetInfo.targetDetails.url"),
        (_files(filePrefix="../escape"), "restoreTargetInfo.targetDetails.filePrefix"),
        (_files(restoreTargetLocationType="AzureFiles"), "restoreTargetInfo.targetDetails.restoreTargetLocationType"),
        (_files(connectionStringSecretUri="plain-text"), "restoreTargetInfo.targetDetails.connectionStringSecretUri"),
    ],
)
def test_what_azure_would_refuse_is_refused_naming_the_field(body: dict[str, Any], target: str) -> None:
    with pytest.raises(UserError) as refused:
        parse_restore_request(body, allow_env=False)
    assert refused.value.target == target


@pytest.mark.parametrize(
    ("path", "value", "target"),
    [
        (("recoveryOption",), "OverwriteIfExists", "restoreTargetInfo.recoveryOption"),
        (("datasourceInfo", "resourceName"), "template1", "restoreTargetInfo.datasourceInfo.resourceName"),
        (("datasourceInfo", "resourceName"), "x" * 64, "restoreTargetInfo.datasourceInfo.resourceName"),
        (
            ("datasourceAuthCredentials", "secretStoreResource", "uri"),
            "env:PGVAULT_SECRET_TARGET",
            "restoreTargetInfo.datasourceAuthCredentials.secretStoreResource.uri",
        ),
        (
            ("datasourceAuthCredentials", "objectType"),
            "PasswordCredentials",
            "restoreTargetInfo.datasourceAuthCredentials.objectType",
        ),
        (("objectType",), "ItemLevelRestoreTargetInfo", "restoreTargetInfo.objectType"),
    ],
)
def test_a_wrong_target_field_is_refused_naming_it(path: tuple[str, ...], value: Any, target: str) -> None:
    body = _database()
    node = body["restoreTargetInfo"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(UserError) as refused:
        parse_restore_request(body, allow_env=False)
    assert refused.value.target == target


def test_a_verification_restores_whole_points_only() -> None:
    ok = parse_verify_request({"recoveryPointId": "rp", "secretUri": "env:PGVAULT_SECRET_T"}, allow_env=True)
    assert ok.kind is TargetKind.VERIFY and ok.secret_uri == "env:PGVAULT_SECRET_T"
    with pytest.raises(UserError) as refused:
        parse_verify_request(
            {"recoveryPointId": "rp", "secretUri": "env:PGVAULT_SECRET_T", "restoreOptions": {"schemas": ["a"]}},
            allow_env=True,
        )
    assert refused.value.target == "restoreOptions"


def test_partial_options_select_schemas_and_tables() -> None:
    assert RestoreOptions(schemas=("sales",)).args() == ["--no-owner", "--no-acl", "--schema=sales"]
    assert RestoreOptions(no_acl=False, tables=("sales.invoices",)).args() == [
        "--no-owner",
        "--schema=sales",
        "--table=invoices",
    ]


NEWER_DUMP_ON_OLDER_SERVER = """pg_restore: while PROCESSING TOC:
pg_restore: from TOC entry 5; 0 0 ENCODING ENCODING
pg_restore: error: could not execute query: ERROR:  unrecognized configuration parameter "transaction_timeout"
Command was: SET transaction_timeout = 0;
pg_restore: error: could not execute query: ERROR:  role "app_owner" does not exist
Command was: ALTER TABLE public.orders OWNER TO app_owner;
pg_restore: warning: errors ignored on restore: 2
"""
REAL_FAILURE = """pg_restore: while PROCESSING TOC:
pg_restore: error: could not execute query: ERROR:  permission denied to create extension "file_fdw"
pg_restore: error: could not execute query: ERROR:  role "app_owner" does not exist
pg_restore: warning: errors ignored on restore: 2
"""


def test_ignorable_pg_restore_errors_are_warnings_and_the_rest_fail() -> None:
    harmless = classify(NEWER_DUMP_ON_OLDER_SERVER, 1)
    assert harmless.ok and harmless.errors == () and len(harmless.warnings) == 1
    assert 'role "app_owner" does not exist' in harmless.warnings[0]
    failed = classify(REAL_FAILURE, 1)
    assert not failed.ok and "file_fdw" in failed.errors[0]
    unreadable = classify("pg_restore: error: input file does not appear to be a valid archive\n", 1)
    assert not unreadable.ok
    crashed = classify("", 2)
    assert not crashed.ok and crashed.errors
    assert classify("", 0).ok


def test_a_newer_pg_restores_session_settings_on_an_older_server_are_notes_not_warnings() -> None:
    """pg_restore 17 sets transaction_timeout on every server; a 12-16 server does not know it.

    That changes nothing in the restored data, so it must not turn every restore into
    CompletedWithWarnings (a warning that always appears teaches people to ignore warnings).
    """
    only_preamble = NEWER_DUMP_ON_OLDER_SERVER.replace(
        'pg_restore: error: could not execute query: ERROR:  role "app_owner" does not exist\n', ""
    ).replace("errors ignored on restore: 2", "errors ignored on restore: 1")
    report = classify(only_preamble, 1)
    assert report.ok and report.warnings == () and report.errors == ()
    assert report.notes == (
        'could not execute query: ERROR:  unrecognized configuration parameter "transaction_timeout"',
    )
    other = classify(
        'pg_restore: error: could not execute query: ERROR:  unrecognized configuration parameter "x_y"\n', 1
    )
    assert other.notes == () and len(other.warnings) == 1  # only the known session settings are notes


def test_password_never_reaches_a_report() -> None:
    report = classify("pg_restore: error: connection failed: password=hunter2 rejected\n", 1)
    assert "hunter2" not in " ".join(report.errors) + report.stderr_tail


def test_digest_comparison_names_each_differing_table() -> None:
    want = {"a.t": {"rows": 2, "hash": "1"}, "a.u": {"rows": 1, "hash": "5"}}
    assert compare_digests(want, dict(want)) == []
    got = {"a.t": {"rows": 2, "hash": "9"}, "a.v": {"rows": 0, "hash": "0"}}
    problems = {p["table"]: p["problem"] for p in compare_digests(want, got)}
    assert problems == {
        "a.t": "rows differ",
        "a.u": "missing from the restore",
        "a.v": "restored but not in the manifest",
    }


def test_rehydration_state_from_azures_blob_properties() -> None:
    def info(headers: dict[str, str]) -> BlobInfo:
        return blob_info("b", BlobProperties(**headers))

    pending = info(
        {
            "x-ms-access-tier": "Archive",
            "x-ms-archive-status": "rehydrate-pending-to-hot",
            "x-ms-copy-status": "pending",
        }
    )
    assert copy_state(pending) is CopyState.PENDING
    assert copy_state(info({"x-ms-access-tier": "Hot", "x-ms-copy-status": "success"})) is CopyState.READY
    assert copy_state(info({"x-ms-copy-status": "failed"})) is CopyState.FAILED


# pg_restore --jobs: its workers write to one stderr, a message in several writes, so two messages
# can share a line (as seen in a post-data run of a non-superuser's restore).
INTERLEAVED = """pg_restore:pg_restore: error: could not execute query: ERROR:  must be member of role "dbo"
 error: could not execute query: ERROR:  role "app_owner" does not exist
Command was: ALTER DEFAULT PRIVILEGES FOR ROLE pg_database_owner IN SCHEMA public GRANT SELECT ON TABLES  TO r;
Command was: ALTER TABLE public.orders OWNER TO app_owner;
pg_restore: warning: errors ignored on restore: 2
"""


def test_messages_of_parallel_pg_restore_workers_sharing_a_line_are_each_read() -> None:
    report = classify(INTERLEAVED, 1, parallel=True)
    assert report.ok and report.errors == (), report.errors
    assert len(report.warnings) == 2 and 'role "app_owner" does not exist' in report.warnings[1]
    # A real error in the same garble is still an error.
    failed = classify(
        INTERLEAVED.replace('role "app_owner" does not exist', "permission denied for table t"), 1, parallel=True
    )
    assert not failed.ok and "permission denied for table t" in failed.errors[0]


def test_fewer_messages_read_than_pg_restore_counted_is_an_error_not_a_clean_restore() -> None:
    # Two messages garbled past reading: pg_restore says 3 errors, 1 can be read. The two unread
    # ones could be anything, so the restore must not pass as complete.
    garbled = (
        "pg_restore: pg_restore: error: error: could not execute query: ERROR:  role \"a\" does not exist\n"
        "could not execute query: ERROR:  role \"b\" does not exist\n"
        "pg_restore: warning: errors ignored on restore: 3\n"
    )
    report = classify(garbled, 1)
    assert not report.ok
    assert any("3 errors" in e and "1 of them" in e for e in report.errors), report.errors
    # pg_restore --jobs counts some errors twice (seen: 2 messages, "errors ignored on restore: 4"),
    # so there the count proves nothing and only the messages are read.
    assert classify(garbled, 1, parallel=True).ok
