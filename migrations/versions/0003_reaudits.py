"""Growing datasets and scheduled re-audits: where a dataset version came from, re-audit links on
jobs, per-dataset schedules and webhooks, and the webhook deliveries with their retries.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")


def _postgres() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    op.add_column("dataset_versions", sa.Column("parent_version", sa.Integer(), nullable=True))
    op.add_column("dataset_versions", sa.Column("change", JSON, nullable=True))

    op.create_table(
        "audit_schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("cron", sa.String(120), nullable=True),
        sa.Column("interval_seconds", sa.Integer(), nullable=True),
        sa.Column("config", JSON, nullable=False),
        sa.Column("warm_start", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("next_run_at", TIMESTAMP, nullable=False),
        sa.Column("last_run_at", TIMESTAMP, nullable=True),
        sa.Column("last_outcome", sa.String(200), nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_schedules"),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name="fk_audit_schedules_dataset_id_datasets", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("dataset_id", name="uq_audit_schedules_dataset_id"),
        sa.CheckConstraint("(cron IS NULL) <> (interval_seconds IS NULL)", name="ck_audit_schedules_one_timing"),
    )
    op.create_index("ix_audit_schedules_next_run_at", "audit_schedules", ["next_run_at"])

    op.add_column("audit_jobs", sa.Column("warm_start", sa.Boolean(), server_default=sa.false(), nullable=False))
    for column, table in (("previous_job_id", "audit_jobs"), ("schedule_id", "audit_schedules")):
        name = f"fk_audit_jobs_{column}_{table}"
        if _postgres():
            op.add_column("audit_jobs", sa.Column(column, sa.Integer(), nullable=True))
            op.create_foreign_key(name, "audit_jobs", table, [column], ["id"], ondelete="SET NULL")
        else:
            # In place: a batch copy of audit_jobs would lose its trigger and cascade deletes.
            op.execute(
                f"ALTER TABLE audit_jobs ADD COLUMN {column} INTEGER "
                f"CONSTRAINT {name} REFERENCES {table} (id) ON DELETE SET NULL"
            )

    op.create_table(
        "dataset_webhooks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("secret", sa.String(256), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dataset_webhooks"),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name="fk_dataset_webhooks_dataset_id_datasets", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("dataset_id", name="uq_dataset_webhooks_dataset_id"),
    )

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TIMESTAMP, nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("delivered_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name="fk_webhook_deliveries_dataset_id_datasets", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["audit_jobs.id"], name="fk_webhook_deliveries_job_id_audit_jobs", ondelete="SET NULL"
        ),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="ck_webhook_deliveries_status"),
    )
    op.create_index("ix_webhook_deliveries_dataset_id", "webhook_deliveries", ["dataset_id"])
    op.create_index(
        "ix_webhook_deliveries_status_next_attempt_at", "webhook_deliveries", ["status", "next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("dataset_webhooks")
    for column, table in (("schedule_id", "audit_schedules"), ("previous_job_id", "audit_jobs")):
        if _postgres():
            op.drop_constraint(f"fk_audit_jobs_{column}_{table}", "audit_jobs", type_="foreignkey")
        op.drop_column("audit_jobs", column)
    op.drop_column("audit_jobs", "warm_start")
    op.drop_table("audit_schedules")
    op.drop_column("dataset_versions", "change")
    op.drop_column("dataset_versions", "parent_version")
