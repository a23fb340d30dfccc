"""Team review: which reviewer reviews which sample of a job (blind or not), who may adjudicate a
job's conflicts, the adjudicators' final verdicts and the comments on decisions.

An assignment names the sample both by the job's index and by the dataset's stable sample id, so
that the blind rule ("no reviewer sees another's verdict before deciding") and adjudications stay
attached to the sample across dataset versions, like decisions do (`core.store.models.reviews`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models.base import Base, created_at_column, status_enum
from core.verdicts import Verdict, outcome, verdict_flag


class Assignment(Base):
    """A sample of a job given to a reviewer by the job's lead; `blind`: the reviewer sees no
    other reviewer's verdict on it before deciding."""

    __tablename__ = "review_assignments"
    __table_args__ = (
        UniqueConstraint("job_id", "sample_index", "reviewer"),
        Index("ix_review_assignments_dataset_id_sample_id", "dataset_id", "sample_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("audit_jobs.id", ondelete="CASCADE"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    sample_index: Mapped[int] = mapped_column(Integer)
    sample_id: Mapped[str] = mapped_column(String(255))
    reviewer: Mapped[str] = mapped_column(String(100))
    blind: Mapped[bool]
    assigned_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = created_at_column()


class Adjudicator(Base):
    """A reviewer the job's lead lets resolve the job's conflicts (the lead always may)."""

    __tablename__ = "review_adjudicators"

    job_id: Mapped[int] = mapped_column(ForeignKey("audit_jobs.id", ondelete="CASCADE"), primary_key=True)
    reviewer: Mapped[str] = mapped_column(String(100), primary_key=True)
    created_at: Mapped[datetime] = created_at_column()


class Adjudication(Base):
    """The final verdict on a sample the reviewers disagree on; the newest one on a sample is its
    agreed decision, whatever the reviewers said. It reads like a decision (`core.verdicts`)."""

    __tablename__ = "adjudications"
    __table_args__ = (
        CheckConstraint("verdict IN ('keep', 'relabel', 'remove')", name="verdict"),
        CheckConstraint("(verdict = 'relabel') = (label IS NOT NULL)", name="relabel_has_label"),
        Index("ix_adjudications_dataset_id_sample_id", "dataset_id", "sample_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    sample_id: Mapped[str] = mapped_column(String(255))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("audit_jobs.id", ondelete="SET NULL"), index=True)
    adjudicator: Mapped[str] = mapped_column(String(100))
    verdict: Mapped[Verdict] = mapped_column(status_enum(Verdict))
    given_label: Mapped[str] = mapped_column(String(255))
    label: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = created_at_column()

    def flag_for(self, label: str) -> bool | None:
        return verdict_flag(self.verdict, self.given_label, self.label, label)

    @property
    def outcome(self) -> str:
        return outcome(self.verdict, self.given_label, self.label)


class DecisionComment(Base):
    """A note on a decision, by its reviewer, the lead or an adjudicator."""

    __tablename__ = "decision_comments"

    id: Mapped[int] = mapped_column(primary_key=True)
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id", ondelete="CASCADE"), index=True)
    author: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
