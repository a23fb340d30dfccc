"""Reviewers' decisions on suspected mislabels."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models.base import Base, created_at_column, status_enum
from core.verdicts import Verdict, outcome, verdict_flag


class Decision(Base):
    """A reviewer's verdict on one sample of a dataset, made while reviewing a job's suspects.

    It belongs to the sample's stable id, so it stays attached across dataset versions, and keeps
    the job it was made in (NULL once that job is deleted). `given_label` is the class name it
    judged and `label` the corrected one (relabel only): see `core.verdicts`. Undoing a decision
    stamps `undone_at`; a reviewer's newest decision on a sample that is not undone is the one
    that counts, so undoing a change of mind brings the earlier decision back.

    `client_id` is the id the reviewer's client gave the decision (one key press): sent again, it
    names the same decision, so a retried request never records a second one."""

    __tablename__ = "decisions"
    __table_args__ = (
        CheckConstraint("verdict IN ('keep', 'relabel', 'remove')", name="verdict"),
        CheckConstraint("(verdict = 'relabel') = (label IS NOT NULL)", name="relabel_has_label"),
        Index("ix_decisions_dataset_id_sample_id", "dataset_id", "sample_id"),
        Index("uq_decisions_dataset_id_reviewer_client_id", "dataset_id", "reviewer", "client_id", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    sample_id: Mapped[str] = mapped_column(String(255))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("audit_jobs.id", ondelete="SET NULL"), index=True)
    reviewer: Mapped[str] = mapped_column(String(100))
    verdict: Mapped[Verdict] = mapped_column(status_enum(Verdict))
    given_label: Mapped[str] = mapped_column(String(255))
    label: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = created_at_column()
    undone_at: Mapped[datetime | None]
    client_id: Mapped[str | None] = mapped_column(String(64))

    def flag_for(self, label: str) -> bool | None:
        """Whether `label` is mislabeled according to this decision (None: not judged)."""
        return verdict_flag(self.verdict, self.given_label, self.label, label)

    @property
    def outcome(self) -> str:
        return outcome(self.verdict, self.given_label, self.label)
