"""Prompt caching in the ledger: the prompt tokens an endpoint served from its own cache, and the
prompt-evaluation time that saved where the endpoint reports it (the bundled server does).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Calls stored before this revision were not asked what was cached: zero is what they reported.
    with op.batch_alter_table("llm_calls") as batch:
        batch.add_column(sa.Column("cached_tokens", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("prompt_saved_s", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("llm_calls") as batch:
        batch.drop_column("prompt_saved_s")
        batch.drop_column("cached_tokens")
