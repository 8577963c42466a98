"""Runs one backup job in its own process, so a test can kill it mid-backup (SIGKILL)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from shared.backup_runner import BackupRunner
from shared.secrets import EnvSecretProvider
from shared.storage.blobs import BlobStore
from shared.storage.clients import StorageAccount
from shared.storage.tables import StateTable
from shared.vault import utc_now

if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    account = StorageAccount.from_connection_setting("AzureWebJobsStorage", os.environ)
    runner = BackupRunner(
        StateTable(account.table_service(), args["table"]),
        BlobStore(account.blob_service(), args["container"]),
        EnvSecretProvider(True),
        utc_now,
    )
    runner.run(args["job"], last_try=False)
