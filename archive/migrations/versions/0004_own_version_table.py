"""The archive's revision moves to its own table, ``agentopt_version``, so Optuna can share the database.

Optuna's RDBStorage keeps its Alembic revision in Alembic's default ``alembic_version`` table, where
earlier releases kept ours, and refuses a database whose revision there is not its own. Before this
runs, ``agentopt.archive.schema`` has stamped our revision into ``agentopt_version``; the old table is
dropped only when it holds one of our revisions, so an Optuna study's table is never touched.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OURS = {"0001", "0002", "0003"}  # every revision an earlier release could have left in alembic_version


def upgrade() -> None:
    bind = op.get_bind()
    if sa.inspect(bind).has_table("alembic_version"):
        held = set(bind.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
        if held and held <= OURS:
            op.drop_table("alembic_version")


def downgrade() -> None:
    """Nothing to restore: Alembic keeps recording the revision in ``agentopt_version``, where this
    agentopt reads it, and ``alembic_version`` may belong to Optuna by now."""
