"""Background jobs end to end: the page, Redis, a real `onemeter worker` process, the JobRun row.

No mocks: every test drives real RQ worker subprocesses against this run's Redis queues and
database (DESIGN "Jobs"). Waits are bounded polls that fail with the worker's log, never
assertions about how fast something ran.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from flask import Flask
from flask.testing import FlaskClient
from rq import Queue
from sqlalchemy.orm import Session

from onemeter.database import db
from onemeter.jobs import (
    CANCELLED,
    FAILED,
    FINISHED,
    QUEUED,
    QUEUES,
    STARTED,
    JobRun,
    QueueUnavailable,
    cancel_job,
    cancel_requested,
    clear_aside,
    enqueue_job,
    flag_cancel,
    job_progress,
    queue_name,
    redis_connection,
    report_aside,
)
from onemeter.security import OMUser
from onemeter.tenancy import TenantScope, use_scope
from tests.support.locks import another_writer
from tests.support.stack import Stack
from tests.support.worker import WorkerProcess, run_burst_worker, worker_process

#: A demo job long enough to be caught mid-way (400 steps of 50 ms).
LONG = {"n": 400, "delay": 0.05}
#: Generous upper bounds for waits; a healthy run needs a small fraction of them.
WORKER_START_WAIT = 90.0
JOB_WAIT = 180.0


# --- helpers ---------------------------------------------------------------------------------

def wait_for(condition: Callable[[], Any], timeout: float, what: str,
             explain: Callable[[], str] = lambda: "",
             hopeless: Callable[[], bool] = lambda: False) -> Any:
    """Poll `condition` until it returns something truthy; fail naming `what` after `timeout`,
    or at once when `hopeless()` says it can no longer happen (the worker has exited)."""
    deadline = time.monotonic() + timeout
    while True:
        given_up = hopeless()
        value = condition()
        if value:
            return value
        if given_up:
            pytest.fail(f"{what} can no longer happen (the worker has exited)\n{explain()}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting ({timeout:.0f} s) for {what}\n{explain()}")
        time.sleep(0.1)


def read_run(app: Flask, run_id: int) -> dict[str, Any]:
    """The JobRun as the database holds it now (a fresh session, every tenant readable)."""
    with app.app_context(), use_scope(TenantScope.all_read_only()), \
            Session(db.engine) as session:
        run = session.get(JobRun, run_id)
        assert run is not None, f"JobRun {run_id} does not exist"
        return {column.key: getattr(run, column.key) for column in JobRun.__table__.columns}


def runs_of(app: Flask, tenant_id: int) -> list[dict[str, Any]]:
    """Every JobRun of one tenant, oldest first."""
    with app.app_context(), use_scope(TenantScope.all_read_only()), \
            Session(db.engine) as session:
        ids = [r.id for r in session.query(JobRun).filter(JobRun.tenant_id == tenant_id)
               .order_by(JobRun.id)]
    return [read_run(app, i) for i in ids]


def user_id(app: Flask, username: str) -> int:
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        user = db.session.query(OMUser).filter_by(username=username).one()
        return user.id


def enqueue_demo(app: Flask, tenant_id: int, user: int, params: dict[str, Any],
                 idempotency_key: str | None = None) -> int:
    """Start a demo job as the tenant's code would (app context, tenant scope)."""
    with app.app_context(), use_scope(TenantScope.tenant(tenant_id), db.session):
        run = enqueue_job("demo.count", tenant_id=tenant_id, user_id=user, queue="reports",
                          params=params, idempotency_key=idempotency_key)
        return run.id


def wait_for_state(app: Flask, run_id: int, states: set[str], worker: WorkerProcess | None,
                   timeout: float = JOB_WAIT) -> dict[str, Any]:
    def explain() -> str:
        return f"JobRun now: {read_run(app, run_id)}\n{worker.log() if worker else ''}"

    return wait_for(lambda: (r := read_run(app, run_id))["state"] in states and r,
                    timeout, f"JobRun {run_id} to reach {sorted(states)}", explain,
                    hopeless=lambda: worker is not None and worker.popen.poll() is not None)


def wait_for_progress(app: Flask, run_id: int, worker: WorkerProcess) -> dict[str, Any]:
    """Wait until the job runs in a horse and has reported some progress."""
    return wait_for(lambda: (r := read_run(app, run_id))["progress"] > 0
                    and r["state"] == STARTED and r,
                    WORKER_START_WAIT, f"JobRun {run_id} to report progress",
                    lambda: f"JobRun now: {read_run(app, run_id)}\n{worker.log()}",
                    hopeless=lambda: worker.popen.poll() is not None)


def the_horse(worker: WorkerProcess) -> psutil.Process:
    horses = wait_for(worker.horses, WORKER_START_WAIT, "the worker's work-horse", worker.log)
    assert len(horses) == 1, f"expected one work-horse, found {horses}"
    return horses[0]


def started_run_id(response_html: str) -> int:
    found = re.search(r"已启动演示任务 #(\d+)", response_html)
    assert found, f"no start message on the page:\n{response_html[:3000]}"
    return int(found.group(1))


def flashed(client: FlaskClient, path: str, **kwargs: Any) -> str:
    """POST and follow the redirect; the page HTML (with its flashed messages)."""
    response = client.post(path, follow_redirects=True, **kwargs)
    assert response.status_code == 200, f"POST {path} → {response.status_code}"
    return response.get_data(as_text=True)


@pytest.fixture(autouse=True)
def empty_queues(app: Flask) -> Iterator[None]:
    """Each test starts and ends with this run's queues empty (a failed test leaves no jobs)."""

    def empty() -> None:
        with app.app_context():
            connection = redis_connection(app)
            for name in QUEUES:
                Queue(queue_name(name, app), connection=connection).empty()

    empty()
    yield
    empty()


@pytest.fixture
def pingqiao_staff(app: Flask) -> int:
    return user_id(app, "pingqiao_staff")


# --- 1. the loop: page → Redis → worker → page -----------------------------------------------

def test_demo_job_started_from_the_page_runs_in_a_worker_and_reports_to_its_own_tenant_only(
        app: Flask, stack: Stack, tmp_path: Path, login: Callable[..., FlaskClient],
        tenant_ids: dict[str, int]) -> None:
    staff = login("pingqiao_staff")
    run_id = started_run_id(flashed(staff, "/jobs/start-demo"))
    assert read_run(app, run_id)["state"] == QUEUED

    run_burst_worker(stack, tmp_path, "reports")

    run = read_run(app, run_id)
    assert run["state"] == FINISHED, run
    assert run["progress"] == 100
    assert run["counts"] == {"counted": 20}
    assert run["tenant_id"] == tenant_ids["pingqiao"]
    assert run["user_id"] == user_id(app, "pingqiao_staff")
    assert run["error"] is None
    assert run["started_at"] is not None and run["ended_at"] is not None

    for username in ("pingqiao_staff", "pingqiao_admin"):
        response = login(username).get(f"/jobs/progress/{run_id}")
        assert response.status_code == 200, username
        assert response.json["state"] == FINISHED
        assert response.json["state_label"] == "已完成"
        assert response.json["progress"] == 100
        assert response.json["counts"] == {"counted": 20}

    show_link = f"/jobs/show/{run_id}"
    assert show_link in login("pingqiao_admin").get("/jobs/list/").get_data(as_text=True)
    for username in ("pingxi_staff", "pingxi_admin"):
        client = login(username)
        assert client.get(f"/jobs/progress/{run_id}").status_code == 404, username
        listing = client.get("/jobs/list/")
        assert listing.status_code == 200
        assert show_link not in listing.get_data(as_text=True), username


# --- 2. a work-horse killed mid-job -----------------------------------------------------------

def test_a_work_horse_killed_mid_job_leaves_the_job_failed_as_interrupted_and_it_can_run_again(
        app: Flask, stack: Stack, tmp_path: Path, tenant_ids: dict[str, int],
        pingqiao_staff: int) -> None:
    tenant = tenant_ids["pingqiao"]
    key = f"killed-horse-{tmp_path.name}"
    run_id = enqueue_demo(app, tenant, pingqiao_staff, LONG, idempotency_key=key)

    with worker_process(stack, tmp_path, "reports") as worker:
        wait_for_progress(app, run_id, worker)
        horse = the_horse(worker)
        horse.send_signal(signal.SIGKILL)
        run = wait_for_state(app, run_id, {FAILED}, worker)
        assert worker.wait() == 0, worker.log()

    assert "任务中断" in run["error"], run["error"]
    assert "可重新运行" in run["error"]
    assert 0 < run["progress"] < 100
    assert run["ended_at"] is not None

    # The same job, with the same idempotency key, can be started again and finishes.
    again_id = enqueue_demo(app, tenant, pingqiao_staff, LONG, idempotency_key=key)
    assert again_id != run_id
    run_burst_worker(stack, tmp_path, "reports", "again")
    again = read_run(app, again_id)
    assert again["state"] == FINISHED, again
    assert again["counts"] == {"counted": LONG["n"]}
    assert read_run(app, run_id)["state"] == FAILED  # the interrupted attempt stays in history


# --- 3. the whole worker killed ---------------------------------------------------------------

def test_a_worker_killed_with_its_horse_is_reaped_as_interrupted_when_a_worker_starts(
        app: Flask, stack: Stack, tmp_path: Path, tenant_ids: dict[str, int],
        pingqiao_staff: int) -> None:
    run_id = enqueue_demo(app, tenant_ids["pingqiao"], pingqiao_staff, LONG)

    with worker_process(stack, tmp_path, "reports", "killed") as worker:
        wait_for_progress(app, run_id, worker)
        horse = the_horse(worker)
        worker.popen.send_signal(signal.SIGKILL)
        horse.send_signal(signal.SIGKILL)
        worker.popen.wait(timeout=30)
        psutil.wait_procs([horse], timeout=30)

    # Nobody is left to say so: the row still claims the job is running.
    assert read_run(app, run_id)["state"] == STARTED

    log = run_burst_worker(stack, tmp_path, "reports", "next")
    run = read_run(app, run_id)
    assert run["state"] == FAILED, f"{run}\n{log}"
    assert "任务中断" in run["error"] and "工作进程已终止" in run["error"], run["error"]
    assert run["ended_at"] is not None
    assert str(run_id) in log  # the new worker says which jobs it marked


# --- 4. Redis down ----------------------------------------------------------------------------

def test_with_redis_down_the_pages_still_work_and_starting_a_job_says_the_queue_is_unavailable(
        make_app: Callable[..., Flask], app: Flask, login: Callable[..., FlaskClient],
        tenant_ids: dict[str, int], pingqiao_staff: int) -> None:
    no_redis = make_app(ONEMETER_REDIS_URL="redis://127.0.0.1:1/0")
    tenant = tenant_ids["pingqiao"]
    before = {r["id"] for r in runs_of(app, tenant)}
    staff = login("pingqiao_staff", application=no_redis)

    assert staff.get("/jobs/list/").status_code == 200
    page = flashed(staff, "/jobs/start-demo")
    assert "任务队列暂不可用" in page

    new = [r for r in runs_of(app, tenant) if r["id"] not in before]
    assert len(new) == 1, new
    assert new[0]["state"] == FAILED
    assert "任务队列不可用" in new[0]["error"]
    assert new[0]["ended_at"] is not None

    with no_redis.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        with pytest.raises(QueueUnavailable, match="任务队列暂不可用"):
            enqueue_job("demo.count", tenant_id=tenant, user_id=pingqiao_staff,
                        queue="reports", params={"n": 1})


# --- 5. cancellation --------------------------------------------------------------------------

def test_cancelling_a_running_job_stops_it_as_cancelled(
        app: Flask, stack: Stack, tmp_path: Path, login: Callable[..., FlaskClient],
        tenant_ids: dict[str, int], pingqiao_staff: int) -> None:
    run_id = enqueue_demo(app, tenant_ids["pingqiao"], pingqiao_staff, LONG)

    with worker_process(stack, tmp_path, "reports") as worker:
        wait_for_progress(app, run_id, worker)
        # Another sub-district cannot cancel it: to them the job does not exist.
        assert login("pingxi_staff").post(f"/jobs/cancel/{run_id}").status_code == 404
        assert read_run(app, run_id)["state"] == STARTED

        page = flashed(login("pingqiao_staff"), f"/jobs/cancel/{run_id}")
        assert "已取消" in page
        run = wait_for_state(app, run_id, {CANCELLED}, worker)
        assert worker.wait() == 0, worker.log()

    run = read_run(app, run_id)
    assert run["state"] == CANCELLED, run
    assert run["progress"] < 100
    assert run["message"] and "已取消" in run["message"]
    assert run["ended_at"] is not None


def test_a_job_cancelled_while_queued_never_runs(
        app: Flask, stack: Stack, tmp_path: Path, login: Callable[..., FlaskClient],
        tenant_ids: dict[str, int], pingqiao_staff: int) -> None:
    run_id = enqueue_demo(app, tenant_ids["pingqiao"], pingqiao_staff, {"n": 3})
    flashed(login("pingqiao_admin"), f"/jobs/cancel/{run_id}")
    assert read_run(app, run_id)["state"] == CANCELLED

    run_burst_worker(stack, tmp_path, "reports")

    run = read_run(app, run_id)
    assert run["state"] == CANCELLED, run
    assert run["progress"] == 0 and run["started_at"] is None and run["attempts"] == 0


def test_a_finished_job_cannot_be_cancelled(
        app: Flask, stack: Stack, tmp_path: Path, login: Callable[..., FlaskClient],
        tenant_ids: dict[str, int], pingqiao_staff: int) -> None:
    run_id = enqueue_demo(app, tenant_ids["pingqiao"], pingqiao_staff, {"n": 2})
    run_burst_worker(stack, tmp_path, "reports")
    assert read_run(app, run_id)["state"] == FINISHED

    page = flashed(login("pingqiao_staff"), f"/jobs/cancel/{run_id}")
    assert "无法取消" in page
    assert read_run(app, run_id)["state"] == FINISHED


# --- progress and cancel flag in Redis (a job holding SQLite's write lock) --------------------

def _started_run(app: Flask, tenant_id: int) -> int:
    """A JobRun as a running commit leaves its row: 20 %, the rows read, writing."""
    with app.app_context(), use_scope(TenantScope.tenant(tenant_id), db.session):
        run = JobRun(tenant_id=tenant_id, kind="demo.count", queue="reports", state=STARTED,
                     progress=20, counts={"rows_read": 5}, message="正在写入…")
        db.session.add(run)
        db.session.commit()
        return run.id


def _shown(application: Flask, run_id: int) -> tuple[int, dict[str, Any], str | None]:
    with application.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        shown = job_progress(db.session.get(JobRun, run_id))
        return shown.progress, shown.counts, shown.message


def test_progress_reported_aside_shows_while_the_job_runs_and_only_to_its_own_tenant(
        app: Flask, make_app: Callable[..., Flask], login: Callable[..., FlaskClient],
        tenant_ids: dict[str, int]) -> None:
    run_id = _started_run(app, tenant_ids["pingqiao"])
    assert _shown(app, run_id) == (20, {"rows_read": 5}, "正在写入…")  # nothing aside yet
    with app.app_context():
        report_aside(run_id, 55, {"rows_written": 30}, "已写入 30 行")
        report_aside(run_id, 60, None, None)  # keeps the last counts and message
    assert _shown(app, run_id) == (60, {"rows_written": 30}, "已写入 30 行")

    staff = login("pingqiao_staff")
    polled = staff.get(f"/jobs/progress/{run_id}")
    assert polled.status_code == 200
    assert (polled.json["progress"], polled.json["counts"]) == (60, {"rows_written": 30})
    for page in (f"/jobs/show/{run_id}", "/jobs/list/"):
        html = staff.get(page).get_data(as_text=True)
        assert "width:60%" in html and "rows_written：30" in html, page
    assert login("pingxi_staff").get(f"/jobs/progress/{run_id}").status_code == 404

    # Redis down: the page shows the row's values and still serves.
    no_redis = make_app(ONEMETER_REDIS_URL="redis://127.0.0.1:1/0")
    assert _shown(no_redis, run_id) == (20, {"rows_read": 5}, "正在写入…")
    polled = login("pingqiao_staff", application=no_redis).get(f"/jobs/progress/{run_id}")
    assert polled.status_code == 200 and polled.json["progress"] == 20

    # Once the job has ended its row is the truth, whatever Redis still holds.
    with app.app_context(), use_scope(TenantScope.tenant(tenant_ids["pingqiao"]), db.session):
        run = db.session.get(JobRun, run_id)
        run.state, run.progress, run.counts, run.message = FINISHED, 100, {"rows_written": 9}, None
        db.session.commit()
    assert _shown(app, run_id) == (100, {"rows_written": 9}, None)
    with app.app_context():
        clear_aside(run_id)
        assert not redis_connection(app).keys(f"*onemeter:jobrun:{run_id}:*")


def test_cancelling_a_running_job_flags_it_in_redis_and_works_without_redis(
        app: Flask, make_app: Callable[..., Flask], tenant_ids: dict[str, int]) -> None:
    tenant = tenant_ids["pingqiao"]
    run_id = _started_run(app, tenant)
    with app.app_context():
        assert not cancel_requested(run_id)
        with use_scope(TenantScope.tenant(tenant), db.session):
            assert cancel_job(db.session.get(JobRun, run_id))
        assert cancel_requested(run_id)
    assert read_run(app, run_id)["state"] == CANCELLED

    with app.app_context():
        clear_aside(run_id)  # a retry forgets the progress report only
        assert cancel_requested(run_id)
        clear_aside(run_id, cancel=True)
        assert not cancel_requested(run_id)

    other = _started_run(app, tenant)
    no_redis = make_app(ONEMETER_REDIS_URL="redis://127.0.0.1:1/0")
    with no_redis.app_context():
        with use_scope(TenantScope.tenant(tenant), db.session):
            assert cancel_job(db.session.get(JobRun, other))  # the row alone, as before
        assert not cancel_requested(other)
    assert read_run(app, other)["state"] == CANCELLED


def test_a_cancel_that_waits_behind_the_job_too_long_is_still_a_cancel(
        make_app: Callable[..., Flask], stack: Stack, login: Callable[..., FlaskClient],
        tenant_ids: dict[str, int]) -> None:
    """取消 while the job holds the database (SQLite's write lock during a long rollback;
    on PostgreSQL its row): the row's update gives up after ONEMETER_WEB_LOCK_TIMEOUT_MS,
    but the Redis flag is set and stops the job at its next step — the clerk reads that the
    job is cancelled, not 数据库正忙 (503 before)."""
    application = make_app(PROPAGATE_EXCEPTIONS=False, ONEMETER_WEB_LOCK_TIMEOUT_MS=300)
    run_id = _started_run(application, tenant_ids["pingqiao"])
    staff = login("pingqiao_staff", application=application)
    with another_writer(stack, "SELECT id FROM om_job_run WHERE id = :id FOR UPDATE",
                        params={"id": run_id}):
        page = flashed(staff, f"/jobs/cancel/{run_id}")
    assert f"任务 #{run_id} 已取消" in page and "数据库正忙" not in page
    with application.app_context():
        assert cancel_requested(run_id)  # what the job checks at its next step
        clear_aside(run_id, cancel=True)
    assert read_run(application, run_id)["state"] == STARTED  # the job records its end


def test_a_stale_cancel_flag_of_a_reused_job_id_does_not_cancel_the_new_job(
        app: Flask, stack: Stack, tmp_path: Path, tenant_ids: dict[str, int],
        pingqiao_staff: int) -> None:
    """Ids come back when the database is restored or recreated beside the same Redis: a
    flag left by the earlier job of that id is dropped when the new one starts."""
    from onemeter.jobs import _aside_key

    run_id = enqueue_demo(app, tenant_ids["pingqiao"], pingqiao_staff, {"n": 2})
    with app.app_context():
        redis_connection(app).set(_aside_key(run_id, "cancel"), "1")
        assert cancel_requested(run_id)
    run_burst_worker(stack, tmp_path, "reports")
    assert read_run(app, run_id)["state"] == FINISHED


def cancelled_after_its_last_check(ctx: Any, marker: str) -> dict[str, int]:
    """A job (kind "test.late_cancel") whose user cancels after its last check_cancelled:
    the cancel's UPDATE lands from another connection, then the job writes and returns."""
    import sqlalchemy as sa

    from onemeter.registry.models import Community

    with use_scope(TenantScope.tenant(ctx.tenant_id)), Session(db.engine) as web:
        web.execute(sa.update(JobRun).where(JobRun.id == ctx.job_run_id, JobRun.state == STARTED)
                    .values(state=CANCELLED, message="正在取消…"))
        web.commit()
    db.session.add(Community(tenant_id=ctx.tenant_id, name=marker))
    db.session.flush()
    return {"written": 1}


def flagged_after_its_last_check(ctx: Any, marker: str) -> dict[str, int]:
    """A job (kind "test.late_flag") cancelled after its last check_cancelled by the Redis
    flag alone — a cancel whose update of the row gave up waiting for this job's lock."""
    from onemeter.registry.models import Community

    assert flag_cancel(ctx.job_run_id)
    db.session.add(Community(tenant_id=ctx.tenant_id, name=marker))
    db.session.flush()
    return {"written": 1}


@pytest.mark.parametrize("kind", ["test.late_cancel", "test.late_flag"])
def test_a_cancel_that_lands_after_the_jobs_last_check_still_leaves_nothing_written(
        stack: Stack, tenant_ids: dict[str, int], pingqiao_staff: int, kind: str) -> None:
    """The job records its end in its own transaction, only while still running and not
    flagged: a cancel that got in after its last check — its row update, or only its Redis
    flag — rolls its work back, so the page's "nothing written" holds (before, the job
    committed its rows and then overwrote the cancel with 已完成; with only the flag, it
    committed and finished)."""
    import uuid
    from types import SimpleNamespace

    import sqlalchemy as sa

    from onemeter.app import create_app
    from onemeter.plugins import PluginInfo, hookimpl
    from onemeter.registry.models import Community
    from onemeter_worker.runner import run_job

    plugin = SimpleNamespace(
        onemeter_plugin_info=hookimpl(lambda: PluginInfo("迟到的取消", "0.1")),
        onemeter_job_kinds=hookimpl(lambda: {
            "test.late_cancel": "tests.test_jobs:cancelled_after_its_last_check",
            "test.late_flag": "tests.test_jobs:flagged_after_its_last_check"}))
    app = create_app(stack.config(), extra_plugins={"late": plugin})
    tenant, marker = tenant_ids["pingqiao"], f"迟到取消{uuid.uuid4().hex[:8]}"
    with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        run = JobRun(tenant_id=tenant, user_id=pingqiao_staff, kind=kind,
                     queue="reports", params={"marker": marker}, state=QUEUED)
        db.session.add(run)
        db.session.commit()
        run_id = run.id
        db.session.remove()
    with app.app_context():
        assert run_job(run_id) == {}
    run = read_run(app, run_id)
    assert run["state"] == CANCELLED and "未写入任何数据" in run["message"], run
    with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        assert db.session.execute(sa.select(sa.func.count()).select_from(Community)
                                  .where(Community.name == marker)).scalar() == 0


# --- re-run -----------------------------------------------------------------------------------

def test_rerunning_a_cancelled_job_starts_a_new_job_with_the_same_kind_queue_and_params(
        app: Flask, stack: Stack, tmp_path: Path, login: Callable[..., FlaskClient],
        tenant_ids: dict[str, int], pingqiao_staff: int) -> None:
    tenant = tenant_ids["pingqiao"]
    params = {"n": 3, "delay": 0.01}
    run_id = enqueue_demo(app, tenant, pingqiao_staff, params)
    admin = login("pingqiao_admin")
    flashed(admin, f"/jobs/cancel/{run_id}")
    before = {r["id"] for r in runs_of(app, tenant)}

    # Not for another sub-district; and a job still queued or running cannot be re-run.
    assert login("pingxi_admin").post(f"/jobs/rerun/{run_id}").status_code == 404
    page = flashed(admin, f"/jobs/rerun/{run_id}")
    assert "重新运行" in page
    # A double submit does not start it twice.
    flashed(admin, f"/jobs/rerun/{run_id}")

    new = [r for r in runs_of(app, tenant) if r["id"] not in before]
    assert len(new) == 1, new
    rerun = new[0]
    assert (rerun["kind"], rerun["queue"], rerun["params"]) == ("demo.count", "reports", params)
    assert rerun["state"] == QUEUED
    assert rerun["user_id"] == user_id(app, "pingqiao_admin")
    assert f"#{rerun['id']}" in page

    run_burst_worker(stack, tmp_path, "reports")
    assert read_run(app, rerun["id"])["state"] == FINISHED
    assert read_run(app, rerun["id"])["counts"] == {"counted": 3}
    assert read_run(app, run_id)["state"] == CANCELLED


def test_only_failed_or_cancelled_jobs_can_be_rerun(
        app: Flask, stack: Stack, tmp_path: Path, login: Callable[..., FlaskClient],
        tenant_ids: dict[str, int], pingqiao_staff: int) -> None:
    tenant = tenant_ids["pingqiao"]
    queued_id = enqueue_demo(app, tenant, pingqiao_staff, {"n": 1})
    staff = login("pingqiao_staff")
    before = {r["id"] for r in runs_of(app, tenant)}

    page = flashed(staff, f"/jobs/rerun/{queued_id}")
    assert "只能重新运行失败或已取消的任务" in page
    assert {r["id"] for r in runs_of(app, tenant)} == before


def test_the_job_list_offers_cancel_for_running_jobs_and_rerun_for_failed_ones(
        app: Flask, login: Callable[..., FlaskClient], tenant_ids: dict[str, int],
        pingqiao_staff: int) -> None:
    tenant = tenant_ids["pingqiao"]
    queued_id = enqueue_demo(app, tenant, pingqiao_staff, {"n": 1})
    cancelled_id = enqueue_demo(app, tenant, pingqiao_staff, {"n": 1})
    staff = login("pingqiao_staff")
    flashed(staff, f"/jobs/cancel/{cancelled_id}")

    html = staff.get("/jobs/list/").get_data(as_text=True)
    assert f'action="/jobs/cancel/{queued_id}"' in html
    assert f'action="/jobs/rerun/{queued_id}"' not in html
    assert f'action="/jobs/rerun/{cancelled_id}"' in html
    assert f'action="/jobs/cancel/{cancelled_id}"' not in html

    # Read-only roles see the jobs but no buttons.
    html = login("admin").get("/jobs/list/").get_data(as_text=True)
    assert f"/jobs/show/{queued_id}" in html
    assert "/jobs/cancel/" not in html and "/jobs/rerun/" not in html



# --- transient errors are retried by the worker, never by RQ behind the row's back -----------

FAST_RETRY = {"ONEMETER_JOB_RETRY_DELAYS": "0.2"}


def test_a_transient_error_is_retried_and_the_job_then_finishes(
        app: Flask, stack: Stack, tmp_path: Path, tenant_ids: dict[str, int],
        pingqiao_staff: int) -> None:
    run_id = enqueue_demo(app, tenant_ids["pingqiao"], pingqiao_staff,
                          {"n": 6, "delay": 0.01, "fail_attempts": 1})
    run_burst_worker(stack, tmp_path, "reports", env=FAST_RETRY)

    run = read_run(app, run_id)
    assert run["state"] == FINISHED, run
    assert run["counts"] == {"counted": 6}
    assert run["attempts"] == 2
    assert run["error"] is None


def test_a_job_still_failing_after_its_retries_ends_failed_and_is_not_retried_later(
        app: Flask, stack: Stack, tmp_path: Path, tenant_ids: dict[str, int],
        pingqiao_staff: int) -> None:
    run_id = enqueue_demo(app, tenant_ids["pingqiao"], pingqiao_staff,
                          {"n": 4, "delay": 0.01, "fail_attempts": 99})
    run_burst_worker(stack, tmp_path, "reports", env=FAST_RETRY)

    run = read_run(app, run_id)
    assert run["state"] == FAILED, run
    assert run["attempts"] == 2  # the first run and one retry (one delay configured)
    assert run["error"].startswith("任务出错") and "暂时性错误" in run["error"], run["error"]
    with app.app_context():
        queue = Queue(queue_name("reports", app), connection=redis_connection(app))
        assert queue.scheduled_job_registry.count == 0  # nothing waits to revive it
        assert queue.count == 0


# --- reaping does not trust a bare process id --------------------------------------------------

def test_a_dead_workers_pid_taken_by_a_younger_process_does_not_keep_its_jobs_alive(
        app: Flask) -> None:
    import datetime as dt

    from rq import Worker

    from onemeter_worker.runner import _worker_process_alive

    with app.app_context():
        record = Worker([], name=f"probe-{time.monotonic_ns()}",
                        connection=redis_connection(app), prepare_for_work=False)
    younger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record.pid = younger.pid
        record.birth_date = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        assert not _worker_process_alive(record)  # the pid now names a different process
        record.birth_date = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
        assert _worker_process_alive(record)
        record.pid = os.getpid()  # a restarted container: the dead worker had our pid
        assert not _worker_process_alive(record)
    finally:
        younger.kill()
        younger.wait(timeout=15)
