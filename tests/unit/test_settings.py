from __future__ import annotations

import pytest

from shared.errors import SettingsError
from shared.pg.parts import DEFAULT_PARALLEL_MIN_BYTES
from shared.settings import default_parallelism, load_settings

SCHEDULE = {"PGVAULT_SCHEDULER_SCHEDULE": "0 */5 * * * *", "PGVAULT_RETENTION_SCHEDULE": "0 17 * * * *"}


def test_missing_storage_and_invalid_flag_are_both_named_in_one_error() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({"PGVAULT_ALLOW_ENV_SECRETS": "maybe", **SCHEDULE})
    assert set(err.value.problems) == {"AzureWebJobsStorage", "PGVAULT_ALLOW_ENV_SECRETS"}
    text = str(err.value)
    assert "AzureWebJobsStorage" in text and "PGVAULT_ALLOW_ENV_SECRETS" in text
    assert "'maybe'" in text


def test_every_invalid_setting_is_reported_at_once(tmp_path: object) -> None:
    env = {
        "AzureWebJobsStorage": "not a connection string",
        "PGVAULT_VAULT_NAME": "bad name!",
        "PGVAULT_REGION": "West Europe",
        "PGVAULT_KEY_VAULT_URI": "http://kv.example.com/",
        "PGVAULT_STATE_TABLE": "1table",
        "PGVAULT_BACKUP_CONTAINER": "Upper_Case",
        "PGVAULT_SCHEDULER_SCHEDULE": "*/5 * * * *",
        "PGVAULT_RETENTION_SCHEDULE": "every hour",
        "PGVAULT_BACKUP_MANIFEST": "sometimes",
        "PGVAULT_ALLOWED_SERVERS": "*.postgres.database.azure.com, *",
        "PGVAULT_BACKUP_PARALLELISM": "0",
        "PGVAULT_PARALLEL_BACKUP_MIN_BYTES": "2 GB",
    }
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert set(err.value.problems) == set(env)


def test_a_tool_folder_that_does_not_exist_is_not_a_settings_problem() -> None:
    # The API, the jobs and restores as files work without pg_dump: /api/health reports the tools
    # degraded and backups fail with UserErrorPgToolsNotFound (tests/unit/test_health.py).
    s = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "PGVAULT_PG_BIN_DIR": "/nonexistent/pg/bin",
                       **SCHEDULE})
    assert str(s.pg_bin_dir) == "/nonexistent/pg/bin"


def test_the_key_vault_uri_is_optional_and_checked_when_given() -> None:
    base = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", **SCHEDULE}
    assert load_settings(base).key_vault_uri is None
    uri = "https://kv-pgvault-abc.vault.azure.net/"
    assert load_settings({**base, "PGVAULT_KEY_VAULT_URI": uri}).key_vault_uri == uri
    with pytest.raises(SettingsError) as err:
        load_settings({**base, "PGVAULT_KEY_VAULT_URI": "https://kv.example.com/"})
    assert set(err.value.problems) == {"PGVAULT_KEY_VAULT_URI"}


def test_development_storage_with_defaults_is_valid() -> None:
    s = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true", **SCHEDULE})
    assert s.storage_connection_string == "UseDevelopmentStorage=true"
    assert s.vault_name == "pgvault"
    assert s.allow_env_secrets is False
    assert s.backup_manifest is True
    assert load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "PGVAULT_BACKUP_MANIFEST": "false",
                          **SCHEDULE}).backup_manifest is False
    assert s.backup_container == "pgvault-backups"
    assert s.backup_manifest_from_stream is True  # the stream manifest by default: no second read
    by_sql = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "PGVAULT_BACKUP_MANIFEST_FROM_STREAM": "false"}
    assert load_settings({**by_sql, **SCHEDULE}).backup_manifest_from_stream is False


def test_identity_based_storage_needs_only_the_account_name() -> None:
    s = load_settings(
        {"AzureWebJobsStorage__accountName": "pgvaultprod", "PGVAULT_ALLOW_ENV_SECRETS": "false", **SCHEDULE}
    )
    assert s.storage_connection_string is None
    assert s.storage_account_name == "pgvaultprod"


def test_repr_never_shows_the_account_key() -> None:
    key = "c2VjcmV0LWtleS1ub3QtdG8tYmUtc2hvd24="
    s = load_settings(
        {"AzureWebJobsStorage": f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={key}", **SCHEDULE}
    )
    assert key not in repr(s)


def test_sample_local_settings_are_valid_and_complete() -> None:
    import json
    from pathlib import Path

    sample = json.loads((Path(__file__).resolve().parents[2] / "local.settings.sample.json").read_text())
    values = sample["Values"]
    settings = load_settings(values)
    assert settings.allow_env_secrets is True
    # Every PGVAULT_ setting the code reads appears in the sample.
    source = (Path(__file__).resolve().parents[2] / "shared" / "settings.py").read_text()
    import re

    read = set(re.findall(r'"(PGVAULT_[A-Z_]+)"', source))
    assert read <= set(values), f"missing from local.settings.sample.json: {read - set(values)}"


def test_the_scheduler_and_retention_timers_need_their_schedule_settings() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert set(err.value.problems) == {"PGVAULT_SCHEDULER_SCHEDULE", "PGVAULT_RETENTION_SCHEDULE"}


def test_allowed_servers_are_normalised_host_patterns_empty_by_default() -> None:
    base = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", **SCHEDULE}
    assert load_settings(base).allowed_servers == ()
    s = load_settings({**base, "PGVAULT_ALLOWED_SERVERS": " *.Postgres.Database.Azure.com. , db1.example.com,"})
    assert s.allowed_servers == ("*.postgres.database.azure.com", "db1.example.com")
    for bad in ("*", "*.*", "db1.example.com/5432", "[a-z].example.com", "db one"):
        with pytest.raises(SettingsError) as err:
            load_settings({**base, "PGVAULT_ALLOWED_SERVERS": bad})
        assert set(err.value.problems) == {"PGVAULT_ALLOWED_SERVERS"}, bad


def test_backup_parallelism_defaults_to_the_cores_this_process_may_use_and_takes_a_whole_number() -> None:
    base = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", **SCHEDULE}
    default = load_settings(base)
    assert default.backup_parallelism == default_parallelism() >= 1
    # 2 GiB, the backup runner's own default (bench/README.md says why)
    assert default.parallel_backup_min_bytes == 2 * 1024**3 == DEFAULT_PARALLEL_MIN_BYTES
    chosen = load_settings({**base, "PGVAULT_BACKUP_PARALLELISM": "4", "PGVAULT_PARALLEL_BACKUP_MIN_BYTES": "0"})
    assert (chosen.backup_parallelism, chosen.parallel_backup_min_bytes) == (4, 0)
