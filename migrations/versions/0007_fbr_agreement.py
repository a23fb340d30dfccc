"""FBR's per-sample agreement d_i recorded per epoch (`sample_epochs.fbr_agreement`) and offered as
a score (`sample_scores.fbr_agreement`); a job's trusted set, reviewers' agreed verdicts snapshot
when a re-audit starts (`audit_jobs.trusted`). All nullable: NULL for runs without FBR, jobs
without a trusted set.

On Postgres `sample_epochs` is LIST-partitioned by job: a column added to the parent is added to
every partition, and partitions created later inherit it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
REAL_COLUMNS = (("sample_epochs", "fbr_agreement"), ("sample_scores", "fbr_agreement"))


def upgrade() -> None:
    for table, column in REAL_COLUMNS:
        op.add_column(table, sa.Column(column, sa.REAL(), nullable=True))
    op.add_column("audit_jobs", sa.Column("trusted", JSON, nullable=True))


def downgrade() -> None:
    # In place on SQLite too (ALTER TABLE ... DROP COLUMN, SQLite >= 3.35): a batch copy of
    # audit_jobs would lose its trigger and cascades.
    op.drop_column("audit_jobs", "trusted")
    for table, column in reversed(REAL_COLUMNS):
        op.drop_column(table, column)
