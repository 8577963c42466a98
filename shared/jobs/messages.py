"""The queue message that runs a job, and what a request that starts a job hands back.

One shape for every job message, written by whoever sends it and read by every worker:
``{"jobId": ..., "instance": ...}`` as JSON (``message_text``: the text ``QueueSender.send`` puts on
the queue; the host's queue output binding and devhost's base64-encode that same text, as
host.json's ``messageEncoding`` says).

A request that starts a job does not send its message itself: it returns it (``Started``) and the
HTTP handler hands it to the host through a queue output binding. The host sends it after the
function returns and then wakes its own listener of that queue at once (the WebJobs SDK's
``SharedQueueWatcher``), where a message sent with the storage SDK waits for the listener's next
poll (up to host.json's ``maxPollingInterval``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.jobs.model import Job
from shared.storage.queues import message_text


@dataclass(frozen=True)
class JobMessage:
    """The message on ``queue`` that runs job ``job_id`` of ``instance``."""

    queue: str
    job_id: str
    instance: str | None = None

    @classmethod
    def of(cls, queue: str, job: Job) -> JobMessage:
        """The message that runs ``job`` from ``queue``."""
        return cls(queue, job.job_id, job.instance)

    def payload(self) -> dict[str, Any]:
        """The JSON object the message carries (what ``QueueSender.send`` takes)."""
        return {"jobId": self.job_id, "instance": self.instance}

    def text(self) -> str:
        """The message's text before base64, the same as ``QueueSender.send`` would put on the queue."""
        return message_text(self.payload())


def read_payload(body: bytes | str) -> dict[str, Any]:
    """The JSON object of a job message, which names its job in ``jobId``; ValueError otherwise.

    Other keys pass through (a backup part's message carries its part as well).
    """
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise ValueError("the message is not JSON") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("jobId"), str):
        raise ValueError("the message has no jobId")
    return payload


@dataclass(frozen=True)
class Started:
    """What a request that starts a job gives back: the job as recorded and the message to send.

    ``message`` is None when nothing is to be sent now (a restore waiting for someone else's
    rehydration is released by the rehydration timer).
    """

    job: Job
    message: JobMessage | None
