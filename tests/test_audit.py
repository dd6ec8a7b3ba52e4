"""The change log: every change to a sub-district's data is recorded, and tampering shows.

Entries are made through the real pages; tampering goes through the owner's connection (the
app role cannot do it at all on PostgreSQL) and every test puts back what it altered, so the
chain verifies again for the rest of the run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient

from onemeter.audit import ChangeLog
from onemeter.cli import main
from onemeter.database import db
from onemeter.security import OMUser
from onemeter.tenancy import TenantScope, use_scope
from tests.support.stack import Stack

LOG = ChangeLog.__table__


def verify(app: Flask) -> Result:
    return app.test_cli_runner().invoke(main, ["audit", "verify"])


@contextmanager
def owner_connection(stack: Stack) -> Iterator[sa.Connection]:
    """One transaction as the database owner, with row-level security off for the log.

    The log has FORCE row-level security and no UPDATE/DELETE policy: even its owner may only
    append. Switching RLS off is DDL, so it is undone with the same transaction.
    """
    engine = sa.create_engine(stack.owner_url)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql("ALTER TABLE om_change_log DISABLE ROW LEVEL SECURITY")
            yield connection
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql("ALTER TABLE om_change_log ENABLE ROW LEVEL SECURITY")
    finally:
        engine.dispose()


def log_rows(stack: Stack, request_id: str) -> list[dict[str, Any]]:
    with owner_connection(stack) as connection:
        return [dict(r) for r in connection.execute(
            sa.select(LOG).where(LOG.c.request_id == request_id).order_by(LOG.c.id)).mappings()]


def checklist_id(app: Flask, name: str) -> int | None:
    from onemeter_example.models import Checklist

    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        return db.session.execute(
            sa.select(Checklist.id).where(Checklist.name == name)).scalar_one_or_none()


def user_id(app: Flask, username: str) -> int:
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        return db.session.execute(
            sa.select(OMUser.id).where(OMUser.username == username)).scalar_one()


@pytest.fixture
def staff(login: Callable[[str], FlaskClient]) -> FlaskClient:
    return login("pingqiao_staff")


def make_checklists(staff: FlaskClient, app: Flask, count: int) -> tuple[str, list[int]]:
    """`count` checklists made through the add page, in one request id; their ids."""
    marker = uuid.uuid4().hex[:8]
    request_id = f"audit-{marker}"
    for n in range(count):
        response = staff.post("/example/checklists/add", headers={"X-Request-ID": request_id},
                              data={"name": f"审计-{marker}-{n}", "contact_phone": "13800001111"})
        assert response.status_code == 302
    return request_id, [checklist_id(app, f"审计-{marker}-{n}") for n in range(count)]


def test_creating_updating_and_deleting_through_the_pages_is_recorded_with_who_and_what(
        app: Flask, stack: Stack, staff: FlaskClient, tenant_ids: dict[str, int]) -> None:
    marker = uuid.uuid4().hex[:8]
    name = f"审计清单-{marker}"

    created = staff.post("/example/checklists/add", headers={"X-Request-ID": f"add-{marker}"},
                         data={"name": name, "contact_phone": "13812345678"})
    assert created.status_code == 302
    pk = checklist_id(app, name)
    assert pk is not None
    edited = staff.post(f"/example/checklists/edit/{pk}",
                        headers={"X-Request-ID": f"edit-{marker}"},
                        data={"name": f"{name}-改", "contact_phone": "13812345678"})
    assert edited.status_code == 302
    deleted = staff.post(f"/example/checklists/delete/{pk}",
                         headers={"X-Request-ID": f"delete-{marker}"})
    assert deleted.status_code == 302
    assert checklist_id(app, f"{name}-改") is None

    staff_id, pingqiao = user_id(app, "pingqiao_staff"), tenant_ids["pingqiao"]
    (add,) = log_rows(stack, f"add-{marker}")
    (edit,) = log_rows(stack, f"edit-{marker}")
    (delete,) = log_rows(stack, f"delete-{marker}")
    for entry in (add, edit, delete):
        assert entry["model"] == "Checklist" and entry["object_id"] == str(pk)
        assert entry["user_id"] == staff_id and entry["actor"] == "pingqiao_staff"
        assert entry["tenant_id"] == pingqiao
        assert entry["at"] is not None and len(entry["hash"]) == 64
    assert add["action"] == "create" and add["before"] is None
    assert add["after"] == {"id": pk, "name": name, "contact_phone": "13812345678",
                            "tenant_id": pingqiao}
    assert edit["action"] == "update"
    assert edit["before"] == {"name": name} and edit["after"] == {"name": f"{name}-改"}
    assert delete["action"] == "delete" and delete["after"] is None
    assert delete["before"]["name"] == f"{name}-改" and delete["before"]["id"] == pk
    # One chain per sub-district: each entry links to the one before it.
    assert edit["prev_hash"] == add["hash"] and delete["prev_hash"] == edit["hash"]


def test_a_request_without_an_id_gets_one_for_its_entries(app: Flask, stack: Stack,
                                                          staff: FlaskClient) -> None:
    name = f"无编号-{uuid.uuid4().hex[:8]}"
    assert staff.post("/example/checklists/add", data={"name": name}).status_code == 302
    pk = checklist_id(app, name)
    with owner_connection(stack) as connection:
        entry = connection.execute(sa.select(LOG).where(
            LOG.c.model == "Checklist", LOG.c.object_id == str(pk), LOG.c.action == "create"
        ).order_by(LOG.c.id.desc()).limit(1)).mappings().one()
    assert entry["after"]["name"] == name
    assert entry["request_id"] and len(entry["request_id"]) >= 16


def test_an_unchanged_save_records_nothing(app: Flask, stack: Stack, staff: FlaskClient) -> None:
    request_id, (pk,) = make_checklists(staff, app, 1)
    name = log_rows(stack, request_id)[0]["after"]["name"]
    staff.post(f"/example/checklists/edit/{pk}", headers={"X-Request-ID": f"{request_id}-same"},
               data={"name": name, "contact_phone": "13800001111"})
    assert log_rows(stack, f"{request_id}-same") == []


def test_sub_district_admin_reads_the_change_log_of_their_own_data_only(
        app: Flask, stack: Stack, staff: FlaskClient,
        login: Callable[[str], FlaskClient]) -> None:
    request_id, (pk,) = make_checklists(staff, app, 1)
    (entry,) = log_rows(stack, request_id)

    own = login("pingqiao_admin").get(f"/changelog/show/{entry['id']}")
    assert own.status_code == 200 and request_id in own.get_data(as_text=True)
    other = login("pingxi_admin").get(f"/changelog/show/{entry['id']}")
    assert other.status_code in (302, 404)
    assert request_id not in other.get_data(as_text=True)


def test_audit_verify_passes_on_an_untouched_log(app: Flask, staff: FlaskClient) -> None:
    make_checklists(staff, app, 2)
    result = verify(app)
    assert result.exit_code == 0, result.output
    assert "哈希链无误" in result.output


def test_edited_log_entry_fails_verification_naming_it(app: Flask, stack: Stack,
                                                       staff: FlaskClient) -> None:
    request_id, _ = make_checklists(staff, app, 2)
    victim = log_rows(stack, request_id)[0]
    with owner_connection(stack) as connection:
        connection.execute(LOG.update().where(LOG.c.id == victim["id"]).values(
            after={**victim["after"], "contact_phone": "13900000000"}))
    try:
        result = verify(app)
        assert result.exit_code != 0
        assert f"第 {victim['id']} 条" in result.output
        assert "修改" in result.output
    finally:
        with owner_connection(stack) as connection:
            connection.execute(LOG.update().where(LOG.c.id == victim["id"]).values(
                after=victim["after"]))
    assert verify(app).exit_code == 0


def test_deleted_log_entry_fails_verification_at_the_entry_after_it(
        app: Flask, stack: Stack, staff: FlaskClient) -> None:
    request_id, _ = make_checklists(staff, app, 2)
    removed, follower = log_rows(stack, request_id)
    with owner_connection(stack) as connection:
        connection.execute(LOG.delete().where(LOG.c.id == removed["id"]))
    try:
        result = verify(app)
        assert result.exit_code != 0
        assert f"第 {follower['id']} 条" in result.output
        assert "删除" in result.output
    finally:
        with owner_connection(stack) as connection:
            connection.execute(LOG.insert().values(**removed))
    assert verify(app).exit_code == 0


def test_audit_verify_runs_as_a_command_and_exits_non_zero_on_tampering(
        app: Flask, stack: Stack, staff: FlaskClient) -> None:
    import subprocess
    import sys

    request_id, _ = make_checklists(staff, app, 1)
    (victim,) = log_rows(stack, request_id)
    command = [sys.executable, "-m", "onemeter.cli", "audit", "verify"]
    env = stack.subprocess_env()

    assert subprocess.run(command, env=env, capture_output=True).returncode == 0
    with owner_connection(stack) as connection:
        connection.execute(LOG.update().where(LOG.c.id == victim["id"]).values(actor="someone"))
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        assert done.returncode != 0
        assert f"第 {victim['id']} 条" in done.stderr + done.stdout
    finally:
        with owner_connection(stack) as connection:
            connection.execute(LOG.update().where(LOG.c.id == victim["id"]).values(
                actor=victim["actor"]))


@pytest.mark.postgres
@pytest.mark.parametrize("statement", [
    "UPDATE om_change_log SET actor = 'someone' WHERE id = {id}",
    "DELETE FROM om_change_log WHERE id = {id}",
    "TRUNCATE om_change_log",
])
def test_app_database_role_cannot_rewrite_or_remove_log_entries(
        app: Flask, stack: Stack, staff: FlaskClient, tenant_ids: dict[str, int],
        statement: str) -> None:
    request_id, _ = make_checklists(staff, app, 1)
    (entry,) = log_rows(stack, request_id)
    engine = sa.create_engine(stack.app_url)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(
                "SELECT set_config('app.all_tenants', 'on', false),"
                " set_config('app.write_tenant_id', %(t)s, false)",
                {"t": str(tenant_ids["pingqiao"])})
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                connection.exec_driver_sql(statement.format(id=entry["id"]))
    finally:
        engine.dispose()
    assert log_rows(stack, request_id) == [entry]
