"""Hold a running pg_dump (or pg_restore) still at a chosen moment, whatever the machine's load.

Fault tests must strike "mid-dump": after some blocks are staged, before the commit. Polling for
that moment races the backup on a busy machine (the poll's own request to Azurite waits behind
the blocks being staged, and the backup can end in between). Instead the tool is stopped with
SIGSTOP as soon as it starts and let run in short slices (SIGCONT, a moment, SIGSTOP) until the
wanted state is seen; the state is always checked while the tool is stopped, so the backup cannot
end between the check and the fault. The caller strikes, then lets the tool go on (``resume``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path


def find_tool(tool: str, database: str) -> int | None:
    """The pid of a running ``tool`` whose environment or arguments name ``database``, if any."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if not argv or Path(argv[0].decode(errors="replace")).name != tool or b"--version" in argv:
                continue  # not the tool, or only a version probe of it
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        wanted = database.encode()
        if f"PGDATABASE={database}".encode() in environ or any(wanted in a for a in argv[1:]):
            return int(proc.name)
    return None


def resume(pid: int) -> None:
    """Let a stopped tool go on (nothing when it is gone)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def hold_when(
    tool: str,
    database: str,
    ready: Callable[[], bool],
    *,
    release: Callable[[], object] | None = None,
    timeout: float = 120,
    slice_seconds: float = 0.05,
) -> int:
    """Stop ``tool`` (working on ``database``) at the first moment ``ready()`` holds; its pid.

    ``ready`` is called only while the tool is stopped. The tool stays stopped on return: strike,
    then ``resume(pid)``. AssertionError when ``ready`` never holds with the tool stopped within
    ``timeout`` seconds (the tool never started, or every run of it ended first).

    A small database dumps faster than any poll can catch it: hold a lock the tool waits for
    (``LOCK TABLE ... IN ACCESS EXCLUSIVE MODE`` in an open transaction) and pass its release
    (``connection.rollback``) as ``release``; it is called once the tool is found and stopped.
    """
    deadline = time.monotonic() + timeout
    while True:
        pid = find_tool(tool, database)
        if pid is None:
            assert time.monotonic() < deadline, f"{tool} for {database}: the wanted state never came within {timeout} s"
            time.sleep(0.005)
            continue
        try:
            os.kill(pid, signal.SIGSTOP)
            if release is not None:
                release()
                release = None
            while not ready():
                assert time.monotonic() < deadline, f"{tool} for {database}: the wanted state never came"
                os.kill(pid, signal.SIGCONT)
                time.sleep(slice_seconds)
                os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            # That one ended (a probe of the server, or a try that failed): wait for the next. A dump
            # that ends for good leaves the state unseen, and the deadline says so.
            continue
        return pid
