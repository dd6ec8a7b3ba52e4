"""Rows for any model, made from its columns alone: the access matrix needs no per-model code.

Every text column carries a marker so a page, an API answer or an export that shows the row
can be caught. A model may offer `om_sample(session, tenant_id, marker)` where rows must be
made its own way (the change log is chained, for instance).
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from onemeter.tenancy import TenantScoped


def _value(column: sa.Column, marker: str) -> Any:
    kind = column.type
    if isinstance(kind, sa.Enum):
        return kind.enums[0]
    if isinstance(kind, sa.String | sa.Text):
        text = f"{marker}{column.name}"
        length = getattr(kind, "length", None)
        return text[:length] if length else text
    if isinstance(kind, sa.Boolean):
        return True
    if isinstance(kind, sa.Integer):
        return 1
    if isinstance(kind, sa.Numeric):
        return decimal.Decimal("1.00")
    if isinstance(kind, sa.DateTime):
        return dt.datetime(2021, 7, 7, 9, 0)
    if isinstance(kind, sa.Date):
        return dt.date(2021, 7, 7)
    if isinstance(kind, sa.JSON):
        return {"marker": marker}
    if isinstance(getattr(kind, "python_type", None), type) and issubclass(kind.python_type,
                                                                           enum.Enum):
        return next(iter(kind.python_type))
    raise TypeError(f"no sample value for {column}")


def tenant_owned(model: type) -> bool:
    """Whether rows of `model` belong to a tenant (a tenant_id column)."""
    table = getattr(model, "__table__", None)
    return table is not None and "tenant_id" in table.columns


def make_row(session: Session, model: type, tenant_id: int, marker: str) -> Any:
    """Create and flush one row of `model` in `tenant_id`, parents included, with `marker`."""
    sample = getattr(model, "om_sample", None)
    if sample is not None:
        return sample(session, tenant_id, marker)
    mapper = sa.inspect(model)
    values: dict[str, Any] = {}
    fk_columns: set[str] = set()
    for rel in mapper.relationships:
        if rel.direction.name != "MANYTOONE":
            continue
        local = {c.key for c in rel.local_columns} - {"tenant_id"}
        fk_columns |= local
        required = any(not mapper.local_table.c[k].nullable for k in local)
        target = rel.mapper.class_
        if required or issubclass(target, TenantScoped):
            if tenant_owned(target):
                values[rel.key] = make_row(session, target, tenant_id, marker)
    for column in mapper.local_table.columns:
        if column.primary_key or column.name == "tenant_id" or column.key in fk_columns:
            continue
        if column.foreign_keys:
            continue
        if column.nullable and not isinstance(column.type, sa.String | sa.Text):
            continue
        prop = mapper.get_property_by_column(column)
        values[prop.key] = _value(column, marker)
    obj = model(**values)
    obj.tenant_id = tenant_id
    session.add(obj)
    session.flush()
    return obj


def text_columns(model: type) -> list[str]:
    """Attribute names of the model's free-text columns (where markers are written).

    Enum columns, and columns marked `info={"checked": True}`, hold codes or formatted numbers the app checks
    (a utility code, an account number): a marker there is refused, so they are left out.
    """
    mapper = sa.inspect(model)
    return [mapper.get_property_by_column(c).key for c in mapper.local_table.columns
            if isinstance(c.type, sa.String | sa.Text) and not c.foreign_keys
            and not isinstance(c.type, sa.Enum)
            and c.name != "tenant_id" and not c.info.get("checked")]
