"""Alembic environment: runs as the database owner, over the core's and plugins' metadata."""

import logging

import sqlalchemy as sa
from alembic import context
from flask import current_app

from onemeter.database import db, sqlite_foreign_keys_deferred

config = context.config
log = logging.getLogger("alembic.env")
target_metadata = db.metadata


def include_object(obj, name, type_, reflected, compare_to):
    # Tables only in the database and unknown to every loaded model (e.g. a plugin that is
    # not installed here) are left alone rather than dropped.
    return not (type_ == "table" and reflected and compare_to is None)


def run_migrations_offline():
    context.configure(url=current_app.config["ONEMETER_OWNER_DATABASE_URL"],
                      target_metadata=target_metadata, literal_binds=True,
                      include_object=include_object)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    engine = sa.create_engine(current_app.config["ONEMETER_OWNER_DATABASE_URL"],
                              poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # Migrations see and may change every tenant's rows (FORCE RLS covers the owner).
            connection.exec_driver_sql("SELECT set_config('app.all_tenants', 'on', false)")
            connection.commit()  # else Alembic joins this transaction and never commits
        # SQLite: foreign keys off while batch mode rebuilds tables, checked at the end.
        with sqlite_foreign_keys_deferred(connection):
            context.configure(connection=connection, target_metadata=target_metadata,
                              compare_type=True,
                              render_as_batch=connection.dialect.name == "sqlite",
                              include_object=include_object)
            with context.begin_transaction():
                context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
