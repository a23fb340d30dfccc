"""Re-audits of a growing dataset: starting one (or skipping it when nothing changed), the report
that compares it with the audit before it, and which decided samples go back to review.

A re-audit is a job on the dataset's latest version that points at the dataset's newest earlier
succeeded job (`previous_job_id`); it is compared with that job and, with `warm_start`, starts
from that job's trained model (see `core.services.warm_start`).

Two documented rules:
- A sample is *suspected* by a job when its AUM is negative (`aum` score > 0): averaged over the
  audit's epochs, another class out-scored the given label. The rule adapts to the noise level
  and needs no cut-off per dataset.
- A sample that reviewers decided on in an earlier job goes back to the review queue only if the
  new job ranks it markedly more suspicious: its rank percentile under the default score rose by
  at least `REOPEN_PERCENTILE_RISE` (20 points, e.g. from the top 40% to the top 20%) since the
  job the newest applicable decision was made in. Otherwise a decision made once holds.

With `use_verdicts_as_trusted`, a re-audit trains with the reviewers' agreed verdicts as its
trusted set (`core.audit.run_audit(trusted=...)`): every sample of the latest version whose
reviewers agree on its label (kept: its label; relabelled: the corrected one; removed or
conflicting samples are left out) is held out as LiLAW's meta-validation split with that label,
and is FBR's clean subset (`weighting="fbr"`). The set is snapshot on the job when it is started
(`AuditJob.trusted`), so a retried execution trains on the same one; a decision made or undone
since the latest version's last audit counts as a change for the "nothing changed" rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import and_, select
from sqlalchemy.orm import Session, joinedload

from core.audit import AuditConfig
from core.services import ConflictError, InvalidParameterError, decisions
from core.services.audit_options import require_trusted_set_for
from core.services.artifacts import JobArtifacts
from core.services.decisions import SampleDecisions
from core.services.datasets import get_dataset, get_version
from core.services.jobs import create_job
from core.store.models import AuditJob, DatasetVersion, JobStatus, Sample, SampleScore
from core.verdicts import REMOVED

REOPEN_PERCENTILE_RISE = 0.2
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


@dataclass(frozen=True)
class ReauditStart:
    job: AuditJob | None  # None when skipped
    skipped: str | None = None  # why


@dataclass(frozen=True)
class ReportedSample:
    sample_id: str
    sample_index: int  # in the re-audit's version
    rank: int | None  # in the re-audit; None for a sample no longer in the dataset
    previous_rank: int | None  # in the earlier audit; None for a new sample
    is_mislabeled: bool | None  # known flag in the re-audit's version


LISTS = ("newly_suspected", "no_longer_suspected", "still_suspected", "new_samples", "new_suspected", "reopened")


@dataclass
class ReauditReport:
    """How a job's suspects differ from those of the job it re-audits. `samples` holds, per list
    of `LISTS`, the most suspicious samples of it (at most the report's limit); `counts` counts
    every list in full, plus `removed` (samples of the earlier audit no longer in the dataset)
    and `decided_kept_out` (suspected samples reviewers decided, kept out of the review queue).

    newly_suspected: suspected now, not by the earlier audit (or new); no_longer_suspected: the
    reverse; still_suspected: by both; new_samples / new_suspected: samples added since the
    earlier audit / those of them suspected; reopened: decided, but back in the review queue."""

    job_id: int
    previous_job_id: int | None
    version: int
    previous_version: int | None
    num_samples: int
    num_suspected: int
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys((*LISTS, "removed", "decided_kept_out"), 0))
    samples: dict[str, list[ReportedSample]] = field(default_factory=lambda: {name: [] for name in LISTS})

    def add(self, name: str, sample: ReportedSample, limit: int) -> None:
        self.counts[name] += 1
        if len(self.samples[name]) < limit:
            self.samples[name].append(sample)


def start_reaudit(
    session: Session,
    owner_id: int,
    dataset_id: int,
    config: AuditConfig,
    *,
    warm_start: bool = False,
    force: bool = False,
    schedule_id: int | None = None,
    use_verdicts_as_trusted: bool = False,
) -> ReauditStart:
    """A queued re-audit of the dataset's latest version, compared with (and, with `warm_start`,
    started from) the dataset's newest succeeded job. Skipped, unless `force`, when the latest
    version is audited already or being audited (and, with `use_verdicts_as_trusted`, no decision
    changed since). `use_verdicts_as_trusted`: train with the reviewers' agreed verdicts as the
    trusted set (see the module docs); an InvalidParameterError (422) when there are none or the
    weighting cannot use them."""
    latest = get_version(session, owner_id, dataset_id)
    require_trusted_set_for(config, use_verdicts_as_trusted)
    trusted = verdicts_as_trusted(session, latest, config) if use_verdicts_as_trusted else None
    if not force:
        done = session.scalar(
            select(AuditJob)
            .where(
                AuditJob.dataset_version_id == latest.id,
                AuditJob.status.in_((*ACTIVE, JobStatus.SUCCEEDED)),
            )
            .order_by(AuditJob.id.desc())
            .limit(1)
        )
        if done is not None and not (trusted and _decided_since(session, dataset_id, done)):
            state = "being audited" if done.status in ACTIVE else "audited already"
            return ReauditStart(None, f"nothing changed: version {latest.version} is {state} (job {done.id})")
    previous = newest_succeeded_job(session, dataset_id)
    job = create_job(session, owner_id, dataset_id, latest.version, config)
    job.previous_job_id = None if previous is None else previous.id
    job.warm_start = warm_start and previous is not None
    job.schedule_id = schedule_id
    job.trusted = None if trusted is None else {str(index): label for index, label in trusted.items()}
    session.flush()
    return ReauditStart(job)


def verdicts_as_trusted(session: Session, version: DatasetVersion, config: AuditConfig) -> dict[int, int]:
    """The version's samples whose reviewers agree on a label that the sample keeps (its own when
    kept, the corrected one when relabelled), {sample index: class index}; checked against what
    `config`'s training can use (InvalidParameterError otherwise)."""
    classes = {name: index for index, name in enumerate(version.class_names)}
    trusted = {
        review.sample_index: classes[review.outcome]
        for review in decisions.version_decisions(session, version).values()
        if review.outcome is not None and review.outcome != REMOVED and review.outcome in classes
    }
    if config.weighting == "none":
        raise InvalidParameterError("plain training (weighting 'none') has no use for a trusted set: use 'lilaw' or 'fbr'")
    if not trusted:
        raise InvalidParameterError(
            f"no sample of version {version.version} has an agreed verdict to trust (kept, or relabelled): "
            "review some suspects first"
        )
    if len(trusted) >= version.num_samples:
        raise InvalidParameterError("every sample has an agreed verdict: none is left to audit")
    if config.weighting == "fbr" and len(set(trusted.values())) < 2:
        raise InvalidParameterError(
            "FBR needs trusted samples of at least 2 classes; the agreed verdicts cover "
            f"{len(set(trusted.values()))} ({', '.join(version.class_names[c] for c in sorted(set(trusted.values())))})"
        )
    return trusted


def job_trusted_set(job: AuditJob) -> dict[int, int] | None:
    """The trusted set a job trains with ({sample index: class index}), None for none."""
    return None if job.trusted is None else {int(index): int(label) for index, label in job.trusted.items()}


def _decided_since(session: Session, dataset_id: int, job: AuditJob) -> bool:
    """Whether a decision on the dataset was made or undone after the job was created."""
    changed = decisions.last_change(session, dataset_id)
    return changed is not None and changed > job.created_at


def base_config(session: Session, owner_id: int, dataset_id: int) -> AuditConfig:
    """What a re-audit of the owner's dataset trains with unless told otherwise: the configuration
    of the dataset's newest succeeded job (the defaults when there is none)."""
    get_dataset(session, owner_id, dataset_id)
    previous = newest_succeeded_job(session, dataset_id)
    return AuditConfig() if previous is None else AuditConfig.from_dict(previous.config)


def newest_succeeded_job(session: Session, dataset_id: int) -> AuditJob | None:
    return session.scalar(
        select(AuditJob)
        .join(DatasetVersion)
        .where(DatasetVersion.dataset_id == dataset_id, AuditJob.status == JobStatus.SUCCEEDED)
        .order_by(AuditJob.id.desc())
        .limit(1)
    )


def reaudit_report(session: Session, job: AuditJob, artifacts: JobArtifacts, *, limit: int = 100) -> ReauditReport:
    """How the job's suspects differ from those of the job it re-audits (every sample suspected
    counts as newly suspected for a first audit). Lists hold at most `limit` samples each, most
    suspicious first; the counts are complete."""
    if job.status is not JobStatus.SUCCEEDED:
        raise ConflictError(f"job {job.id} is {job.status.value}; its report comes when it has succeeded")
    now = _job_scores(session, job)
    previous_job = None
    if job.previous_job_id is not None:
        previous_job = session.get(AuditJob, job.previous_job_id, options=[joinedload(AuditJob.dataset_version)])
    before = _job_scores(session, previous_job) if previous_job is not None else {}
    flags = dict(
        session.execute(
            select(Sample.sample_id, Sample.is_mislabeled).where(Sample.dataset_version_id == job.dataset_version_id)
        ).all()
    )
    reviews = decisions.job_decisions(session, job, artifacts)
    reopened = reopened_samples(session, job, reviews)
    decided = {review.sample_index for review in decisions.decided(reviews)}

    report = ReauditReport(
        job_id=job.id,
        previous_job_id=None if previous_job is None else previous_job.id,
        version=job.dataset_version.version,
        previous_version=None if previous_job is None else previous_job.dataset_version.version,
        num_samples=len(now),
        num_suspected=sum(score.suspected for score in now.values()),
    )
    for sample_id, score in sorted(now.items(), key=lambda item: item[1].rank):
        earlier = before.get(sample_id)
        reported = ReportedSample(
            sample_id, score.sample_index, score.rank, None if earlier is None else earlier.rank, flags.get(sample_id)
        )
        if earlier is None:
            report.add("new_samples", reported, limit)
            if score.suspected:
                report.add("new_suspected", reported, limit)
        if score.suspected and (earlier is None or not earlier.suspected):
            report.add("newly_suspected", reported, limit)
        elif score.suspected:
            report.add("still_suspected", reported, limit)
        elif earlier is not None and earlier.suspected:
            report.add("no_longer_suspected", reported, limit)
        if score.sample_index in reopened:
            report.add("reopened", reported, limit)
        elif score.suspected and score.sample_index in decided:
            report.counts["decided_kept_out"] += 1
    report.counts["removed"] = sum(1 for sample_id in before if sample_id not in now)
    return report


def reopened_samples(session: Session, job: AuditJob, reviews: dict[int, SampleDecisions]) -> set[int]:
    """Sample indexes of the job that reviewers decided in an earlier job and that the job ranks
    at least `REOPEN_PERCENTILE_RISE` more suspicious than that job did (see the module docs).
    `reviews` are the job's decisions (`decisions.job_decisions`)."""
    decided_in: dict[str, int] = {}  # sample id -> the job of its newest applicable decision
    index_of: dict[str, int] = {}
    for review in decisions.decided(reviews):
        newest = max(review.applicable, key=lambda decision: decision.id)
        if newest.job_id is not None and newest.job_id != job.id:
            decided_in[review.sample_id] = newest.job_id
            index_of[review.sample_id] = review.sample_index
    if not decided_in:
        return set()
    now = _percentiles(session, job, list(decided_in))
    reopened = set()
    for earlier_job_id in set(decided_in.values()):
        earlier_job = session.get(AuditJob, earlier_job_id)
        if earlier_job is None or earlier_job.status is not JobStatus.SUCCEEDED:
            continue
        decided_there = [sample_id for sample_id, in_job in decided_in.items() if in_job == earlier_job_id]
        then = _percentiles(session, earlier_job, decided_there)
        reopened |= {
            index_of[sample_id]
            for sample_id, percentile in then.items()
            if now.get(sample_id, 0.0) - percentile >= REOPEN_PERCENTILE_RISE
        }
    return reopened


@dataclass(frozen=True)
class _Score:
    sample_index: int
    rank: int
    suspected: bool


def _job_scores(session: Session, job: AuditJob) -> dict[str, _Score]:
    """The job's rank and suspicion of every sample, by sample id."""
    rows = session.execute(
        select(Sample.sample_id, SampleScore.sample_index, SampleScore.rank, SampleScore.aum)
        .join(
            Sample,
            and_(Sample.dataset_version_id == job.dataset_version_id, Sample.sample_index == SampleScore.sample_index),
        )
        .where(SampleScore.job_id == job.id)
    )
    return {
        sample_id: _Score(sample_index, rank, aum is not None and aum > 0) for sample_id, sample_index, rank, aum in rows
    }


def _percentiles(session: Session, job: AuditJob, sample_ids: list[str]) -> dict[str, float]:
    """1 − (rank − 1) / N in the job of the samples named by id: 1.0 = the most suspicious."""
    count = session.get(DatasetVersion, job.dataset_version_id).num_samples
    rows = session.execute(
        select(Sample.sample_id, SampleScore.rank)
        .join(
            SampleScore,
            and_(SampleScore.job_id == job.id, SampleScore.sample_index == Sample.sample_index),
        )
        .where(Sample.dataset_version_id == job.dataset_version_id, Sample.sample_id.in_(sample_ids))
    )
    return {sample_id: 1 - (rank - 1) / count for sample_id, rank in rows}
