"""Migrations: the models and the migrations agree, and every branch goes up and down cleanly.

The round trips run on a database of their own (a temporary PostgreSQL database, or a
SQLite file), never on the run's shared one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


# --- SQLite: foreign keys are enforced, and off only while a migration rebuilds tables ------

def _family(connection: sa.Connection) -> None:
    """A parent with two children whose key cascades on delete (like om_import_row)."""
    connection.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT)")
    connection.exec_driver_sql(
        "CREATE TABLE child (id INTEGER PRIMARY KEY, "
        "parent_id INTEGER NOT NULL REFERENCES parent (id) ON DELETE CASCADE)")
    connection.exec_driver_sql("INSERT INTO parent VALUES (1, '平桥')")
    connection.exec_driver_sql("INSERT INTO child VALUES (1, 1), (2, 1)")


def _rebuild_parent(connection: sa.Connection) -> None:
    """What Alembic's batch mode does to alter a table on SQLite: copy, DROP, rename."""
    connection.exec_driver_sql(
        "CREATE TABLE _alembic_tmp_parent (id INTEGER PRIMARY KEY, name TEXT, note TEXT)")
    connection.exec_driver_sql(
        "INSERT INTO _alembic_tmp_parent (id, name) SELECT id, name FROM parent")
    connection.exec_driver_sql("DROP TABLE parent")
    connection.exec_driver_sql("ALTER TABLE _alembic_tmp_parent RENAME TO parent")


def _children(connection: sa.Connection) -> int:
    return connection.exec_driver_sql("SELECT count(*) FROM child").scalar()


def test_sqlite_rebuilds_a_parent_table_without_deleting_its_children(tmp_path: Path) -> None:
    from onemeter.database import sqlite_migration_engine

    url = f"sqlite:///{tmp_path / 'family.db'}"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            _family(connection)
            # Every connection enforces keys: the rebuild's DROP cascades to the children.
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            _rebuild_parent(connection)
            assert _children(connection) == 0
            connection.exec_driver_sql("INSERT INTO child VALUES (1, 1), (2, 1)")
            connection.commit()
    finally:
        engine.dispose()
    migrations = sa.create_engine(url, poolclass=sa.pool.NullPool)
    sqlite_migration_engine(migrations)
    try:
        with migrations.connect() as connection:
            with connection.begin():
                assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 0
                _rebuild_parent(connection)
            assert _children(connection) == 2
            assert connection.exec_driver_sql("SELECT name FROM parent").scalar() == "平桥"
    finally:
        migrations.dispose()


def test_sqlite_schema_change_that_leaves_a_dangling_row_is_rolled_back(tmp_path: Path) -> None:
    from onemeter.database import (
        ForeignKeyViolation,
        check_foreign_keys,
        dangling_rows,
        sqlite_migration_engine,
    )

    url = f"sqlite:///{tmp_path / 'family.db'}"
    migrations = sa.create_engine(url, poolclass=sa.pool.NullPool)
    sqlite_migration_engine(migrations)
    try:
        with migrations.connect() as connection:
            with connection.begin():
                _family(connection)
                connection.exec_driver_sql("INSERT INTO child VALUES (3, 7)")  # dangles
            with connection.begin():  # an old dangling row does not stop a migration
                before = dangling_rows(connection)
                _rebuild_parent(connection)
                check_foreign_keys(connection, before)
            with pytest.raises(ForeignKeyViolation, match=r"1 行.*child rowid 4 → parent"):
                with connection.begin():
                    before = dangling_rows(connection)
                    connection.exec_driver_sql("CREATE TABLE extra (id INTEGER PRIMARY KEY)")
                    connection.exec_driver_sql("INSERT INTO child VALUES (4, 9)")
                    check_foreign_keys(connection, before)
            # Rolled back whole, the schema change too: SQLite's DDL is transactional once
            # the transaction is begun explicitly, which pysqlite alone does not do.
            assert connection.exec_driver_sql(
                "SELECT count(*) FROM sqlite_master WHERE name = 'extra'").scalar() == 0
            assert connection.exec_driver_sql(
                "SELECT id FROM child ORDER BY id").scalars().all() == [1, 2, 3]
    finally:
        migrations.dispose()


def test_an_embedded_database_written_without_foreign_keys_still_migrates(
        make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """Before foreign keys were enforced on SQLite, an import row could outlive its batch.
    The next migration that rebuilds that table (0010 rebuilds om_import_row) copies the row
    instead of failing on it, because migrations run with keys off and check afterwards."""
    import sqlite3

    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    old = make_app(SQLALCHEMY_DATABASE_URI=url, ONEMETER_OWNER_DATABASE_URL=url,
                   ONEMETER_APP_DB_ROLE="")
    runner = old.test_cli_runner()
    result = runner.invoke(main, ["db", "upgrade", "--revision", "0009_supervision"])
    assert result.exit_code == 0, result.output
    raw = sqlite3.connect(path)  # a plain connection: SQLite's default, keys not enforced
    raw.execute("INSERT INTO om_import_row (tenant_id, batch_id, row_number, action) "
                "VALUES (42, 4242, 7, 'create')")
    raw.commit()
    raw.close()

    result = runner.invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, f"{result.output}{result.exception!r}"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql(
                "SELECT batch_id, row_number FROM om_import_row").all() == [(4242, 7)]
            newest = max(Path(__file__).parents[1].glob("migrations/versions/0*.py")).stem
            assert connection.exec_driver_sql(
                "SELECT version_num FROM alembic_version").scalar() == newest
    finally:
        engine.dispose()


_BAD_MIGRATION = '''"""A plugin's migration that leaves a row pointing at no sub-district.

Revision ID: zz0001
"""
import sqlalchemy as sa
from alembic import op

revision = "zz0001"
down_revision = None
branch_labels = ("dangling",)
depends_on = "0001_core"


def upgrade():
    op.create_table(
        "zz_note",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("om_tenant.id"), nullable=False))
    op.execute("INSERT INTO zz_note (id, tenant_id) VALUES (1, 424242)")


def downgrade():
    op.drop_table("zz_note")
'''


def test_on_sqlite_a_migration_that_leaves_a_dangling_row_is_refused_and_writes_nothing(
        stack: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Migrations on SQLite run in one transaction begun after foreign keys are turned off
    (`sqlite_migration_engine`) and checked before the commit: a plugin migration that leaves
    a row pointing nowhere fails the upgrade with the rows named, and nothing of the upgrade
    stays — not its tables, not the core's, not the version stamp."""
    from types import SimpleNamespace

    from onemeter.app import create_app
    from onemeter.plugins import PluginInfo, hookimpl
    versions = tmp_path / "dangling_versions"
    versions.mkdir()
    (versions / "zz0001_dangling.py").write_text(_BAD_MIGRATION, encoding="utf-8")
    plugin = SimpleNamespace(
        onemeter_plugin_info=hookimpl(lambda: PluginInfo("悬空", "0.1")),
        onemeter_migrations_location=hookimpl(lambda: str(versions)))
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    app = create_app(stack.config(SQLALCHEMY_DATABASE_URI=url, ONEMETER_OWNER_DATABASE_URL=url,
                                  ONEMETER_APP_DB_ROLE=""), extra_plugins={"dangling": plugin})
    result = app.test_cli_runner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 1, f"{result.output}{result.exception!r}"
    # Flask-Migrate logs the error and exits 1: the clerk running `make run` reads this line.
    assert "迁移后有 1 行的外键指向不存在的行（zz_note rowid 1 → om_tenant），迁移已撤回" \
        in caplog.text
    assert tables(url) == set()  # rolled back whole: no table, no alembic_version
