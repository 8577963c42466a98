"""Backups leave only for places the owner allowed: restore-as-files through devhost.

devhost runs on Azurite with ``PGVAULT_EXPORT_ACCOUNTS=devstoreaccount1``. A listener on
127.0.0.1 counts every connection made to it: named as the target (as an unlisted account, as the
listed emulator account on a port that is not the emulator's, as an http URL of a real account's
name), each request is refused with 400 naming the URL field, and the listener hears nothing. The
vault's own containers (its backup container, the Functions host's) are refused and stay as they
were. Into an allowed container where a file of that name exists, the job fails and the file is
left as it was.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient
from devhost_process import DevhostProcess, restore_files_body
from factories import Database, Databases, Hosts

pytestmark = pytest.mark.e2e
DETAILS = "restoreTargetInfo.targetDetails"
URL_FIELD = f"{DETAILS}.url"


class Listener:
    """A TCP listener on 127.0.0.1 that counts the connections made to it (and answers none)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def shop(make_database: Databases) -> Database:
    return make_database(
        "xshop", tables="CREATE TABLE t AS SELECT g, md5(g::text) AS v FROM generate_series(1, 2000) g;"
    )


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    li = Listener()
    yield li
    li.close()


@pytest.fixture(scope="module")
def host(make_host: Hosts, app_env: dict[str, str], shop: Database, listener: Listener) -> DevhostProcess:
    assert app_env["PGVAULT_EXPORT_ACCOUNTS"] == "devstoreaccount1"
    key = base64.b64encode(b"not a key").decode()
    return make_host(
        {
            "PGVAULT_SECRET_SHOP_CS": shop.connection_string(),
            # A storage connection string whose endpoint is the listener.
            "PGVAULT_SECRET_LISTENER_CS": (
                f"DefaultEndpointsProtocol=http;AccountName=otheraccount;AccountKey={key};"
                f"BlobEndpoint=http://127.0.0.1:{listener.port}/otheraccount;"
            ),
        }
    )


@pytest.fixture(scope="module")
def point(host: DevhostProcess, shop: Database) -> str:
    return host.first_point("shop", port=shop.port, database=shop.name, secret="env:PGVAULT_SECRET_SHOP_CS")


def _files(point: str, url: str, prefix: str = "shop", **details: str) -> str:
    return json.dumps(restore_files_body(point, url, prefix, **details))


def _refused(host: DevhostProcess, point: str, url: str, field: str = URL_FIELD, **details: str) -> dict[str, Any]:
    r = host.request("POST", "/backupInstances/shop:restore", data=_files(point, url, **details))
    assert r.status_code == 400, (url, r.status_code, r.text)
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == "InvalidRequest" and error["target"] == field, error
    return error


def _restore_jobs(host: DevhostProcess) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = host.get("/backupJobs?operation=Restore").json()["value"]
    return jobs


def test_restore_as_files_to_an_unlisted_account_is_refused_and_the_listener_hears_nothing(
    host: DevhostProcess, point: str, listener: Listener, app_env: dict[str, str]
) -> None:
    before = _restore_jobs(host)
    urls = [
        f"http://127.0.0.1:{listener.port}/otheraccount/exports",  # an account not listed
        f"http://127.0.0.1:{listener.port}/devstoreaccount1/exports",  # listed, but not the emulator's endpoint
        f"http://localhost:{listener.port}/devstoreaccount1/exports",
        f"https://127.0.0.1:{listener.port}/devstoreaccount1/exports",
        "https://otheraccount.blob.core.windows.net/exports",  # a real account, not listed
        "http://devstoreaccount1.blob.core.windows.net/exports",  # http to a real endpoint
    ]
    for url in urls:
        error = _refused(host, point, url)
        assert "PGVAULT_EXPORT_ACCOUNTS" in error["recommendedAction"], error
    # With a connection string whose endpoint is the listener: as the URL, and behind an allowed URL.
    secret = {"connectionStringSecretUri": "env:PGVAULT_SECRET_LISTENER_CS"}
    _refused(host, point, f"http://127.0.0.1:{listener.port}/otheraccount/exports", **secret)
    allowed = BlobServiceClient.from_connection_string(app_env["AzureWebJobsStorage"]).get_container_client("anyname")
    error = _refused(host, point, allowed.url, f"{DETAILS}.connectionStringSecretUri", **secret)
    assert "not for the account" in error["message"], error
    assert listener.connections == 0
    assert _restore_jobs(host) == before  # no job was recorded either


def test_restore_as_files_into_the_vaults_own_containers_is_refused_and_they_stay_as_they_were(
    host: DevhostProcess, point: str, app_env: dict[str, str]
) -> None:
    service = BlobServiceClient.from_connection_string(app_env["AzureWebJobsStorage"])
    backups = service.get_container_client(app_env["PGVAULT_BACKUP_CONTAINER"])
    hosts = service.get_container_client("azure-webjobs-hosts")  # devhost's timer claims live here
    seen = {c.container_name: {(b.name, b.etag) for b in c.list_blobs()} for c in (backups, hosts)}
    assert seen[backups.container_name], "the backup container holds the point"
    for container in (backups, hosts):
        error = _refused(host, point, container.url)
        assert container.container_name in error["message"]
        # Spelled another way, it is the same container.
        _refused(host, point, container.url.replace("127.0.0.1", "localhost"))
    for container in (backups, hosts):
        assert {(b.name, b.etag) for b in container.list_blobs()} == seen[container.container_name]


def test_restore_as_files_never_overwrites_a_file_in_an_allowed_container(
    host: DevhostProcess, point: str, app_env: dict[str, str]
) -> None:
    service = BlobServiceClient.from_connection_string(app_env["AzureWebJobsStorage"])
    container = service.get_container_client(f"allowed-{uuid.uuid4().hex[:6]}")
    container.create_container()
    # Someone else's files, named as a restore's dump, its manifest, its roles and its write probe would be.
    theirs = ("taken.dump", "other.manifest.json", "busy.roles.sql", "fresh.pgvault-probe")
    for name in theirs:
        container.upload_blob(name, f"someone else's {name}".encode())
    etags = {name: container.get_blob_client(name).get_blob_properties().etag for name in theirs}

    for prefix, existing in (("taken", "taken.dump"), ("other", "other.manifest.json"), ("busy", "busy.roles.sql")):
        r = host.request("POST", "/backupInstances/shop:restore", data=_files(point, container.url, prefix))
        assert r.status_code == 202, r.text
        job = host.wait_job(r.json()["jobId"])
        assert job["status"] == "Failed", job
        assert job["error"]["code"] == "Conflict" and f"{existing} exists" in job["error"]["message"], job["error"]
    # The same container under a free prefix takes the files.
    r = host.request("POST", "/backupInstances/shop:restore", data=_files(point, container.url, "fresh"))
    assert host.wait_job(r.json()["jobId"])["status"] == "Completed"

    for name in theirs:
        assert container.download_blob(name).readall() == f"someone else's {name}".encode()
        assert container.get_blob_client(name).get_blob_properties().etag == etags[name]
    # Nothing else was left: no dump beside a foreign manifest, no probe.
    assert {b.name for b in container.list_blobs()} == {*theirs, "fresh.dump", "fresh.roles.sql", "fresh.manifest.json"}
