"""Gateway workers report the state of their circuit breakers.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_workers") as batch:
        batch.add_column(sa.Column("breakers", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateway_workers") as batch:
        batch.drop_column("breakers")
