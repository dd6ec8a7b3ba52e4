"""Sign-in, staff administration and residents' personal data, as the users meet them.

A sub-district admin manages their own staff and nothing else; residents' phone numbers are
shown only to users with view_pii; a user with no tenant, or of a deactivated one, sees nothing.
"""

from __future__ import annotations

import io
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from python_calamine import CalamineWorkbook

from onemeter.cli import sync_tenant_files
from onemeter.config import load_config
from onemeter.database import db
from onemeter.security import CROSS_TENANT_ROLES, OMUser
from onemeter.tenancy import Tenant, TenantScope, use_scope
from tests.support.stack import PASSWORD, Stack
from tests.support.web import api_headers, signed_in

PHONE, MASKED = "13812345678", "138****5678"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def role_id(app: Flask, name: str) -> int:
    with app.app_context():
        return app.appbuilder.sm.find_role(name).id


def find_user(app: Flask, username: str) -> OMUser | None:
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        user = db.session.execute(
            sa.select(OMUser).where(OMUser.username == username)).scalar_one_or_none()
        if user is None:
            return None
        user.om_roles = sorted(r.name for r in user.roles)
        user.om_tenant_code = user.tenant.code if user.tenant else None
        db.session.expunge(user)
        return user


def login_response(app: Flask, username: str, password: str) -> FlaskClient:
    client = app.test_client()
    client.om_response = client.post("/login/", data={"username": username,
                                                      "password": password})
    return client


def can_sign_in(app: Flask, username: str, password: str) -> bool:
    location = login_response(app, username, password).om_response.headers.get("Location", "")
    return bool(location) and "/login" not in location


def staff_form(username: str, password: str, role: int, **extra: object) -> dict[str, object]:
    return {"username": username, "first_name": "张", "last_name": "三",
            "email": f"{username}@test.local", "roles": [role], "active": "y",
            "password": password, "conf_password": password, **extra}


def edit_form(user: OMUser, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {"first_name": user.first_name, "last_name": user.last_name,
                               "email": user.email, "roles": [], "active": "y",
                               "password": "", "conf_password": ""}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def pingqiao_admin(login: Callable[[str], FlaskClient]) -> FlaskClient:
    return login("pingqiao_admin")


@pytest.fixture
def new_staff(app: Flask, pingqiao_admin: FlaskClient) -> tuple[str, str]:
    """A fresh pingqiao staff member made by their admin: (username, password)."""
    username, password = unique("qiao_"), "Staff-password-7"
    response = pingqiao_admin.post("/tenantstaff/add", data=staff_form(
        username, password, role_id(app, "tenant_staff")))
    assert response.status_code == 302, response.get_data(as_text=True)[-2000:]
    return username, password


# --- signing in -----------------------------------------------------------------------------


def test_fourth_login_attempt_within_a_minute_is_refused_with_429(
        app: Flask, make_app: Callable[..., Flask], stack: Stack) -> None:
    limited = make_app(AUTH_RATE_LIMIT="3 per minute",
                       RATELIMIT_KEY_PREFIX=f"{stack.queue_prefix}{unique('login-')}")
    client = limited.test_client()
    wrong = {"username": "pingqiao_staff", "password": "Wrong-password-9"}

    codes = [client.post("/login/", data=wrong).status_code for _ in range(4)]

    assert 429 not in codes[:3] and codes[3] == 429
    # Even the right password waits: guessing is slowed, not just counted.
    right = client.post("/login/", data={"username": "pingqiao_staff", "password": PASSWORD})
    assert right.status_code == 429
    assert client.get("/login/").status_code == 200  # the page itself stays reachable


def test_password_policy_is_on_by_default() -> None:
    config = load_config()
    assert config["FAB_PASSWORD_COMPLEXITY_ENABLED"] is True
    assert config["AUTH_RATE_LIMITED"] is True
    assert config["WTF_CSRF_ENABLED"] is True


@pytest.mark.parametrize(("password", "reason"), [
    ("short1", "至少 10 位"),
    ("onlyletters", "字母和数字"),
    ("1234567890", "字母和数字"),
])
def test_staff_password_too_weak_is_refused_with_the_reason(
        app: Flask, pingqiao_admin: FlaskClient, password: str, reason: str) -> None:
    username = unique("weak_")
    response = pingqiao_admin.post("/tenantstaff/add", data=staff_form(
        username, password, role_id(app, "tenant_staff")))

    assert response.status_code == 200  # the form again, with the error
    assert reason in response.get_data(as_text=True)
    assert find_user(app, username) is None


def _csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or \
        re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no csrf_token in the form"
    return match.group(1)


def test_forms_without_a_csrf_token_are_refused_when_csrf_is_on(
        app: Flask, make_app: Callable[..., Flask]) -> None:
    guarded = make_app(WTF_CSRF_ENABLED=True)
    client = guarded.test_client()
    token = _csrf_token(client.get("/login/").get_data(as_text=True))
    assert client.post("/login/", data={"username": "pingqiao_admin", "password": PASSWORD,
                                        "csrf_token": token}).status_code == 302
    staff_role = role_id(guarded, "tenant_staff")

    forged = unique("csrf_")
    response = client.post("/tenantstaff/add", data=staff_form(forged, "Staff-password-7",
                                                                staff_role))
    assert response.status_code in (200, 400)
    assert find_user(guarded, forged) is None

    genuine = unique("csrf_")
    token = _csrf_token(client.get("/tenantstaff/add").get_data(as_text=True))
    response = client.post("/tenantstaff/add", data=staff_form(
        genuine, "Staff-password-7", staff_role, csrf_token=token))
    assert response.status_code == 302
    assert find_user(guarded, genuine) is not None


def test_a_link_cannot_delete_a_record_when_csrf_is_on(
        app: Flask, make_app: Callable[..., Flask]) -> None:
    """A GET (a link on another site) never deletes; the page's own POST with a token does."""
    from onemeter_example.models import Checklist

    guarded = make_app(WTF_CSRF_ENABLED=True)
    client = guarded.test_client()
    token = _csrf_token(client.get("/login/").get_data(as_text=True))
    client.post("/login/", data={"username": "pingqiao_staff", "password": PASSWORD,
                                 "csrf_token": token})
    name = unique("删除-")
    token = _csrf_token(client.get("/example/checklists/add").get_data(as_text=True))
    assert client.post("/example/checklists/add",
                       data={"name": name, "csrf_token": token}).status_code == 302
    with guarded.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        pk = db.session.execute(sa.select(Checklist.id).where(Checklist.name == name)).scalar()

    def exists() -> bool:
        with guarded.app_context(), use_scope(TenantScope.all_read_only(), db.session):
            return db.session.get(Checklist, pk) is not None

    client.get(f"/example/checklists/delete/{pk}")
    assert exists()
    assert client.post(f"/example/checklists/delete/{pk}").status_code == 400
    assert exists()
    client.post(f"/example/checklists/delete/{pk}", data={"csrf_token": token})
    assert not exists()


# --- a sub-district admin and their staff ---------------------------------------------------


def test_sub_district_admin_creates_staff_who_sign_in_to_their_sub_district(
        app: Flask, new_staff: tuple[str, str]) -> None:
    username, password = new_staff
    user = find_user(app, username)
    assert user.om_tenant_code == "pingqiao" and user.om_roles == ["tenant_staff"]
    assert user.active

    client = signed_in(app, username, password)
    page = client.get("/").get_data(as_text=True)
    assert re.search(r'id="om-tenant">平桥办事处<', page)
    assert client.get("/example/checklists/list/").status_code == 200


def test_staff_form_offers_only_the_sub_district_roles(pingqiao_admin: FlaskClient) -> None:
    form = pingqiao_admin.get("/tenantstaff/add").get_data(as_text=True)
    offered = set(re.findall(r'<option value="\d+">([^<]+)</option>', form))
    # Offered by their Chinese names, and only the sub-district's own roles.
    assert {"办事处管理员", "办事处工作人员"} <= offered
    assert not offered & {*CROSS_TENANT_ROLES, "public", "平台管理员", "区领导小组办公室（只读）",
                          "财政局", "供水/供电公司"}


@pytest.mark.parametrize("role", ["platform_admin", "district_viewer", "finance"])
def test_sub_district_admin_cannot_grant_a_cross_tenant_role(
        app: Flask, pingqiao_admin: FlaskClient, role: str) -> None:
    username = unique("grab_")
    response = pingqiao_admin.post("/tenantstaff/add", data=staff_form(
        username, "Staff-password-7", role_id(app, role)))

    # The form is shown again with the error; no account is created at all.
    assert response.status_code == 200
    assert "只能授予本办事处的角色" in response.get_data(as_text=True)
    assert find_user(app, username) is None


def test_sub_district_admin_cannot_grant_a_cross_tenant_role_when_editing(
        app: Flask, pingqiao_admin: FlaskClient, new_staff: tuple[str, str]) -> None:
    username, _ = new_staff
    user = find_user(app, username)
    pingqiao_admin.post(f"/tenantstaff/edit/{user.id}", data=edit_form(
        user, roles=[role_id(app, "platform_admin")]))
    assert "platform_admin" not in find_user(app, username).om_roles


def test_sub_district_admin_sees_only_their_own_staff(
        app: Flask, pingqiao_admin: FlaskClient) -> None:
    listing = pingqiao_admin.get("/tenantstaff/list/").get_data(as_text=True)
    assert "pingqiao_staff" in listing
    for other in ("pingxi_staff", "pingxi_admin", "district", "admin"):
        assert not re.search(rf">\s*{other}\s*<", listing), other

    pingxi_staff = find_user(app, "pingxi_staff")
    assert pingqiao_admin.get(f"/tenantstaff/show/{pingxi_staff.id}").status_code == 404
    assert pingqiao_admin.get(f"/tenantstaff/edit/{pingxi_staff.id}").status_code == 404
    response = pingqiao_admin.post(f"/tenantstaff/edit/{pingxi_staff.id}", data=edit_form(
        pingxi_staff, active=None, password="Taken-over-123", conf_password="Taken-over-123"))
    assert response.status_code == 404
    assert find_user(app, "pingxi_staff").active
    assert can_sign_in(app, "pingxi_staff", PASSWORD)


def test_deactivated_staff_member_can_no_longer_sign_in(
        app: Flask, pingqiao_admin: FlaskClient, new_staff: tuple[str, str]) -> None:
    username, password = new_staff
    user = find_user(app, username)
    assert can_sign_in(app, username, password)

    response = pingqiao_admin.post(f"/tenantstaff/edit/{user.id}", data=edit_form(
        user, roles=[role_id(app, "tenant_staff")], active=None))
    assert response.status_code == 302

    assert not find_user(app, username).active
    assert not can_sign_in(app, username, password)


def test_sub_district_admin_resets_a_staff_password(
        app: Flask, pingqiao_admin: FlaskClient, new_staff: tuple[str, str]) -> None:
    username, old = new_staff
    user = find_user(app, username)
    new = "Reset-password-8"

    response = pingqiao_admin.post(f"/tenantstaff/edit/{user.id}", data=edit_form(
        user, roles=[role_id(app, "tenant_staff")], password=new, conf_password=new))
    assert response.status_code == 302

    assert can_sign_in(app, username, new)
    assert not can_sign_in(app, username, old)


def test_editing_staff_without_a_password_keeps_their_password(
        app: Flask, pingqiao_admin: FlaskClient, new_staff: tuple[str, str]) -> None:
    username, password = new_staff
    user = find_user(app, username)

    response = pingqiao_admin.post(f"/tenantstaff/edit/{user.id}", data=edit_form(
        user, roles=[role_id(app, "tenant_staff")], first_name="李"))
    assert response.status_code == 302

    assert find_user(app, username).first_name == "李"
    assert can_sign_in(app, username, password)


def test_a_weak_reset_password_is_refused(app: Flask, pingqiao_admin: FlaskClient,
                                          new_staff: tuple[str, str]) -> None:
    username, password = new_staff
    user = find_user(app, username)
    response = pingqiao_admin.post(f"/tenantstaff/edit/{user.id}", data=edit_form(
        user, roles=[role_id(app, "tenant_staff")], password="short1", conf_password="short1"))
    assert response.status_code == 200 and "至少 10 位" in response.get_data(as_text=True)
    assert can_sign_in(app, username, password)


def _refused(response: object) -> bool:
    code = response.status_code  # type: ignore[attr-defined]
    return code in (403, 404) or (code == 302 and "/list" not in
                                  response.headers.get("Location", ""))  # type: ignore[attr-defined]


def test_staff_who_are_not_admins_cannot_manage_staff(login: Callable[[str], FlaskClient]) -> None:
    client = login("pingqiao_staff")
    assert _refused(client.get("/tenantstaff/list/"))
    assert _refused(client.get("/tenantstaff/add"))
    assert "/tenantstaff/" not in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("username", ["pingqiao_admin", "pingqiao_staff", "pingxi_admin"])
@pytest.mark.parametrize("url", ["/users/list/", "/users/add", "/roles/list/", "/tenants/list/",
                                 "/permissions/list/"])
def test_sub_district_users_cannot_open_platform_administration(
        login: Callable[[str], FlaskClient], username: str, url: str) -> None:
    response = login(username).get(url)
    assert _refused(response), (url, response.status_code)


# --- residents' personal data ---------------------------------------------------------------


@pytest.fixture
def checklist_with_phone(app: Flask, login: Callable[[str], FlaskClient]) -> str:
    """A pingqiao checklist whose contact phone is PHONE, made by pingqiao_staff; its name."""
    name = unique("个人信息-")
    response = login("pingqiao_staff").post("/example/checklists/add", data={
        "name": name, "contact_phone": PHONE})
    assert response.status_code == 302
    return name


def _export_cells(client: FlaskClient, url: str) -> list[str]:
    response = client.get(url)
    assert response.status_code == 200
    sheet = CalamineWorkbook.from_filelike(io.BytesIO(response.data)).get_sheet_by_index(0)
    return [str(cell) for row in sheet.to_python() for cell in row]


def test_staff_of_the_sub_district_see_residents_phone_numbers_in_full(
        app: Flask, login: Callable[[str], FlaskClient], checklist_with_phone: str) -> None:
    client = login("pingqiao_staff")
    page = client.get(f"/example/checklists/list/?_flt_0_name={checklist_with_phone}")
    assert PHONE in page.get_data(as_text=True)
    listing = client.get("/api/v1/example_checklist/?q=(page_size:100,order_column:id,"
                         "order_direction:desc)",
                         headers=api_headers(app, "pingqiao_staff", PASSWORD)).get_json()
    mine = [r for r in listing["result"] if r["name"] == checklist_with_phone]
    assert mine and mine[0]["contact_phone"] == PHONE


@pytest.mark.parametrize("username", ["district", "admin"])
def test_cross_tenant_viewers_see_residents_phone_numbers_masked_everywhere(
        app: Flask, login: Callable[[str], FlaskClient], checklist_with_phone: str,
        username: str) -> None:
    client = login(username)
    name = checklist_with_phone

    page = client.get(f"/example/checklists/list/?_flt_0_name={name}").get_data(as_text=True)
    assert name in page and MASKED in page and PHONE not in page

    listing = client.get("/api/v1/example_checklist/?q=(page_size:100,order_column:id,"
                         "order_direction:desc)",
                         headers=api_headers(app, username, PASSWORD)).get_json()
    mine = [r for r in listing["result"] if r["name"] == name]
    assert mine and mine[0]["contact_phone"] == MASKED
    assert PHONE not in str(listing)
    one = client.get(f"/api/v1/example_checklist/{mine[0]['id']}",
                     headers=api_headers(app, username, PASSWORD)).get_json()
    assert one["result"]["contact_phone"] == MASKED

    show = client.get(f"/example/checklists/show/{mine[0]['id']}").get_data(as_text=True)
    assert MASKED in show and PHONE not in show

    cells = _export_cells(client, f"/example/checklists/export/?_flt_0_name={name}")
    assert name in cells and MASKED in cells
    assert not any(PHONE in cell for cell in cells)


@pytest.mark.parametrize("username", ["district", "admin"])
def test_the_change_log_masks_residents_phone_numbers_for_cross_tenant_viewers(
        app: Flask, login: Callable[[str], FlaskClient], checklist_with_phone: str,
        username: str) -> None:
    client = login(username)
    page = client.get("/changelog/list/?_flt_0_model=Checklist").get_data(as_text=True)
    assert checklist_with_phone in page and MASKED in page
    assert PHONE not in page
    entry = re.search(r'/changelog/show/(\d+)', page)
    assert entry
    assert PHONE not in client.get(f"/changelog/show/{entry.group(1)}").get_data(as_text=True)
    cells = _export_cells(client, "/changelog/export/")
    assert any(checklist_with_phone in cell for cell in cells)
    assert not any(PHONE in cell for cell in cells)


def test_sub_district_admin_reads_the_change_log_unmasked(
        login: Callable[[str], FlaskClient], checklist_with_phone: str) -> None:
    page = login("pingqiao_admin").get("/changelog/list/").get_data(as_text=True)
    assert checklist_with_phone in page and PHONE in page


def _sees_nothing_of(client: FlaskClient, app: Flask, username: str, marker: str) -> None:
    for url in ("/example/checklists/list/", "/example/items/list/", "/jobs/list/",
                "/changelog/list/", "/tenantstaff/list/", "/example/checklists/export/"):
        response = client.get(url)
        assert response.status_code in (200, 302, 403, 404), url
        assert marker.encode() not in response.data, url
    token = api_headers(app, username, PASSWORD)
    response = client.get("/api/v1/example_checklist/?q=(page_size:100)", headers=token)
    assert response.status_code in (401, 403) or not response.get_json()["result"]


def test_user_with_a_tenant_role_but_no_tenant_sees_no_sub_districts_data(
        app: Flask, login: Callable[[str], FlaskClient], checklist_with_phone: str) -> None:
    client = login("orphan")
    _sees_nothing_of(client, app, "orphan", checklist_with_phone)
    page = client.get("/").get_data(as_text=True)
    assert "没有可查看的办事处数据" in page


@pytest.fixture
def short_lived_tenant(app: Flask, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A sub-district of its own (enabling the example plugin) with a staff member: code, file."""
    source = Path(app.config["ONEMETER_TENANTS_DIR"])
    directory = tmp_path / "tenants"
    shutil.copytree(source, directory)
    code = unique("t")
    path = directory / f"{code}.toml"
    path.write_text(f'code = "{code}"\nname = "临时街道办事处"\nplugins = ["example"]\n',
                    encoding="utf-8")
    with app.app_context():
        sync_tenant_files(directory)
        with use_scope(TenantScope.all_read_only(), db.session):
            tenant = db.session.query(Tenant).filter_by(code=code).one()
            app.appbuilder.sm.add_user_checked(f"{code}_staff", "工作人员", "", f"{code}@t.local",
                                               ["tenant_staff"], PASSWORD, tenant=tenant)
    yield code, directory
    with app.app_context():
        sync_tenant_files(source)


def test_users_of_a_deactivated_sub_district_see_nothing(
        app: Flask, short_lived_tenant: tuple[str, Path]) -> None:
    code, directory = short_lived_tenant
    username = f"{code}_staff"
    marker = unique("停用前-")
    ongoing = signed_in(app, username, PASSWORD)
    assert ongoing.post("/example/checklists/add", data={"name": marker}).status_code == 302
    assert marker in ongoing.get("/example/checklists/list/").get_data(as_text=True)

    (directory / f"{code}.toml").unlink()
    with app.app_context():
        assert sync_tenant_files(directory).deactivated == [code]

    for client in (signed_in(app, username, PASSWORD), ongoing):  # new and ongoing sessions
        _sees_nothing_of(client, app, username, marker)
        assert client.post("/example/checklists/add",
                           data={"name": unique("停用后-")}).status_code in (302, 403)
    from onemeter_example.models import Checklist
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        names = db.session.execute(sa.select(Checklist.name).join(
            Tenant, Tenant.id == Checklist.tenant_id).where(Tenant.code == code)).scalars().all()
    assert names == [marker]  # the data is kept, and nothing was added after deactivation


def test_a_custom_formatter_on_a_pii_column_cannot_switch_masking_off(app: Flask) -> None:
    from flask_appbuilder.models.sqla.interface import SQLAInterface

    from onemeter.views import TenantModelView
    from onemeter_example.models import Checklist

    class DecoratedPhone(TenantModelView):
        datamodel = SQLAInterface(Checklist)
        formatters_columns = {"contact_phone": lambda v: f"电话 {v}"}

    with app.test_request_context():
        view = DecoratedPhone()
        assert view.formatters_columns["contact_phone"]("13812345678") == "电话 138****5678"
