"""The process's allocator, told to give large buffers back to the system when they are freed.

A backup or restore streams through buffers of megabytes (pg_dump's 4 MiB reads, 8 MiB blocks and
download ranges, 1 MiB of decompressed output), allocated and freed on several threads. glibc's
malloc serves a freed large buffer's successors from the heap of the thread that freed it once its
dynamic mmap threshold has grown past that size (it grows to the largest buffer freed, up to 32 MiB),
and it keeps each thread's heap at its high-water mark: with several parts at once, each with its
reader, compressor, upload and digest threads, a backup of 2 parts peaked at 193-225 MB for about
150 MB in use (bench/README.md, ``bench/parts.py``). A fixed threshold of 1 MiB sends every such
buffer to its own mapping, returned to the system by ``free``: peak RSS follows what is in use
(160-172 MB). The price is a fresh mapping, so page faults, for every buffer: about 0.2 CPU-s more
per 330 MB of raw dump (7% of the worker's CPU), so only multi-part backups and restores ask for it,
where several streams at once would otherwise cross 200 MB; the setting then stays for the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
import threading

log = logging.getLogger(__name__)

# glibc's malloc.h: mallopt(M_MMAP_THRESHOLD, bytes); setting it also turns the dynamic threshold off.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1024 * 1024

_done = threading.Event()
_lock = threading.Lock()


def release_large_buffers() -> bool:
    """Make allocations of ``MMAP_THRESHOLD_BYTES`` and more mappings of their own (glibc on Linux; once
    per process, from any thread). True when the allocator took the setting; False elsewhere."""
    if _done.is_set():
        return True
    with _lock:
        if _done.is_set():
            return True
        if not sys.platform.startswith("linux"):
            return False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # not glibc (musl has no mallopt): its own policy stands
            return False
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1:
            log.warning("mallopt(M_MMAP_THRESHOLD) refused: large buffers stay in the heap")
            return False
        _done.set()
        return True
