"""Client-generated decision ids (one key press is one decision, however often it is sent): a
nullable `decisions.client_id`, unique per dataset and reviewer. A unique index, not a
constraint, so that SQLite adds it in place (no copy of the table).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_decisions_dataset_id_reviewer_client_id"


def upgrade() -> None:
    op.add_column("decisions", sa.Column("client_id", sa.String(64), nullable=True))
    op.create_index(INDEX, "decisions", ["dataset_id", "reviewer", "client_id"], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="decisions")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("client_id")
