"""Where tests find the policy examples.

The examples come from outside the repository; the repo keeps a copy in ``tests/policy-examples``
so a clean clone tests on its own. When the upstream folder ``../shared/policy-examples`` is beside
the checkout, a test checks the copy is identical.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "tests" / "policy-examples"
UPSTREAM_EXAMPLES = REPO.parent / "shared" / "policy-examples"


def policy_starting_at(example: str, slot: datetime) -> bytes:
    """The example policy ``example`` with its weekly schedule's first slot at ``slot`` (UTC)."""
    doc = json.loads((EXAMPLES / example).read_text())
    schedule = doc.get("properties", doc)["policyRules"][0]["trigger"]["schedule"]
    schedule["repeatingTimeIntervals"] = [f"R/{slot.strftime('%Y-%m-%dT%H:%M:%S')}+00:00/P1W"]
    return json.dumps(doc).encode()
