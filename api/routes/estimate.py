"""A job's stopping point: the estimated label errors of its dataset, overall, per class and per
"given → likely" pair, updated with the reviewers' verdicts (`core.services.results.noise_summary`)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query

from api.deps import CurrentOwner, SessionDep, SettingsDep
from api.routes.jobs import job_lookup_errors
from api.schemas import ErrorPublic
from api.schemas.common import DbId
from api.schemas.estimate import ClassNoisePublic, ConfusionPairPublic, NoiseEstimatePublic
from core.services import jobs
from core.services.artifacts import job_artifacts
from core.services.results.noise_summary import NoiseSummary, noise_summary

router = APIRouter(tags=["results"], responses=job_lookup_errors())


@router.get(
    "/jobs/{job_id}/noise-estimate",
    responses={409: {"model": ErrorPublic, "description": "the job has no stored class probabilities"}},
)
def noise_estimate(
    job_id: DbId,
    owner: CurrentOwner,
    session: SessionDep,
    settings: SettingsDep,
    pairs: Annotated[int, Query(ge=0, le=100, description="how many confusion pairs to list")] = 10,
) -> NoiseEstimatePublic:
    """How many label errors the dataset likely holds (cleanlab's confident joint of the audit's
    class probabilities, calibrated to the class counts), overall and per given label, the
    "given → likely" pairs holding the most, and how many samples reviewers decided and found
    mislabeled. Reviewed samples count what the reviewers found instead of the model's guess."""
    job = jobs.get_job(session, owner.id, job_id)
    return _public(job.id, job.dataset_version.class_names, noise_summary(session, job, job_artifacts(settings, job), pairs=pairs))


def _public(job_id: int, names: list[str], summary: NoiseSummary) -> NoiseEstimatePublic:
    return NoiseEstimatePublic(
        job_id=job_id,
        source=summary.source,
        num_samples=summary.num_samples,
        estimated_errors=summary.estimated_errors,
        model_errors=summary.model_errors,
        estimated_rate=summary.estimated_errors / summary.num_samples if summary.num_samples else 0.0,
        reviewed=summary.reviewed,
        found=summary.found,
        classes=[
            ClassNoisePublic(
                label=names[c.label], samples=c.samples, estimated_errors=c.estimated_errors,
                model_errors=c.model_errors, reviewed=c.reviewed, found=c.found,
            )
            for c in summary.classes
        ],
        pairs=[
            ConfusionPairPublic(
                given=names[p.given], likely=names[p.likely], estimated_errors=p.estimated_errors, found=p.found,
                review_queue=f"/jobs/{job_id}/review-queue?" + urlencode({"given": names[p.given], "likely": names[p.likely]}),
            )
            for p in summary.pairs
        ],
    )
