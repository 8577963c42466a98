"""A restore's ranged download, its prefetch and a dump's read-ahead end cleanly when closed from their own threads.

Each is a generator with threads behind it. An abandoned one (a cancelled job) is closed wherever
the garbage collector finalises it, which may be that very thread: closing must not wait for
itself (seen in a fresh clone's run: "cannot join current thread", an exception ignored in the ranged
download's finaliser).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from shared.pg.dump import _read_ahead
from shared.pg.restore import _prefetch
from shared.storage.blockstream import _ranges

DATA = bytes(range(256)) * 40  # 10,240 bytes: ten ranges of 1,024


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


class _Download:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def readall(self) -> bytes:
        return self._data


class _Blob:
    """Answers ranged GETs of DATA; ``on_get(offset)`` runs in the download's thread first."""

    def __init__(self, on_get: Callable[[int], None] = lambda offset: None) -> None:
        self.on_get = on_get

    def download_blob(self, *, offset: int, length: int, **kwargs: Any) -> _Download:
        self.on_get(offset)
        return _Download(DATA[offset : offset + length])


def _ranges_of(blob: _Blob) -> Iterator[bytes]:
    return _ranges(blob, len(DATA), '"etag"', chunk=1024, in_flight=2, extra={})  # type: ignore[arg-type]


def test_the_ranges_are_the_blobs_bytes_in_order() -> None:
    assert b"".join(_ranges_of(_Blob())) == DATA


def test_a_download_closed_from_one_of_its_own_threads_ends_without_error() -> None:
    holder: dict[str, Any] = {}
    outcome: list[BaseException | None] = []
    done = threading.Event()

    def on_get(offset: int) -> None:
        if offset == 2048:  # the third range, sent just before the first yield
            _close_when_suspended(holder["gen"], outcome)  # on a download thread
            done.set()

    holder["gen"] = _ranges_of(_Blob(on_get))
    assert next(holder["gen"]) == DATA[:1024]
    assert done.wait(10)
    assert outcome == [None], outcome
    assert next(holder["gen"], None) is None  # closed: nothing more comes
