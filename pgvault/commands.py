"""The commands over the HTTP API, in the style of ``az dataprotection``.

Exit codes scripts can trust:

| code | meaning |
|---|---|
| 0 | done (with ``--wait``: the job finished Completed or CompletedWithWarnings) |
| 1 | the job finished Failed or Cancelled; its error code and recommended action are on stderr |
| 2 | bad usage or input (argparse, unreadable files, an invalid policy file), or the API answered 400 |
| 3 | the API refused otherwise or could not answer (HTTP 401/404/409/5xx, unreachable): the code on stderr |
| 4 | ``--wait`` gave up after ``--timeout`` seconds; the job is still running |
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeAlias, TypeVar

from pydantic import BaseModel, ValidationError

from pgvault.batch import configure_file
from pgvault.client import ApiError, Client, seg
from pgvault.output import (
    Column,
    Progress,
    default_format,
    emit,
    emit_list,
    human_bytes,
    percent,
    rate_text,
    seconds_text,
    step_seconds,
)
from shared.errors import ErrorCode, UserError
from shared.wire import backups as wire_backups
from shared.wire import dump
from shared.wire import instances as wire_instances
from shared.wire import restore as wire_restore
from shared.wire.check import parse

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_API_ERROR = 3
EXIT_TIMEOUT = 4
HTTP_BAD_REQUEST = 400
FINISHED_OK = ("Completed", "CompletedWithWarnings")

Handler = Callable[[argparse.Namespace, Client], int]
M = TypeVar("M", bound=BaseModel)
if TYPE_CHECKING:
    Groups: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


class UsageError(Exception):
    """Input the command cannot use (exit 2)."""


# --- request bodies: built from the API's own wire models (shared.wire), checked as the API checks them --


def build(model: type[M], **fields: Any) -> M:
    """``model`` with ``fields`` (wire names); a value the API would refuse is a ``UsageError`` naming its field."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(step) for step in first["loc"])
        raise UsageError(f"{where}: {first['msg']}") from None


def build_body(model: type[BaseModel], **fields: Any) -> dict[str, Any]:
    """The JSON body of ``model`` with ``fields``: only the fields given, as the API reads them."""
    return dump(build(model, **fields))


def request_body(model: type[BaseModel], document: Any) -> dict[str, Any]:
    """A body from a file or flags, checked by the API's own rules and messages before anything is sent."""
    try:
        return dump(parse(model, document))
    except UserError as exc:
        raise UsageError(exc.message) from None


# --- plumbing -------------------------------------------------------------------------------------


def common_options() -> argparse.ArgumentParser:
    """Options every API command takes."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--output",
        "-o",
        choices=("json", "table"),
        default=None,
        help="json (the API's shapes) or table; default: table on a terminal, json when piped",
    )
    return parent


def wait_options() -> argparse.ArgumentParser:
    """Options of commands that can wait for their job."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--wait", action="store_true", help="wait for the job to finish, with progress on stderr")
    parent.add_argument("--timeout", type=float, default=3600, help="seconds to wait at most (exit 4 after)")
    parent.add_argument("--poll", type=float, default=2.0, help="seconds between polls of the job")
    return parent


def api_command(handler: Handler) -> Callable[[argparse.Namespace], int]:
    """Run ``handler`` with a client from the environment; map API and usage errors to exit codes."""

    def run(args: argparse.Namespace) -> int:
        if getattr(args, "output", None) is None:
            args.output = default_format()
        try:
            return handler(args, Client.from_env())
        except ApiError as error:
            report_error(error.code, error.message, error.action, target=error.target, status=error.status)
            # 400 is bad input, as a bad argument is: the user fixes the command, a retry cannot help.
            return EXIT_USAGE if error.status == HTTP_BAD_REQUEST else EXIT_API_ERROR
        except UsageError as error:
            print(f"pgvault: {error}", file=sys.stderr)
            return EXIT_USAGE

    return run


def report_error(
    code: str,
    message: str,
    action: str | None,
    *,
    target: str | None = None,
    status: int | None = None,
    err: TextIO | None = None,
) -> None:
    """The error on stderr: first line ``pgvault: <code>: <message>`` (scripts grep the code)."""
    err = err or sys.stderr
    where = f" (HTTP {status})" if status else ""
    print(f"pgvault: {code}: {message}{where}", file=err)
    if target:
        print(f"Target: {target}", file=err)
    if action:
        print(f"Recommended action: {action}", file=err)


def read_json_file(path: Path) -> Any:
    """The JSON in ``path`` (``-`` for stdin); ``UsageError`` when unreadable."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
        return json.loads(text)
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror or error}") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{path} is not valid JSON: {error}") from error


def wait_for_job(
    client: Client,
    job_id: str,
    *,
    timeout: float,
    poll: float,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any] | None:
    """Poll the job until it finishes; the finished job, or None after ``timeout`` seconds."""
    deadline = clock() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/backupJobs/{seg(job_id)}")
        if progress is not None:
            progress.show(job)
        if job.get("status") != "InProgress":
            if progress is not None:
                progress.done()
            return job
        if clock() >= deadline:
            if progress is not None:
                progress.done()
            return None
        sleep(poll)


def finish_job(args: argparse.Namespace, client: Client, job_id: str, columns: list[Column] | None = None) -> int:
    """Without ``--wait``: print the accepted job id. With it: wait, print the job, exit by its status."""
    if not getattr(args, "wait", False):
        emit({"jobId": job_id} if args.output == "json" else job_id, args.output)
        return EXIT_OK
    job = wait_for_job(client, job_id, timeout=args.timeout, poll=args.poll, progress=Progress())
    if job is None:
        print(f"pgvault: job {job_id} still InProgress after {args.timeout:g} s", file=sys.stderr)
        emit({"jobId": job_id} if args.output == "json" else job_id, args.output)
        return EXIT_TIMEOUT
    emit(job, args.output, columns or JOB_DETAIL)
    return job_exit(job)


def job_exit(job: dict[str, Any]) -> int:
    """0 for a job that finished well; 1 (with its error on stderr) for a failed or cancelled one."""
    if job.get("status") in FINISHED_OK:
        return EXIT_OK
    error = job.get("error") or {}
    report_error(
        error.get("code", f"Job{job.get('status')}"),
        f"job {job.get('jobId')} {job.get('status')}: {error.get('message', 'no error recorded')}",
        error.get("recommendedAction"),
    )
    return EXIT_JOB_FAILED


# --- columns of the table output ------------------------------------------------------------------


def _k(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: row.get(key)


JOB_ROW: list[Column] = [
    ("JOB", _k("jobId")),
    ("OPERATION", _k("operation")),
    ("STATUS", _k("status")),
    ("INSTANCE", _k("instance")),
    ("START", _k("startTime")),
    ("BYTES", lambda j: human_bytes(j.get("bytes"))),
    ("TAG", _k("retentionTag")),
    ("ERROR", lambda j: (j.get("error") or {}).get("code")),
]
JOB_DETAIL: list[Column] = [
    *JOB_ROW[:5],
    ("END", _k("endTime")),
    ("DURATION", lambda j: seconds_text(j.get("durationSeconds"))),
    ("BYTES", lambda j: human_bytes(j.get("bytes"))),
    ("RATE", lambda j: rate_text(j.get("throughputBytesPerSecond"))),
    ("PROGRESS", lambda j: percent(j.get("progress"))),
    ("RECOVERY POINT", _k("recoveryPointId")),
    ("ERROR", lambda j: (j.get("error") or {}).get("code")),
]
INSTANCE_ROW: list[Column] = [
    ("NAME", _k("name")),
    ("SERVER", _k("server")),
    ("PORT", _k("port")),
    ("DATABASE", _k("database")),
    ("POLICY", _k("policyName")),
    ("PROTECTION", _k("protectionStatus")),
    ("STATE", _k("currentProtectionState")),
    ("READINESS", lambda i: (i.get("backupReadiness") or {}).get("status")),
    ("ERROR", lambda i: ((i.get("backupReadiness") or {}).get("error") or {}).get("code")),
    # Set for a soft-deleted instance: when the retention sweep purges it unless undeleted first.
    ("PURGE", lambda i: (i.get("deletionInfo") or {}).get("scheduledPurgeTime")),
]
POINT_ROW: list[Column] = [
    ("RECOVERY POINT", _k("recoveryPointId")),
    ("TIME", _k("time")),
    ("DATASTORE", _k("datastore")),
    ("TAG", _k("retentionTag")),
    ("EXPIRY", _k("expiry")),
    ("SIZE", lambda p: human_bytes(p.get("sizeInBytes"))),
    ("SERVER", _k("serverVersion")),
    ("INTEGRITY", lambda p: p.get("integrity") or "Available"),
]
POLICY_ROW: list[Column] = [
    ("NAME", _k("name")),
    ("RULES", lambda p: ", ".join(r.get("name", "?") for r in (p.get("properties") or {}).get("policyRules", []))),
]
CONFIGURED_ROW: list[Column] = [
    ("NAME", _k("name")),
    ("STATUS", _k("status")),
    ("VALIDATION JOB", _k("validationJobId")),
    ("VALIDATION", lambda c: (c.get("validationJob") or {}).get("status")),
    (
        "ERROR",
        lambda c: (c.get("error") or (c.get("validationJob") or {}).get("error") or {}).get("code"),
    ),
]


# --- policy ---------------------------------------------------------------------------------------


def add_policy_api_commands(commands: Groups) -> None:
    """``policy create|show|list|delete`` (``simulate`` lives in pgvault/simulate.py, ``show`` in commands_policy)."""
    from pgvault.commands_policy import add_policy_show_command

    opts = common_options()
    create = commands.add_parser("create", parents=[opts], help="create or replace a policy from a file")
    create.add_argument("--name", "-n", required=True)
    create.add_argument("--file", "-f", required=True, type=Path, help="Azure BackupPolicy JSON ('-' for stdin)")
    create.set_defaults(handler=api_command(policy_create))
    add_policy_show_command(commands, [opts])
    listing = commands.add_parser("list", parents=[opts], help="list the policies")
    listing.set_defaults(handler=api_command(lambda a, c: _list(a, c, "/backupPolicies", POLICY_ROW)))
    delete = commands.add_parser("delete", parents=[opts], help="delete a policy (refused while in use)")
    delete.add_argument("--name", "-n", required=True)
    delete.set_defaults(handler=api_command(policy_delete))


SIMULATED_ROW: list[Column] = [
    ("TIME", _k("time")),
    ("TAG", _k("tag")),
    ("VAULT EXPIRY", _k("vaultExpiry")),
    ("ARCHIVE MOVE", _k("archiveMove")),
    ("DELETION", _k("deletion")),
]


def _simulate_stored(args: argparse.Namespace, client: Client) -> int:
    body = {"from": args.start.isoformat(), "to": args.end.isoformat()}
    result = client.request("POST", f"/backupPolicies/{seg(args.name)}:simulate", body=body).body
    if args.output == "json":
        emit(result, "json")
    else:
        emit(result.get("backups", []), "table", SIMULATED_ROW)
        print(f"summary: {json.dumps(result.get('summary'))}")
    return EXIT_OK


simulate_stored = api_command(_simulate_stored)
"""``policy simulate --name``: the API simulates a stored policy (``POST .../{name}:simulate``)."""


def policy_create(args: argparse.Namespace, client: Client) -> int:
    answer = client.request("PUT", f"/backupPolicies/{seg(args.name)}", body=read_json_file(args.file))
    emit(answer.body, args.output, POLICY_ROW)
    return EXIT_OK


def policy_delete(args: argparse.Namespace, client: Client) -> int:
    emit(client.request("DELETE", f"/backupPolicies/{seg(args.name)}").body, args.output, None)
    return EXIT_OK


def _show(args: argparse.Namespace, client: Client, path: str, columns: list[Column]) -> int:
    emit(client.get(path), args.output, columns)
    return EXIT_OK


def _list(args: argparse.Namespace, client: Client, path: str, columns: list[Column], **params: Any) -> int:
    emit_list(list(client.pages(path, **params)), args.output, columns)
    return EXIT_OK


# --- instance -------------------------------------------------------------------------------------


def add_instance_commands(groups: Groups) -> Groups:
    """``instance configure|list|show|validate|grant-script``; returns the group's commands."""
    instance = groups.add_parser("instance", help="backup instances (protected databases)")
    commands = instance.add_subparsers(dest="command", metavar="<command>", required=True)
    opts = common_options()
    configure = commands.add_parser(
        "configure",
        parents=[opts, wait_options()],
        help="protect databases: one from flags, or many from --file",
        description="Protect one database (--name --server --database --secret-uri --policy) or many "
        '(--file with {"instances": [...]}, or one instance object). Validation starts at once.',
    )
    configure.add_argument("--file", "-f", type=Path, help='JSON: {"instances": [...]} or one instance')
    configure.add_argument("--name", "-n")
    configure.add_argument("--server")
    configure.add_argument("--port", type=int)
    configure.add_argument("--database", "-d")
    configure.add_argument("--secret-uri", help="Key Vault secret URI, or env:PGVAULT_SECRET_<NAME> (local use)")
    configure.add_argument("--policy", help="the backup policy's name")
    configure.add_argument("--server-region")
    configure.set_defaults(handler=api_command(instance_configure))
    listing = commands.add_parser("list", parents=[opts], help="list backup instances")
    listing.set_defaults(handler=api_command(lambda a, c: _list(a, c, "/backupInstances", INSTANCE_ROW)))
    show = commands.add_parser("show", parents=[opts], help="one instance with its readiness")
    show.add_argument("--name", "-n", required=True)
    show.set_defaults(handler=api_command(lambda a, c: _show(a, c, f"/backupInstances/{seg(a.name)}", INSTANCE_ROW)))
    validate = commands.add_parser("validate", parents=[opts, wait_options()], help="re-validate an instance")
    validate.add_argument("--name", "-n", required=True)
    validate.set_defaults(handler=api_command(instance_validate))
    grant = commands.add_parser("grant-script", parents=[opts], help="the script that grants the backup privileges")
    grant.add_argument("--name", "-n", required=True)
    grant.add_argument("--format", choices=("sql", "sh", "ps1"), default="sql")
    grant.set_defaults(handler=api_command(instance_grant_script))
    return commands


def entry_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The configure entry's fields given as flags (those not given left out)."""
    flags = {
        "name": args.name,
        "server": args.server,
        "port": args.port,
        "database": args.database,
        "secretUri": args.secret_uri,
        "policyName": args.policy,
        "serverRegion": args.server_region,
    }
    return {k: v for k, v in flags.items() if v is not None}


def instance_body(args: argparse.Namespace) -> tuple[str | None, dict[str, Any]]:
    """The request for ``instance configure``: (name for PUT, or None for POST of many; body)."""
    given = entry_flags(args)
    if args.file is not None:
        document = read_json_file(args.file)
        if isinstance(document, dict) and "instances" in document:
            if given:
                raise UsageError("--file with an instances list takes no other instance flags")
            return None, document
        if not isinstance(document, dict):
            raise UsageError(f'{args.file}: expected {{"instances": [...]}} or one instance object')
        document = {**document, **given}  # flags win over the file
    else:
        document = given
    missing = [
        f"--{flag}"
        for flag, key in (
            ("server", "server"),
            ("database", "database"),
            ("secret-uri", "secretUri"),
            ("policy", "policyName"),
        )
        if not document.get(key)
    ]
    if missing:
        raise UsageError(f"instance configure needs {', '.join(missing)} (or --file)")
    spec = request_body(wire_instances.InstanceSpec, document)
    name = spec.pop("name", None)
    if name:
        return str(name), spec
    return None, request_body(wire_instances.ConfigureManyRequest, {"instances": [spec]})


def instance_configure(args: argparse.Namespace, client: Client) -> int:
    name, body = instance_body(args)
    if name is not None:
        answer = client.request("PUT", f"/backupInstances/{seg(name)}", body=body)
        if getattr(args, "wait", False):
            return finish_job(args, client, answer.body["validationJobId"])
        emit(answer.body, args.output, CONFIGURED_ROW)
        return EXIT_OK
    return configure_many(args, client, body)


def configure_many(args: argparse.Namespace, client: Client, body: dict[str, Any]) -> int:
    """Configure a file's entries (skipping those already configured alike); report each, exit by the worst."""
    results = configure_file(client, body)
    worst = EXIT_OK
    for result in results:
        error = result.get("error")
        if error:
            report_error(
                str(error.get("code", "Failed")),
                f"{result.get('name') or '(unnamed entry)'}: {error.get('message')}",
                error.get("recommendedAction"),
                target=error.get("target"),
            )
            worst = max(worst, entry_exit(str(error.get("code", ""))))
        elif getattr(args, "wait", False) and result.get("validationJobId"):
            job = wait_for_job(
                client, result["validationJobId"], timeout=args.timeout, poll=args.poll, progress=Progress()
            )
            if job is None:
                print(
                    f"pgvault: job {result['validationJobId']} still InProgress after {args.timeout:g} s",
                    file=sys.stderr,
                )
                worst = max(worst, EXIT_TIMEOUT)
                continue
            result["validationJob"] = job
            worst = max(worst, job_exit(job))
    emit_list(results, args.output, CONFIGURED_ROW)
    return worst


def entry_exit(code: str) -> int:
    """The exit code an entry's error would give as the answer of its own request: 2 for a 400, else 3."""
    known = next((c for c in ErrorCode if c.value == code), None)
    return EXIT_USAGE if known is not None and known.http_status == HTTP_BAD_REQUEST else EXIT_API_ERROR


def instance_validate(args: argparse.Namespace, client: Client) -> int:
    answer = client.request("POST", f"/backupInstances/{seg(args.name)}:validate")
    return finish_job(args, client, answer.body["jobId"])


def instance_grant_script(args: argparse.Namespace, client: Client) -> int:
    answer = client.request("GET", f"/backupInstances/{seg(args.name)}/grantScript", params={"format": args.format})
    script = answer.body if isinstance(answer.body, str) else json.dumps(answer.body)
    sys.stdout.write(script if script.endswith("\n") else script + "\n")
    return EXIT_OK


# --- backup, job, recovery-point ------------------------------------------------------------------


def add_backup_commands(groups: Groups) -> None:
    """``backup now``."""
    backup = groups.add_parser("backup", help="on-demand backups")
    commands = backup.add_subparsers(dest="command", metavar="<command>", required=True)
    now = commands.add_parser(
        "now",
        parents=[common_options(), wait_options()],
        help="back up an instance now",
        description="Start an on-demand backup (Azure's TriggerBackupRequest). With --wait, show progress on "
        "stderr and print the finished job (its recoveryPointId) on stdout.",
    )
    now.add_argument("--instance", "-i", required=True)
    now.add_argument("--rule", help="the policy's backup rule (default: the policy's own)")
    now.add_argument("--tag", help="retention tag: Default, Weekly, Monthly, Yearly (default: Default)")
    now.set_defaults(handler=api_command(backup_now))


def trigger_body(rule: str | None, tag: str | None) -> dict[str, Any]:
    """Azure's TriggerBackupRequest for a rule and a retention tag (both optional)."""
    options: dict[str, Any] = {}
    if rule:
        options["ruleName"] = rule
    if tag:
        options["triggerOption"] = wire_backups.TriggerOption(retentionTagOverride=tag)
    if not options:
        return {}
    return dump(wire_backups.TriggerBackupRequest(backupRuleOptions=wire_backups.BackupRuleOptions(**options)))


def backup_now(args: argparse.Namespace, client: Client) -> int:
    answer = client.request(
        "POST", f"/backupInstances/{seg(args.instance)}:backup", body=trigger_body(args.rule, args.tag)
    )
    return finish_job(args, client, answer.body["jobId"])


def add_job_commands(groups: Groups) -> Groups:
    """``job list|show|watch|cancel``; returns the group's commands."""
    job = groups.add_parser("job", help="jobs: backups, validations, restores, ...")
    commands = job.add_subparsers(dest="command", metavar="<command>", required=True)
    opts = common_options()
    listing = commands.add_parser("list", parents=[opts], help="jobs of the last days, newest first")
    listing.add_argument("--days", type=int, default=7, help="jobs of the last N days (1-90, default 7)")
    listing.add_argument("--instance", "-i")
    listing.add_argument("--status", help="InProgress, Completed, Failed, Cancelled, CompletedWithWarnings")
    listing.add_argument("--operation", help="Backup, Validate, Restore, ...")
    listing.add_argument("--top", type=int, help="jobs per page asked of the API (all pages are read)")
    listing.add_argument("--max", type=int, help="stop after this many jobs")
    listing.set_defaults(handler=api_command(job_list))
    show = commands.add_parser("show", parents=[opts], help="one job with its steps and error")
    show.add_argument("job_id", metavar="JOB_ID")
    show.set_defaults(handler=api_command(job_show))
    watch = commands.add_parser("watch", parents=[opts], help="follow a job until it finishes (exit by its status)")
    watch.add_argument("job_id", metavar="JOB_ID")
    watch.add_argument("--timeout", type=float, default=3600)
    watch.add_argument("--poll", type=float, default=2.0)
    watch.set_defaults(handler=api_command(job_watch), wait=True)
    cancel = commands.add_parser(
        "cancel",
        parents=[opts, wait_options()],
        help="cancel a running backup or restore (exit 0 once accepted; with --wait, 0 when it ended Cancelled)",
        description="Stop a backup or restore: the dump is stopped, nothing is committed, a half-restored "
        "database is dropped, the job ends Cancelled. A job that finished before the cancel reached it "
        "keeps its status: exit 1, naming it.",
    )
    cancel.add_argument("job_id", metavar="JOB_ID")
    cancel.set_defaults(handler=api_command(job_cancel))
    return commands


def job_list(args: argparse.Namespace, client: Client) -> int:
    jobs = client.pages(
        "/backupJobs",
        days=args.days,
        instance=args.instance,
        status=args.status,
        operation=args.operation,
        top=args.top,
    )
    rows: list[dict[str, Any]] = []
    for job in jobs:
        if args.max is not None and len(rows) >= args.max:
            break
        rows.append(job)
    emit_list(rows, args.output, JOB_ROW)
    return EXIT_OK


def job_show(args: argparse.Namespace, client: Client) -> int:
    job = client.get(f"/backupJobs/{seg(args.job_id)}")
    emit(job, args.output, JOB_DETAIL)
    if args.output == "table":
        for step in job.get("steps") or []:
            took = step_seconds(step)
            print(f"  step {step.get('name')}: {step.get('status', '')}{f' ({took})' if took else ''}", file=sys.stdout)
        if job.get("error"):
            print(f"  error {job['error'].get('code')}: {job['error'].get('message')}", file=sys.stdout)
            print(f"  recommended action: {job['error'].get('recommendedAction')}", file=sys.stdout)
    return EXIT_OK


def job_watch(args: argparse.Namespace, client: Client) -> int:
    return finish_job(args, client, args.job_id)


def job_cancel(args: argparse.Namespace, client: Client) -> int:
    answer = client.request("POST", f"/backupJobs/{seg(args.job_id)}:cancel")
    job: dict[str, Any] = answer.body
    if answer.status == 202 and args.wait:
        waited = wait_for_job(client, args.job_id, timeout=args.timeout, poll=args.poll, progress=Progress())
        if waited is None:
            print(f"pgvault: job {args.job_id} still InProgress after {args.timeout:g} s", file=sys.stderr)
            emit(job, args.output, JOB_DETAIL)
            return EXIT_TIMEOUT
        job = waited
    emit(job, args.output, JOB_DETAIL)
    if job.get("status") in ("Cancelled", "InProgress"):
        return EXIT_OK
    print(f"pgvault: job {args.job_id} had finished {job.get('status')} before the cancel", file=sys.stderr)
    return EXIT_JOB_FAILED


def add_recovery_point_commands(groups: Groups) -> None:
    """``recovery-point list|show``."""
    rp = groups.add_parser("recovery-point", help="recovery points of an instance")
    commands = rp.add_subparsers(dest="command", metavar="<command>", required=True)
    opts = common_options()
    listing = commands.add_parser("list", parents=[opts], help="an instance's recovery points, newest first")
    listing.add_argument("--instance", "-i", required=True)
    listing.set_defaults(
        handler=api_command(lambda a, c: _list(a, c, f"/backupInstances/{seg(a.instance)}/recoveryPoints", POINT_ROW))
    )
    show = commands.add_parser("show", parents=[opts], help="one recovery point")
    show.add_argument("--instance", "-i", required=True)
    show.add_argument("--id", dest="point_id", required=True)
    show.set_defaults(
        handler=api_command(
            lambda a, c: _show(a, c, f"/backupInstances/{seg(a.instance)}/recoveryPoints/{seg(a.point_id)}", POINT_ROW)
        )
    )


# --- restore --------------------------------------------------------------------------------------


def add_restore_commands(groups: Groups) -> None:
    """``restore database|files|verify`` (Azure's restore request shapes)."""
    restore = groups.add_parser("restore", help="restore a recovery point")
    commands = restore.add_subparsers(dest="command", metavar="<command>", required=True)
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--instance", "-i", required=True)
    shared.add_argument("--recovery-point", required=True, help="the recovery point id")
    shared.add_argument(
        "--source-datastore",
        choices=("VaultStore", "ArchiveStore"),
        default=None,
        help="where the point is (default: as the recovery point says)",
    )
    shared.add_argument(
        "--rehydration-priority",
        choices=("Standard", "High"),
        help="for an ArchiveStore point: how fast to rehydrate it",
    )
    shared.add_argument("--rehydration-duration", help="ISO 8601, P10D..P30D: how long the copy is kept (P15D)")
    db = commands.add_parser(
        "database",
        parents=[common_options(), wait_options(), shared],
        help="restore as a new database",
        description="Restore as a new database on the server named in the target secret's connection string "
        "(FailIfExists: an existing database is never touched).",
    )
    db.add_argument("--target-database", required=True, help="the new database's name")
    db.add_argument("--target-secret-uri", required=True, help="secret of the target server (Key Vault URI or env:)")
    db.add_argument("--keep-owner", action="store_true", help="keep object owners (pg_restore without --no-owner)")
    db.add_argument("--keep-acl", action="store_true", help="keep grants (pg_restore without --no-acl)")
    db.add_argument(
        "--create-missing-roles",
        action="store_true",
        help="create the point's roles the target server lacks first, and keep owners and grants "
        "(restoreOptions.roles CreateMissing; default: the target user owns everything)",
    )
    db.add_argument("--schema", action="append", dest="schemas", help="only this schema (repeatable)")
    db.add_argument("--table", action="append", dest="tables", help="only this table (repeatable)")
    db.set_defaults(handler=api_command(restore_database))
    files = commands.add_parser(
        "files",
        parents=[common_options(), wait_options(), shared],
        help="restore as files into a blob container",
        description="Write <prefix>.dump (pg_restore-ready) and <prefix>.manifest.json into a blob container "
        "of a storage account the app's PGVAULT_EXPORT_ACCOUNTS lists; existing files are never overwritten.",
    )
    files.add_argument("--container-url", required=True, help="https://<account>.blob.core.windows.net/<container>")
    files.add_argument("--file-prefix", required=True)
    files.add_argument("--zstd", action="store_true", help="keep the dump zstd-compressed")
    files.add_argument("--connection-string-secret-uri", help="secret with the container account's connection string")
    files.set_defaults(handler=api_command(restore_files))
    verify = commands.add_parser(
        "verify",
        parents=[common_options(), wait_options()],
        help="prove a recovery point restores (scratch database, compared, dropped)",
        description="Restore a point into a scratch database on the target secret's server, compare every "
        "table with the manifest taken at backup time, and drop the scratch database.",
    )
    verify.add_argument("--instance", "-i", required=True)
    verify.add_argument("--recovery-point", required=True)
    verify.add_argument("--target-secret-uri", required=True, help="secret of the server to restore on")
    verify.set_defaults(handler=api_command(restore_verify))


def _restore_request(
    args: argparse.Namespace, target: wire_restore.RestoreTargetInfo | wire_restore.RestoreFilesTargetInfo, **more: Any
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": args.recovery_point,
        "restoreTargetInfo": target,
        **more,
    }
    if args.source_datastore:
        fields["sourceDataStoreType"] = args.source_datastore
    if args.rehydration_priority or args.rehydration_duration:
        fields["objectType"] = "AzureBackupRestoreWithRehydrationRequest"
        fields["sourceDataStoreType"] = "ArchiveStore"
        fields["rehydrationPriority"] = args.rehydration_priority or "Standard"
        if args.rehydration_duration:
            fields["rehydrationRetentionDuration"] = args.rehydration_duration
    return build_body(wire_restore.RestoreRequest, **fields)


def _credentials(secret_uri: str) -> wire_restore.SecretStoreBasedAuthCredentials:
    return wire_restore.SecretStoreBasedAuthCredentials(
        objectType="SecretStoreBasedAuthCredentials",
        secretStoreResource=wire_restore.SecretStoreResource(uri=secret_uri, secretStoreType="AzureKeyVault"),
    )


def restore_database_body(args: argparse.Namespace) -> dict[str, Any]:
    """Azure's restore request with a ``RestoreTargetInfo`` (new database, target secret)."""
    target = build(
        wire_restore.RestoreTargetInfo,
        objectType="RestoreTargetInfo",
        recoveryOption="FailIfExists",
        datasourceInfo=build(
            wire_restore.Datasource,
            objectType="Datasource",
            resourceName=args.target_database,
            resourceType="Microsoft.DBforPostgreSQL/servers/databases",
            datasourceType="Microsoft.DBforPostgreSQL/servers/databases",
        ),
        datasourceAuthCredentials=_credentials(args.target_secret_uri),
    )
    options: dict[str, Any] = {}
    if args.keep_owner:
        options["noOwner"] = False
    if args.keep_acl:
        options["noAcl"] = False
    if args.create_missing_roles:
        options["roles"] = "CreateMissing"
    if args.schemas:
        options["schemas"] = args.schemas
    if args.tables:
        options["tables"] = args.tables
    more = {"restoreOptions": build(wire_restore.RestoreOptions, **options)} if options else {}
    return _restore_request(args, target, **more)


def restore_files_body(args: argparse.Namespace) -> dict[str, Any]:
    """Azure's restore request with a ``RestoreFilesTargetInfo`` (container URL and file prefix)."""
    details: dict[str, Any] = {
        "url": args.container_url,
        "filePrefix": args.file_prefix,
        "restoreTargetLocationType": "AzureBlobs",
    }
    if args.connection_string_secret_uri:
        details["connectionStringSecretUri"] = args.connection_string_secret_uri
    target = build(
        wire_restore.RestoreFilesTargetInfo,
        objectType="RestoreFilesTargetInfo",
        recoveryOption="FailIfExists",
        targetDetails=build(wire_restore.TargetDetails, **details),
    )
    more = {"restoreOptions": build(wire_restore.RestoreOptions, fileFormat="zstd")} if args.zstd else {}
    return _restore_request(args, target, **more)


def restore_database(args: argparse.Namespace, client: Client) -> int:
    answer = client.request("POST", f"/backupInstances/{seg(args.instance)}:restore", body=restore_database_body(args))
    return finish_job(args, client, answer.body["jobId"])


def restore_files(args: argparse.Namespace, client: Client) -> int:
    answer = client.request("POST", f"/backupInstances/{seg(args.instance)}:restore", body=restore_files_body(args))
    return finish_job(args, client, answer.body["jobId"])


def verify_body(args: argparse.Namespace) -> dict[str, Any]:
    """The ``:verifyRestore`` request: the point and the secret of the scratch server."""
    return build_body(
        wire_restore.VerifyRestoreRequest,
        recoveryPointId=args.recovery_point,
        datasourceAuthCredentials=_credentials(args.target_secret_uri),
    )


def restore_verify(args: argparse.Namespace, client: Client) -> int:
    answer = client.request("POST", f"/backupInstances/{seg(args.instance)}:verifyRestore", body=verify_body(args))
    return finish_job(args, client, answer.body["jobId"])
