"""A request's training options as an audit configuration: a new audit takes the defaults for the
options it leaves out, a re-audit those of the configuration it is based on."""

from __future__ import annotations

from dataclasses import replace

from core.audit_config import AuditConfig, LilawConfig
from core.services.audit_options import audit_config


def test_a_new_audit_takes_the_defaults_for_the_options_it_leaves_out():
    assert audit_config({}) == AuditConfig()
    config = audit_config({"epochs": 3, "model": "mlp", "clamp": True})
    assert config == AuditConfig(epochs=3, model="mlp", lilaw=LilawConfig(clamp=True))


def test_a_reaudit_changes_only_the_options_it_names():
    previous = AuditConfig(batch_size=32, inject_noise="uniform:0.2", lilaw=LilawConfig(clamp=True, alpha=5.0))
    assert audit_config({"epochs": 1}, based_on=previous) == replace(previous, epochs=1)
    lilaw = audit_config({"meta_batch_size": 8}, based_on=previous).lilaw
    assert lilaw == LilawConfig(clamp=True, alpha=5.0, meta_batch_size=8)
    assert audit_config({"model": None}, based_on=replace(previous, model="mlp")).model is None
    assert previous == AuditConfig(batch_size=32, inject_noise="uniform:0.2", lilaw=LilawConfig(clamp=True, alpha=5.0))
