"""The policy parser against arbitrary and almost-valid JSON: it answers or refuses, never crashes.

Whatever the document, ``parse_policy`` returns a Policy or raises ``UserError(InvalidPolicy)``
with a message; no other exception (a KeyError, TypeError, ValueError, OverflowError, ...) may
escape, because the API would turn it into a 500.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import ErrorCode, UserError
from shared.policy import parse_policy
from tests.examples import EXAMPLES

BASE: dict[str, Any] = json.loads((EXAMPLES / "weekly-mon-wed-fri-with-archive.json").read_text())

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "P7D",
            "P10Y",
            "P99999999Y",
            "P99999999999999999999D",
            "R/2025-01-05T02:00:00+00:00/P1W",
            "VaultStore",
            "Default",
        ]
    ),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``doc`` (dict keys and list indexes)."""
    found = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found.extend(_paths(value, (*prefix, i)))
    return found


def _parse_or_refuse(doc: Any) -> None:
    try:
        parse_policy(doc)
    except UserError as exc:
        assert exc.code is ErrorCode.INVALID_POLICY, exc.code
        assert exc.message


@settings(max_examples=300, deadline=None)
@given(doc=json_values)
def test_any_json_document_is_parsed_or_refused_as_invalid_policy(doc: Any) -> None:
    _parse_or_refuse(doc)
    _parse_or_refuse({"properties": doc})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_valid_policy_with_any_part_replaced_is_parsed_or_refused_as_invalid_policy(data: st.DataObject) -> None:
    doc = copy.deepcopy(BASE)
    path = data.draw(st.sampled_from(_paths(doc)[1:]), label="path")
    target: Any = doc
    for step in path[:-1]:
        target = target[step]
    if data.draw(st.booleans(), label="delete") and isinstance(target, dict):
        del target[path[-1]]
    else:
        target[path[-1]] = data.draw(json_values, label="value")
    _parse_or_refuse(doc)
