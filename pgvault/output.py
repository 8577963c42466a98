"""How commands print: JSON (the API's own shapes) or a plain text table; progress on stderr."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
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


def emit_list(items: list[Any], fmt: str, columns: Sequence[Column] | None, out: TextIO | None = None) -> None:
    """Print a list as the API shapes lists (``{"value": [...]}``) in JSON, or as a table."""
    emit({"value": items} if fmt == "json" else items, fmt, columns, out)


def _cell(value: Any) -> str:
    # A number is printed as the number it is: a column that means a fraction or a duration
    # formats its value itself (percent, seconds), so 0.996 s never reads as "100%".
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def percent(fraction: Any) -> str:
    """0.5 -> '50%'; '-' when absent."""
    if not isinstance(fraction, int | float) or isinstance(fraction, bool):
        return "-"
    return f"{float(fraction):.0%}"


def seconds_text(seconds: Any) -> str:
    """A duration: 0.04 -> '40 ms', 0.0001 -> '<1 ms', 1.25 -> '1.2 s', 75 -> '1 min 15 s', 3725 -> '1 h 02 min';
    '-' when absent. A sub-second job is never shown as '0.0 s'."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        return "-"
    if seconds < 0.9995:
        ms = round(seconds * 1000)
        return "<1 ms" if ms < 1 else f"{ms} ms"
    if seconds < 59.95:  # what rounds to 60.0 s is shown as a minute
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def step_seconds(step: dict[str, Any]) -> str:
    """How long a job's step took ('1.2 s'); '' when its times are not both recorded."""
    try:
        start = dt.datetime.fromisoformat(str(step["startTime"]).replace("Z", "+00:00"))
        end = dt.datetime.fromisoformat(str(step["endTime"]).replace("Z", "+00:00"))
    except (KeyError, TypeError, ValueError):
        return ""
    return seconds_text((end - start).total_seconds())


def rate_text(bytes_per_second: Any) -> str:
    """12.5 MiB/s; '-' when absent."""
    if not isinstance(bytes_per_second, int | float) or isinstance(bytes_per_second, bool) or bytes_per_second <= 0:
        return "-"
    return f"{human_bytes(bytes_per_second)}/s"


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
    """The state of a job being waited for, on stderr.

    On a terminal: one line redrawn in place with a bar, the fraction, bytes, rate, ETA and the
    current step. Elsewhere (a pipe, a CI log): plain lines, one when the status or the step
    changes and at most one every ``PLAIN_EVERY`` seconds while bytes move.
    """

    WIDTH = 30
    PLAIN_EVERY = 10.0

    def __init__(self, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.clock = clock
        self._last = ""
        self._said = ("", 0.0)
        self._said_bytes = 0
        self._sample: tuple[float, int] | None = None
        self._rate: float | None = None

    def show(self, job: dict[str, Any]) -> None:
        """Draw the state of ``job`` (progress 0..1, bytes, status, current step)."""
        now = self.clock()
        progress = _fraction(job.get("progress"))
        done = int(job.get("bytes") or 0)
        rate = self._measure(now, done, job.get("throughputBytesPerSecond"))
        state = f"{job.get('status')} {current_step(job)}".strip()
        eta = eta_seconds(progress, done, rate) if job.get("status") == "InProgress" else None
        extra = "  ".join(x for x in (rate_text(rate) if rate else "", f"ETA {seconds_text(eta)}" if eta else "") if x)
        if self.tty:
            filled = int(self.WIDTH * progress)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            line = f"\r[{bar}] {progress:4.0%} {human_bytes(done):>10}  {state}  {extra}".rstrip()
            self.stream.write(line.ljust(len(self._last)))
            self._last = line
        elif state != self._said[0] or (now - self._said[1] >= self.PLAIN_EVERY and done != self._said_bytes):
            line = f"{job.get('jobId')}: {state} {human_bytes(done)}  {progress:.0%}  {extra}"
            self.stream.write(line.rstrip() + "\n")
            self._said = (state, now)
            self._said_bytes = done
        self.stream.flush()

    def _measure(self, now: float, done: int, reported: Any) -> float | None:
        # The rate seen between polls (smoothed), which a running job's own average may not give yet.
        if self._sample is not None and now > self._sample[0] and done >= self._sample[1]:
            seen = (done - self._sample[1]) / (now - self._sample[0])
            self._rate = seen if self._rate is None else 0.5 * self._rate + 0.5 * seen
        if self._sample is None or done != self._sample[1]:
            self._sample = (now, done)
        if self._rate:
            return self._rate
        return float(reported) if isinstance(reported, int | float) and reported > 0 else None

    def done(self) -> None:
        """End the bar's line."""
        if self.tty and self._last:
            self.stream.write("\n")
            self.stream.flush()


def _fraction(value: Any) -> float:
    try:
        return min(max(float(value or 0.0), 0.0), 1.0)
    except (TypeError, ValueError):
        return 0.0


def current_step(job: dict[str, Any]) -> str:
    """The step running now (the last one InProgress), else the last one; '' when none is recorded."""
    steps = [s for s in job.get("steps") or [] if isinstance(s, dict)]
    running = [s for s in steps if s.get("status") == "InProgress"]
    step = (running or steps or [{}])[-1]
    return str(step.get("name") or "")


def eta_seconds(progress: float, done: int, rate: float | None) -> float | None:
    """Seconds left at ``rate`` for the bytes ``progress`` says remain; None when unknown."""
    if not rate or progress <= 0 or progress >= 1 or done <= 0:
        return None
    return (done / progress - done) / rate
