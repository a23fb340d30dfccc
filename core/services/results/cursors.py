"""Opaque page cursors: where a page of suspects ended, in which ordering.

A cursor is URL-safe base64 of {"order": ..., "after": ...}: the ordering ("rank" or
"<score>@<epoch or 'aggregate'>") and the last position of the page (a rank, or the
[value, sample_index] pair of an ordering by value). A cursor continues only its own ordering.
"""

from __future__ import annotations

import base64
import binascii
import json
import math

from core.column_ranges import FLOAT32_MAX, FLOAT32_UNDERFLOW, INT32_MAX
from core.services import InvalidParameterError


def encode_cursor(order: str, position) -> str:
    raw = json.dumps({"order": order, "after": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, order: str):
    """The position `cursor` ends at (None without a cursor); InvalidParameterError when it is
    malformed or belongs to another ordering."""
    if cursor is None:
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        cursor_order, position = decoded["order"], decoded["after"]
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise InvalidParameterError("invalid cursor") from None
    if cursor_order != order:
        raise InvalidParameterError("the cursor belongs to a list in another order; start again without it")
    valid = _is_int32(position) if order == "rank" else _is_key_position(position)
    if not valid:
        raise InvalidParameterError("invalid cursor")
    return position


def _is_key_position(position) -> bool:
    return (
        isinstance(position, list)
        and len(position) == 2
        and (position[0] is None or _is_float32(position[0]))
        and _is_int32(position[1])
    )


def _is_int32(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= INT32_MAX


def _is_float32(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        magnitude = abs(float(value))
    except OverflowError:  # an integer beyond any float
        return False
    return math.isfinite(magnitude) and (magnitude == 0 or FLOAT32_UNDERFLOW < magnitude <= FLOAT32_MAX)
