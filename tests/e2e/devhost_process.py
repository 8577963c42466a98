"""Start ``python -m devhost`` as a child process for e2e tests, talk to its API, and stop it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

from devhost.services import free_port, wait_for_port
from tests.examples import EXAMPLES
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
# Every job a test waits for ends well within this on a loaded machine (backups here take seconds).
JOB_TIMEOUT = 120


class DevhostProcess:
    """One devhost child with its log captured in a file, and a small client of its API."""

    def __init__(
        self, env: Mapping[str, str], log_path: Path, *, app: str = "function_app:app", args: Sequence[str] = ()
    ) -> None:
        self.port = free_port()
        self.env = dict(env)
        self.headers: dict[str, str] = {}
        # When a list, every answer as text (status, headers, body): what a leak scan reads.
        self.transcript: list[str] | None = None
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devhost",
                "--port",
                str(self.port),
                "--app",
                app,
                "--settings",
                str(log_path.with_suffix(".nosettings.json")),
                *args,
            ],
            cwd=REPO,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, 30, self.proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        """A request to ``/api`` + ``path``, with this host's default headers (the function key)."""
        headers = {**self.headers, **kw.pop("headers", {})}
        timeout = kw.pop("timeout", 30)
        r = requests.request(method, self.url + path, headers=headers, timeout=timeout, **kw)
        if self.transcript is not None:
            self.transcript.append(f"{method} {path} {r.status_code} {dict(r.headers)} {r.text}")
        return r

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.get(f"/backupJobs/{job_id}")
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        return job

    def wait_job(
        self,
        job_id: str,
        timeout: float = JOB_TIMEOUT,
        interval: float = 0.3,
        *,
        fetch: Callable[[str], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The job once it is no longer InProgress, each poll read by ``fetch`` (``job`` by default)."""
        read = fetch or self.job
        return wait_until(lambda: (j := read(job_id))["status"] != "InProgress" and j, timeout, interval)

    def put_policy(self, name: str, body: bytes) -> requests.Response:
        r = self.request("PUT", f"/backupPolicies/{name}", data=body)
        assert r.status_code in (200, 201), r.text
        return r

    def configure(self, name: str, *, port: int, database: str, secret: str, policy: str) -> dict[str, Any]:
        """Configure protection of ``database`` on 127.0.0.1:``port``; its validation job, finished."""
        r = self.request("PUT", f"/backupInstances/{name}", json=instance_spec(port, database, secret, policy))
        assert r.status_code == 202, r.text
        return self.wait_job(r.json()["validationJobId"])

    def first_point(self, name: str, *, port: int, database: str, secret: str) -> str:
        """Protect ``database`` as ``name`` under a Sunday policy ``p``, back it up now; the recovery point's id."""
        self.put_policy("p", (EXAMPLES / "sunday-default-only.json").read_bytes())
        validation = self.configure(name, port=port, database=database, secret=secret, policy="p")
        assert validation["status"] == "Completed", validation
        backup = self.wait_job(self.backup_now(name))
        assert backup["status"] == "Completed", backup
        return str(backup["recoveryPointId"])

    def backup_now(self, name: str, tag: str | None = None) -> str:
        """Start an on-demand backup (with ``tag`` as its retention tag, if given); its job id."""
        body = {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTagOverride": tag}}}
        r = self.request("POST", f"/backupInstances/{name}:backup", json=body if tag else None)
        assert r.status_code == 202, r.text
        return str(r.json()["jobId"])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Send ``sig`` and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return int(self.proc.returncode)


def instance_spec(port: int, database: str, secret: str, policy: str = "weekly", **over: Any) -> dict[str, Any]:
    """The body that protects ``database`` on 127.0.0.1:``port`` with ``secret`` (a secret URI), ``over`` on top."""
    return {
        "server": "127.0.0.1",
        "port": port,
        "database": database,
        "secretUri": secret,
        "policyName": policy,
        **over,
    }


def restore_body(point: str, database: str, secret: str) -> dict[str, Any]:
    """Azure's request to restore recovery point ``point`` as the new database ``database``,
    with the target server's credentials in ``secret`` (a secret URI)."""
    return {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": point,
        "sourceDataStoreType": "VaultStore",
        "restoreTargetInfo": {
            "objectType": "RestoreTargetInfo",
            "recoveryOption": "FailIfExists",
            "datasourceInfo": {"resourceName": database},
            "datasourceAuthCredentials": {
                "objectType": "SecretStoreBasedAuthCredentials",
                "secretStoreResource": {"uri": secret, "secretStoreType": "AzureKeyVault"},
            },
        },
    }


def restore_files_body(point: str, url: str, prefix: str, **details: Any) -> dict[str, Any]:
    """Azure's request to restore recovery point ``point`` as files under ``prefix`` in container ``url``."""
    return {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": point,
        "sourceDataStoreType": "VaultStore",
        "restoreTargetInfo": {
            "objectType": "RestoreFilesTargetInfo",
            "recoveryOption": "FailIfExists",
            "targetDetails": {"url": url, "filePrefix": prefix, "restoreTargetLocationType": "AzureBlobs", **details},
        },
    }


__all__ = [
    "JOB_TIMEOUT",
    "REPO",
    "DevhostProcess",
    "instance_spec",
    "restore_body",
    "restore_files_body",
    "signal",
]
