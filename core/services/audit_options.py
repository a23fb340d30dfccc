"""The audit configuration a request's training options ask for.

A request names some options (`AuditConfig`'s fields, with LiLAW's `meta_batch_size` and `clamp`
among them); the others keep the values of the configuration it is based on: the defaults for a
new audit, the previous job's configuration for a re-audit, so a re-audit that changes only the
epochs keeps the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from core.audit_config import AuditConfig

LILAW_OPTIONS = frozenset({"meta_batch_size", "clamp"})


def audit_config(options: Mapping[str, Any], based_on: AuditConfig | None = None) -> AuditConfig:
    base = based_on or AuditConfig()
    lilaw = replace(base.lilaw, **{name: value for name, value in options.items() if name in LILAW_OPTIONS})
    audit = {name: value for name, value in options.items() if name not in LILAW_OPTIONS}
    return replace(base, **audit, lilaw=lilaw)
