"""Team review: assignments of a job's samples to reviewers (blind or not), the job's
adjudicators, adjudications (final verdicts on conflicts) and comments on decisions.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def _created_at() -> sa.Column:
    return sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "review_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("sample_index", sa.Integer(), nullable=False),
        sa.Column("sample_id", sa.String(255), nullable=False),
        sa.Column("reviewer", sa.String(100), nullable=False),
        sa.Column("blind", sa.Boolean(), nullable=False),
        sa.Column("assigned_by", sa.String(100), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_review_assignments"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["audit_jobs.id"], name="fk_review_assignments_job_id_audit_jobs", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name="fk_review_assignments_dataset_id_datasets", ondelete="CASCADE"
        ),
        sa.UniqueConstraint(
            "job_id", "sample_index", "reviewer", name="uq_review_assignments_job_id_sample_index_reviewer"
        ),
    )
    op.create_index(
        "ix_review_assignments_dataset_id_sample_id", "review_assignments", ["dataset_id", "sample_id"]
    )

    op.create_table(
        "review_adjudicators",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(100), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("job_id", "reviewer", name="pk_review_adjudicators"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["audit_jobs.id"], name="fk_review_adjudicators_job_id_audit_jobs", ondelete="CASCADE"
        ),
    )

    op.create_table(
        "adjudications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("sample_id", sa.String(255), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("adjudicator", sa.String(100), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("given_label", sa.String(255), nullable=False),
        sa.Column("label", sa.String(255), nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_adjudications"),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name="fk_adjudications_dataset_id_datasets", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["audit_jobs.id"], name="fk_adjudications_job_id_audit_jobs", ondelete="SET NULL"
        ),
        sa.CheckConstraint("verdict IN ('keep', 'relabel', 'remove')", name="ck_adjudications_verdict"),
        sa.CheckConstraint("(verdict = 'relabel') = (label IS NOT NULL)", name="ck_adjudications_relabel_has_label"),
    )
    op.create_index("ix_adjudications_dataset_id_sample_id", "adjudications", ["dataset_id", "sample_id"])
    op.create_index("ix_adjudications_job_id", "adjudications", ["job_id"])

    op.create_table(
        "decision_comments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("decision_id", sa.Integer(), nullable=False),
        sa.Column("author", sa.String(100), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_decision_comments"),
        sa.ForeignKeyConstraint(
            ["decision_id"], ["decisions.id"], name="fk_decision_comments_decision_id_decisions", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_decision_comments_decision_id", "decision_comments", ["decision_id"])


def downgrade() -> None:
    for table in ("decision_comments", "adjudications", "review_adjudicators", "review_assignments"):
        op.drop_table(table)
