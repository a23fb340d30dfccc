"""When each webhook delivery was last attempted (`webhook_deliveries.last_attempt_at`, indexed):
the per-owner rate limit of webhook calls counts the calls made in its window
(`core.webhook_limits`).

(Reserved as "version numbers allocated atomically": not needed, `dataset_versions` has had its
unique (dataset_id, version) since 0001, and appends now lock the dataset row instead.)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("webhook_deliveries", sa.Column("last_attempt_at", TIMESTAMP, nullable=True))
    op.create_index("ix_webhook_deliveries_last_attempt_at", "webhook_deliveries", ["last_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_last_attempt_at", table_name="webhook_deliveries")
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("last_attempt_at")
