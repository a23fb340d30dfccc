"""Initial schema: owners, API keys, datasets, samples, audit jobs and their results.

On Postgres `sample_epochs` is a LIST-partitioned table keyed by job_id; each job's partition is
created by `core.store.partitions.create_job_partition` and dropped with the job.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)

SCORE_COLUMNS = (
    "w_alpha",
    "w_beta",
    "w_delta",
    "w",
    "aum",
    "datamaps_confidence",
    "datamaps_variability",
    "dataiq_aleatoric",
    "el2n",
    "loss",
    "forgetting",
    "cl_self_confidence",
    "cl_normalized_margin",
)
DYNAMICS_COLUMNS = ("w_alpha", "w_beta", "w_delta", "w", "loss", "p_label", "p_max")


# sample_epochs has no foreign key to audit_jobs (a per-row check triples the cost of COPY);
# deleting a job removes its dynamics through this trigger instead: on Postgres it drops the
# job's partition, on SQLite it deletes the job's rows.
DROP_JOB_DYNAMICS_FUNCTION = """
CREATE FUNCTION drop_job_dynamics() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    partition_name text := 'sample_epochs_j' || OLD.id;
BEGIN
    IF to_regclass(partition_name) IS NOT NULL THEN
        EXECUTE format('DROP TABLE %I', partition_name);
    END IF;
    RETURN OLD;
END
$$
"""


def _postgres() -> bool:
    return op.get_context().dialect.name == "postgresql"


def created_at() -> sa.Column:
    return sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False)


def owner_fk(name: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["owner_id"], ["owners.id"], name=name, ondelete="CASCADE")


def job_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["job_id"], ["audit_jobs.id"], name=f"fk_{table}_job_id_audit_jobs", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "owners",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_owners"),
        sa.UniqueConstraint("name", name="uq_owners_name"),
    )

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        created_at(),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        owner_fk("fk_api_keys_owner_id_owners"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_index("ix_api_keys_owner_id", "api_keys", ["owner_id"])

    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        owner_fk("fk_datasets_owner_id_owners"),
        sa.UniqueConstraint("owner_id", "name", name="uq_datasets_owner_id_name"),
    )

    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("blob_sha256", sa.String(64), nullable=False),
        sa.Column("blob_uri", sa.String(2048), nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("num_samples", sa.Integer(), nullable=False),
        sa.Column("num_classes", sa.Integer(), nullable=False),
        sa.Column("class_names", JSON, nullable=False),
        created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_dataset_versions"),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name="fk_dataset_versions_dataset_id_datasets", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("dataset_id", "version", name="uq_dataset_versions_dataset_id_version"),
    )

    op.create_table(
        "samples",
        sa.Column("dataset_version_id", sa.Integer(), nullable=False),
        sa.Column("sample_index", sa.Integer(), nullable=False),
        sa.Column("sample_id", sa.String(255), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("is_mislabeled", sa.Boolean(), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("dataset_version_id", "sample_index", name="pk_samples"),
        sa.ForeignKeyConstraint(
            ["dataset_version_id"],
            ["dataset_versions.id"],
            name="fk_samples_dataset_version_id_dataset_versions",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("dataset_version_id", "sample_id", name="uq_samples_dataset_version_id_sample_id"),
    )

    op.create_table(
        "audit_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("dataset_version_id", sa.Integer(), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("total_epochs", sa.Integer(), nullable=True),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("total_steps", sa.Integer(), nullable=True),
        sa.Column("eta_seconds", sa.Double(), nullable=True),
        sa.Column("heartbeat_at", TIMESTAMP, nullable=True),
        created_at(),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("celery_task_id", sa.String(155), nullable=True),
        sa.Column("result_paths", JSON, nullable=True),
        sa.Column("result", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_jobs"),
        owner_fk("fk_audit_jobs_owner_id_owners"),
        sa.ForeignKeyConstraint(
            ["dataset_version_id"],
            ["dataset_versions.id"],
            name="fk_audit_jobs_dataset_version_id_dataset_versions",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="ck_audit_jobs_status"
        ),
    )
    op.create_index("ix_audit_jobs_owner_id", "audit_jobs", ["owner_id"])
    op.create_index("ix_audit_jobs_dataset_version_id", "audit_jobs", ["dataset_version_id"])
    op.create_index("ix_audit_jobs_status", "audit_jobs", ["status"])

    op.create_table(
        "sample_epochs",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("sample_index", sa.Integer(), nullable=False),
        sa.Column("split", sa.SmallInteger(), nullable=False),
        *(sa.Column(name, sa.REAL(), nullable=True) for name in DYNAMICS_COLUMNS),
        sa.Column("predicted", sa.Integer(), nullable=False),
        sa.Column("margin", sa.REAL(), nullable=True),
        sa.Column("el2n", sa.REAL(), nullable=True),
        sa.PrimaryKeyConstraint("job_id", "epoch", "sample_index", name="pk_sample_epochs"),
        postgresql_partition_by="LIST (job_id)",
    )
    if _postgres():
        op.execute(DROP_JOB_DYNAMICS_FUNCTION)
        op.execute(
            "CREATE TRIGGER trg_audit_jobs_drop_dynamics AFTER DELETE ON audit_jobs "
            "FOR EACH ROW EXECUTE FUNCTION drop_job_dynamics()"
        )
    else:
        op.execute(
            "CREATE TRIGGER trg_audit_jobs_drop_dynamics AFTER DELETE ON audit_jobs "
            "BEGIN DELETE FROM sample_epochs WHERE job_id = OLD.id; END"
        )

    op.create_table(
        "lilaw_trajectory",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("alpha", sa.Double(), nullable=False),
        sa.Column("beta", sa.Double(), nullable=False),
        sa.Column("delta", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "epoch", "step", name="pk_lilaw_trajectory"),
        job_fk("lilaw_trajectory"),
    )

    op.create_table(
        "sample_scores",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("sample_index", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("default_score", sa.REAL(), nullable=False),
        *(sa.Column(name, sa.REAL(), nullable=True) for name in SCORE_COLUMNS),
        sa.PrimaryKeyConstraint("job_id", "sample_index", name="pk_sample_scores"),
        job_fk("sample_scores"),
    )
    op.create_index("ix_sample_scores_job_id_rank", "sample_scores", ["job_id", "rank"], unique=True)

    op.create_table(
        "job_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.String(64), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=True),
        sa.Column("split", sa.String(16), nullable=False),
        sa.Column("auroc", sa.Double(), nullable=True),
        sa.Column("auprc_mislabeled", sa.Double(), nullable=True),
        sa.Column("auprc_clean", sa.Double(), nullable=True),
        sa.Column("precision_at_k", JSON, nullable=True),
        sa.Column("recall_at_k", JSON, nullable=True),
        sa.Column("num_mislabeled", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_job_metrics"),
        job_fk("job_metrics"),
    )
    op.create_index("ix_job_metrics_job_id_score", "job_metrics", ["job_id", "score"])


def downgrade() -> None:
    op.execute("DROP TRIGGER trg_audit_jobs_drop_dynamics" + (" ON audit_jobs" if _postgres() else ""))
    if _postgres():
        op.execute("DROP FUNCTION drop_job_dynamics()")
    for table in (
        "job_metrics",
        "sample_scores",
        "lilaw_trajectory",
        "sample_epochs",
        "audit_jobs",
        "samples",
        "dataset_versions",
        "datasets",
        "api_keys",
        "owners",
    ):
        op.drop_table(table)
