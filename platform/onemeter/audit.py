"""The append-only change log: every create, update and delete of tenant data, hash-chained.

Each entry carries the hash of the previous entry of its chain (one chain per tenant, one for
platform data), so `onemeter audit verify` detects an edited, removed or inserted row.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import decimal
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import g, has_request_context
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Session, mapped_column

from onemeter.database import Model
from onemeter.tenancy import TenantScoped

GENESIS = "0" * 64
#: Columns never written into the log in clear.
SECRET_COLUMNS = {"password"}
#: Bookkeeping FAB updates on every sign-in: not a change to anyone's data.
IGNORED_COLUMNS = {"last_login", "login_count", "fail_login_count"}


class ChangeLog(TenantScoped, Model):
    """One recorded change. Rows are only ever inserted (the app role has no UPDATE/DELETE)."""

    __tablename__ = "om_change_log"
    __audit__ = False
    # INSERT … RETURNING would need the row to pass the SELECT policy: a sign-in (no tenant
    # yet) must still be able to append to its tenant's chain.
    __tenant_table_args__ = ({"implicit_returning": False},)

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                    primary_key=True)
    # Nullable here (unlike other tenant rows): changes to platform data form their own chain.
    tenant_id: Mapped[int | None] = mapped_column(sa.Integer, sa.ForeignKey("om_tenant.id"),
                                                  nullable=True, index=True)
    at: Mapped[dt.datetime] = mapped_column(sa.DateTime, nullable=False)
    user_id: Mapped[int | None] = mapped_column(sa.Integer)
    actor: Mapped[str | None] = mapped_column(sa.String(128))
    request_id: Mapped[str | None] = mapped_column(sa.String(64))
    model: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    object_id: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    action: Mapped[str] = mapped_column(sa.String(10), nullable=False)
    # Residents' phone and ID numbers inside are masked for viewers without view_pii.
    before: Mapped[dict | None] = mapped_column(sa.JSON, info={"pii": "logged_values"})
    after: Mapped[dict | None] = mapped_column(sa.JSON, info={"pii": "logged_values"})
    prev_hash: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    hash: Mapped[str] = mapped_column(sa.String(64), nullable=False)

    ACTION_LABELS = {"create": "新建", "update": "修改", "delete": "删除"}

    @classmethod
    def om_sample(cls, session: Session, tenant_id: int, marker: str) -> ChangeLog:
        """A well-chained entry whose text columns read `marker` + column name (as test rows do)."""
        append_entries(session.connection(), [{
            "tenant_id": tenant_id, "model": f"{marker}model", "object_id": f"{marker}object_id",
            "action": "update", "before": {"note": marker}, "after": {"note": marker + "!"}}])
        return session.execute(sa.select(cls).where(cls.object_id == f"{marker}object_id")
                               ).scalar_one()


@dataclass(frozen=True)
class Actor:
    """Who is acting outside a web request (a job, a command)."""

    user_id: int | None
    label: str
    request_id: str


_actor: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("onemeter_actor",
                                                                     default=None)


@contextlib.contextmanager
def acting_as(user_id: int | None, label: str, request_id: str | None = None) -> Iterator[None]:
    """Attribute changes made in this block to `label` (e.g. "job:42", "cli:tenants sync")."""
    token = _actor.set(Actor(user_id, label, request_id or uuid.uuid4().hex))
    try:
        yield
    finally:
        _actor.reset(token)


def _who() -> tuple[int | None, str | None, str | None]:
    if has_request_context():
        user = getattr(g, "user", None)
        request_id = getattr(g, "request_id", None)
        if user is not None and getattr(user, "is_authenticated", False):
            return user.id, user.username, request_id
        actor = _actor.get()
        return (actor.user_id, actor.label, request_id) if actor else (None, None, request_id)
    actor = _actor.get()
    if actor is None:
        return None, None, None
    return actor.user_id, actor.label, actor.request_id


def jsonable(value: Any) -> Any:
    """A value as it is stored in the log's JSON (and hashed): str, int, bool, None, list, dict."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, float)):
        return str(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(value)


def entry_hash(prev_hash: str, entry: dict[str, Any]) -> str:
    """The hash of one entry: sha256 over the previous hash and the entry's canonical JSON."""
    payload = json.dumps(
        {k: entry[k] for k in ("tenant_id", "at", "user_id", "actor", "request_id", "model",
                               "object_id", "action", "before", "after")},
        sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=jsonable,
    )
    return hashlib.sha256((prev_hash + payload).encode("utf-8")).hexdigest()


def _audited(obj: Any) -> bool:
    return getattr(type(obj), "__audit__", True) and hasattr(type(obj), "__table__") and (
        isinstance(obj, TenantScoped) or getattr(type(obj), "__tablename__", "") in
        ("om_tenant", "ab_user"))


def _columns(obj: Any) -> dict[str, Any]:
    state = sa.inspect(obj)
    out = {}
    for attr in state.mapper.column_attrs:
        value = state.dict.get(attr.key)
        out[attr.key] = "***" if attr.key in SECRET_COLUMNS else jsonable(value)
    return out


def _changes(obj: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    state = sa.inspect(obj)
    before, after = {}, {}
    for attr in state.mapper.column_attrs:
        if attr.key in IGNORED_COLUMNS:
            continue
        history = state.attrs[attr.key].history
        if not history.has_changes():
            continue
        old = history.deleted[0] if history.deleted else None
        new = history.added[0] if history.added else None
        if jsonable(old) == jsonable(new):
            continue
        secret = attr.key in SECRET_COLUMNS
        before[attr.key] = "***" if secret else jsonable(old)
        after[attr.key] = "***" if secret else jsonable(new)
    return before, after


def _tenant_of(obj: Any) -> int | None:
    if type(obj).__tablename__ == "om_tenant":
        return None
    return getattr(obj, "tenant_id", None)


def _collect(session: Session, flush_context: Any, instances: Any) -> None:
    entries = []
    for action, objects in (("create", session.new), ("update", session.dirty),
                            ("delete", session.deleted)):
        for obj in objects:
            if not _audited(obj):
                continue
            if action == "update":
                if not session.is_modified(obj, include_collections=False):
                    continue
                before, after = _changes(obj)
                if not before and not after:
                    continue
            elif action == "create":
                before, after = None, None  # filled after the flush gives the row its id
            else:
                before, after = _columns(obj), None
            entries.append((action, obj, before, after))
    session.info.setdefault("om_audit_pending", []).extend(entries)


def _write(session: Session, flush_context: Any) -> None:
    pending = session.info.pop("om_audit_pending", [])
    if not pending:
        return
    entries = []
    for action, obj, before, after in pending:
        if action == "create":
            after = _columns(obj)
        pk = sa.inspect(obj).identity or (getattr(obj, "id", None),)
        entries.append({"tenant_id": _tenant_of(obj), "model": type(obj).__name__,
                        "object_id": ",".join(str(p) for p in pk), "action": action,
                        "before": before, "after": after})
    append_entries(session.connection(), entries)


def append_entries(connection: sa.Connection, entries: list[dict[str, Any]]) -> None:
    """Append change-log entries, chaining each to the last of its tenant's chain.

    Each entry: tenant_id, model, object_id, action ("create"/"update"/"delete"), before,
    after. Who and which request are taken from the context. For writes that bypass the
    ORM (bulk imports) call this in the same transaction as the write.
    """
    user_id, actor, request_id = _who()
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    table = ChangeLog.__table__
    last: dict[int | None, str] = {}
    rows = []
    for item in entries:
        tenant_id = item["tenant_id"]
        if tenant_id not in last:
            if connection.dialect.name == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(7411, :k)"),
                                   {"k": tenant_id or 0})
            prev = connection.execute(
                sa.select(table.c.hash).where(table.c.tenant_id.is_not_distinct_from(tenant_id))
                .order_by(table.c.id.desc()).limit(1)
            ).scalar()
            last[tenant_id] = prev or GENESIS
        entry = {
            "tenant_id": tenant_id, "at": now.isoformat(), "user_id": user_id, "actor": actor,
            "request_id": request_id, "model": item["model"],
            "object_id": str(item["object_id"]), "action": item["action"],
            "before": jsonable(item.get("before")), "after": jsonable(item.get("after")),
        }
        digest = entry_hash(last[tenant_id], entry)
        rows.append({**entry, "at": now, "prev_hash": last[tenant_id], "hash": digest})
        last[tenant_id] = digest
    # One executemany (a multi-row INSERT on PostgreSQL): the ids are drawn in list order, so
    # the chain still reads in id order. A flush creating 200 communities took 0.3 s row by row.
    for start in range(0, len(rows), 1000):
        connection.execute(table.insert(), rows[start:start + 1000])


@dataclass
class ChainProblem:
    """A change-log row whose hash or link does not match what was recorded before it."""

    entry_id: int
    tenant_id: int | None
    reason: str


def verify_chain(connection: sa.Connection) -> tuple[int, list[ChainProblem]]:
    """Recompute every chain; return (entries checked, problems found)."""
    table = ChangeLog.__table__
    rows = connection.execute(sa.select(table).order_by(table.c.id)).mappings()
    last: dict[int | None, str] = {}
    problems: list[ChainProblem] = []
    count = 0
    for row in rows:
        count += 1
        tenant_id = row["tenant_id"]
        expected_prev = last.get(tenant_id, GENESIS)
        entry = dict(row) | {"at": row["at"].isoformat()}
        if row["prev_hash"] != expected_prev:
            problems.append(ChainProblem(row["id"], tenant_id, "与上一条记录的链接不符（记录被删除或插入）"))
        if entry_hash(row["prev_hash"], entry) != row["hash"]:
            problems.append(ChainProblem(row["id"], tenant_id, "内容与哈希不符（记录被修改）"))
        last[tenant_id] = row["hash"]
    return count, problems


_installed = False


def install_audit_listeners() -> None:
    """Record changes on every ORM session (once per process; idempotent)."""
    global _installed
    if _installed:
        return
    event.listen(Session, "before_flush", _collect)
    event.listen(Session, "after_flush", _write)
    event.listen(Session, "after_soft_rollback",
                 lambda session, previous: session.info.pop("om_audit_pending", None))
    _installed = True
