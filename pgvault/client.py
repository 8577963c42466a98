"""The HTTP client of the pgvault API: where (``PGVAULT_URL``), with which key (``PGVAULT_KEY``).

Every answer that is not 2xx becomes an ``ApiError`` carrying the public error shape
(code, message, target, recommended action), so commands print it the same way everywhere.
A 503 with ``Retry-After`` (the app's answer while its storage cannot be reached) is retried
after the time it asks for, a bounded number of times.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin

import requests

DEFAULT_URL = "http://127.0.0.1:7071"
TIMEOUT_SECONDS = 30
KEY_HEADER = "x-functions-key"
HTTP_UNAVAILABLE = 503
MAX_RETRIES = 3
"""Retries of one call the API answered 503 with ``Retry-After``; then its error is the answer."""
MAX_RETRY_AFTER = 60.0
"""Seconds waited at most before one retry, whatever ``Retry-After`` asks (a CLI should not hang)."""


class ApiError(Exception):
    """The API refused or could not answer: HTTP status (0 when unreachable) and the error body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        target: str | None = None,
        action: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.action = action
        self.body = body
        """The parsed answer (a 400 of configure-many carries every entry's outcome)."""


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

    def __init__(
        self,
        url: str,
        key: str | None,
        session: requests.Session | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        base = url.rstrip("/")
        self.base = base if base.endswith("/api") else base + "/api"
        self.key = key
        self.session = session or requests.Session()
        self.sleep = sleep

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Client:
        """The client ``PGVAULT_URL`` (default http://127.0.0.1:7071) and ``PGVAULT_KEY`` describe."""
        env = os.environ if env is None else env
        return cls(env.get("PGVAULT_URL") or DEFAULT_URL, env.get("PGVAULT_KEY") or None)

    def request(self, method: str, path: str, *, body: Any = None, params: Mapping[str, Any] | None = None) -> Answer:
        """One call; ``ApiError`` for a non-2xx answer or an unreachable server.

        A 503 whose ``Retry-After`` gives a delay is sent again after it (at most
        ``MAX_RETRY_AFTER`` seconds each), up to ``MAX_RETRIES`` times, with a note on stderr.
        """
        for attempt in range(MAX_RETRIES + 1):
            response = self._send(method, path, body, params)
            delay = retry_after(response.headers.get("Retry-After"))
            if response.status_code != HTTP_UNAVAILABLE or delay is None or attempt == MAX_RETRIES:
                break
            print(
                f"pgvault: {method} {path}: HTTP 503, retrying in {delay:g} s ({attempt + 1}/{MAX_RETRIES})",
                file=sys.stderr,
            )
            self.sleep(delay)
        return _answer(response)

    def _send(self, method: str, path: str, body: Any, params: Mapping[str, Any] | None) -> requests.Response:
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
        return response

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


def retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """The delay a ``Retry-After`` header asks for (seconds or an HTTP date), capped; None without one."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _answer(response: requests.Response) -> Answer:
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


def _error(status: int, body: Any) -> ApiError:
    inner = body.get("error") if isinstance(body, dict) else None
    if isinstance(inner, dict) and "code" in inner:
        return ApiError(
            status,
            str(inner["code"]),
            str(inner.get("message", "")),
            target=inner.get("target"),
            action=inner.get("recommendedAction"),
            body=body,
        )
    if status in (401, 403):
        return ApiError(
            status,
            "Unauthorized",
            f"HTTP {status}: the function key was refused",
            action="Set PGVAULT_KEY to a function key of the app.",
            body=body,
        )
    text = body if isinstance(body, str) else ""
    return ApiError(status, f"Http{status}", (text or f"HTTP {status}").strip()[:300], body=body)
