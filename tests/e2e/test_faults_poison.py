"""A poisoned backup message, end to end: devhost moves it to the poison queue as the Functions host
does, the poison trigger fails its job with the reason and frees the instance for the next backup.

The message has been delivered maxDequeueCount times already (each try died without ending the
job, the last one leaving the instance's lock behind) when devhost starts: its next delivery is
over the limit, so devhost moves it to ``pgvault-backup-poison`` untouched.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from factories import Hosts
from vault_views import record_protected, state_table

from shared.backups import BackupStarter
from shared.hung_jobs import MAX_DEQUEUE_COUNT
from shared.locks import InstanceLocks
from shared.policies import PolicyService
from shared.storage import layout
from shared.storage.clients import StorageAccount
from shared.storage.queues import QueueSender, queue_client
from tests.examples import EXAMPLES
from tests.integration.world import host_sends
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
NAME = "poisoned"
BODY = {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTagOverride": "Default"}}}


def test_a_poisoned_backup_message_ends_its_job_failed_and_the_instance_takes_the_next_backup(
    make_host: Hosts, app_env: dict[str, str]
) -> None:
    account = StorageAccount.from_connection_setting("AzureWebJobsStorage", app_env)
    state = state_table(app_env)
    state.ensure()
    queues = QueueSender(account.queue_service())
    for queue in layout.QUEUES:
        queues.ensure(queue)
        queue_client(account.queue_service(), queue).clear_messages()
        queues.ensure(queue + "-poison")
        queue_client(account.queue_service(), queue + "-poison").clear_messages()
    now = datetime.now(UTC)
    PolicyService(state).put("weekly", json.loads((EXAMPLES / "sunday-default-only.json").read_text()), now)
    spec = {"server": "db.invalid", "database": "shop", "secretUri": "env:PGVAULT_SECRET_NOPE", "policyName": "weekly"}
    record_protected(state, NAME, spec, now)

    job = host_sends(queues, BackupStarter(state, queues).on_demand(NAME, BODY, now))  # as POST :backup does
    backup_queue = queue_client(account.queue_service(), layout.BACKUP_QUEUE)
    # maxDequeueCount deliveries, each dying without ending the job; the last one's lock stays.
    for delivery in range(1, MAX_DEQUEUE_COUNT + 1):
        message = wait_until(lambda: next(iter(backup_queue.receive_messages(visibility_timeout=1)), None), 30)
        assert message.dequeue_count == delivery
    assert InstanceLocks(state).acquire(NAME, job.job_id, datetime.now(UTC), attempt=MAX_DEQUEUE_COUNT) is not None
    time.sleep(1.5)  # the last delivery's message is visible again

    # No timer runs in the meantime (once a year).
    host = make_host({"PGVAULT_SCHEDULER_SCHEDULE": "0 0 0 1 1 *", "PGVAULT_RETENTION_SCHEDULE": "0 0 0 1 1 *"})
    try:
        failed = host.wait_job(job.job_id, timeout=60, interval=0.5)
        assert failed["status"] == "Failed", failed
        assert failed["error"]["code"] == "JobAbandoned"
        assert "moved to the poison queue pgvault-backup-poison" in failed["error"]["message"]
        assert f"retried {MAX_DEQUEUE_COUNT} times" in failed["error"]["message"]
        assert "moved to pgvault-backup-poison" in host.log()  # devhost's own poison rule did it
        assert InstanceLocks(state).holder(NAME) is None
        last = host.get(f"/backupInstances/{NAME}").json()["lastBackup"]
        assert last["jobId"] == job.job_id and last["status"] == "Failed"

        again = host.request("POST", f"/backupInstances/{NAME}:backup", data=json.dumps(BODY))
        assert again.status_code == 202, again.text
        assert again.json()["jobId"] != job.job_id
    finally:
        assert host.stop() == 0, host.log()
