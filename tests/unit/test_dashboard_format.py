"""The dashboard's formatting of durations (functions/web/dom.js), run in Node as the browser runs it.

A sub-second job showed "0 s"; now milliseconds (or "<1 ms"), tenths below ten seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

DOM = Path(__file__).resolve().parents[2] / "functions" / "web" / "dom.js"
NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="node is not installed (make deps installs it)")
def test_durations_under_a_second_are_milliseconds_never_zero_seconds() -> None:
    values = [None, 0, 0.0004, 0.04, 0.4996, 0.9996, 4.24, 9.96, 38.4, 125, 3840]
    script = (
        f"import {{ fmtDuration }} from {json.dumps(DOM.as_uri())};"
        f"console.log(JSON.stringify({json.dumps(values)}.map(fmtDuration)));"
    )
    assert NODE is not None
    out = subprocess.run(
        [NODE, "--input-type=module", "-e", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == [
        "—", "<1 ms", "<1 ms", "40 ms", "500 ms", "1.0 s", "4.2 s", "10 s", "38 s", "2 min 5 s", "1 h 4 min"
    ]  # fmt: skip
