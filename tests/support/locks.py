"""A real second connection that holds rows (PostgreSQL) or the database (SQLite) while a
test makes a request behind it — what an import's commit or rollback does to a page."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from tests.support.stack import Stack


@contextmanager
def another_writer(stack: Stack, *row_locks: str, params: Mapping[str, Any] | None = None
                   ) -> Iterator[None]:
    """Hold, until the block ends: on PostgreSQL the rows `row_locks` select (statements
    ending in FOR UPDATE, run as the owner, so row-level security does not hide them), on
    SQLite the database's write lock (BEGIN IMMEDIATE: SQLite locks the whole file)."""
    holding, release = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def write() -> None:
        engine = None
        try:
            if stack.app_url.startswith("sqlite"):
                raw: Any = sqlite3.connect(stack.app_url.removeprefix("sqlite:///"))
                raw.execute("BEGIN IMMEDIATE")
            else:
                engine = sa.create_engine(stack.owner_url, poolclass=sa.pool.NullPool)
                raw = engine.connect()
                for statement in row_locks:
                    raw.execute(sa.text(statement), dict(params or {}))
        except BaseException as exc:  # said in the test's thread, not lost in this one
            failed.append(exc)
            holding.set()
            return
        holding.set()
        release.wait(60)
        raw.rollback()
        raw.close()
        if engine is not None:
            engine.dispose()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        assert holding.wait(30), "the second connection did not take its locks in 30 s"
        if failed:
            raise AssertionError("the second connection could not take its locks") \
                from failed[0]
        yield
    finally:
        release.set()
        thread.join(30)
