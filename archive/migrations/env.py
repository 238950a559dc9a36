"""Alembic environment: always run through :mod:`agentopt.archive.schema`, on its connection."""

from alembic import context

from agentopt.archive.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
