"""The charts of a job's detection: the default score's histogram by known flag, and every
score's ROC and precision-recall curves against the known flags."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from core.metrics import detection_curves, score_histogram
from core.score_registry import SCORE_BY_NAME
from core.services.artifacts import JobArtifacts
from core.services.results.metrics import known_flags, require_scores, stored_scores
from core.services.results.suspects import default_score
from core.store.models import AuditJob


@dataclass(frozen=True)
class DetectionCharts:
    score: str  # the job's default score
    suspicious_when: str  # "low" or "high": which values of its raw quantity are suspicious
    flags_source: str
    num_known: int
    num_mislabeled: int
    histogram: dict  # core.metrics.score_histogram of the raw quantity
    curves: dict[str, dict]  # core.metrics.detection_curves by score; none without both classes


def detection_charts(
    session: Session, job: AuditJob, artifacts: JobArtifacts, *, bins: int, max_points: int
) -> DetectionCharts:
    """The histogram of the job's default score (as its raw quantity, e.g. mean W_alpha) apart
    for known mislabeled, known clean and unknown samples, and every score's ROC and
    precision-recall curves against the known flags."""
    require_scores(session, job)
    scores = stored_scores(session, job.id)
    known, flags = known_flags(session, job, artifacts)
    name = default_score(job)
    score = SCORE_BY_NAME[name]
    curves = {}
    for score_name, values in scores.items():
        found = detection_curves(values[known], flags[known], max_points) if known.any() else None
        if found is not None:
            curves[score_name] = found
    noise = job.config.get("inject_noise")
    return DetectionCharts(
        score=name,
        suspicious_when=score.suspicious_when,
        flags_source=f"injected noise ({noise})" if noise else "uploaded flags and reviewers' decisions",
        num_known=int(known.sum()),
        num_mislabeled=int(flags[known].sum()),
        histogram=score_histogram(score.apply_sign(scores[name]), flags, known, bins),
        curves=curves,
    )
