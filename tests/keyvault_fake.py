"""A stand-in for Key Vault's REST API, for the real ``SecretClient`` (Key Vault has no emulator).

It sits under azure-core's own ``RequestsTransport`` as a ``requests`` adapter, so everything
above the wire (the SDK, its challenge policy, retries) is the real code. It answers as the
service does: a request without a bearer token gets 401 with the challenge ``SecretClient``
expects; with a token, GET /secrets/<name>[/<version>] gives 200 with the secret,
404 ``SecretNotFound``, 403 ``Forbidden`` for secrets the identity may not read, or 429 with
``Retry-After`` a configured number of times. An unknown vault host fails like DNS does.
"""

from __future__ import annotations

import io
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import BaseAdapter

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


class FakeCredential:
    """A TokenCredential that hands out a token (what DefaultAzureCredential does in Azure)."""

    def __init__(self) -> None:
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        return AccessToken("fake-token", int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        self.calls += 1
        return AccessTokenInfo("fake-token", int(time.time()) + 3600)


@dataclass
class FakeKeyVault(BaseAdapter):
    """Vaults by host name, each a dict of secret name -> list of (version, value)."""

    vaults: dict[str, dict[str, list[tuple[str, str]]]] = field(default_factory=dict)
    forbidden: set[tuple[str, str]] = field(default_factory=set)
    throttle_next: int = 0
    fail_next_with: int | None = None
    requests: list[tuple[str, str, bool]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set_secret(self, vault: str, name: str, value: str) -> str:
        """Store a new version of ``name`` in ``vault`` (host name); returns the version."""
        version = secrets.token_hex(16)
        self.vaults.setdefault(vault, {}).setdefault(name, []).append((version, value))
        return version

    def __post_init__(self) -> None:
        super().__init__()

    def transport(self) -> RequestsTransport:
        """An azure-core transport whose HTTPS requests this fake answers."""
        session = requests.Session()
        session.mount("https://", self)
        return RequestsTransport(session=session, session_owner=False)

    def close(self) -> None:
        return None

    def send(self, request: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]  # noqa: PLR0911
        url = urllib.parse.urlsplit(request.url)
        host = url.hostname or ""
        authorized = str(request.headers.get("Authorization", "")).startswith("Bearer ")
        with self._lock:
            self.requests.append((host, url.path, authorized))
        if host not in self.vaults:
            raise requests.exceptions.ConnectionError(
                f"Failed to resolve '{host}' ([Errno -2] Name or service not known)"
            )
        if not authorized:
            return self._answer(
                request,
                401,
                {"error": {"code": "Unauthorized", "message": "AKV10000"}},
                {
                    "WWW-Authenticate": (
                        f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", '
                        'resource="https://vault.azure.net"'
                    )
                },
            )
        with self._lock:
            if self.throttle_next > 0:
                self.throttle_next -= 1
                return self._answer(
                    request, 429, {"error": {"code": "Throttled", "message": "slow down"}}, {"Retry-After": "0"}
                )
            if self.fail_next_with is not None:
                status, self.fail_next_with = self.fail_next_with, None
                return self._answer(request, status, {"error": {"code": "InternalError", "message": "boom"}})
        parts = [p for p in url.path.split("/") if p]
        if len(parts) < 2 or parts[0] != "secrets":
            return self._answer(request, 400, {"error": {"code": "BadParameter", "message": "bad path"}})
        name, version = parts[1], (parts[2] if len(parts) > 2 and parts[2] else None)
        if (host, name) in self.forbidden:
            return self._answer(
                request,
                403,
                {
                    "error": {
                        "code": "Forbidden",
                        "message": "Caller is not authorized",
                        "innererror": {"code": "ForbiddenByRbac"},
                    }
                },
            )
        versions = self.vaults[host].get(name, [])
        found = versions[-1] if versions and version is None else next((v for v in versions if v[0] == version), None)
        if found is None:
            return self._answer(
                request,
                404,
                {"error": {"code": "SecretNotFound", "message": f"A secret with (name/id) {name} was not found"}},
            )
        return self._answer(
            request,
            200,
            {
                "value": found[1],
                "id": f"https://{host}/secrets/{name}/{found[0]}",
                "attributes": {
                    "enabled": True,
                    "created": 1700000000,
                    "updated": 1700000000,
                    "recoveryLevel": "Recoverable",
                },
                "tags": {},
            },
        )

    def _answer(self, request: Any, status: int, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
        data = json.dumps(body).encode()
        all_headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Content-Length": str(len(data)),
            **(headers or {}),
        }
        resp = requests.Response()
        resp.status_code = status
        # A real urllib3 response underneath, as requests' own HTTPAdapter builds it.
        resp.raw = urllib3.HTTPResponse(
            body=io.BytesIO(data), headers=all_headers, status=status, preload_content=False, decode_content=False
        )
        resp.headers.update(all_headers)
        resp.reason = {
            200: "OK",
            401: "Unauthorized",
            403: "Forbidden",
            404: "Not Found",
            429: "Too Many Requests",
        }.get(status, "Error")
        resp.url = request.url
        resp.request = request
        return resp

    def authorized_gets(self, name: str) -> int:
        """How many authorized reads of ``name`` reached the vault."""
        return sum(1 for _, path, auth in self.requests if auth and f"/secrets/{name}" in path)
