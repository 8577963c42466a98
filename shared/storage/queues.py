"""Queues as the Functions host reads them: JSON messages, base64-encoded.

The host's queue trigger decodes base64 by default (``messageEncoding`` in host.json); a plain
message read through the base64 decoder fails after it was dequeued (docs/platform-notes.md), so every
message pgvault writes goes through ``QueueSender``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue import (
    QueueClient,
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

from shared.storage.faults import storage_error
from shared.storage.limits import MAX_QUEUE_MESSAGE_BYTES


def queue_client(service: QueueServiceClient, name: str) -> QueueClient:
    """A client for ``name`` that encodes and decodes base64 as the Functions host expects."""
    return service.get_queue_client(
        name, message_encode_policy=TextBase64EncodePolicy(), message_decode_policy=TextBase64DecodePolicy()
    )


def encoded_size(text: str) -> int:
    """How many bytes ``text`` takes on the queue once base64-encoded."""
    return len(base64.b64encode(text.encode("utf-8")))


def message_text(payload: Mapping[str, Any]) -> str:
    """The text ``QueueSender.send`` puts on the queue for ``payload`` (before base64)."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


def payload_size(payload: Mapping[str, Any]) -> int:
    """How many bytes ``payload`` takes on the queue as ``QueueSender.send`` sends it (the 64 KiB limit's measure)."""
    return encoded_size(message_text(payload))


class QueueSender:
    """Sends JSON messages to named queues of one account."""

    def __init__(self, service: QueueServiceClient) -> None:
        self._service = service
        self._clients: dict[str, QueueClient] = {}

    def _client(self, name: str) -> QueueClient:
        if name not in self._clients:
            self._clients[name] = queue_client(self._service, name)
        return self._clients[name]

    def ensure(self, name: str) -> None:
        """Create the queue if it does not exist."""
        try:
            self._client(name).create_queue()
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise storage_error(exc, "queue storage", f"creating {name}") from exc

    def send(self, name: str, payload: Mapping[str, Any], *, delay_seconds: int = 0) -> None:
        """Put one JSON message on ``name``. Refuses messages over the 64 KiB queue limit."""
        text = message_text(payload)
        if encoded_size(text) > MAX_QUEUE_MESSAGE_BYTES:
            raise ValueError(f"message for {name} is {encoded_size(text)} bytes encoded; the limit is 64 KiB")
        try:
            self._client(name).send_message(text, visibility_timeout=delay_seconds or None)
        except AzureError as exc:
            raise storage_error(exc, "queue storage", f"sending to {name}") from exc
