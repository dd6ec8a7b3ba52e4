"""A plugin adds roles, CLI commands and background jobs through hooks alone."""

from __future__ import annotations

import subprocess
import sys

import sqlalchemy as sa

from onemeter.database import db
from onemeter.jobs import FINISHED, JobRun, enqueue_job
from onemeter.security import OMUser
from onemeter.tenancy import TenantScope, use_scope
from tests.support.factory import make_row
from tests.support.stack import PASSWORD
from tests.support.web import signed_in


def _role_id(app, name: str) -> int:
    with app.app_context():
        return app.appbuilder.sm.find_role(name).id


def test_a_tenant_admin_can_grant_a_role_a_plugin_adds_and_it_reads_but_cannot_write(
        app, login, tenant_ids):
    admin = login("pingqiao_admin")
    response = admin.post("/tenantstaff/add", data={
        "username": "pq_inspector", "first_name": "检查", "last_name": "员",
        "email": "pq_inspector@test.local", "roles": [str(_role_id(app, "example_inspector"))],
        "active": "y", "password": PASSWORD, "conf_password": PASSWORD})
    assert response.status_code == 302
    with app.app_context(), use_scope(TenantScope.all_read_only()):
        user = db.session.query(OMUser).filter_by(username="pq_inspector").one()
        assert [r.name for r in user.roles] == ["example_inspector"]
        assert user.tenant_id == tenant_ids["pingqiao"]
    inspector = signed_in(app, "pq_inspector", PASSWORD)
    assert inspector.get("/example/checklists/list/").status_code == 200
    refused = inspector.get("/example/checklists/add")
    assert refused.status_code in (302, 403)
    # The role is a tenant role: its holder sees only 平桥's data.
    assert "平桥办事处" in inspector.get("/").get_data(as_text=True)


def test_a_plugin_cli_command_runs_under_onemeter(app, tenant_ids, stack):
    from onemeter_example.models import Checklist

    with app.app_context(), use_scope(TenantScope.tenant(tenant_ids["pingdong"]), db.session):
        make_row(db.session, Checklist, tenant_ids["pingdong"], "CLI")
        db.session.commit()
    result = subprocess.run([sys.executable, "-m", "onemeter.cli", "example-count"],
                            env=stack.subprocess_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    counts = dict(line.split() for line in result.stdout.splitlines())
    assert int(counts["pingdong"]) >= 1


def test_a_plugin_job_kind_runs_in_a_real_worker_under_its_tenant(app, tenant_ids, stack):
    from onemeter_example.models import Checklist

    tenant, elsewhere = tenant_ids["zhenleishan"], tenant_ids["pingxi"]
    with app.app_context(), use_scope(TenantScope.tenant(elsewhere), db.session):
        make_row(db.session, Checklist, elsewhere, "ELSEWHERE")
        db.session.commit()
    with app.test_request_context(), use_scope(TenantScope.tenant(tenant), db.session):
        for i in range(3):
            make_row(db.session, Checklist, tenant, f"JOB{i}")
        db.session.commit()
        expected = db.session.scalar(sa.select(sa.func.count(Checklist.id)))
        run = enqueue_job("example.tally", tenant_id=tenant, user_id=None, queue="reports")
        run_id = run.id
    result = subprocess.run([sys.executable, "-m", "onemeter.cli", "worker", "--burst",
                             "--queue", "reports"], env=stack.subprocess_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        done = db.session.get(JobRun, run_id)
        assert done.state == FINISHED, done.error
        # Only this sub-district's checklists were visible to the job.
        assert done.counts == {"checklists": expected}
        db.session.rollback()
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        assert db.session.scalar(sa.select(sa.func.count(Checklist.id))) > expected
        db.session.rollback()
