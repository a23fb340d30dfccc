"""A job in embeddings mode, run by execute_job on real databases: the worker finds the backbone's
weights in its own data dir, computes the features once into the data dir's cache, trains the
head on them and stores every epoch as any job does; a second job reads the cached features."""

from __future__ import annotations

import timm
import torch
from sqlalchemy import func, select

from core.audit import AuditConfig
from core.embeddings import embeddings_dir
from core.services.audit_runs import execute_job
from core.store import AuditJob, JobStatus, SampleEpoch

BACKBONE = "test_resnet"


def test_an_embeddings_job_trains_the_head_on_features_cached_once(sessions, settings, make_job, n):
    settings.backbone_dir.mkdir(parents=True)
    torch.save(timm.create_model(BACKBONE, num_classes=0).state_dict(), settings.backbone_dir / f"{BACKBONE}.pth")
    config = AuditConfig(epochs=2, batch_size=64, embeddings_backbone=BACKBONE, embeddings_weights=f"{BACKBONE}.pth")

    first = make_job(config=config.to_dict())
    assert execute_job(sessions, first, settings) is JobStatus.SUCCEEDED
    cache = embeddings_dir(settings.data_dir)
    cached = sorted(cache.glob("*.npy"))
    assert len(cached) == 1
    written = cached[0].stat().st_mtime_ns

    second = make_job(config=config.to_dict())
    assert execute_job(sessions, second, settings) is JobStatus.SUCCEEDED
    assert sorted(cache.glob("*.npy")) == cached and cached[0].stat().st_mtime_ns == written

    for job_id in (first, second):
        with sessions() as session:
            rows = session.execute(
                select(SampleEpoch.epoch, func.count()).where(SampleEpoch.job_id == job_id).group_by(SampleEpoch.epoch)
            ).all()
            assert sorted(rows) == [(1, n), (2, n)]
            job = session.get(AuditJob, job_id)
            assert job.result["model"] == "linear" and job.error is None


def test_an_embeddings_job_whose_weights_are_gone_fails_naming_them(sessions, settings, make_job):
    config = AuditConfig(epochs=1, batch_size=64, embeddings_backbone=BACKBONE, embeddings_weights=f"{BACKBONE}.pth")
    job_id = make_job(config=config.to_dict())

    assert execute_job(sessions, job_id, settings) is JobStatus.FAILED
    with sessions() as session:
        error = session.get(AuditJob, job_id).error
    assert f"backbones/{BACKBONE}.pth" in error
