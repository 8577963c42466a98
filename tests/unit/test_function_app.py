"""The registered functions of pgvault's app, as Azure will index them."""

from __future__ import annotations

from typing import Any

import pytest

import function_app


@pytest.fixture(scope="module")
def functions() -> dict[str, dict[str, Any]]:
    # get_functions() may be called once per app (docs/platform-notes.md): call it once, keep the result.
    out: dict[str, dict[str, Any]] = {}
    for fn in function_app.app.get_functions():
        trigger = fn.get_trigger().get_dict_repr()
        out[fn.get_function_name()] = {
            "trigger": trigger,
            "bindings": [b.get_dict_repr() for b in fn.get_bindings()],
            "user": fn.get_user_function(),
        }
    return out


def _v(x: Any) -> str:
    return str(getattr(x, "value", x))


# name -> (route, methods, auth level)
EXPECTED_HTTP = {
    "health": ("health", {"GET"}, "anonymous"),
    "health_checks": ("health/checks", {"GET"}, "function"),
    "put_policy": ("backupPolicies/{name}", {"PUT"}, "function"),
    "get_policy": ("backupPolicies/{name}", {"GET"}, "function"),
    "list_policies": ("backupPolicies", {"GET"}, "function"),
    "delete_policy": ("backupPolicies/{name}", {"DELETE"}, "function"),
    "simulate_policy": ("backupPolicies/{name}:simulate", {"POST"}, "function"),
    "configure_instances": ("backupInstances", {"POST"}, "function"),
    "configure_instance": ("backupInstances/{name}", {"PUT"}, "function"),
    "list_instances": ("backupInstances", {"GET"}, "function"),
    "get_instance": ("backupInstances/{name}", {"GET"}, "function"),
    "validate_instance": ("backupInstances/{name}:validate", {"POST"}, "function"),
    "grant_script": ("backupInstances/{name}/grantScript", {"GET"}, "function"),
    "role_assignment": ("backupInstances/{name}/roleAssignmentTemplate", {"GET"}, "function"),
    "list_databases_route": ("servers:listDatabases", {"POST"}, "function"),
    "validate_for_backup": ("backupInstances:validateForBackup", {"POST"}, "function"),
    "candidate_grant_script": ("backupJobs/{jobId}/grantScript", {"GET"}, "function"),
    "candidate_role_assignment": ("backupJobs/{jobId}/roleAssignmentTemplate", {"GET"}, "function"),
    "list_jobs": ("backupJobs", {"GET"}, "function"),
    "get_job": ("backupJobs/{jobId}", {"GET"}, "function"),
    "cancel_job": ("backupJobs/{jobId}:cancel", {"POST"}, "function"),
    "openapi_document": ("openapi.json", {"GET"}, "function"),
    "backup_now": ("backupInstances/{name}:backup", {"POST"}, "function"),
    "list_recovery_points": ("backupInstances/{name}/recoveryPoints", {"GET"}, "function"),
    "get_recovery_point": ("backupInstances/{name}/recoveryPoints/{recoveryPointId}", {"GET"}, "function"),
    "dashboard": ("dashboard", {"GET"}, "anonymous"),
    "dashboard_asset": ("dashboard/{*path}", {"GET"}, "anonymous"),
    "stop_protection": ("backupInstances/{name}:stopProtection", {"POST"}, "function"),
    "resume_protection": ("backupInstances/{name}:resumeProtection", {"POST"}, "function"),
    "undelete": ("backupInstances/{name}:undelete", {"POST"}, "function"),
    "restore": ("backupInstances/{name}:restore", {"POST"}, "function"),
    "verify_restore": ("backupInstances/{name}:verifyRestore", {"POST"}, "function"),
    "put_protected_server": ("protectedServers/{name}", {"PUT"}, "function"),
    "list_protected_servers": ("protectedServers", {"GET"}, "function"),
    "get_protected_server": ("protectedServers/{name}", {"GET"}, "function"),
    "delete_protected_server": ("protectedServers/{name}", {"DELETE"}, "function"),
    "discover_protected_server": ("protectedServers/{name}:discover", {"POST"}, "function"),
    "list_alerts": ("alerts", {"GET"}, "function"),
    "me": ("me", {"GET"}, "function"),
    "audit_log": ("auditLog", {"GET"}, "function"),
    "list_approvals": ("approvals", {"GET"}, "function"),
    "get_approval": ("approvals/{id}", {"GET"}, "function"),
    "approve": ("approvals/{id}:approve", {"POST"}, "function"),
}
# name -> (queue, connection setting)
EXPECTED_QUEUES: dict[str, tuple[str, str]] = {
    "validation_worker": ("pgvault-validate", "AzureWebJobsStorage"),
    "backup_worker": ("pgvault-backup", "AzureWebJobsStorage"),
    "restore_worker": ("pgvault-restore", "AzureWebJobsStorage"),
    "validation_poison": ("pgvault-validate-poison", "AzureWebJobsStorage"),
    "backup_poison": ("pgvault-backup-poison", "AzureWebJobsStorage"),
    "restore_poison": ("pgvault-restore-poison", "AzureWebJobsStorage"),
    "backup_part_worker": ("pgvault-backup-part", "AzureWebJobsStorage"),
    "backup_part_poison": ("pgvault-backup-part-poison", "AzureWebJobsStorage"),
}
# name -> (schedule, runOnStartup)
EXPECTED_TIMERS: dict[str, tuple[str, bool]] = {
    "scheduler": ("%PGVAULT_SCHEDULER_SCHEDULE%", False),
    "retention_sweep": ("%PGVAULT_RETENTION_SCHEDULE%", False),
    "rehydration_timer": ("30 * * * * *", False),
    "hung_jobs": ("0 */5 * * * *", False),
    "discovery": ("0 */5 * * * *", False),
    "alert_delivery": ("5,20,35,50 * * * * *", False),
    "alert_checks": ("20 */5 * * * *", False),
}


def test_every_registered_function_is_expected(functions: dict[str, dict[str, Any]]) -> None:
    assert set(functions) == set(EXPECTED_HTTP) | set(EXPECTED_QUEUES) | set(EXPECTED_TIMERS)


@pytest.mark.parametrize("name", sorted(EXPECTED_HTTP))
def test_http_trigger_binding(functions: dict[str, dict[str, Any]], name: str) -> None:
    route, methods, auth = EXPECTED_HTTP[name]
    trigger = functions[name]["trigger"]
    assert trigger["type"] == "httpTrigger"
    assert trigger["route"] == route
    assert {_v(m) for m in trigger["methods"]} == methods
    assert _v(trigger["authLevel"]) == auth


@pytest.mark.parametrize("name", sorted(EXPECTED_QUEUES))
def test_queue_trigger_binding(functions: dict[str, dict[str, Any]], name: str) -> None:
    queue, connection = EXPECTED_QUEUES[name]
    trigger = functions[name]["trigger"]
    assert trigger["type"] == "queueTrigger"
    assert (trigger["queueName"], trigger["connection"]) == (queue, connection)


# name -> {argument: (queue, connection setting)}: the queue output bindings. A request that starts a job
# hands the job's message to the host this way, so the host's listener of that queue polls at once
# (the WebJobs SDK's SharedQueueWatcher; shared/jobs/messages.py).
EXPECTED_QUEUE_OUTPUTS: dict[str, dict[str, tuple[str, str]]] = {
    "backup_now": {"message": ("pgvault-backup", "AzureWebJobsStorage")},
    "restore": {"message": ("pgvault-restore", "AzureWebJobsStorage")},
    "verify_restore": {"message": ("pgvault-restore", "AzureWebJobsStorage")},
}


def test_queue_output_bindings_are_the_expected_ones(functions: dict[str, dict[str, Any]]) -> None:
    found = {
        name: {
            b["name"]: (b["queueName"], b["connection"])
            for b in f["bindings"]
            if b["type"] == "queue" and _v(b["direction"]).upper() in ("OUT", "1")
        }
        for name, f in functions.items()
    }
    assert {name: outs for name, outs in found.items() if outs} == EXPECTED_QUEUE_OUTPUTS


def test_each_output_binding_writes_to_the_queue_its_worker_listens_on(functions: dict[str, dict[str, Any]]) -> None:
    workers = {queue: name for name, (queue, _) in EXPECTED_QUEUES.items()}
    for name, outs in EXPECTED_QUEUE_OUTPUTS.items():
        for queue, connection in outs.values():
            worker = functions[workers[queue]]["trigger"]
            assert (worker["queueName"], worker["connection"]) == (queue, connection), name


def test_handlers_take_their_output_bindings_as_func_out_of_str(functions: dict[str, dict[str, Any]]) -> None:
    import inspect
    import typing

    import azure.functions as func

    for name in EXPECTED_QUEUE_OUTPUTS:
        user = functions[name]["user"]
        # What the Python worker reads: the parameters by name, and their annotations.
        assert list(inspect.signature(user).parameters) == ["req", "message"]
        assert typing.get_type_hints(user)["message"] == func.Out[str]


@pytest.mark.parametrize("name", sorted(EXPECTED_TIMERS))
def test_timer_binding(functions: dict[str, dict[str, Any]], name: str) -> None:
    schedule, on_startup = EXPECTED_TIMERS[name]
    trigger = functions[name]["trigger"]
    assert trigger["type"] == "timerTrigger"
    assert (trigger["schedule"], bool(trigger.get("runOnStartup"))) == (schedule, on_startup)


def test_workers_know_the_hosts_max_dequeue_count() -> None:
    import json
    from pathlib import Path

    from functions.workers import MAX_DEQUEUE_COUNT

    host = json.loads((Path(function_app.__file__).parent / "host.json").read_text())
    assert host["extensions"]["queues"]["maxDequeueCount"] == MAX_DEQUEUE_COUNT


def test_the_hung_jobs_bound_is_made_of_host_json_queue_settings() -> None:
    import json
    from datetime import timedelta
    from pathlib import Path

    from devhost.hostconfig import timespan_seconds
    from shared import hung_jobs

    queues = json.loads((Path(function_app.__file__).parent / "host.json").read_text())["extensions"]["queues"]
    assert queues["maxDequeueCount"] == hung_jobs.MAX_DEQUEUE_COUNT
    assert timedelta(seconds=timespan_seconds(queues["visibilityTimeout"])) == hung_jobs.VISIBILITY_TIMEOUT
    assert timedelta(seconds=timespan_seconds(queues["maxPollingInterval"])) == hung_jobs.MAX_POLLING_INTERVAL
    # 5 tries x (30 min function timeout + 2 min until the lock looks abandoned + 10 s + 2 s)
    assert hung_jobs.longest_delivery(timedelta(minutes=30)) == timedelta(hours=2, minutes=41)


def test_a_request_whose_message_was_lost_is_sent_again_while_its_backup_still_counts_as_running() -> None:
    from datetime import UTC, datetime

    from croniter import croniter

    from shared import hung_jobs
    from shared.backups import QUEUED_WINDOW

    # The sweep runs every 5 minutes: a job recorded just after one sweep is sent again at the latest
    # one period after NEVER_TAKEN, and that must come before the instance is free for a second backup.
    it = croniter(hung_jobs.SCHEDULE, datetime(2026, 1, 1, tzinfo=UTC), second_at_beginning=True)
    first, second = it.get_next(datetime), it.get_next(datetime)
    assert hung_jobs.NEVER_TAKEN + (second - first) < QUEUED_WINDOW


def test_only_health_and_the_dashboard_files_are_anonymous(functions: dict[str, dict[str, Any]]) -> None:
    anonymous = {
        name
        for name, f in functions.items()
        if f["trigger"]["type"] == "httpTrigger" and _v(f["trigger"].get("authLevel", "function")) == "anonymous"
    }
    # The dashboard routes serve fixed files without data; the data comes from the keyed API.
    assert anonymous == {"health", "dashboard", "dashboard_asset"}


def test_app_module_only_wires() -> None:
    import ast
    from pathlib import Path

    tree = ast.parse(Path(function_app.__file__).read_text())
    allowed = (ast.Import, ast.ImportFrom, ast.Assign, ast.Expr)
    for node in tree.body:
        assert isinstance(node, allowed), f"function_app.py does more than wiring: {ast.dump(node)[:80]}"
