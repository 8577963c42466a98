"""The HTTP client of the pgvault API: where (``PGVAULT_URL``), with which key (``PGVAULT_KEY``).

Every answer that is not 2xx becomes an ``ApiError`` carrying the public error shape
(code, message, target, recommended action), so commands print it the same way everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin

import requests

DEFAULT_URL = "http://127.0.0.1:7071"
TIMEOUT_SECONDS = 30
KEY_HEADER = "x-functions-key"


class ApiError(Exception):
    """The API refused or could not answer: HTTP status (0 when unreachable) and the error body."""

    def __init__(
        self, status: int, code: str, message: str, *, target: str | None = None, action: str | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.action = action


@dataclass(frozen=True)
class Answer:
    """A successful answer: status, parsed JSON (or text) and headers."""

    status: int
    body: Any
    headers: Mapping[str, str]


def seg(value: str) -> str:
    """A value as one URL path segment (names may hold '.', never '/')."""
    return quote(value, safe="")


class Client:
    """Calls ``<url>/api/...`` with the function key; ``url`` without ``/api`` (it is added)."""

    def __init__(self, url: str, key: str | None, session: requests.Session | None = None) -> None:
        base = url.rstrip("/")
        self.base = base if base.endswith("/api") else base + "/api"
        self.key = key
        self.session = session or requests.Session()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Client:
        """The client ``PGVAULT_URL`` (default http://127.0.0.1:7071) and ``PGVAULT_KEY`` describe."""
        env = os.environ if env is None else env
        return cls(env.get("PGVAULT_URL") or DEFAULT_URL, env.get("PGVAULT_KEY") or None)

    def request(self, method: str, path: str, *, body: Any = None, params: Mapping[str, Any] | None = None) -> Answer:
        """One call; ``ApiError`` for a non-2xx answer or an unreachable server."""
        url = path if path.startswith(("http://", "https://")) else self.base + path
        headers = {KEY_HEADER: self.key} if self.key else {}
        try:
            response = self.session.request(
                method,
                url,
                json=body,
                params={k: v for k, v in (params or {}).items() if v is not None},
                headers=headers,
                timeout=TIMEOUT_SECONDS,
            )
        except requests.RequestException as exc:
            raise ApiError(
                0,
                "ConnectionFailed",
                f"cannot reach {self.base}: {type(exc).__name__}",
                action="Check PGVAULT_URL and that the pgvault app is running.",
            ) from exc
        parsed: Any
        if "json" in response.headers.get("Content-Type", ""):
            try:
                parsed = response.json()
            except ValueError:
                parsed = response.text
        else:
            parsed = response.text
        if response.status_code >= 400:
            raise _error(response.status_code, parsed)
        return Answer(response.status_code, parsed, response.headers)

    def get(self, path: str, **params: Any) -> Any:
        """GET ``path`` and return the JSON body."""
        return self.request("GET", path, params=params).body

    def pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a list, following ``nextLink`` page after page."""
        answer: Any = self.get(path, **params)
        while True:
            yield from answer.get("value", [])
            link = answer.get("nextLink")
            if not link:
                return
            answer = self.request("GET", urljoin(self.base + "/", link)).body


def _error(status: int, body: Any) -> ApiError:
    inner = body.get("error") if isinstance(body, dict) else None
    if isinstance(inner, dict) and "code" in inner:
        return ApiError(
            status,
            str(inner["code"]),
            str(inner.get("message", "")),
            target=inner.get("target"),
            action=inner.get("recommendedAction"),
        )
    if status in (401, 403):
        return ApiError(
            status,
            "Unauthorized",
            f"HTTP {status}: the function key was refused",
            action="Set PGVAULT_KEY to a function key of the app.",
        )
    text = body if isinstance(body, str) else ""
    return ApiError(status, f"Http{status}", (text or f"HTTP {status}").strip()[:300])
