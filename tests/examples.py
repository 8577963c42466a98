"""Where tests find the policy examples of the design card.

The repo keeps a copy in ``tests/policy-examples`` so a clean clone tests on its own; when the
design card's ``../shared/policy-examples`` is beside the checkout, a test checks the copy is
identical.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "tests" / "policy-examples"
UPSTREAM_EXAMPLES = REPO.parent / "shared" / "policy-examples"
