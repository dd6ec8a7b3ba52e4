"""The one SQLAlchemy handle shared by the core and every plugin.

Models subclass `Model` (FAB's declarative base) so FAB's own tables live in the same metadata.
"""

import sqlite3
from typing import Any

from flask_appbuilder import Model
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

db = SQLAlchemy(model_class=Model)

#: How long an SQLite write waits for another one to commit (milliseconds).
SQLITE_BUSY_TIMEOUT_MS = 30_000


@event.listens_for(Engine, "connect")
def _sqlite_write_ahead_log(dbapi_connection: Any, connection_record: Any) -> None:
    """SQLite (the embedded install) keeps a write-ahead log: readers — every page, and a job
    asking whether it was cancelled — then read the last committed state while an import
    writes. In SQLite's default rollback-journal mode a long write transaction locks every
    reader out once it spills its page cache (an import of some 10,000 rows), so pages failed
    with "database is locked" and the import's own cancellation check failed the job.
    Writes still go one at a time: a second writer waits up to SQLITE_BUSY_TIMEOUT_MS for the
    first to commit (pysqlite's own 5 s failed a page's save during a longer import).
    Foreign keys are enforced, as on PostgreSQL: SQLite checks none unless each connection
    asks, so without it the composite (tenant_id, parent) keys that keep a child in its
    parent's sub-district held on PostgreSQL only.
    Called on each new DBAPI connection of any engine; does nothing for other databases."""
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")  # per connection; outside any transaction
        cursor.execute("PRAGMA journal_mode=WAL")  # kept in the file; a no-op once set
    except sqlite3.OperationalError:
        pass  # another process holds the file in the old mode: it stays as it was
    finally:
        cursor.close()


def dangling_rows(connection: Connection) -> set[tuple[str, int, str]]:
    """(table, rowid, parent table) of every SQLite row whose foreign key finds no row."""
    return {(table, rowid, parent) for table, rowid, parent, _ in
            connection.exec_driver_sql("PRAGMA foreign_key_check").all()}


class ForeignKeyViolation(RuntimeError):
    """A migration on SQLite left rows whose foreign key points at no row."""


def sqlite_migration_engine(engine: Engine) -> None:
    """Make the migrations' own SQLite engine run each transaction the way SQLite prescribes
    for rebuilding a table (its "generalized ALTER TABLE procedure"): foreign keys off, then
    BEGIN, so the schema and data changes commit or roll back together.

    Alembic's batch mode rebuilds a table to alter it (copy into a new table, DROP the old,
    rename); with foreign keys on, that DROP deletes every child row of an ON DELETE CASCADE
    key or fails on the others. SQLite ignores `PRAGMA foreign_keys` inside a transaction,
    and pysqlite on its own sends no BEGIN before DDL (each statement would commit alone), so
    the driver is put in autocommit mode and the transaction begun here, after the pragma.
    Call `check_foreign_keys` before the commit. Used by migrations/env.py; the engine must
    not be shared (NullPool: its connections never serve the app)."""

    @event.listens_for(engine, "connect")
    def _driver_autocommit(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_without_foreign_keys(connection: Connection) -> None:
        connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
        if connection.exec_driver_sql("PRAGMA foreign_keys").scalar() != 0:
            raise RuntimeError("SQLite kept its foreign keys on: a transaction was open")
        connection.exec_driver_sql("BEGIN")


def check_foreign_keys(connection: Connection, before: set[tuple[str, int, str]]) -> None:
    """Raise ForeignKeyViolation (the transaction is then rolled back by the caller) when
    rows dangle now that did not in `before` (`dangling_rows` at the transaction's start):
    rows that dangled already (a database written while SQLite enforced no keys) do not stop
    a migration."""
    dangling = sorted(dangling_rows(connection) - before)
    if dangling:
        shown = "; ".join(f"{table} rowid {rowid} → {parent}"
                          for table, rowid, parent in dangling[:5])
        raise ForeignKeyViolation(
            f"迁移后有 {len(dangling)} 行的外键指向不存在的行（{shown}），迁移已撤回")


__all__ = ["ForeignKeyViolation", "Model", "check_foreign_keys", "dangling_rows", "db",
           "sqlite_migration_engine"]
