"""Stopping running work from another thread: a cancelled job, a lock taken over.

A backup or restore runs ``pg_dump``/``pg_restore`` and streams blocks while the lock's heartbeat
beats on a thread of its own. When that thread learns the work must stop (the job's cancel was
requested, another worker took the lock over), it sets the work's ``StopSignal`` with the reason:
the callbacks registered by the running pipeline (kill the subprocess) run at once, and the
pipeline, which checks the signal between chunks and before each irreversible step (commit, point
insert), raises the reason. Nothing irreversible happens after the signal is set.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

from shared.errors import PgVaultError

log = logging.getLogger(__name__)


class WorkCancelled(PgVaultError):
    """The job's cancel was requested (``POST /backupJobs/{id}:cancel``): stop, commit nothing, end Cancelled."""


class StopSignal:
    """Set once, from any thread, with the reason work must stop; checked by the work itself."""

    def __init__(self) -> None:
        self._reason: PgVaultError | None = None
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    @property
    def reason(self) -> PgVaultError | None:
        """Why the work must stop; None while it may go on."""
        return self._reason

    def set(self, reason: PgVaultError) -> None:
        """Stop the work for ``reason`` (the first reason wins) and run the stop callbacks."""
        with self._lock:
            if self._reason is not None:
                return
            self._reason = reason
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback()
            except Exception as exc:  # a callback failing must not keep the others from running
                log.warning("stop callback failed: %s", type(exc).__name__)

    def check(self) -> None:
        """Raise the reason if the work must stop."""
        if self._reason is not None:
            raise self._reason

    @contextlib.contextmanager
    def on_stop(self, callback: Callable[[], None]) -> Iterator[None]:
        """Run ``callback`` if the signal is set while inside the block (at once if set already)."""
        with self._lock:
            already = self._reason is not None
            if not already:
                self._callbacks.append(callback)
        if already:
            callback()
        try:
            yield
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._callbacks.remove(callback)


def check(signal: StopSignal | None) -> None:
    """``signal.check()`` when there is a signal."""
    if signal is not None:
        signal.check()
