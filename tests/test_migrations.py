"""Migrations: the models and the migrations agree, and every branch goes up and down cleanly.

The round trips run on a database of their own (a temporary PostgreSQL database, or a
SQLite file), never on the run's shared one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from onemeter.cli import main
from onemeter.migration_check import schema_differences
from tests.support.stack import PG_ADMIN_URL, TEST_DB

EXAMPLE_TABLES = {"ex_checklist", "ex_checklist_item"}
CORE_TABLES = {"om_tenant", "om_change_log", "om_job_run", "ab_user", "ab_role"}


def test_models_and_migrations_agree(app: Flask) -> None:
    with app.app_context():
        assert schema_differences() == []


@pytest.fixture
def fresh_database(tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database, dropped afterwards."""
    if TEST_DB != "postgresql":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    name = f"onemeter_migrations_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(
            hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def rls_functions(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return set(connection.execute(sa.text(
                "SELECT proname FROM pg_proc WHERE proname LIKE 'om_tenant_%'")).scalars())
    finally:
        engine.dispose()


def test_every_branch_goes_down_and_up_again_on_a_fresh_database(
        app: Flask, make_app: Callable[..., Flask], fresh_database: str) -> None:
    fresh = make_app(SQLALCHEMY_DATABASE_URI=fresh_database,
                     ONEMETER_OWNER_DATABASE_URL=fresh_database, ONEMETER_APP_DB_ROLE="")
    runner = fresh.test_cli_runner()

    def db(*args: str) -> None:
        result = runner.invoke(main, ["db", *args])
        assert result.exit_code == 0, f"db {' '.join(args)}: {result.output}{result.exception!r}"

    db("upgrade")
    assert CORE_TABLES | EXAMPLE_TABLES <= tables(fresh_database)
    with fresh.app_context():
        assert schema_differences() == []

    db("downgrade", "example@base")
    left = tables(fresh_database)
    assert not left & EXAMPLE_TABLES and CORE_TABLES <= left

    db("upgrade")
    assert CORE_TABLES | EXAMPLE_TABLES <= tables(fresh_database)
    with fresh.app_context():
        assert schema_differences() == []
    check = runner.invoke(main, ["db", "check"])
    assert check.exit_code == 0 and "一致" in check.output

    db("downgrade", "base")
    assert tables(fresh_database) == {"alembic_version"}
    if TEST_DB == "postgresql":
        assert rls_functions(fresh_database) == set()


@pytest.mark.postgres
def test_tenant_tables_get_row_level_security_from_their_migrations(app: Flask) -> None:
    with app.app_context():
        engine = sa.create_engine(app.config["ONEMETER_OWNER_DATABASE_URL"])
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text(
                "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class"
                " WHERE relname = ANY(:names)"),
                {"names": ["om_change_log", "om_job_run", *EXAMPLE_TABLES]}).all()
    finally:
        engine.dispose()
    assert {name for name, enabled, forced in rows if enabled and forced} == \
        {"om_change_log", "om_job_run", *EXAMPLE_TABLES}
