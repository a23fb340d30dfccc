"""Embeddings mode in the service: the frozen timm backbones whose weights the operator put in
the data dir, `<data dir>/backbones/<timm model name>.safetensors` (or `.pth`).

A request names a backbone (`embeddings`); the job's configuration keeps the weights as a file
name in that folder, never a path, so that a request cannot make a worker read any other file.
The API checks the file is there when the job is submitted; the worker resolves the name against
its own data dir (which the API and every worker share, as they share blobs and shards).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from core.audit_config import AuditConfig
from core.errors import ConfigError
from core.settings import Settings

WEIGHTS_SUFFIXES = (".safetensors", ".pth")


def available_backbones(settings: Settings) -> list[str]:
    """The backbone names that have a weights file, sorted."""
    folder = settings.backbone_dir
    if not folder.is_dir():
        return []
    return sorted({path.stem for path in folder.iterdir() if path.suffix in WEIGHTS_SUFFIXES and path.is_file()})


def with_backbone_weights(config: AuditConfig, settings: Settings) -> AuditConfig:
    """`config` with the weights file of its embeddings backbone (a ConfigError, 422, when this
    service has none); unchanged without embeddings mode."""
    name = config.embeddings_backbone
    if not name:
        return replace(config, embeddings_weights=None)
    for suffix in WEIGHTS_SUFFIXES:
        if (settings.backbone_dir / f"{name}{suffix}").is_file():
            return replace(config, embeddings_weights=f"{name}{suffix}")
    offered = ", ".join(available_backbones(settings)) or "none"
    raise ConfigError(
        f"this service has no weights for backbone {name!r}: the operator puts them at "
        f"<data dir>/backbones/{name}.safetensors (or .pth); backbones with weights: {offered}"
    )


def resolved_weights(config: AuditConfig, settings: Settings) -> AuditConfig:
    """`config` with its backbone's weights file located in this machine's data dir."""
    if not config.embeddings_backbone or not config.embeddings_weights:
        return config
    path = settings.backbone_dir / Path(config.embeddings_weights).name
    return replace(config, embeddings_weights=str(path))
