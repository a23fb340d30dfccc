"""Signing webhook calls, and checking a call's signature as a receiver would.

What a receiver gets and checks is described in `core.services.webhooks`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

SIGNATURE_TOLERANCE_S = 300


def canonical_body(payload: dict[str, Any]) -> bytes:
    """The body of a call: canonical JSON, the same bytes at every attempt."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-LiLAW-Signature` of a call: `sha256=<hex HMAC-SHA256 of "{timestamp}." + body>`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str,
    body: bytes,
    timestamp_header: str | None,
    signature_header: str | None,
    *,
    now: datetime,
    tolerance_s: float = SIGNATURE_TOLERANCE_S,
) -> bool:
    """Whether a call is genuine: its `X-LiLAW-Signature` matches the raw body and its
    `X-LiLAW-Timestamp`, which is within `tolerance_s` of `now`. Compares in constant time."""
    if not timestamp_header or not signature_header:
        return False
    try:
        timestamp = int(timestamp_header.strip())
    except ValueError:
        return False
    if abs(now.timestamp() - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).encode()
    return hmac.compare_digest(expected, signature_header.strip().encode("utf-8", "surrogateescape"))
