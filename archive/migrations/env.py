"""Alembic environment: always run through :mod:`agentopt.archive.schema`, on its connection and version table."""

from alembic import context

from agentopt.archive.models import Base
from agentopt.archive.schema import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  transaction_per_migration=False, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
