"""A dump's read-ahead and a restore's prefetch end cleanly when closed from their own thread.

Both are generators with a thread behind them. An abandoned one (a cancelled job) is closed wherever
the garbage collector finalises it, which may be that very thread: closing must not wait for
itself ("cannot join current thread", as a restore's ranged download once did).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from shared.pg.dump import _read_ahead
from shared.pg.restore import _prefetch


def _close_when_suspended(gen: Any, outcome: list[BaseException | None]) -> None:
    deadline = time.monotonic() + 10
    while gen.gi_running and time.monotonic() < deadline:
        time.sleep(0.001)
    try:
        gen.close()
        outcome.append(None)
    except BaseException as exc:
        outcome.append(exc)


def test_a_restores_prefetch_closed_from_its_producer_thread_ends_without_error() -> None:
    holder: dict[str, Any] = {}
    outcome: list[BaseException | None] = []

    def chunks() -> Iterator[bytes]:
        yield b"first"
        _close_when_suspended(holder["gen"], outcome)  # on the producer thread
        yield b"second"

    holder["gen"] = _prefetch(chunks(), depth=1)
    assert next(holder["gen"]) == b"first"
    deadline = time.monotonic() + 10
    while not outcome and time.monotonic() < deadline:
        time.sleep(0.01)
    assert outcome == [None], outcome


def test_a_dumps_read_ahead_closed_from_its_reader_thread_ends_without_error() -> None:
    holder: dict[str, Any] = {}
    outcome: list[BaseException | None] = []
    reads = iter([b"first"])

    class Pipe:
        def read(self, size: int) -> bytes:
            chunk = next(reads, None)
            if chunk is not None:
                return chunk
            if not outcome and threading.current_thread() is not threading.main_thread():
                _close_when_suspended(holder["gen"], outcome)  # on the reader thread
            return b""

    holder["gen"] = _read_ahead(Pipe(), depth=1)  # type: ignore[arg-type]
    assert next(holder["gen"]) == b"first"
    deadline = time.monotonic() + 10
    while not outcome and time.monotonic() < deadline:
        time.sleep(0.01)
    assert outcome == [None], outcome
