"""Server-side UI sessions; API keys that expire, can be revoked, and carry a role.

`api_keys` gains `role` ('owner' or 'reviewer'; existing keys that name a reviewer become reviewer
keys) and `expires_at`; `ui_sessions` holds the review pages' sessions, by the sha256 of their
token. On SQLite the CHECK on `role` comes with a copy of `api_keys` (batch mode), which no table
references yet at this revision.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("role", sa.String(16), server_default="owner", nullable=False))
        batch.add_column(sa.Column("expires_at", TIMESTAMP, nullable=True))
        batch.create_check_constraint("ck_api_keys_role", "role IN ('owner', 'reviewer')")
    op.execute("UPDATE api_keys SET role = 'reviewer' WHERE reviewer IS NOT NULL")

    op.create_table(
        "ui_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ui_sessions"),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name="fk_ui_sessions_api_key_id_api_keys", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("token_hash", name="uq_ui_sessions_token_hash"),
    )
    op.create_index("ix_ui_sessions_api_key_id", "ui_sessions", ["api_key_id"])
    op.create_index("ix_ui_sessions_expires_at", "ui_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_table("ui_sessions")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint("ck_api_keys_role", type_="check")
        batch.drop_column("expires_at")
        batch.drop_column("role")
