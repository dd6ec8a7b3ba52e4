"""Cancelling an import step from the batch page: the step writes nothing, the batch is back
where it was and can be previewed again; other sub-districts and read-only roles are kept out.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from rq import Queue

from onemeter.database import db
from onemeter.imports.models import ImportBatch
from onemeter.jobs import JobRun, queue_name, redis_connection
from onemeter.tenancy import TenantScope, use_scope


@pytest.fixture(autouse=True)
def empty_imports_queue(app: Flask) -> Iterator[None]:
    yield
    with app.app_context():
        Queue(queue_name("imports", app), connection=redis_connection(app)).empty()


def _row(app: Flask, model: type, pk: int) -> dict[str, Any]:
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        row = db.session.get(model, pk)
        return {"state": row.state, "message": row.message}


def test_a_clerk_cancels_a_queued_preview_and_the_batch_is_as_before(
        app: Flask, login: Callable[..., Any]) -> None:
    staff = login("pingxi_staff")
    csv = f"小区,楼栋,单元,室号\n取消{uuid.uuid4().hex[:6]},1,1,101\n".encode()
    response = staff.post("/imports/upload", data={"ledger": (io.BytesIO(csv), "台账.csv")},
                          content_type="multipart/form-data")
    pk = int(re.search(r"/imports/show/(\d+)", response.headers["Location"]).group(1))
    page = staff.get(f"/imports/show/{pk}").get_data(as_text=True)
    assert "取消这一步" in page                       # no worker runs: the preview waits
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        job_id = db.session.get(ImportBatch, pk).preview_job_id

    assert login("pingqiao_staff").post(f"/imports/cancel/{pk}").status_code == 404
    assert login("district").post(f"/imports/cancel/{pk}").status_code in (302, 403)
    assert _row(app, JobRun, job_id)["state"] == "queued"

    done = staff.post(f"/imports/cancel/{pk}", follow_redirects=True).get_data(as_text=True)
    assert f"已取消后台任务 #{job_id}" in done
    assert _row(app, JobRun, job_id)["state"] == "cancelled"
    batch = _row(app, ImportBatch, pk)
    assert batch["state"] == "uploaded" and "可以重新预览" in batch["message"]
    page = staff.get(f"/imports/show/{pk}").get_data(as_text=True)
    assert "取消这一步" not in page and "重新预览" in page
    again = staff.post(f"/imports/cancel/{pk}", follow_redirects=True).get_data(as_text=True)
    assert "没有正在进行的任务" in again
