"""Alembic environment: runs as the database owner, over the core's and plugins' metadata."""

import logging

import sqlalchemy as sa
from alembic import context
from flask import current_app

from onemeter.database import (
    check_foreign_keys,
    dangling_rows,
    db,
    sqlite_migration_engine,
)
from onemeter.tenancy import key_compared

config = context.config
log = logging.getLogger("alembic.env")
target_metadata = db.metadata


def include_object(obj, name, type_, reflected, compare_to):
    # Tables only in the database and unknown to every loaded model (e.g. a plugin that is
    # not installed here) are left alone rather than dropped; a foreign key this database
    # checks by triggers instead (e.g. om_import_row's on PostgreSQL, 0012) is not re-added.
    if type_ == "table" and reflected and compare_to is None:
        return False
    return key_compared(obj, type_, context.get_context().dialect.name)


def run_migrations_offline():
    context.configure(url=current_app.config["ONEMETER_OWNER_DATABASE_URL"],
                      target_metadata=target_metadata, literal_binds=True,
                      include_object=include_object)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    engine = sa.create_engine(current_app.config["ONEMETER_OWNER_DATABASE_URL"],
                              poolclass=sa.pool.NullPool)
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        sqlite_migration_engine(engine)
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # Migrations see and may change every tenant's rows (FORCE RLS covers the owner).
            connection.exec_driver_sql("SELECT set_config('app.all_tenants', 'on', false)")
            connection.commit()  # else Alembic joins this transaction and never commits
        # transactional_ddl: Alembic would otherwise commit after every SQLite migration, as
        # it does for a database whose DDL cannot roll back; begun explicitly, SQLite's can.
        context.configure(connection=connection, target_metadata=target_metadata,
                          compare_type=True, render_as_batch=sqlite,
                          transactional_ddl=True if sqlite else None,
                          include_object=include_object)
        with context.begin_transaction():
            # SQLite: one transaction with foreign keys off while batch mode rebuilds tables,
            # checked before the commit (a violation rolls every step back).
            before = dangling_rows(connection) if sqlite else set()
            context.run_migrations()
            if sqlite:
                check_foreign_keys(connection, before)
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
