"""Functional deduplication (functional hash, twin link) and token footprints for Pareto queries.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("candidates") as batch:
        batch.add_column(sa.Column("functional_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("twin_id", sa.Integer(), nullable=True))
    op.create_index("ix_candidates_campaign_functional", "candidates", ["campaign_id", "functional_hash"])
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("footprint_tokens", sa.Integer(), nullable=False, server_default="0"))
    # Older rows only know paid tokens; that is the best footprint estimate they have.
    op.execute("UPDATE results SET footprint_tokens = prompt_tokens + completion_tokens")
    with op.batch_alter_table("evaluations") as batch:
        batch.add_column(sa.Column("tokens_mean", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_column("tokens_mean")
    with op.batch_alter_table("results") as batch:
        batch.drop_column("footprint_tokens")
    op.drop_index("ix_candidates_campaign_functional", "candidates")
    with op.batch_alter_table("candidates") as batch:
        batch.drop_column("twin_id")
        batch.drop_column("functional_hash")
