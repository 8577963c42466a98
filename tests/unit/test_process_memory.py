"""The allocator setting that keeps a multi-part backup's peak memory at what its buffers hold."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter: in a long-lived one, a free chunk left in the heap before the setting
# may serve the request (malloc looks in its bins before it maps).
PROBE = textwrap.dedent(
    """
    import ctypes, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from shared.process_memory import release_large_buffers

    def mapped(address):
        for line in Path("/proc/self/maps").read_text().splitlines():
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end:
                return fields[5] if len(fields) > 5 else ""
        return None

    if sys.argv[2] == "set":
        assert release_large_buffers() is True
        assert release_large_buffers() is True  # a second call (another part, another thread) changes nothing
    block = bytearray(8 * 1024 * 1024)  # a block freed first: without the setting glibc's threshold grows
    del block  # past it, and the next buffers come from the heap and stay there once freed
    buffer = bytearray(3 * 1024 * 1024 + 12345)
    view = (ctypes.c_char * 1).from_buffer(buffer)
    address = ctypes.addressof(view)
    before = mapped(address)
    del view, buffer
    print(repr(before), repr(mapped(address)))
    """
)


def _probe(mode: str) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE, str(REPO), mode], check=True, capture_output=True, text=True)
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_large_buffer_gets_a_mapping_of_its_own_which_free_gives_back() -> None:
    assert _probe("set") == "'' None"  # its own anonymous mapping, unmapped by free: given back
    assert _probe("unset") == "'[heap]' '[heap]'"  # without: in the heap, and kept there once freed
