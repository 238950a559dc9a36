"""A sweep's driven time over all its runs, so its wall-time budget holds across resumes (as a
campaign's ``active_s`` does for a campaign's).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sweeps", sa.Column("active_s", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("sweeps", "active_s")  # ALTER TABLE ... DROP COLUMN: SQLite 3.35 and later
