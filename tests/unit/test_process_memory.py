"""The allocator setting that keeps a streaming backup's peak memory at what its buffers hold."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import pytest

from shared.process_memory import release_large_buffers


def _mapped(address: int) -> str | None:
    """The name of the mapping of this process that holds ``address`` ("" when anonymous), None if unmapped."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if start <= address < end:
            return fields[5] if len(fields) > 5 else ""
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_large_buffer_gets_a_mapping_of_its_own_which_free_gives_back() -> None:
    assert release_large_buffers() is True
    assert release_large_buffers() is True  # a second call (another stream, another thread) changes nothing
    # A buffer of a block's size (as the dump's reads, blocks and ranges are) lives in its own mapping,
    # not in a thread's heap: freeing it returns it to the system.
    block = bytearray(8 * 1024 * 1024)  # a block freed first: without the setting glibc's threshold grows
    del block  # past it, and the next buffers come from the heap and stay there once freed
    buffer = bytearray(3 * 1024 * 1024 + 12345)
    view = (ctypes.c_char * 1).from_buffer(buffer)
    address = ctypes.addressof(view)
    assert _mapped(address) == ""  # anonymous, not "[heap]"
    del view, buffer
    assert _mapped(address) is None  # unmapped by free: given back, not kept in a heap
