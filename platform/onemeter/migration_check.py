"""Do the models and the migrations agree? The same comparison autogenerate makes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import current_app

from onemeter.database import db
from onemeter.tenancy import key_compared


def schema_differences() -> list[Any]:
    """Differences between the migrated database and the loaded models (empty when in step)."""
    engine = sa.create_engine(current_app.config["ONEMETER_OWNER_DATABASE_URL"])
    try:
        with engine.connect() as connection:
            dialect = connection.dialect.name
            context = MigrationContext.configure(
                connection, opts={"compare_type": True,
                                  "include_object": lambda o, n, t, r, c: (
                                      n != "alembic_version" and key_compared(o, t, dialect))})
            return list(compare_metadata(context, db.metadata))
    finally:
        engine.dispose()
