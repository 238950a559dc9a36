"""Agent symbolic learning: each example's execution trace (what every node of a graph agent did), and
notes: the language losses and gradients behind a candidate, and pipeline edits that were rejected or
rolled back, which have no candidate to hang on.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("trace", sa.JSON(), nullable=True))
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("campaign_id", sa.String(32), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("candidate_id", sa.Integer(), sa.ForeignKey("candidates.id"), nullable=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("campaign_id", "key", name="uq_notes_campaign_id"),
    )
    op.create_index("ix_notes_campaign_id", "notes", ["campaign_id"])
    op.create_index("ix_notes_candidate_id", "notes", ["candidate_id"])


def downgrade() -> None:
    op.drop_index("ix_notes_candidate_id", "notes")
    op.drop_index("ix_notes_campaign_id", "notes")
    op.drop_table("notes")
    with op.batch_alter_table("results") as batch:
        batch.drop_column("trace")
