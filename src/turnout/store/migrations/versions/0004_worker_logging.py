"""Gateway workers report their prediction logger (rows buffered, written, dropped).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_workers") as batch:
        batch.add_column(sa.Column("logging", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateway_workers") as batch:
        batch.drop_column("logging")
