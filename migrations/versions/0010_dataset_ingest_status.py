"""Ingestion as a job: a dataset's ingest status, percent and error (`datasets.status`,
`ingest_percent`, `ingest_error`) and a version's status (`dataset_versions.status`); what
existed before was ingested inside its request, so it is 'ready'. A version's decoded samples
on disk (`dataset_versions.samples_uri`, a .npy shard; NULL: read from the blob, as before).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("datasets", sa.Column("status", sa.String(16), server_default="ready", nullable=False))
    op.add_column("datasets", sa.Column("ingest_percent", sa.Integer(), server_default="100", nullable=False))
    op.add_column("datasets", sa.Column("ingest_error", sa.Text(), nullable=True))
    op.add_column("dataset_versions", sa.Column("status", sa.String(16), server_default="ready", nullable=False))
    op.add_column("dataset_versions", sa.Column("samples_uri", sa.String(2048), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dataset_versions") as batch:
        batch.drop_column("samples_uri")
        batch.drop_column("status")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("ingest_error")
        batch.drop_column("ingest_percent")
        batch.drop_column("status")
