"""The continuation tokens of pgvault's lists: base64url of a small JSON body and a checksum of it.

The checksum catches edits and truncation; it is not a signature, so each list also checks that
the fields lie inside what its caller may ask anyway: a forged token can only move where a page
starts. ``purpose`` (``jobs``, ``instances``, ``audit``, ``alerts``) keeps one list's token from
reading as another's.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any


class TamperedToken(ValueError):
    """A token whose body does not match its checksum (edited, truncated, or another list's)."""


def seal(body: Any, purpose: str) -> str:
    """An opaque, URL-safe token carrying ``body`` (anything JSON can write)."""
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw + b"." + _checksum(raw, purpose).encode()).decode().rstrip("=")


def unseal(token: str, purpose: str) -> Any:
    """The body ``seal`` put in ``token``; ``TamperedToken`` on a checksum mismatch, ``ValueError``
    (or ``UnicodeDecodeError``) when it is not a token at all."""
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    body, _, check = raw.rpartition(b".")
    if not body or check.decode() != _checksum(body, purpose):
        raise TamperedToken("checksum does not match")
    return json.loads(body)


def _checksum(body: bytes, purpose: str) -> str:
    return hashlib.sha256(f"pgvault-{purpose}-page:".encode() + body).hexdigest()[:16]
