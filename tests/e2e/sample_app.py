"""A small FunctionApp that exercises devhost's host semantics (not part of pgvault).

Every invocation records itself in the table named by SAMPLE_TABLE, so tests can see what ran,
how often, and with which dequeue count.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime

import azure.functions as func

from shared.storage.clients import StorageAccount
from shared.storage.tables import StateTable

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def _table() -> StateTable:
    account = StorageAccount.from_connection_setting("AzureWebJobsStorage", os.environ)
    table = StateTable(account.table_service(), os.environ["SAMPLE_TABLE"])
    table.ensure()
    return table


def _record(kind: str, **data: object) -> None:
    _table().upsert(kind, f"{time.time_ns()}-{uuid.uuid4().hex[:6]}", {"at": datetime.now(UTC).isoformat(), **data})


@app.route(route="echo/{name}", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
def echo(req: func.HttpRequest) -> func.HttpResponse:
    body = {"name": req.route_params["name"], "params": dict(req.params), "body": req.get_body().decode()}
    return func.HttpResponse(json.dumps(body), mimetype="application/json")


@app.route(route="echo/{name}:shout", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def shout(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.route_params["name"].upper())


@app.route(route="slow", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def slow(req: func.HttpRequest) -> func.HttpResponse:
    time.sleep(1.0)
    return func.HttpResponse("done")


@app.route(route="secure", methods=["GET"])
def secure(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("secret handshake")


@app.route(route="enqueue", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@app.queue_output(arg_name="out", queue_name="%SAMPLE_WORK_QUEUE%", connection="AzureWebJobsStorage")
def enqueue(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
    out.set(req.get_body().decode())
    return func.HttpResponse("queued", status_code=202)


@app.route(route="enqueue-denied", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@app.queue_output(arg_name="out", queue_name="%SAMPLE_WORK_QUEUE%", connection="SAMPLE_DENIED_STORAGE")
def enqueue_denied(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
    """Its output goes to an account that refuses it (SAMPLE_DENIED_STORAGE: a wrong key)."""
    out.set(req.get_body().decode())
    return func.HttpResponse("queued", status_code=202)


@app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_WORK_QUEUE%", connection="AzureWebJobsStorage")
def work(msg: func.QueueMessage) -> None:
    payload = json.loads(msg.get_body())
    _record("work", payload=json.dumps(payload), dequeue=msg.dequeue_count)
    if payload.get("mode") == "always-fail":
        raise RuntimeError("this message always fails")
    if payload.get("mode") == "fail-once" and msg.dequeue_count == 1:
        raise RuntimeError("first delivery fails")
    if payload.get("mode") == "slow":
        time.sleep(float(payload.get("seconds", 2)))
    _record("done", payload=json.dumps(payload), dequeue=msg.dequeue_count)


@app.timer_trigger(arg_name="timer", schedule="%SAMPLE_TIMER_SCHEDULE%", run_on_startup=False)
def tick(timer: func.TimerRequest) -> None:
    _record("tick", past_due=timer.past_due)


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", run_on_startup=True)
def on_startup(timer: func.TimerRequest) -> None:
    _record("startup")
