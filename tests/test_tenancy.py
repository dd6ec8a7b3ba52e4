"""Each isolation layer on its own: the ORM read filter, the write guard, row-level security."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import Flask

from onemeter.database import db
from onemeter.tenancy import TenantScope, TenantViolation, use_scope
from onemeter_example.models import Checklist, ChecklistItem
from tests.support.factory import make_row, tenant_owned


@pytest.fixture
def two_checklists(app: Flask, tenant_ids: dict[str, int]) -> dict[str, int]:
    """One checklist in 平桥 (A) and one in 平西 (B); returns their ids."""
    ids = {}
    with app.app_context():
        for code in ("pingqiao", "pingxi"):
            with use_scope(TenantScope.tenant(tenant_ids[code]), db.session):
                ids[code] = make_row(db.session, Checklist, tenant_ids[code], f"T-{code}-").id
                db.session.commit()
    return ids


# --- layer 1: the ORM read filter ----------------------------------------------------------

def test_a_sub_district_reads_only_its_own_rows(app, tenant_ids, two_checklists):
    with app.app_context(), use_scope(TenantScope.tenant(tenant_ids["pingqiao"]), db.session):
        seen = set(db.session.scalars(sa.select(Checklist.id)))
        assert two_checklists["pingqiao"] in seen
        assert two_checklists["pingxi"] not in seen
        assert db.session.get(Checklist, two_checklists["pingxi"]) is None
        db.session.rollback()


def test_no_tenant_reads_nothing_and_cross_tenant_roles_read_all(app, two_checklists):
    with app.app_context():
        with use_scope(TenantScope.nothing(), db.session):
            assert db.session.scalar(sa.select(sa.func.count(Checklist.id))) == 0
            db.session.rollback()
        with use_scope(TenantScope.all_read_only(), db.session):
            seen = set(db.session.scalars(sa.select(Checklist.id)))
            assert set(two_checklists.values()) <= seen
            db.session.rollback()


def test_orm_bulk_update_touches_only_the_own_sub_district(app, tenant_ids, two_checklists):
    with app.app_context(), use_scope(TenantScope.tenant(tenant_ids["pingqiao"]), db.session):
        db.session.execute(sa.update(Checklist).values(name="批量改名"))
        db.session.commit()
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        names = dict(db.session.execute(sa.select(Checklist.id, Checklist.name)).all())
        assert names[two_checklists["pingqiao"]] == "批量改名"
        assert names[two_checklists["pingxi"]] != "批量改名"
        db.session.rollback()


# --- layer 2: the write guard --------------------------------------------------------------

def test_a_new_row_is_stamped_with_the_writing_sub_district(app, tenant_ids):
    with app.app_context(), use_scope(TenantScope.tenant(tenant_ids["pingdong"]), db.session):
        checklist = Checklist(name="自动归属")
        db.session.add(checklist)
        db.session.commit()
        assert checklist.tenant_id == tenant_ids["pingdong"]


def test_writing_with_no_tenant_or_for_another_tenant_is_refused(app, tenant_ids):
    with app.app_context():
        with use_scope(TenantScope.nothing(), db.session):
            db.session.add(Checklist(name="无归属"))
            with pytest.raises(TenantViolation, match="没有可写入的办事处"):
                db.session.flush()
            db.session.rollback()
        with use_scope(TenantScope.all_read_only(), db.session):
            db.session.add(Checklist(name="只读角色", tenant_id=tenant_ids["pingqiao"]))
            with pytest.raises(TenantViolation):
                db.session.flush()
            db.session.rollback()
        with use_scope(TenantScope.tenant(tenant_ids["pingqiao"]), db.session):
            db.session.add(Checklist(name="越界", tenant_id=tenant_ids["pingxi"]))
            with pytest.raises(TenantViolation, match="其他办事处"):
                db.session.flush()
            db.session.rollback()


def test_changing_or_deleting_another_tenants_row_is_refused(app, tenant_ids, two_checklists):
    """Even if a B row reaches an A session (e.g. loaded under another scope), it stays B's."""
    with app.app_context():
        with use_scope(TenantScope.all_read_only(), db.session):
            foreign = db.session.get(Checklist, two_checklists["pingxi"])
        with use_scope(TenantScope.tenant(tenant_ids["pingqiao"]), db.session):
            foreign.name = "被篡改"
            with pytest.raises(TenantViolation):
                db.session.flush()
            db.session.rollback()
        with use_scope(TenantScope.all_read_only(), db.session):
            foreign = db.session.get(Checklist, two_checklists["pingxi"])
        with use_scope(TenantScope.tenant(tenant_ids["pingqiao"]), db.session):
            db.session.delete(foreign)
            with pytest.raises(TenantViolation):
                db.session.flush()
            db.session.rollback()


def test_moving_a_row_to_another_tenant_is_refused(app, tenant_ids, two_checklists):
    with app.app_context(), use_scope(TenantScope.tenant(tenant_ids["pingqiao"]), db.session):
        own = db.session.get(Checklist, two_checklists["pingqiao"])
        own.tenant_id = tenant_ids["pingxi"]
        with pytest.raises(TenantViolation):
            db.session.flush()
        db.session.rollback()


def test_a_reference_to_another_tenants_parent_is_refused(app, tenant_ids, two_checklists):
    with app.app_context(), use_scope(TenantScope.tenant(tenant_ids["pingqiao"]), db.session):
        db.session.add(ChecklistItem(checklist_id=two_checklists["pingxi"], text="跨办事处引用"))
        with pytest.raises(TenantViolation, match="引用了其他办事处"):
            db.session.flush()
        db.session.rollback()


# --- layer 3: PostgreSQL row-level security ------------------------------------------------

def _tenant_tables() -> list[str]:
    return sorted(t.name for t in db.metadata.sorted_tables
                  if "tenant_id" in t.c and t.name != "ab_user")


@pytest.mark.postgres
def test_every_tenant_table_has_forced_row_level_security(app, stack):
    """Generic over the metadata: a plugin's new tenant table is checked without editing."""
    engine = sa.create_engine(stack.owner_url)
    with engine.connect() as connection:
        flags = dict(connection.execute(sa.text(
            "SELECT relname, relrowsecurity AND relforcerowsecurity FROM pg_class "
            "WHERE relname = ANY(:names)"), {"names": _tenant_tables()}).all())
    engine.dispose()
    assert set(flags) == set(_tenant_tables())
    assert all(flags.values()), {k: v for k, v in flags.items() if not v}


@pytest.mark.postgres
def test_the_application_role_is_neither_owner_nor_superuser(app, stack):
    engine = sa.create_engine(stack.app_url)
    with engine.connect() as connection:
        row = connection.execute(sa.text(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")).one()
        owners = set(connection.execute(sa.text(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE tablename = ANY(:names)"),
            {"names": _tenant_tables()}).scalars())
        user = connection.execute(sa.text("SELECT current_user")).scalar()
    engine.dispose()
    assert row == (False, False)
    assert user not in owners


def _raw(stack, settings: dict[str, str], sql: str, params: dict | None = None):
    """Run one statement as the app role in a transaction with `settings` (SET LOCAL;
    PostgreSQL only: SQLite has no settings and no row-level security)."""
    engine = sa.create_engine(stack.app_url)
    try:
        with engine.begin() as connection:
            for key, value in settings.items() if engine.dialect.name == "postgresql" else ():
                connection.execute(sa.text("SELECT set_config(:k, :v, true)"),
                                   {"k": key, "v": value})
            result = connection.execute(sa.text(sql), params or {})
            return result.all() if result.returns_rows else result.rowcount
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_rls_shows_nothing_without_a_tenant_and_only_the_own_tenant_with_one(
        app, stack, tenant_ids, two_checklists):
    assert _raw(stack, {}, "SELECT id FROM ex_checklist") == []
    rows = _raw(stack, {"app.tenant_ids": str(tenant_ids["pingqiao"])},
                "SELECT id, tenant_id FROM ex_checklist")
    assert rows and {t for _, t in rows} == {tenant_ids["pingqiao"]}
    everything = _raw(stack, {"app.all_tenants": "on"}, "SELECT DISTINCT tenant_id FROM ex_checklist")
    assert {tenant_ids["pingqiao"], tenant_ids["pingxi"]} <= {t for (t,) in everything}


@pytest.mark.postgres
def test_rls_refuses_writes_outside_the_write_tenant(app, stack, tenant_ids, two_checklists):
    a, b = str(tenant_ids["pingqiao"]), str(tenant_ids["pingxi"])
    as_a = {"app.tenant_ids": a, "app.write_tenant_id": a}
    with pytest.raises(sa.exc.ProgrammingError, match="row-level security"):
        _raw(stack, as_a, "INSERT INTO ex_checklist (name, tenant_id) VALUES ('越界', :b)",
             {"b": int(b)})
    assert _raw(stack, as_a, "UPDATE ex_checklist SET name = 'x' WHERE id = :id",
                {"id": two_checklists["pingxi"]}) == 0
    assert _raw(stack, as_a, "DELETE FROM ex_checklist WHERE id = :id",
                {"id": two_checklists["pingxi"]}) == 0
    # Read-everything roles still cannot write: no write tenant.
    assert _raw(stack, {"app.all_tenants": "on"}, "DELETE FROM ex_checklist WHERE id = :id",
                {"id": two_checklists["pingxi"]}) == 0


def test_the_database_refuses_a_cross_tenant_reference(app, stack, tenant_ids, two_checklists):
    """Composite (tenant_id, parent) foreign keys: no child of A can point at B's parent.
    On SQLite too (the embedded install), which enforces keys only when a connection asks."""
    a = str(tenant_ids["pingqiao"])
    with pytest.raises(sa.exc.IntegrityError, match="(?i)foreign key"):
        _raw(stack, {"app.tenant_ids": a, "app.write_tenant_id": a},
             "INSERT INTO ex_checklist_item (checklist_id, text, tenant_id) "
             "VALUES (:parent, '跨办事处', :a)",
             {"parent": two_checklists["pingxi"], "a": int(a)})


@pytest.mark.postgres
def test_tenant_settings_last_one_transaction_only(app, stack, tenant_ids):
    engine = sa.create_engine(stack.app_url, pool_size=1, max_overflow=0)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("SELECT set_config('app.tenant_ids', :t, true)"),
                               {"t": str(tenant_ids["pingqiao"])})
        with engine.begin() as connection:  # same pooled connection, next transaction
            left = connection.execute(sa.text(
                "SELECT coalesce(current_setting('app.tenant_ids', true), '')")).scalar()
    finally:
        engine.dispose()
    assert left == ""


def test_every_tenant_owned_model_is_tenant_scoped_or_a_user(app):
    from onemeter.security import OMUser
    from onemeter.tenancy import TenantScoped

    for mapper in db.Model.registry.mappers:
        model = mapper.class_
        if tenant_owned(model) and model.__tablename__ != "ab_user":
            assert issubclass(model, TenantScoped), model
    assert tenant_owned(OMUser)


def test_a_table_without_its_own_tenant_key_has_a_parent_key_that_checks_the_tenant(app):
    """`__tenant_foreign_key__ = False` drops the key to om_tenant only where a composite
    key of NOT NULL columns to a tenant-scoped parent proves the tenant exists."""
    from onemeter.tenancy import TenantScoped

    checked_by_parent = [m.class_ for m in db.Model.registry.mappers
                         if issubclass(m.class_, TenantScoped)
                         and not any(fk.target_fullname == "om_tenant.id"
                                     for fk in m.class_.__table__.c.tenant_id.foreign_keys)]
    assert "om_household" in {model.__tablename__ for model in checked_by_parent}
    for model in checked_by_parent:
        table = model.__table__
        covering = [fk for fk in table.foreign_key_constraints
                    if fk.column_keys[0] == "tenant_id" and len(fk.column_keys) > 1
                    and all(not table.c[name].nullable for name in fk.column_keys)
                    and "tenant_id" in fk.referred_table.c]
        assert covering, f"{table.name}: tenant_id checked by no key"


def test_a_household_naming_a_sub_district_that_does_not_exist_is_refused(
        app, stack, tenant_ids):
    """om_household has no key of its own to om_tenant (0011): its (tenant_id, community_id)
    key to om_community refuses a tenant that has no such community, on both databases."""
    from onemeter.registry.models import Community

    tenant = tenant_ids["pingqiao"]
    with app.app_context():
        with use_scope(TenantScope.tenant(tenant), db.session):
            community = make_row(db.session, Community, tenant, "T-0011-")
            db.session.commit()
            community_id = community.id
    insert = ("INSERT INTO om_household (tenant_id, community_id, room, natural_key, opted_out) "
              "VALUES (:t, :c, '101', :k, false)")
    missing = max(tenant_ids.values()) + 1000
    with pytest.raises(sa.exc.IntegrityError, match="(?i)foreign key"):
        _raw(stack, {"app.write_tenant_id": str(missing)}, insert,
             {"t": missing, "c": community_id, "k": "1-1-101"})
    # The same row under the community's own sub-district is written (the control).
    assert _raw(stack, {"app.write_tenant_id": str(tenant)}, insert,
                {"t": tenant, "c": community_id, "k": "1-1-101"}) == 1


def _undo_record_check_holds_on_postgresql(stack, scope: dict[str, str], tenant: int,
                                          batch_id: int, missing: int) -> None:
    """What the declared key also guaranteed, for 0012's triggers: a temporary table named
    om_import_batch does not stand in for the real one; a delete under REPEATABLE READ is
    refused (its snapshot could miss a concurrent import's records); TRUNCATE … CASCADE of
    the batches empties the records (rolled back: the run's database is shared)."""
    engine = sa.create_engine(stack.app_url)
    try:
        with engine.connect() as connection:
            for key, value in scope.items():
                connection.execute(sa.text("SELECT set_config(:k, :v, false)"),
                                   {"k": key, "v": value})
            connection.exec_driver_sql(
                "CREATE TEMP TABLE om_import_batch (tenant_id integer, id integer)")
            connection.execute(sa.text("INSERT INTO om_import_batch VALUES (:t, :m)"),
                               {"t": tenant, "m": missing})
            with pytest.raises(sa.exc.IntegrityError, match="(?i)foreign key"):
                connection.execute(sa.text(
                    "INSERT INTO om_import_row (tenant_id, batch_id, row_number, action) "
                    "VALUES (:t, :m, 1, 'create')"), {"t": tenant, "m": missing})
            connection.rollback()
        with engine.connect() as connection:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
            for key, value in scope.items():
                connection.execute(sa.text("SELECT set_config(:k, :v, true)"),
                                   {"k": key, "v": value})
            with pytest.raises(sa.exc.OperationalError, match="READ COMMITTED"):
                connection.execute(sa.text("DELETE FROM om_import_batch WHERE id = :b"),
                                   {"b": batch_id})
            connection.rollback()
    finally:
        engine.dispose()
    owner = sa.create_engine(stack.owner_url)
    try:
        with owner.connect() as connection:
            connection.exec_driver_sql("SELECT set_config('app.all_tenants', 'on', true)")
            assert connection.exec_driver_sql("SELECT count(*) FROM om_import_row").scalar()
            connection.exec_driver_sql("TRUNCATE om_import_batch CASCADE")
            assert connection.exec_driver_sql("SELECT count(*) FROM om_import_row").scalar() == 0
            connection.rollback()
    finally:
        owner.dispose()


def test_an_undo_record_names_an_existing_batch_of_its_own_sub_district(
        app, stack, tenant_ids):
    """om_import_row → om_import_batch: a declared key on SQLite, a check per statement on
    PostgreSQL (0012). Both refuse a record naming a missing batch or another sub-district's,
    delete the records with their batch, and keep a batch's key while records name it."""
    from onemeter.imports.models import ImportBatch

    own, other = tenant_ids["pingqiao"], tenant_ids["pingxi"]
    batches = {}
    with app.app_context():
        for tenant in (own, other):
            with use_scope(TenantScope.tenant(tenant), db.session):
                batch = ImportBatch(tenant_id=tenant, kind="households", filename="台账.xlsx",
                                    content_hash=f"0012-{tenant}", size=1,
                                    file_key=f"{tenant}/imports/0012.xlsx", state="committed",
                                    counts={})
                db.session.add(batch)
                db.session.commit()
                batches[tenant] = batch.id
    scope = {"app.tenant_ids": str(own), "app.write_tenant_id": str(own)}
    insert = ("INSERT INTO om_import_row (tenant_id, batch_id, row_number, action) "
              "SELECT :t, :b, n, 'create' FROM (SELECT 5 AS n UNION ALL SELECT 6) AS rows")
    count = ("SELECT count(*) FROM om_import_row WHERE tenant_id = :t AND batch_id = :b")
    missing = max(batches.values()) + 1000
    for batch_id in (missing, batches[other]):
        with pytest.raises(sa.exc.IntegrityError, match="(?i)foreign key"):
            _raw(stack, scope, insert, {"t": own, "b": batch_id})
    # The control: the own batch takes both records of the statement.
    assert _raw(stack, scope, insert, {"t": own, "b": batches[own]}) == 2
    assert _raw(stack, scope, count, {"t": own, "b": batches[own]}) == [(2,)]
    with pytest.raises(sa.exc.IntegrityError, match="(?i)foreign key"):
        _raw(stack, scope, "UPDATE om_import_row SET batch_id = :m WHERE batch_id = :b",
             {"m": missing, "b": batches[own]})
    with pytest.raises(sa.exc.IntegrityError, match="(?i)foreign key"):
        _raw(stack, scope, "UPDATE om_import_batch SET id = :m WHERE id = :b",
             {"m": missing, "b": batches[own]})
    if stack.app_url.startswith("postgresql"):
        _undo_record_check_holds_on_postgresql(stack, scope, own, batches[own], missing)
    assert _raw(stack, scope, "DELETE FROM om_import_batch WHERE tenant_id = :t AND id = :b",
                {"t": own, "b": batches[own]}) == 1
    assert _raw(stack, scope, count, {"t": own, "b": batches[own]}) == [(0,)]
    other_scope = {"app.tenant_ids": str(other), "app.write_tenant_id": str(other)}
    assert _raw(stack, other_scope, "DELETE FROM om_import_batch WHERE id = :b",
                {"b": batches[other]}) == 1
