"""The one SQLAlchemy handle shared by the core and every plugin.

Models subclass `Model` (FAB's declarative base) so FAB's own tables live in the same metadata.
"""

import sqlite3
from typing import Any

from flask_appbuilder import Model
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine

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
    Called on each new DBAPI connection of any engine; does nothing for other databases."""
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")  # kept in the file; a no-op once set
    except sqlite3.OperationalError:
        pass  # another process holds the file in the old mode: it stays as it was
    finally:
        cursor.close()


__all__ = ["Model", "db"]
