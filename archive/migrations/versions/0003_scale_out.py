"""Scale-out: who paid for each LLM call (budgets survive a resume), which worker ran each example,
and a driver heartbeat so ``agentopt status`` can tell a running campaign from a dead driver.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("llm_calls") as batch:
        batch.add_column(sa.Column("campaign_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("role", sa.String(20), nullable=True))
    op.create_index("ix_llm_calls_campaign_id", "llm_calls", ["campaign_id"])
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("worker", sa.String(100), nullable=True))
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("active_s", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("active_s")
        batch.drop_column("heartbeat_at")
    with op.batch_alter_table("results") as batch:
        batch.drop_column("worker")
    op.drop_index("ix_llm_calls_campaign_id", "llm_calls")
    with op.batch_alter_table("llm_calls") as batch:
        batch.drop_column("role")
        batch.drop_column("campaign_id")
