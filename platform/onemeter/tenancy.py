"""Tenants (sub-district offices, 办事处) and the three layers that keep their data apart.

Layer 1 filters every ORM read, layer 2 guards every flush, layer 3 is PostgreSQL row-level
security fed by `SET LOCAL` settings per transaction. Each layer is tested on its own.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Session, declared_attr, mapped_column, with_loader_criteria

from onemeter.database import Model

#: An id no tenant ever has: reads with no tenant compare with it and so match nothing.
NO_TENANT = -1


class TenantViolation(Exception):
    """A write that would touch another tenant's rows, or a write with no tenant at all."""


class Tenant(Model):
    """A sub-district office (办事处/街道) that keeps its own ledger."""

    __tablename__ = "om_tenant"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    active: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    utilities: Mapped[list] = mapped_column(sa.JSON, nullable=False, default=list)
    plugins: Mapped[list] = mapped_column(sa.JSON, nullable=False, default=list)
    contacts: Mapped[list] = mapped_column(sa.JSON, nullable=False, default=list)
    source_file: Mapped[str | None] = mapped_column(sa.String(255))
    synced_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime)

    def __repr__(self) -> str:
        return self.name

    def enables(self, plugin: str) -> bool:
        """Whether this tenant's TOML enables `plugin` (an entry-point name)."""
        return self.active and plugin in (self.plugins or [])


class TenantScoped:
    """Mixin for every tenant-owned row: a `tenant_id` that leads keys and indexes.

    `(tenant_id, id)` is unique so children can reference a parent with a composite foreign
    key (see `tenant_reference`): the database itself then refuses a cross-tenant reference.

    That unique index also serves every lookup by tenant, so a model may set
    `__tenant_id_index__ = False` to do without a separate index on `tenant_id` (the core's
    tables do). Worth it on tables children reference: with both indexes PostgreSQL checked
    the composite foreign key of a freshly imported household through the `tenant_id` index
    — 60 µs a row instead of 4 µs, most of a 100,000-row import.
    """

    __tenant_id_index__: bool = True
    #: False for a leaf table written in bulk that nothing refers to and whose every row
    #: already names a tenant-scoped parent through a composite key (an import's undo
    #: records, 100,000 a batch): no `(tenant_id, id)` unique index and no separate foreign
    #: key to om_tenant — the parent's composite key checks the tenant. Each was a per-row
    #: index insert or trigger call of every import.
    __tenant_referenced__: bool = True
    #: False for a table whose every row names a tenant-scoped parent through a composite
    #: key of NOT NULL columns (`tenant_reference`): that key already proves the tenant
    #: exists (the parent's own key to om_tenant), so a separate foreign key to om_tenant
    #: only adds a second trigger call per row — 0.7 s of a 100,000-row household import on
    #: PostgreSQL. The `(tenant_id, id)` unique index stays for the table's children.
    __tenant_foreign_key__: bool = True
    #: True for rows that may belong to no tenant (tenant_id NULL): district-wide rows that
    #: only scopes reading every tenant see and write (a supervision notice to 供水公司 next
    #: to those addressed to a sub-district). See `tenant_optional`.
    __tenant_optional__: bool = False

    @declared_attr
    def tenant_id(cls) -> Mapped[int]:  # noqa: N805 - SQLAlchemy declared_attr
        referenced = bool(getattr(cls, "__tenant_referenced__", True))
        checked = referenced and bool(getattr(cls, "__tenant_foreign_key__", True))
        return mapped_column(
            sa.Integer, *([sa.ForeignKey("om_tenant.id")] if checked else []),
            nullable=bool(getattr(cls, "__tenant_optional__", False)),
            index=bool(getattr(cls, "__tenant_id_index__", True)),
        )

    @declared_attr.directive
    def __table_args__(cls) -> tuple:  # noqa: N805
        extra = tuple(getattr(cls, "__tenant_table_args__", ()))
        if not getattr(cls, "__tenant_referenced__", True):
            return extra
        return (sa.UniqueConstraint("tenant_id", "id", name=f"uq_{cls.__tablename__}_tenant_id_id"),
                *extra)


#: `ForeignKeyConstraint.info` key: the dialects on which a migration replaced the declared
#: key by triggers checking it (`key_compared` leaves it out of autogenerate there).
CHECKED_BY_TRIGGER = "checked_by_trigger"


def tenant_reference(column: str, parent_table: str, ondelete: str | None = None, *,
                     checked_by_trigger: tuple[str, ...] = ()) -> sa.ForeignKeyConstraint:
    """A composite foreign key `(tenant_id, column) → parent(tenant_id, id)`.

    Put it in `__tenant_table_args__`; the relationship then names `foreign_keys=[column]`.
    `checked_by_trigger` names the dialects where a migration checks it by triggers instead.
    """
    return sa.ForeignKeyConstraint(
        ["tenant_id", column], [f"{parent_table}.tenant_id", f"{parent_table}.id"],
        ondelete=ondelete, info={CHECKED_BY_TRIGGER: checked_by_trigger},
    )


def key_compared(obj: Any, type_: str, dialect: str) -> bool:
    """For autogenerate's `include_object`: False for a foreign key that `dialect` checks by
    triggers (declared in the models, absent from that database by design)."""
    return not (type_ == "foreign_key_constraint"
                and dialect in (getattr(obj, "info", None) or {}).get(CHECKED_BY_TRIGGER, ()))


@dataclass(frozen=True)
class TenantScope:
    """What the current request, job or command may read and write.

    `read` is the set of tenant ids readable (None: every tenant, read-only roles only);
    `write` is the single tenant writes go to (None: no writes to tenant data).
    """

    read: frozenset[int] | None = frozenset()
    write: int | None = None
    orm_enforced: bool = True
    utility: str | None = None
    label: str = "nothing"

    @classmethod
    def nothing(cls, orm_enforced: bool = True) -> TenantScope:
        """No tenant: reads match nothing and writes are refused (fail closed)."""
        return cls(frozenset(), None, orm_enforced, label="nothing")

    @classmethod
    def tenant(cls, tenant_id: int, orm_enforced: bool = True) -> TenantScope:
        """One sub-district, read and write."""
        return cls(frozenset({tenant_id}), tenant_id, orm_enforced, label=f"tenant:{tenant_id}")

    @classmethod
    def all_read_only(cls, orm_enforced: bool = True, utility: str | None = None
                      ) -> TenantScope:
        """Every tenant, read-only: district viewer, finance, utility staff, platform admin."""
        return cls(None, None, orm_enforced, utility=utility, label="all-read-only")

    @property
    def reads_all(self) -> bool:
        return self.read is None

    def can_read(self, tenant_id: int | None) -> bool:
        return self.read is None or tenant_id in self.read


_NOTHING = TenantScope.nothing()
_scope: contextvars.ContextVar[TenantScope] = contextvars.ContextVar(
    "onemeter_tenant_scope", default=_NOTHING  # noqa: B039 - TenantScope is frozen
)


def current_scope() -> TenantScope:
    """The scope of the running request, job or command (nothing when none was set)."""
    return _scope.get()


def set_scope(scope: TenantScope, session: Session | None = None) -> contextvars.Token:
    """Make `scope` current; if `session` is inside a transaction, re-apply the RLS settings."""
    token = _scope.set(scope)
    _reapply(session, scope)
    return token


def _reapply(session: Any, scope: TenantScope) -> None:
    """Inside an open transaction the RLS settings were set at BEGIN: set them again."""
    if session is None:
        return
    if hasattr(session, "registry"):  # a scoped_session: only the current session matters
        if not session.registry.has():
            return
        session = session.registry()
    if session.in_transaction():
        _apply_rls_settings(session.connection(), scope)


@contextlib.contextmanager
def use_scope(scope: TenantScope, session: Session | None = None) -> Iterator[TenantScope]:
    """Run a block under `scope` (jobs, commands, tests), restoring the previous one after."""
    previous = _scope.get()
    token = set_scope(scope, session)
    try:
        yield scope
    finally:
        _scope.reset(token)
        _reapply(session, previous)


# --- layer 1: ORM read filter -------------------------------------------------------------

def _tenant_criteria(state: Any) -> None:
    if state.is_column_load or state.is_relationship_load:
        return
    if not (state.is_select or state.is_update or state.is_delete):
        return
    scope = current_scope()
    if not scope.orm_enforced:
        return
    if state.is_select:
        if scope.read is None:
            return
        ids = tuple(sorted(scope.read)) or (NO_TENANT,)
    else:
        ids = (scope.write if scope.write is not None else NO_TENANT,)
    state.statement = state.statement.options(
        with_loader_criteria(
            TenantScoped,
            lambda cls: cls.tenant_id.in_(ids),
            include_aliases=True,
            track_closure_variables=True,
        )
    )


# --- layer 2: write guard -----------------------------------------------------------------

def _tenant_of(session: Session, table: sa.Table, pk_value: Any) -> int | None:
    row = session.connection().execute(
        sa.select(table.c.tenant_id).where(table.c.id == pk_value)
    ).first()
    return row[0] if row else None


def _check_references(session: Session, obj: Any, tenant_id: int) -> None:
    """Refuse a many-to-one reference from `obj` to a row of another tenant."""
    mapper = sa.inspect(obj).mapper
    for rel in mapper.relationships:
        if rel.direction.name != "MANYTOONE" or not issubclass(rel.mapper.class_, TenantScoped):
            continue
        for local, _remote in rel.local_remote_pairs:
            if local.key == "tenant_id":
                continue
            attr = mapper.get_property_by_column(local).key
            value = getattr(obj, attr)
            related = getattr(obj, rel.key) if rel.key in sa.inspect(obj).dict else None
            if related is not None and getattr(related, "tenant_id", None) not in (None, tenant_id):
                raise TenantViolation(f"{mapper.class_.__name__}.{rel.key} 引用了其他办事处的数据")
            if value is None:
                continue
            # Under RLS another tenant's parent is invisible (None): refused the same way.
            owner = _tenant_of(session, rel.mapper.local_table, value)
            if owner != tenant_id:
                raise TenantViolation(
                    f"{mapper.class_.__name__}.{rel.key} 引用了其他办事处的数据（或不存在的记录）")


def _district_wide(obj: Any, scope: TenantScope) -> bool:
    """A row of no tenant, in a model that allows it, under a scope reading every tenant:
    written as district data (no tenant to guard). Row-level security agrees
    (`enable_tenant_rls(..., district_rows=True)`): the read policy shows such rows to
    `app.all_tenants` only, the write policies let only that setting write them."""
    if not getattr(obj, "__tenant_optional__", False) or not scope.reads_all:
        return False
    if obj.tenant_id is not None:
        return False
    state = sa.inspect(obj)
    for rel in state.mapper.relationships:  # a tenant set by relationship, not yet by id
        if "tenant_id" in {c.key for c in rel.local_columns} and \
                state.dict.get(rel.key) is not None:
            return False
    history = state.attrs.tenant_id.history
    return not (set(history.deleted or ()) | set(history.unchanged or ())) - {None}


def _guard_flush(session: Session, flush_context: Any, instances: Any) -> None:
    scope = current_scope()
    for obj in session.new:
        if not isinstance(obj, TenantScoped) or _district_wide(obj, scope):
            continue
        if obj.tenant_id is None:
            if scope.write is None:
                raise TenantViolation("当前用户没有可写入的办事处，不能新建数据")
            obj.tenant_id = scope.write
        if scope.orm_enforced:
            if obj.tenant_id != scope.write:
                raise TenantViolation("不能为其他办事处新建数据")
            _check_references(session, obj, obj.tenant_id)
    if not scope.orm_enforced:
        return
    for obj in list(session.dirty) + list(session.deleted):
        if not isinstance(obj, TenantScoped) or _district_wide(obj, scope):
            continue
        history = sa.inspect(obj).attrs.tenant_id.history
        originals = set(history.deleted or ()) | set(history.unchanged or ())
        if scope.write is None or obj.tenant_id != scope.write or (
            originals - {scope.write}
        ):
            raise TenantViolation("不能修改或删除其他办事处的数据")
        if obj in session.dirty:
            _check_references(session, obj, obj.tenant_id)


# --- layer 3: PostgreSQL row-level security ------------------------------------------------

def _apply_rls_settings(connection: sa.Connection, scope: TenantScope) -> None:
    if connection.dialect.name != "postgresql":
        return
    connection.exec_driver_sql(
        "SELECT set_config('app.tenant_ids', %(ids)s, true),"
        " set_config('app.all_tenants', %(all)s, true),"
        " set_config('app.write_tenant_id', %(write)s, true)",
        {
            "ids": ",".join(str(i) for i in sorted(scope.read or ())),
            "all": "on" if scope.read is None else "off",
            "write": "" if scope.write is None else str(scope.write),
        },
    )


def _after_begin(session: Session, transaction: Any, connection: sa.Connection) -> None:
    _apply_rls_settings(connection, current_scope())
    _apply_lock_wait(connection)


def _apply_lock_wait(connection: sa.Connection) -> None:
    """How long this transaction waits for a lock: ONEMETER_WEB_LOCK_TIMEOUT_MS in a web
    request (then a page says 数据库正忙 instead of hanging behind an import; 0 keeps the
    database's own wait), the database's own wait elsewhere (jobs, commands). SQLite's wait
    is a setting of the pooled connection, so it is set for every transaction."""
    from flask import current_app, has_request_context

    dialect = connection.dialect.name
    if dialect not in ("postgresql", "sqlite"):
        return
    wait = int(current_app.config.get("ONEMETER_WEB_LOCK_TIMEOUT_MS") or 0) \
        if has_request_context() else 0
    if dialect == "postgresql":
        if wait:
            connection.exec_driver_sql("SELECT set_config('lock_timeout', %(ms)s, true)",
                                       {"ms": f"{wait}ms"})
        return
    from onemeter.database import SQLITE_BUSY_TIMEOUT_MS

    connection.exec_driver_sql(f"PRAGMA busy_timeout = {wait or SQLITE_BUSY_TIMEOUT_MS}")


#: The predicates of every tenant table's policies. The settings are read in sub-selects so
#: PostgreSQL evaluates them once per statement (InitPlans), not once per row, and the
#: index on tenant_id stays usable.
RLS_READ = ("((SELECT coalesce(current_setting('app.all_tenants', true), '') = 'on')"
            " OR tenant_id = ANY (CAST((SELECT string_to_array(nullif("
            "current_setting('app.tenant_ids', true), ''), ',')) AS int[])))")
RLS_WRITE = ("(tenant_id = (SELECT nullif(current_setting('app.write_tenant_id', true), '')"
             "::int))")


#: Rows of no tenant (`__tenant_optional__` models): written only by a scope reading every
#: tenant. NULL never equals a tenant id, so RLS_READ already shows them to that scope only.
RLS_DISTRICT_WRITE = ("(tenant_id IS NULL AND (SELECT coalesce("
                      "current_setting('app.all_tenants', true), '') = 'on'))")


def enable_tenant_rls(op: Any, table: str, *, append_only: bool = False,
                      district_rows: bool = False) -> None:
    """Turn on row-level security for a tenant table; call it in the migration creating it.

    Reads follow `app.tenant_ids`/`app.all_tenants`; inserts, updates and deletes follow
    `app.write_tenant_id`. FORCE makes the table owner obey the policies too. With
    `append_only`, rows may be inserted by any tenant context but never updated or deleted.
    With `district_rows` (a nullable tenant_id), rows of no tenant are also written by a
    scope reading every tenant, and by no sub-district.
    """
    if op.get_bind().dialect.name != "postgresql":
        return
    write = f"({RLS_WRITE} OR {RLS_DISTRICT_WRITE})" if district_rows else RLS_WRITE
    statements = [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY om_read ON {table} FOR SELECT USING {RLS_READ}",
    ]
    if append_only:
        statements.append(f"CREATE POLICY om_insert ON {table} FOR INSERT WITH CHECK (true)")
    else:
        statements += [
            f"CREATE POLICY om_insert ON {table} FOR INSERT WITH CHECK {write}",
            f"CREATE POLICY om_update ON {table} FOR UPDATE USING {write}"
            f" WITH CHECK {write}",
            f"CREATE POLICY om_delete ON {table} FOR DELETE USING {write}",
        ]
    for statement in statements:
        op.execute(statement)


def disable_tenant_rls(op: Any, table: str) -> None:
    """Undo `enable_tenant_rls` (for a migration's downgrade)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for policy in ("om_read", "om_insert", "om_update", "om_delete"):
        op.execute(f"DROP POLICY IF EXISTS {policy} ON {table}")
    op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")


def grant_app_role(connection: sa.Connection, role: str) -> None:
    """Give the non-owner application role what it needs, and no more.

    DML on every table, but the change log is append-only (no UPDATE or DELETE) and the
    migration bookkeeping is out of reach. Run after every `db upgrade` by the owner.
    """
    quoted = connection.dialect.identifier_preparer.quote(role)
    for statement in (
        f"GRANT USAGE ON SCHEMA public TO {quoted}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON om_change_log FROM {quoted}",
        f"REVOKE ALL ON alembic_version FROM {quoted}",
    ):
        connection.exec_driver_sql(statement)


_installed = False


def install_tenancy_listeners() -> None:
    """Attach layers 1–3 to every ORM session (once per process; idempotent)."""
    global _installed
    if _installed:
        return
    event.listen(Session, "do_orm_execute", _tenant_criteria)
    event.listen(Session, "before_flush", _guard_flush)
    event.listen(Session, "after_begin", _after_begin)
    _installed = True
