"""Alembic environment for the profile store.

The store runs migrations itself on open (``ProfileStore.migrate``) and hands its connection over
through ``config.attributes``; ``alembic -x url=...`` from a shell works too.
"""

from alembic import context
from sqlalchemy import create_engine

from shaper_pipelines.store.schema import metadata

# Our own version table: the profile store may share a database with Dagster's storage, which
# keeps its own revisions in the default alembic_version table.
VERSION_TABLE = "shaper_alembic_version"
config = context.config
connection = config.attributes.get("connection")

if connection is not None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    with create_engine(url).connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True, version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()
