"""Direct views of a devhost's storage for e2e tests: its state table, its backup container, and
everything in the session's Azurite as text for a leak scan.

Also the one way these tests record a protected instance straight into the state table (when a
test must set up the state before any devhost runs).
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueServiceClient

from shared.instances import InstanceService, ProtectionStatus, Readiness
from shared.jobs import JobStatus, JobStore
from shared.storage.clients import StorageAccount
from shared.storage.tables import StateTable


def state_table(env: Mapping[str, str]) -> StateTable:
    """The vault's state table named by ``env`` (``PGVAULT_STATE_TABLE`` on ``AzureWebJobsStorage``)."""
    account = StorageAccount.from_connection_setting("AzureWebJobsStorage", env)
    return StateTable(account.table_service(), env["PGVAULT_STATE_TABLE"])


def backup_container(env: Mapping[str, str]) -> ContainerClient:
    """The vault's backup container named by ``env``."""
    service = BlobServiceClient.from_connection_string(env["AzureWebJobsStorage"])
    return service.get_container_client(env["PGVAULT_BACKUP_CONTAINER"])


def record_protected(state: StateTable, name: str, spec: Mapping[str, Any], now: datetime) -> None:
    """Record instance ``name`` (from ``spec``) validated and protected, its validation job Completed (none runs)."""
    instances = InstanceService(state, lambda job, instance: None)
    validation = instances.configure_one(name, dict(spec), now, allow_env_secrets=True, vault_region=None).job
    assert validation is not None
    jobs = JobStore(state)
    jobs.finish(jobs.get(validation.job_id), JobStatus.COMPLETED, now)
    current = instances.get(name)
    instances.save(current, replace(current, readiness=Readiness.SUCCESS, protection_status=ProtectionStatus.PROTECTED))


def encoded_forms(secret: str) -> list[str]:
    """``secret`` as text, URL-encoded and base64 (queue messages are base64): how a leak could look."""
    return [secret, urllib.parse.quote(secret), base64.b64encode(secret.encode()).decode()]


def storage_text(connection_string: str) -> dict[str, str]:
    """Every entity of every table, every blob's name and metadata, every queued message, as text.

    Keyed ``table <name>``, ``container <name>`` and ``queue <name>``.
    """
    places: dict[str, str] = {}
    tables = TableServiceClient.from_connection_string(connection_string)
    for table in tables.list_tables():
        entities = tables.get_table_client(table.name).list_entities()
        places[f"table {table.name}"] = "\n".join(json.dumps(dict(e), default=str) for e in entities)
    blobs = BlobServiceClient.from_connection_string(connection_string)
    for container in blobs.list_containers(include_metadata=True):
        listing = blobs.get_container_client(container.name).list_blobs(include=["metadata"])
        places[f"container {container.name}"] = json.dumps(
            [container.metadata, *[[b.name, b.metadata] for b in listing]], default=str
        )
    queues = QueueServiceClient.from_connection_string(connection_string)
    for queue in queues.list_queues():
        messages = queues.get_queue_client(queue.name).peek_messages(max_messages=32)
        places[f"queue {queue.name}"] = "\n".join(str(m.content) for m in messages)
    return places
