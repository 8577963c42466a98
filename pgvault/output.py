"""How commands print: JSON (the API's own shapes) or a plain text table; progress on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

Column = tuple[str, Callable[[dict[str, Any]], Any]]


def default_format(stream: TextIO | None = None) -> str:
    """``table`` when stdout is a terminal, else ``json`` (what a script piping the output wants)."""
    stream = stream or sys.stdout
    return "table" if stream.isatty() else "json"


def emit(value: Any, fmt: str, columns: Sequence[Column] | None = None, out: TextIO | None = None) -> None:
    """Print ``value`` (an object or a list of objects) as JSON or as a table of ``columns``."""
    out = out or sys.stdout
    if fmt == "json" or columns is None:
        if fmt != "json" and isinstance(value, str):
            out.write(value if value.endswith("\n") else value + "\n")
            return
        print(json.dumps(value, indent=2), file=out)
        return
    rows = value if isinstance(value, list) else [value]
    print(table([c[0] for c in columns], [[_cell(get(r)) for _, get in columns] for r in rows]), file=out)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0%}" if 0 <= value <= 1 else f"{value:.1f}"
    return str(value)


def table(header: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows])


def human_bytes(n: float | None) -> str:
    """1536 -> '1.5 KiB'."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


class Progress:
    """A one-line progress bar on a terminal; on a pipe, one line per change of status or step."""

    WIDTH = 30

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last = ""

    def show(self, job: dict[str, Any]) -> None:
        """Draw the state of ``job`` (progress 0..1, bytes, status, current step)."""
        progress = float(job.get("progress") or 0.0)
        steps = job.get("steps") or []
        step = steps[-1].get("name", "") if steps else ""
        text = f"{job.get('status')} {step}".strip()
        if self.tty:
            filled = int(self.WIDTH * min(max(progress, 0.0), 1.0))
            bar = "#" * filled + "." * (self.WIDTH - filled)
            line = f"\r[{bar}] {progress:4.0%} {human_bytes(job.get('bytes')):>10}  {text}"
            self.stream.write(line.ljust(len(self._last)))
            self._last = line
        elif text != self._last:
            self.stream.write(f"{job.get('jobId')}: {text} {human_bytes(job.get('bytes'))}\n")
            self._last = text
        self.stream.flush()

    def done(self) -> None:
        """End the bar's line."""
        if self.tty and self._last:
            self.stream.write("\n")
            self.stream.flush()
