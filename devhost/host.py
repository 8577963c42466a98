"""The devhost runtime: an HTTP server, queue listeners and timers around a FunctionApp.

Semantics mirrored from the Functions host (and named where they come from):
- HTTP: routes under ``routePrefix``; function-level routes need a key when one is configured.
- Queues: messages are base64; a message is invisible while its invocation runs; after a failure
  it becomes visible again after ``visibilityTimeout``; after ``maxDequeueCount`` tries it moves to
  ``<queue>-poison``; up to ``batchSize`` invocations per queue run at once. An empty queue is
  polled with a back-off up to ``maxPollingInterval``; a message that a function of this host adds
  through a queue output binding (or a move to a poison queue) ends the back-off of this host's
  listener of that queue at once (the WebJobs SDK's ``SharedQueueWatcher``); one sent with the
  storage SDK waits for the next poll.
- Outputs are written after the function returns; a failed write fails the invocation (an HTTP
  call answers 500).
- Timers: six-field NCRONTAB in UTC; one process fires each occurrence (the host's timers are
  singletons: here a blob claimed once per occurrence); ``runOnStartup`` fires once at start.
- Stop: SIGINT/SIGTERM stop new work; running invocations finish.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import inspect
import json
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import azure.functions as func
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient
from azure.storage.queue import QueueMessage as StorageQueueMessage
from croniter import croniter

from devhost.hostconfig import HostConfig
from devhost.wiring import Function, HttpRoute, QueueTrigger, TimerTrigger, Wiring
from shared.storage.blobs import BlobStore
from shared.storage.clients import StorageAccount

log = logging.getLogger("devhost")

# How long a running invocation keeps its message hidden before devhost renews it (the host
# uses 10 minutes and renews at half-time).
MESSAGE_LEASE_SECONDS = 600
# The HTTP request body limit of the Functions host (100 MB).
MAX_REQUEST_BYTES = 100 * 1024 * 1024
_TIMER_LOCKS_CONTAINER = "azure-webjobs-hosts"


class _Out(func.Out[Any]):
    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


class QueueWatcher:
    """This host's listeners by queue name, told when a message is added (the WebJobs SDK's SharedQueueWatcher).

    The host's queue output binding calls ``Notify(queueName)`` after each message it adds, and so
    does its move of a message to a poison queue; a listener of that queue in the same host then
    stops waiting and polls. Only this host's listeners hear it, and only for messages this host
    added: another host, or a message sent with the storage SDK, waits for the listener's next poll.
    """

    def __init__(self) -> None:
        self._listeners: dict[str, list[QueueListener]] = {}

    def register(self, queue: str, listener: QueueListener) -> None:
        """Tell ``listener`` of every message this host adds to ``queue``."""
        self._listeners.setdefault(queue, []).append(listener)

    def notify(self, queue: str) -> None:
        """A message was added to ``queue`` by this host: its listeners poll now."""
        for listener in self._listeners.get(queue, ()):
            listener.notify()


class Invoker:
    """Calls user functions with their trigger and output bindings, then writes the outputs."""

    def __init__(self, settings: Mapping[str, str], queues_base64: bool, watcher: QueueWatcher | None = None) -> None:
        self._settings = settings
        self._base64 = queues_base64
        self.watcher = watcher or QueueWatcher()
        self._clients: dict[tuple[str, str], QueueClient] = {}
        self._lock = threading.Lock()

    def queue_client(self, connection: str, queue: str) -> QueueClient:
        """A raw (no encoding policy) client for ``queue`` on the account ``connection`` names."""
        key = (connection, queue)
        with self._lock:
            if key not in self._clients:
                service = StorageAccount.from_connection_setting(connection, self._settings).queue_service()
                client = service.get_queue_client(queue)
                with contextlib.suppress(ResourceExistsError):
                    client.create_queue()
                self._clients[key] = client
            return self._clients[key]

    def encode(self, text: str) -> str:
        """A message body as the trigger expects it on the queue."""
        return base64.b64encode(text.encode()).decode() if self._base64 else text

    def invoke(self, function: Function, trigger_value: Any) -> Any:
        """Run ``function`` with its trigger value; write its queue outputs if it succeeds.

        As in the host, the outputs go out after the function returned, and a write that fails
        fails the invocation (raises): the messages written before it stay.
        """
        kwargs: dict[str, Any] = {function.trigger_arg: trigger_value}
        outs: dict[str, _Out] = {}
        for output in function.outputs:
            if output.name != "$return":
                outs[output.name] = kwargs[output.name] = _Out()
        result = function.user_function(**kwargs)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        for output in function.outputs:
            value = result if output.name == "$return" else outs[output.name].get()
            self._write_output(output.connection, output.queue, value)
        return result

    def _write_output(self, connection: str, queue: str, value: Any) -> None:
        if value is None:
            return
        items = value if isinstance(value, list) else [value]
        client = self.queue_client(connection, queue)
        for item in items:
            text = item.decode() if isinstance(item, bytes) else item if isinstance(item, str) else json.dumps(item)
            client.send_message(self.encode(text))
            self.watcher.notify(queue)


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections close after this many seconds, so a stop never waits on a
    # client that keeps its connection open.
    timeout = 5

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s", format % args)

    def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        # An error answered before the request body was read leaves that body in the socket, where
        # it would be parsed as the next request of this keep-alive connection: close it instead.
        # Say so in the answer: a client that sends its next request before the socket closes
        # would otherwise see the connection drop under it (RemoteDisconnected on a busy machine).
        self.close_connection = True
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        self._send(status, body, {"Content-Type": "application/json", "Connection": "close"})

    def _handle(self) -> None:
        host: DevHost = self.server.host
        parsed = urllib.parse.urlsplit(self.path)
        prefix = f"/{host.config.route_prefix}/" if host.config.route_prefix else "/"
        path = urllib.parse.unquote(parsed.path)
        if not path.startswith(prefix):
            self._error(404, "NotFound", f"no function answers {parsed.path}")
            return
        route, params, path_matched = host.wiring.route_for(self.command, path[len(prefix) :])
        if route is None:
            if path_matched:
                self._error(405, "MethodNotAllowed", f"{self.command} is not allowed on {parsed.path}")
            else:
                self._error(404, "NotFound", f"no function answers {parsed.path}")
            return
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        if not self._authorized(route, query):
            self._error(401, "Unauthorized", "this route needs a function key: x-functions-key header or code=")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            self._error(413, "PayloadTooLarge", f"request bodies are limited to {MAX_REQUEST_BYTES} bytes")
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        request = func.HttpRequest(
            method=self.command,
            url=f"http://{self.headers.get('Host', 'localhost')}{self.path}",
            headers=dict(self.headers.items()),
            params=query,
            route_params=params,
            body=body,
        )
        try:
            response = host.invoker.invoke(route.function, request)
        except Exception:
            log.exception("function %s failed", route.function.name)
            self._error(500, "InternalError", "the function failed; see the devhost log")
            return
        if not isinstance(response, func.HttpResponse):
            self._error(500, "InternalError", f"{route.function.name} did not return an HttpResponse")
            return
        headers = dict(response.headers.items())
        if "content-type" not in {k.lower() for k in headers}:
            headers["Content-Type"] = f"{response.mimetype}; charset={response.charset}"
        self._send(response.status_code, response.get_body() or b"", headers)

    def _authorized(self, route: HttpRoute, query: Mapping[str, str]) -> bool:
        key = self.server.host.key
        if key is None or route.auth_level == "anonymous":
            return True
        given = self.headers.get("x-functions-key") or query.get("code")
        return given == key

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for requests in progress
    block_on_close = True

    def __init__(self, address: tuple[str, int], host: DevHost) -> None:
        self.host = host
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        with self._open_lock:
            self._open.add(conn)
        return conn, addr

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def stop_reading(self) -> None:
        """End every kept-alive connection after its current request: responses still go out."""
        with self._open_lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RD)


class QueueListener:
    """Polls one queue and runs its trigger, with the host's retry and poison rules."""

    def __init__(self, host: DevHost, trigger: QueueTrigger) -> None:
        self.host = host
        self.trigger = trigger
        opts = host.config.queues
        self.opts = opts
        self.client = host.invoker.queue_client(trigger.connection, trigger.queue)
        self.poison = host.invoker.queue_client(trigger.connection, f"{trigger.queue}-poison")
        self.pool = ThreadPoolExecutor(opts.batch_size, thread_name_prefix=f"queue-{trigger.queue}")
        self.busy = 0
        self.changed = threading.Condition()
        # Set by notify(): ends the current back-off wait. Cleared as each poll begins, as the host
        # makes a new stop-waiting source for each poll: a notify during a poll ends the wait after it.
        self._wake = threading.Event()
        self.thread = threading.Thread(target=self._poll, name=f"poll-{trigger.queue}", daemon=True)
        host.invoker.watcher.register(trigger.queue, self)

    def start(self) -> None:
        self.thread.start()

    def notify(self) -> None:
        """A message was added to this queue by this host (an output binding): stop waiting and poll."""
        self._wake.set()

    def join(self) -> None:
        self.thread.join()
        self.pool.shutdown(wait=True)

    def _poll(self) -> None:
        delay = 0.1
        while not self.host.stopping.is_set():
            with self.changed:
                # Like the host, fetch a new batch only once the running ones drop to newBatchThreshold.
                if self.busy > self.opts.new_batch_threshold:
                    self.changed.wait(0.1)
                    continue
                free = self.opts.batch_size - self.busy
            self._wake.clear()
            if self.host.stopping.is_set():
                break  # stop() notifies after setting stopping: a notify cleared here was the stop's
            try:
                messages = list(
                    self.client.receive_messages(
                        messages_per_page=min(free, 32),
                        max_messages=min(free, 32),
                        visibility_timeout=int(self.host.message_lease),
                        # No SDK retries (15 s, 18 s, ... for storage): when storage is down the
                        # loop below polls again within maxPollingInterval, as the host does.
                        retry_total=0,
                    )
                )
            except AzureError as exc:
                log.warning("queue %s: receive failed (%s); retrying", self.trigger.queue, type(exc).__name__)
                messages = []
            if not messages:
                # The host backs off exponentially up to maxPollingInterval when a queue is empty,
                # unless this host adds a message to the queue meanwhile (notify).
                log.debug("queue %s: empty; next poll in %.1f s", self.trigger.queue, delay)
                if self._wake.wait(delay) and not self.host.stopping.is_set():
                    log.debug("queue %s: woken by a message this host added; polling now", self.trigger.queue)
                delay = min(delay * 2, self.opts.max_polling_interval)
                continue
            delay = 0.1
            with self.changed:
                self.busy += len(messages)
            for message in messages:
                self.pool.submit(self._run, message)

    def _run(self, message: StorageQueueMessage) -> None:
        try:
            self._process(message)
        except Exception:
            log.exception("queue %s: handling message %s failed in devhost", self.trigger.queue, message.id)
        finally:
            with self.changed:
                self.busy -= 1
                self.changed.notify_all()

    def _process(self, message: StorageQueueMessage) -> None:
        name = self.trigger.function.name
        dequeue_count = int(message.dequeue_count or 1)
        if dequeue_count > self.opts.max_dequeue_count:
            self._to_poison(message, "dequeue count above maxDequeueCount")
            return
        try:
            body = base64.b64decode(message.content, validate=True) if self.opts.base64 else message.content.encode()
        except (binascii.Error, ValueError):
            self._to_poison(message, "message is not base64 as messageEncoding requires")
            return
        receipt = _Receipt(message.pop_receipt)
        done = threading.Event()
        renew = threading.Thread(target=self._keep_hidden, args=(message, receipt, done), daemon=True)
        renew.start()
        value = QueueMessage(
            id=message.id,
            body=body,
            dequeue_count=dequeue_count,
            pop_receipt=message.pop_receipt,
            insertion_time=message.inserted_on,
            expiration_time=message.expires_on,
            time_next_visible=message.next_visible_on,
        )
        started = time.monotonic()
        try:
            self.host.invoker.invoke(self.trigger.function, value)
        except Exception as exc:
            done.set()
            renew.join()
            log.warning(
                "function %s failed on message %s (try %s of %s): %s: %s",
                name,
                message.id,
                dequeue_count,
                self.opts.max_dequeue_count,
                type(exc).__name__,
                exc,
            )
            if dequeue_count >= self.opts.max_dequeue_count:
                self._to_poison(message, f"failed {dequeue_count} times", receipt.value)
            else:
                self._release(message, receipt.value)
            return
        done.set()
        renew.join()
        log.info("function %s done with message %s in %.2f s", name, message.id, time.monotonic() - started)
        try:
            self.client.delete_message(message.id, receipt.value)
        except ResourceNotFoundError:
            log.warning("queue %s: message %s was gone before delete", self.trigger.queue, message.id)

    def _keep_hidden(self, message: StorageQueueMessage, receipt: _Receipt, done: threading.Event) -> None:
        while not done.wait(self.host.message_lease / 2):
            try:
                updated = self.client.update_message(
                    message.id, receipt.value, visibility_timeout=int(self.host.message_lease)
                )
                receipt.value = updated.pop_receipt
            except AzureError as exc:
                log.warning("queue %s: could not renew message %s: %s", self.trigger.queue, message.id, exc)

    def _release(self, message: StorageQueueMessage, receipt: str | None) -> None:
        try:
            self.client.update_message(message.id, receipt, visibility_timeout=int(self.opts.visibility_timeout))
        except AzureError as exc:
            log.warning("queue %s: could not release message %s: %s", self.trigger.queue, message.id, exc)

    def _to_poison(self, message: StorageQueueMessage, why: str, receipt: str | None = None) -> None:
        log.error(
            "queue %s: message %s moved to %s-poison: %s", self.trigger.queue, message.id, self.trigger.queue, why
        )
        self.poison.send_message(message.content)
        self.host.invoker.watcher.notify(f"{self.trigger.queue}-poison")
        with contextlib.suppress(ResourceNotFoundError):
            self.client.delete_message(message.id, receipt or message.pop_receipt)


class _Receipt:
    """The current pop receipt of a message being processed (it changes on every update)."""

    def __init__(self, value: str | None) -> None:
        self.value = value


class TimerRunner:
    """Fires one timer on its NCRONTAB schedule; each occurrence runs in one process only."""

    def __init__(self, host: DevHost, trigger: TimerTrigger, locks: BlobStore | None) -> None:
        self.host = host
        self.trigger = trigger
        self.locks = locks
        self.thread = threading.Thread(target=self._loop, name=f"timer-{trigger.function.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self) -> None:
        self.thread.join()

    def _fire(self, scheduled: datetime | None, past_due: bool) -> None:
        name = self.trigger.function.name
        if scheduled is not None and self.locks is not None:
            claim = f"devhost/timers/{name}/{scheduled.strftime('%Y%m%dT%H%M%SZ')}"
            try:
                if not self.locks.create_once(claim, {"scheduled": scheduled.isoformat()}):
                    log.debug("timer %s at %s fired in another process", name, scheduled)
                    return
            except Exception as exc:
                log.warning("timer %s: could not claim %s (%s); skipping", name, scheduled, exc)
                return
        request = TimerRequest(past_due=past_due, schedule={"AdjustForDST": True})
        log.info("timer %s firing (scheduled %s)", name, scheduled.isoformat() if scheduled else "on startup")
        try:
            self.host.invoker.invoke(self.trigger.function, request)
        except Exception:
            log.exception("timer %s failed", name)

    def _loop(self) -> None:
        if self.trigger.run_on_startup:
            self._fire(None, past_due=False)
        it = croniter(self.trigger.schedule, datetime.now(UTC), second_at_beginning=True)
        while not self.host.stopping.is_set():
            due: datetime = it.get_next(datetime)
            wait = (due - datetime.now(UTC)).total_seconds()
            if wait > 0 and self.host.stopping.wait(wait):
                return
            late = datetime.now(UTC) - due
            self._fire(due, past_due=late > timedelta(seconds=30))


class DevHost:
    """One devhost process: serves HTTP and runs every queue trigger and timer of the wiring."""

    def __init__(
        self,
        wiring: Wiring,
        config: HostConfig,
        settings: Mapping[str, str],
        *,
        port: int = 7071,
        bind: str = "127.0.0.1",
        key: str | None = None,
        message_lease: float = MESSAGE_LEASE_SECONDS,
    ) -> None:
        self.wiring = wiring
        # How long a message stays hidden while its invocation runs (renewed at half-time): when
        # the process dies, the message comes back after at most this long.
        self.message_lease = max(2.0, float(message_lease))
        self.config = config
        self.settings = settings
        self.key = key
        self.stopping = threading.Event()
        self.invoker = Invoker(settings, config.queues.base64)
        self.http = _HttpServer((bind, port), self)
        self.port = int(self.http.server_address[1])
        self._http_thread = threading.Thread(target=self.http.serve_forever, name="http", daemon=True)
        self.listeners = [QueueListener(self, q) for q in wiring.queues]
        locks = None
        if wiring.timers:
            locks = BlobStore(
                StorageAccount.from_connection_setting("AzureWebJobsStorage", settings).blob_service(),
                _TIMER_LOCKS_CONTAINER,
            )
            locks.ensure()
        self.timers = [TimerRunner(self, t, locks) for t in wiring.timers]

    def start(self) -> None:
        """Start serving; returns at once."""
        self._http_thread.start()
        for listener in self.listeners:
            listener.start()
        for timer in self.timers:
            timer.start()
        log.info(
            "devhost on http://127.0.0.1:%s/%s: %d routes, %d queue triggers, %d timers",
            self.port,
            self.config.route_prefix,
            len(self.wiring.routes),
            len(self.listeners),
            len(self.timers),
        )
        for route in self.wiring.routes:
            log.info(
                "  %s %s/%s [%s]",
                ",".join(sorted(route.methods)),
                self.config.route_prefix,
                route.template,
                route.auth_level,
            )

    def stop(self) -> None:
        """Stop taking new work and wait for running invocations to finish."""
        log.info("devhost stopping: waiting for running invocations")
        self.stopping.set()
        self.http.shutdown()
        self.http.stop_reading()
        self.http.server_close()
        log.info("devhost: HTTP stopped")
        for listener in self.listeners:
            listener.notify()  # out of its back-off wait, to see the stop
        for listener in self.listeners:
            listener.join()
        log.info("devhost: queue listeners stopped")
        for timer in self.timers:
            timer.join()
        log.info("devhost stopped")

    def __enter__(self) -> DevHost:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
