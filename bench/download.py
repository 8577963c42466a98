"""Benchmark: where a restore's download time goes — the blob download's request size, SHA-256, zstd.

    .venv/bin/python bench/download.py [--mb 300] [--repeat 3]

Stages a blob of ``--mb`` MB of zstd output (random text compressed at level 1, as a backup of
bench/parts.py's database stores it) into a fresh Azurite in 8 MiB blocks, as the backup does; then,
interleaved, ``--repeat`` times, medians, reads it back:
- sdk default: ``download_blob().chunks()`` with the SDK's defaults (a first GET of 32 MiB, then
  4 MiB ranges one after another), as ``read_verified`` did
- sdk N MiB: the same with ``max_single_get_size = max_chunk_get_size = N MiB``
- ranges N MiB x2: our own ranged GETs of N MiB, two in flight (``shared.storage.blockstream``)
and, without any download, the client's own work on the same bytes: SHA-256, and zstd decompression.
Each line gives wall seconds, this process's CPU seconds (the client, all threads) and Azurite's,
and the number of GET requests. Not a test: it asserts nothing, it reports.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import zstandard  # noqa: E402
from azure.storage.blob import BlobServiceClient, ContainerClient  # noqa: E402
from backup import _proc_cpu  # noqa: E402

from devhost.services import Azurite, reap_stale  # noqa: E402
from shared.storage.blockstream import BlockWriter, download_ranges  # noqa: E402

MIB = 1024 * 1024


def _payload(mb: int) -> Iterable[bytes]:
    """About ``mb`` MB of zstd frames of random hex text (compresses about 2x, as random dumps do)."""
    compressor = zstandard.ZstdCompressor(level=1)
    made = 0
    while made < mb * MIB:
        frame = compressor.compress(os.urandom(4 * MIB).hex().encode())
        made += len(frame)
        yield frame


def _cpu_self() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


class Counting:
    """Counts the GET requests a container client sends (its transport's hook)."""

    def __init__(self) -> None:
        self.gets = 0

    def __call__(self, request: object) -> None:
        if getattr(getattr(request, "http_request", None), "method", "") == "GET":
            self.gets += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=300, help="stored size of the blob")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    reap_stale()
    work = Path(tempfile.mkdtemp(prefix="pgvault-bench-download-"))
    azurite = Azurite(work / "azurite").start()
    try:
        assert azurite.proc is not None
        counter = Counting()

        def container(**config: int) -> ContainerClient:
            service = BlobServiceClient.from_connection_string(azurite.connection_string, **config)  # type: ignore[arg-type]
            return service.get_container_client("bench")

        plain = container()
        plain.create_container()
        writer = BlockWriter(plain, "blob.zst")
        for frame in _payload(args.mb):
            writer.write(frame)
        stored = writer.commit({})
        print(f"blob of {stored.stored_bytes / MIB:,.0f} MB in {stored.blocks} blocks", flush=True)

        def sdk(**config: int) -> Callable[[], Iterable[bytes]]:
            client = container(**config)

            def chunks() -> Iterable[bytes]:
                return client.get_blob_client("blob.zst").download_blob(raw_request_hook=counter).chunks()

            return chunks

        def ranges(size: int, in_flight: int) -> Callable[[], Iterable[bytes]]:
            def chunks() -> Iterable[bytes]:
                blob = plain.get_blob_client("blob.zst")
                return download_ranges(blob, chunk=size, in_flight=in_flight, hook=counter)

            return chunks

        variants: dict[str, Callable[[], Iterable[bytes]]] = {
            "sdk default (32 + 4 MiB)": sdk(),
            "sdk 4 MiB": sdk(max_single_get_size=4 * MIB, max_chunk_get_size=4 * MIB),
            "sdk 16 MiB": sdk(max_single_get_size=16 * MIB, max_chunk_get_size=16 * MIB),
            "ranges 4 MiB x2": ranges(4 * MIB, 2),
            "ranges 8 MiB x2": ranges(8 * MIB, 2),
            "ranges 16 MiB x2": ranges(16 * MIB, 2),
        }
        rows: dict[str, list[tuple[float, float, float, int]]] = {name: [] for name in variants}
        for _ in range(args.repeat):
            for name, make in variants.items():
                counter.gets = 0
                cpu, az, started = _cpu_self(), _proc_cpu(azurite.proc.pid), time.monotonic()
                total = sum(len(c) for c in make())
                assert total == stored.stored_bytes, (name, total)
                wall = time.monotonic() - started
                rows[name].append((wall, _cpu_self() - cpu, _proc_cpu(azurite.proc.pid) - az, counter.gets))
        data = b"".join(c for c in ranges(8 * MIB, 2)())
        local: dict[str, list[float]] = {"sha256 (client only)": [], "zstd -d (client only)": []}
        for _ in range(args.repeat):
            cpu = _cpu_self()
            hashlib.sha256(data).hexdigest()
            local["sha256 (client only)"].append(_cpu_self() - cpu)
            cpu = _cpu_self()
            reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
            while reader.read(MIB):
                pass
            local["zstd -d (client only)"].append(_cpu_self() - cpu)
        print(f"\nmedians of {args.repeat} interleaved runs; the machine: {os.getloadavg()[0]:.1f} load")
        print(f"{'read':<26}{'wall s':>8}{'client CPU s':>14}{'Azurite CPU s':>15}{'GETs':>6}   raw wall s")
        for name, runs in rows.items():
            med = [statistics.median(r[i] for r in runs) for i in range(4)]
            raw = ", ".join(f"{r[0]:.2f}" for r in runs)
            print(f"{name:<26}{med[0]:>8.2f}{med[1]:>14.2f}{med[2]:>15.2f}{med[3]:>6.0f}   {raw}")
        for name, cpus in local.items():
            print(f"{name:<26}{statistics.median(cpus):>8.2f}{statistics.median(cpus):>14.2f}")
    finally:
        azurite.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
