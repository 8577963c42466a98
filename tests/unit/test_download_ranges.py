"""The restore's ranged download (shared/storage/blockstream.py) ends cleanly from any thread.

A download abandoned mid-way (a cancelled restore) is closed wherever its generator is finalised:
the garbage collector may run that on one of the download's own threads. Closing must not wait
for that thread itself (seen in a fresh clone's run: "cannot join current thread", an exception
ignored in the generator's finaliser).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from shared.storage.blockstream import _ranges

DATA = bytes(range(256)) * 40  # 10,240 bytes: ten ranges of 1,024


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
    closed: list[BaseException | None] = []
    done = threading.Event()
    holder: dict[str, Iterator[bytes]] = {}

    def on_get(offset: int) -> None:
        if offset == 2048:  # the third range, sent just before the first yield
            gen: Any = holder["gen"]
            deadline = time.monotonic() + 10
            while gen.gi_running and time.monotonic() < deadline:  # until it is suspended at that yield
                time.sleep(0.001)
            try:
                gen.close()
                closed.append(None)
            except BaseException as exc:
                closed.append(exc)
            done.set()

    holder["gen"] = _ranges_of(_Blob(on_get))
    assert next(holder["gen"]) == DATA[:1024]
    assert done.wait(10)
    assert closed == [None], closed
    assert next(holder["gen"], None) is None  # closed: nothing more comes
