"""Error pages in Chinese, and 数据库正忙 for a save that waited behind another writer.

The apps here answer errors as in production (PROPAGATE_EXCEPTIONS off: the test app of the
rest of the suite re-raises them instead)."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, get_flashed_messages

from onemeter.database import db
from onemeter.errors import AFTER_SAVE_FAILED, SaveErrorMessages, SaveRefused
from onemeter.registry.models import Community, Household
from onemeter.tenancy import TenantScope, use_scope
from tests.support.factory import make_row
from tests.support.locks import another_writer
from tests.support.stack import PASSWORD
from tests.support.web import api_headers, external_urls
from tests.test_uploads import make_png

ENGLISH = ("Not Found", "Internal Server Error", "Request Entity Too Large", "Bad Request",
           "Method Not Allowed", "CSRF")


@pytest.fixture(scope="module")
def answering(app: Flask, make_app: Callable[..., Flask]) -> Flask:
    """An app that answers errors itself, with a 4 KB upload limit, CSRF checked, a page that
    fails and a short lock wait for web requests (on the database `app` migrated)."""
    application = make_app(PROPAGATE_EXCEPTIONS=False, MAX_CONTENT_LENGTH=4096,
                           WTF_CSRF_ENABLED=True, ONEMETER_WEB_LOCK_TIMEOUT_MS=300)

    def fails() -> str:
        raise RuntimeError("a bug")

    application.add_url_rule("/test-fails", "test_fails", fails)
    return application


def _page(response: Any) -> str:
    text = response.get_data(as_text=True)
    assert not any(word in text for word in ENGLISH), text[:500]
    assert external_urls(text) == []
    return text


def _token(html: str) -> str:
    return html.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]


def _signed_in(app: Flask, username: str) -> Any:
    """A client signed in through the login form with its CSRF token (CSRF is checked)."""
    client = app.test_client()
    token = _token(client.get("/login/").get_data(as_text=True))
    response = client.post("/login/", data={"username": username, "password": PASSWORD,
                                            "csrf_token": token})
    assert response.status_code == 302 and "/login" not in response.headers["Location"]
    return client


def test_http_errors_are_answered_in_chinese_in_the_apps_layout(answering: Flask) -> None:
    staff = _signed_in(answering, "pingqiao_staff")
    missing = staff.get("/no-such-page/")
    assert missing.status_code == 404
    page = _page(missing)
    assert "页面不存在（404）" in page and "回到首页" in page
    assert "pingqiao_staff" in page or "平桥" in page  # the layout, with the user's menu
    assert "请求编号" in page

    # An error with a text of its own keeps it.
    bad_day = _signed_in(answering, "district").get("/district/overdue/?as_of=2022-13-01")
    assert bad_day.status_code == 400
    assert "日期格式应为 年-月-日，如 2022-06-30" in _page(bad_day)

    wrong_method = staff.get("/imports/upload")
    assert wrong_method.status_code == 405 and "操作方式不正确" in _page(wrong_method)
    assert "POST" in wrong_method.headers["Allow"]


def test_an_upload_over_the_size_limit_says_so_in_chinese(answering: Flask) -> None:
    """With its token or without (the body over the limit is never parsed, so the CSRF
    check finds no token), an upload over MAX_CONTENT_LENGTH is told it is too big — not
    that the form expired."""
    staff = _signed_in(answering, "pingqiao_staff")
    token = _token(staff.get("/registry/households/add").get_data(as_text=True))
    for data in ({"file": (io.BytesIO(bytes(8192)), "台账.xlsx")},
                 {"csrf_token": token, "file": (io.BytesIO(bytes(8192)), "台账.xlsx")}):
        response = staff.post("/imports/upload", data=data, content_type="multipart/form-data")
        assert response.status_code == 413
        assert "上传的文件超过了 4 KB 的上限" in _page(response)


def test_a_form_without_its_token_is_refused_in_chinese(answering: Flask) -> None:
    staff = _signed_in(answering, "pingqiao_staff")
    response = staff.post("/registry/households/add", data={"room": "101"})
    assert response.status_code == 400
    assert "表单已过期或无效" in _page(response)


def test_an_unhandled_error_is_a_chinese_page_and_json_under_the_api(answering: Flask) -> None:
    staff = _signed_in(answering, "pingqiao_staff")
    response = staff.get("/test-fails")
    assert response.status_code == 500
    assert "系统出错（500）" in _page(response)
    api = answering.test_client().get("/api/v1/no_such_api/")
    assert api.status_code == 404
    assert api.get_json()["message"].startswith("页面不存在")


def _household(app: Flask, tenant: int) -> tuple[int, int]:
    with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        community = make_row(db.session, Community, tenant, "T-busy-")
        household = Household(community_id=community.id, building="1", unit="1", room="101")
        db.session.add(household)
        db.session.commit()
        return community.id, household.id


def _another_writer(stack: Any, household_id: int) -> Any:
    """On PostgreSQL the household's row lock and its community's (a new household's key
    check waits for that one), as an import's commit holds them; on SQLite the write lock."""
    return another_writer(
        stack, "SELECT id FROM om_household WHERE id = :id FOR UPDATE",
        "SELECT c.id FROM om_community c JOIN om_household h ON h.community_id = c.id "
        "WHERE h.id = :id FOR UPDATE OF c", params={"id": household_id})


def test_a_save_behind_another_writer_says_the_database_is_busy_and_saves_nothing(
        answering: Flask, stack: Any, tenant_ids: dict[str, int]) -> None:
    """What a clerk sees when saving a household that an import is writing: after
    ONEMETER_WEB_LOCK_TIMEOUT_MS, 数据库正忙 and nothing saved, instead of a page that hangs
    (FAB's edit form: its flash; a page of ours: the 503 page with Retry-After); the same
    saves once the other writer is done go through."""
    tenant = tenant_ids["pingqiao"]
    community_id, household_id = _household(answering, tenant)
    staff = _signed_in(answering, "pingqiao_staff")
    token = _token(staff.get(f"/registry/households/edit/{household_id}").get_data(as_text=True))
    edit = {"csrf_token": token, "community": str(community_id), "building": "1", "unit": "1",
            "room": "102"}
    optout = {"csrf_token": token, "reason": "已自行改造",
              "letter": (io.BytesIO(make_png()), "承诺书.png", "image/png")}
    added_form = {"csrf_token": token, "community": str(community_id), "building": "2",
                  "unit": "1", "room": "301", "owner_name": "王建国", "phone": "13812345678"}
    with _another_writer(stack, household_id):
        edited = staff.post(f"/registry/households/edit/{household_id}", data=edit)
        added = staff.post("/registry/households/add", data=added_form)
        opted = staff.post(f"/registry/households/optout/{household_id}", data=optout,
                           content_type="multipart/form-data")
        deleted = staff.post(f"/registry/households/delete/{household_id}",
                             data={"csrf_token": token}, follow_redirects=True)
    busy = "数据库正忙：另一项操作（如台账导入或回滚）正在写入这些数据，本次修改没有保存"
    # The forms again with what was typed, the reason above them; never the SQL (an add's
    # error used to be flashed as its INSERT with the values, phone number included).
    for response, typed in ((edited, "102"), (added, "王建国")):
        assert response.status_code == 200
        page = _page(response)
        assert busy in page and f'value="{typed}"' in page
        assert "INSERT" not in page and "UPDATE" not in page and "[SQL" not in page
    # A delete: FAB flashed the empty text of its DatabaseException.
    assert busy in _page(deleted)
    assert opted.status_code == 503, opted.get_data(as_text=True)[:300]
    assert opted.headers["Retry-After"] == "30"
    assert "数据库正忙（503）" in _page(opted) and "本次修改没有保存" in _page(opted)
    with answering.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        household = db.session.get(Household, household_id)
        assert (household.room, household.opted_out) == ("101", False)
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Household).where(
            Household.community_id == community_id)) == 1

    edited = staff.post(f"/registry/households/edit/{household_id}", data=edit,
                        follow_redirects=True)
    assert "数据库正忙" not in _page(edited)
    optout["letter"] = (io.BytesIO(make_png()), "承诺书.png", "image/png")
    assert staff.post(f"/registry/households/optout/{household_id}", data=optout,
                      content_type="multipart/form-data").status_code == 302
    with answering.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        household = db.session.get(Household, household_id)
        assert (household.room, household.opted_out) == ("102", True)


def test_an_error_page_still_answers_in_chinese_when_the_layout_cannot(
        make_app: Callable[..., Flask], tmp_path: Any) -> None:
    """On a database that was never migrated the app's layout cannot render (no user or
    menu tables): the error is still a Chinese page, the bare fallback, with its number."""
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    bare = make_app(PROPAGATE_EXCEPTIONS=False, SQLALCHEMY_DATABASE_URI=url,
                    ONEMETER_OWNER_DATABASE_URL=url, ONEMETER_APP_DB_ROLE="")
    client = bare.test_client()
    missing = client.get("/no-such-page/")
    assert missing.status_code == 404
    page = _page(missing)
    assert "页面不存在（404）" in page and 'lang="zh-CN"' in page and "请求编号" in page
    broken = client.get("/login/")  # needs the user tables that are not there
    assert broken.status_code == 500
    assert "系统出错（500）" in _page(broken)


def test_an_api_write_the_database_refused_answers_in_chinese_without_its_sql(
        answering: Flask, stack: Any, tenant_ids: dict[str, int]) -> None:
    """FAB's REST API answers a refused edit with 422 "Database exception occurred: " and
    the driver's text (the SQL, the row's values); an add with 500 "Fatal error". Here: 503
    数据库正忙 with Retry-After behind another writer, 422 保存失败 for a duplicate."""
    tenant = tenant_ids["pingqiao"]
    community_id, household_id = _household(answering, tenant)
    headers = api_headers(answering, "pingqiao_staff", PASSWORD)
    api = answering.test_client()
    new = {"community": community_id, "building": "2", "unit": "1", "room": "301",
           "owner_name": "王建国", "phone": "13812345678"}
    with _another_writer(stack, household_id):
        edited = api.put(f"/api/v1/household/{household_id}", json={"room": "102"},
                         headers=headers)
        added = api.post("/api/v1/household/", json=new, headers=headers)
    for response in (edited, added):
        assert response.status_code == 503, response.get_data(as_text=True)[:300]
        assert response.headers["Retry-After"] == "30"
        message = response.get_json()["message"]
        assert message.startswith("数据库正忙") and "没有保存" in message
        assert "SQL" not in message and "13812345678" not in message

    added = api.post("/api/v1/household/", json=new, headers=headers)
    assert added.status_code == 201, added.get_data(as_text=True)[:300]
    duplicate = api.put(f"/api/v1/household/{household_id}",
                        json={"building": "2", "unit": "1", "room": "301"}, headers=headers)
    assert duplicate.status_code == 422
    message = duplicate.get_json()["message"]
    assert message.startswith("保存失败") and "重复" in message, message
    assert "SQL" not in message and "DETAIL" not in message and "Key" not in message
    with answering.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        household = db.session.get(Household, household_id)
        assert (household.building, household.room) == ("1", "101")
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Household).where(
            Household.community_id == community_id)) == 2


def test_what_runs_after_a_save_or_before_it_fails_in_words(answering: Flask) -> None:
    """A post_* hook that fails after the commit (starting a recomputation, say) no longer
    makes FAB report the saved row as not saved — nor show the form again, to be saved twice
    — and a database error in a pre_* hook a view inherits from a plain mixin is said in
    Chinese like one in its own hooks."""

    class Checks:
        def pre_add(self, item: Any) -> None:
            raise sa.exc.OperationalError("INSERT INTO om_household …", {"phone": "138"},
                                          sqlite3.OperationalError("database is locked"))

    class Probe(Checks, SaveErrorMessages):
        def post_add(self, item: Any) -> None:
            raise RuntimeError("the queue said no")

    probe = Probe.__new__(Probe)  # the hooks alone: no FAB view around them
    with answering.test_request_context("/"):
        assert probe.post_add(None) is None
        assert get_flashed_messages(with_categories=True) == [("warning", AFTER_SAVE_FAILED)]
        with pytest.raises(SaveRefused) as refused:
            probe.pre_add(None)
    assert str(refused.value).startswith("数据库正忙") and "INSERT" not in str(refused.value)
