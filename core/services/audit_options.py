"""The audit configuration a request's training options ask for.

A request names some options (`AuditConfig`'s fields, with LiLAW's `meta_batch_size` and `clamp`
among them); the others keep the values of the configuration it is based on: the defaults for a
new audit, the previous job's configuration for a re-audit, so a re-audit that changes only the
epochs keeps the rest.

Feature-Based Reweighting (`weighting="fbr"`) trains on a trusted set, which only a re-audit
that uses reviewers' verdicts has (`core.services.reaudits`): elsewhere it is refused up front.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from core.audit_config import AuditConfig
from core.errors import ConfigError

LILAW_OPTIONS = frozenset({"meta_batch_size", "clamp"})

FBR_NEEDS_TRUSTED = (
    "weighting 'fbr' needs a trusted set: re-audit the dataset with use_verdicts_as_trusted: true "
    "(reviewers' agreed verdicts are the trusted set), or run `lilaw-audit audit --weighting fbr --trusted FILE`"
)


def audit_config(options: Mapping[str, Any], based_on: AuditConfig | None = None, *, trusted: bool = False) -> AuditConfig:
    """The configuration the options ask for; `trusted`: the audit will have a trusted set (a
    ConfigError, 422, for FBR without one)."""
    base = based_on or AuditConfig()
    lilaw = replace(base.lilaw, **{name: value for name, value in options.items() if name in LILAW_OPTIONS})
    audit = {name: value for name, value in options.items() if name not in LILAW_OPTIONS}
    config = replace(base, **audit, lilaw=lilaw)
    require_trusted_set_for(config, trusted)
    return config


def require_trusted_set_for(config: AuditConfig, trusted: bool) -> None:
    if config.weighting == "fbr" and not trusted:
        raise ConfigError(FBR_NEEDS_TRUSTED)
