"""Review decisions: reviewers' verdicts on samples, a reviewer name on API keys, and the time
detection metrics were computed (to tell whether decisions made since have changed them).

On SQLite, `job_metrics.created_at` is added by copying the table (batch mode): SQLite cannot
add a column whose default is the current time in place.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("reviewer", sa.String(100), nullable=True))
    with op.batch_alter_table("job_metrics") as batch:
        batch.add_column(sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False))

    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("sample_id", sa.String(255), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("reviewer", sa.String(100), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("given_label", sa.String(255), nullable=False),
        sa.Column("label", sa.String(255), nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("undone_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_decisions"),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name="fk_decisions_dataset_id_datasets", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["audit_jobs.id"], name="fk_decisions_job_id_audit_jobs", ondelete="SET NULL"
        ),
        sa.CheckConstraint("verdict IN ('keep', 'relabel', 'remove')", name="ck_decisions_verdict"),
        sa.CheckConstraint("(verdict = 'relabel') = (label IS NOT NULL)", name="ck_decisions_relabel_has_label"),
    )
    op.create_index("ix_decisions_dataset_id_sample_id", "decisions", ["dataset_id", "sample_id"])
    op.create_index("ix_decisions_job_id", "decisions", ["job_id"])


def downgrade() -> None:
    op.drop_table("decisions")
    with op.batch_alter_table("job_metrics") as batch:
        batch.drop_column("created_at")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("reviewer")
