"""A version's samples as segments of shards (`dataset_versions.sample_segments`, JSON
`[{"shard": uri, "start": a, "stop": b}, ...]`, `core.sample_store.Segment`): an append refers to
its parent's segments plus a shard of only the added rows, a relabel with removals to its
parent's segments split around them. NULL: the whole of `samples_uri`, or the blob, as before.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    segments = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    op.add_column("dataset_versions", sa.Column("sample_segments", segments, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dataset_versions") as batch:
        batch.drop_column("sample_segments")
