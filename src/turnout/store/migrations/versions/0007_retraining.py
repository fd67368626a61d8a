"""Retraining: the pipeline a version was trained with, retrain policies per deployment,
and jobs.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.add_column(sa.Column("pipeline", sa.JSON, nullable=True))
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("retrain_policy", sa.JSON, nullable=True))
        batch.add_column(sa.Column("retrain_state", sa.JSON, nullable=True))
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("deployment_id", sa.Integer, sa.ForeignKey("deployments.id"), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("parent_version", sa.Integer, nullable=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("trigger_detail", sa.JSON, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("result", sa.JSON, nullable=False),
        sa.Column("host", sa.String(256), nullable=True),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_jobs_deployment_state", "jobs", ["deployment_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_jobs_deployment_state", "jobs")
    op.drop_table("jobs")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("retrain_state")
        batch.drop_column("retrain_policy")
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("pipeline")
