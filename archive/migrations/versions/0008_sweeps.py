"""Sweeps: a sweep (its matrix and state), and each campaign's sweep and cell, so a resumed sweep
knows which cells are done.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
    )
    # Campaigns run before this revision belong to no sweep. Plain ADD COLUMN: a batch rebuild of
    # `campaigns` would drop a table the candidates' foreign keys point at.
    op.add_column("campaigns", sa.Column("sweep_id", sa.String(32), nullable=True))
    op.add_column("campaigns", sa.Column("sweep_cell", sa.String(32), nullable=True))
    op.create_index("ix_campaigns_sweep_id", "campaigns", ["sweep_id"])


def downgrade() -> None:
    op.drop_index("ix_campaigns_sweep_id", "campaigns")
    op.drop_column("campaigns", "sweep_cell")  # ALTER TABLE ... DROP COLUMN: SQLite 3.35 and later
    op.drop_column("campaigns", "sweep_id")
    op.drop_table("sweeps")
