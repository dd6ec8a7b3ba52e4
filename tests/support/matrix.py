"""The access matrix: every registered page and API over tenant-owned rows, every verb.

Nothing here names a model or a view: targets are found in `appbuilder.baseviews`, rows are
made by `factory.make_row`, and form payloads come from each view's own forms. A plugin's new
view is therefore covered the moment it is registered.
"""

from __future__ import annotations

import io
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from flask_appbuilder import ModelRestApi, ModelView
from flask_appbuilder.fields import QuerySelectField, QuerySelectMultipleField
from python_calamine import CalamineWorkbook

from onemeter.audit import jsonable
from onemeter.database import db
from onemeter.security import OMUser
from onemeter.tenancy import Tenant, TenantScope, use_scope
from tests.support.factory import make_row, tenant_owned, text_columns
from tests.support.stack import PASSWORD
from tests.support.web import signed_in


@dataclass
class Target:
    """One registered page or API whose model has tenant-owned rows."""

    kind: str  # "view", "api" or "page"
    instance: Any
    model: type | None

    @property
    def name(self) -> str:
        return self.instance.class_permission_name


def discover(app: Flask) -> list[Target]:
    """Every ModelView and ModelRestApi registered, over a tenant-owned model, and every
    other page that lists the URLs it serves in `om_matrix_pages` (reports, dashboards)."""
    targets = []
    for view in app.appbuilder.baseviews:
        if getattr(view, "om_matrix_pages", None):
            targets.append(Target("page", view, None))
            continue
        datamodel = getattr(view, "datamodel", None)
        if datamodel is None or not tenant_owned(datamodel.obj):
            continue
        if isinstance(view, ModelView):
            targets.append(Target("view", view, datamodel.obj))
        elif isinstance(view, ModelRestApi):
            targets.append(Target("api", view, datamodel.obj))
    return targets


@dataclass
class Rows:
    """Sample rows per model and tenant, with the marker written into their text."""

    marker: dict[int, str]
    pk: dict[tuple[type, int], Any] = field(default_factory=dict)
    spare: dict[tuple[type, int], Any] = field(default_factory=dict)


def seed(app: Flask, models: set[type], tenants: list[int]) -> Rows:
    rows = Rows({t: f"M{uuid.uuid4().hex[:8]}T{t}x" for t in tenants})
    with app.app_context():
        for tenant_id in tenants:
            with use_scope(TenantScope.tenant(tenant_id), db.session):
                for model in sorted(models, key=lambda m: m.__name__):
                    marker = rows.marker[tenant_id]
                    rows.pk[(model, tenant_id)] = make_row(db.session, model, tenant_id,
                                                           marker).id
                    rows.spare[(model, tenant_id)] = make_row(
                        db.session, model, tenant_id, f"S{uuid.uuid4().hex[:6]}").id
                db.session.commit()
    return rows


def snapshot(app: Flask, model: type, pk: Any) -> dict[str, Any] | None:
    """The row as the database holds it (read with every tenant visible), or None."""
    with app.app_context(), use_scope(TenantScope.all_read_only(orm_enforced=False),
                                      db.session):
        row = db.session.execute(sa.select(model.__table__).where(model.__table__.c.id == pk)
                                 ).mappings().first()
        db.session.rollback()
        return {k: jsonable(v) for k, v in row.items()} if row else None


def count_where(app: Flask, model: type, column: str, value: str) -> int:
    with app.app_context(), use_scope(TenantScope.all_read_only(orm_enforced=False),
                                      db.session):
        table = model.__table__
        n = db.session.execute(sa.select(sa.func.count()).select_from(table)
                               .where(table.c[column] == value)).scalar()
        db.session.rollback()
        return n


def _xlsx_text(body: bytes) -> str:
    try:
        book = CalamineWorkbook.from_filelike(io.BytesIO(body))
    except Exception:
        return body.decode("utf-8", "replace")
    return "\n".join(str(cell) for name in book.sheet_names
                     for row in book.get_sheet_by_name(name).to_python() for cell in row)


def body_text(response: Any) -> str:
    if "spreadsheetml" in response.headers.get("Content-Type", ""):
        return _xlsx_text(response.data)
    return response.get_data(as_text=True)


def form_payload(app: Flask, form_class: Any, obj: Any, tenant_id: int) -> dict[str, Any]:
    """What a browser would post for `form_class` filled from `obj`."""
    with app.test_request_context(), use_scope(TenantScope.tenant(tenant_id), db.session):
        form = form_class.refresh(obj=obj)
        data: dict[str, Any] = {}
        for f in form:
            if f.name == "csrf_token":
                continue
            if isinstance(f, QuerySelectMultipleField):
                data[f.name] = [str(getattr(o, "id", o)) for o in (f.data or [])]
            elif isinstance(f, QuerySelectField):
                if f.data is not None:
                    data[f.name] = str(f.data.id)
            elif f.type in ("SelectField", "EnumField"):  # EnumField: FAB's, for sa.Enum
                if f.data not in (None, ""):
                    data[f.name] = str(f.data)
            elif f.type == "BooleanField":
                if f.data:
                    data[f.name] = "y"
            elif f.type == "PasswordField":
                data[f.name] = PASSWORD
            else:
                value = f._value()
                if value not in (None, ""):
                    data[f.name] = value
        return data


class _BearerClient:
    """A test client that sends `Authorization: Bearer <token>` on every request."""

    def __init__(self, client: FlaskClient, token: str) -> None:
        self.client, self.headers = client, {"Authorization": f"Bearer {token}"}

    def __getattr__(self, method: str) -> Any:
        call = getattr(self.client, method)
        return lambda url, **kw: call(url, headers=self.headers, **kw)


def token_client(app: Flask, username: str, password: str) -> Any:
    """A client of the REST API signed in the way API users are: FAB's JWT login."""
    client = app.test_client()
    response = client.post("/api/v1/security/login", json={
        "username": username, "password": password, "provider": "db"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return _BearerClient(client, response.json["access_token"])


def fresh_texts(data: dict[str, Any], columns: list[str]) -> dict[str, str]:
    """New unique values for text fields (unique columns must not collide); e-mails stay valid."""
    out = {}
    for column in columns:
        new = f"N{uuid.uuid4().hex[:10]}"
        out[column] = f"{new}@test.local" if "@" in str(data.get(column, "")) else new
    return out


def load(app: Flask, model: type, pk: Any, tenant_id: int) -> Any:
    session = db.session
    with use_scope(TenantScope.tenant(tenant_id), session):
        return session.get(model, pk)


def tenant_relations(model: type, columns: list[str]) -> dict[str, type]:
    """Many-to-one relations among `columns` that point at tenant-owned models."""
    mapper = sa.inspect(model)
    out = {}
    for name in columns:
        rel = mapper.relationships.get(name)
        if rel is not None and rel.direction.name == "MANYTOONE" and tenant_owned(
                rel.mapper.class_):
            out[name] = rel.mapper.class_
    return out


@dataclass
class Matrix:
    """Runs every verb for every target as one user against another tenant's rows."""

    app: Flask
    rows: Rows
    cases: Counter = field(default_factory=Counter)
    leaks: list[str] = field(default_factory=list)
    controls: Counter = field(default_factory=Counter)
    #: False only in the self-test that bypasses isolation on purpose (controls then lie).
    strict: bool = True

    def allowed(self, username: str, view_name: str, permission: str) -> bool:
        """What the role rules and tenant's plugins say this user may do (for controls)."""
        sm = self.app.appbuilder.sm
        with self.app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
            user = db.session.query(OMUser).filter_by(username=username).one()
            roles = [r.name for r in user.roles]
            tenant = db.session.get(Tenant, user.tenant_id) if user.tenant_id else None
            plugins = set(tenant.plugins) if tenant and tenant.active else set()
            db.session.rollback()
        plugin = sm.om_view_plugin.get(view_name)
        if plugin is not None and plugin not in plugins:
            return False
        return any(re.match(v, view_name) and re.match(p, permission)
                   for role in roles for v, p in sm.om_role_rules.get(role, []))

    def _case(self, target: Target, verb: str, username: str, leaked: bool, detail: str = ""
              ) -> None:
        self.cases[(target.kind, verb)] += 1
        if leaked:
            self.leaks.append(f"{target.name} {verb} as {username}: {detail}")

    def _control(self, target: Target, verb: str, ok: bool, detail: str) -> None:
        """A positive control: the user's own tenant's row must be reachable when allowed."""
        self.controls[verb] += 1
        if self.strict:
            assert ok, f"control failed — {target.name} {verb}: {detail}"

    def _fresh_row(self, model: type, tenant_id: int) -> Any:
        with self.app.app_context(), use_scope(TenantScope.tenant(tenant_id), db.session):
            pk = make_row(db.session, model, tenant_id, f"D{uuid.uuid4().hex[:6]}").id
            db.session.commit()
            return pk

    def run(self, username: str, own: int, other: int,
            targets: list[Target] | None = None) -> None:
        """Every verb on `targets` (default: every registered page and API) as `username`."""
        client = signed_in(self.app, username, PASSWORD)
        api_client = token_client(self.app, username, PASSWORD)
        for target in discover(self.app) if targets is None else targets:
            if target.kind == "view":
                self._view(client, username, target, own, other)
            elif target.kind == "page":
                self._page(client, username, target, own, other)
            else:
                self._api(api_client, username, target, own, other)

    def _page(self, client: FlaskClient, username: str, t: Target, own: int, other: int
              ) -> None:
        """A report page (or workbook) never shows another tenant's rows: each URL of
        `om_matrix_pages` is fetched, `{tenant}` filled with the other tenant's id; with the
        user's own id, the own rows' marker must show where the user may open the page."""
        theirs, mine = self.rows.marker[other], self.rows.marker[own]
        permission = (t.instance.base_permissions or ["can_list"])[0]
        for template in t.instance.om_matrix_pages:
            url = template.format(tenant=other)
            self._case(t, "page", username, theirs in body_text(client.get(url)), url)
            if "{tenant}" in template and self.allowed(username, t.name, permission):
                url = template.format(tenant=own)
                self._control(t, "page", mine in body_text(client.get(url)),
                              f"own marker {mine} missing from {url}")

    def _deletes(self, t: Target, username: str, verb: str, delete: Any, their_pk: Any,
                 own: int, allowed: bool, before: dict[str, Any] | None) -> None:
        """Deleting the other tenant's row fails; deleting an own row works where allowed;
        and after every verb the other tenant's row is exactly as it was."""
        delete(their_pk)
        self._case(t, verb, username, snapshot(self.app, t.model, their_pk) is None,
                   "other tenant's row deleted")
        if allowed:
            doomed = self._fresh_row(t.model, own)
            delete(doomed)
            self._control(t, verb, snapshot(self.app, t.model, doomed) is None,
                          "own row not deleted")
        self._case(t, f"{verb}:unchanged", username,
                   snapshot(self.app, t.model, their_pk) != before,
                   "other tenant's row differs after all verbs")

    # --- pages ---

    def _view(self, client: FlaskClient, username: str, t: Target, own: int, other: int) -> None:
        view, model, rows = t.instance, t.model, self.rows
        base = view.route_base
        theirs, mine = rows.marker[other], rows.marker[own]
        their_pk, my_pk = rows.pk[(model, other)], rows.pk[(model, own)]
        before = snapshot(self.app, model, their_pk)
        my_row = snapshot(self.app, model, my_pk) or {}
        can = {p: self.allowed(username, t.name, p) for p in
               ("can_list", "can_show", "can_edit", "can_add", "can_delete", "can_export")}

        # Every row on one page: earlier verbs add rows that would push the marker off page 1.
        page = body_text(client.get(f"{base}/list/?psize_{view.__class__.__name__}=100000"))
        self._case(t, "list", username, theirs in page, "other tenant's marker on the list")
        if can["can_list"]:
            self._control(t, "list", mine in page, f"own marker {mine} missing from list")

        # The search box echoes the value typed, so a leak is a row's cell: marker + column.
        cells_of = {t_: [f"{rows.marker[t_]}{c}" for c in text_columns(model)]
                    for t_ in (own, other)}
        for column in [c for c in (view.search_columns or []) if c in text_columns(model)]:
            url = f"{base}/list/?_flt_0_{column}={theirs}"
            page = body_text(client.get(url))
            self._case(t, "filter", username, any(c in page for c in cells_of[other]), url)
            if can["can_list"] and str(my_row.get(column, "")).startswith(mine):
                page = body_text(client.get(f"{base}/list/?_flt_0_{column}={mine}"))
                self._control(t, "filter", any(c in page for c in cells_of[own]),
                              f"own row not found by filter on {column}")
        for column, related in tenant_relations(model, list(view.search_columns or [])).items():
            parent = rows.pk[(related, other)]
            url = f"{base}/list/?_flt_0_{column}={parent}"
            page = body_text(client.get(url))
            self._case(t, "filter-related", username, any(c in page for c in cells_of[other]),
                       url)

        response = client.get(f"{base}/show/{their_pk}")
        self._case(t, "show", username, theirs in body_text(response) or
                   response.status_code == 200, f"status {response.status_code}")
        if can["can_show"]:
            self._control(t, "show", mine in body_text(client.get(f"{base}/show/{my_pk}")),
                          "own row not shown")

        response = client.get(f"{base}/edit/{their_pk}")
        self._case(t, "edit-form", username, theirs in body_text(response) or
                   response.status_code == 200, f"status {response.status_code}")

        if hasattr(view, "export"):
            body = body_text(client.get(f"{base}/export/"))
            self._case(t, "export", username, theirs in body, "marker in export")
            if can["can_export"]:
                self._control(t, "export", mine in body, "own marker missing from export")

        add_page = body_text(client.get(f"{base}/add"))
        self._case(t, "add-form-choices", username, theirs in add_page, "marker in choices")

        spare = rows.spare[(model, own)]
        with self.app.app_context():
            edit_theirs = edit_mine = add_data = {}
            if view.edit_form:
                edit_theirs = form_payload(self.app, view.edit_form,
                                           load(self.app, model, their_pk, other), other)
                edit_mine = form_payload(self.app, view.edit_form,
                                         load(self.app, model, spare, own), own)
            if view.add_form:
                add_data = form_payload(self.app, view.add_form,
                                        load(self.app, model, my_pk, own), own)
        texts = [c for c in text_columns(model) if c in edit_theirs]
        if texts:
            value = f"EDIT{uuid.uuid4().hex[:8]}"
            client.post(f"{base}/edit/{their_pk}", data=dict(edit_theirs, **{texts[0]: value}))
            after = snapshot(self.app, model, their_pk)
            self._case(t, "edit-post", username, after != before, "other tenant's row changed")
            if can["can_edit"]:
                client.post(f"{base}/edit/{spare}", data=dict(edit_mine, **{texts[0]: value}))
                self._control(t, "edit-post", snapshot(self.app, model, spare)[texts[0]] == value,
                              f"own row not edited: {texts[0]}")

        relations = tenant_relations(model, list(add_data) + list(view.add_columns or []))
        add_texts = [c for c in text_columns(model) if c in add_data]
        if relations and add_texts and add_data:
            for parent_tenant, expect_created in ((other, False), (own, can["can_add"])):
                value = f"ADD{uuid.uuid4().hex[:8]}"
                data = dict(add_data, **fresh_texts(add_data, add_texts))
                data[add_texts[0]] = value
                # A fresh parent each time: a unique (parent, code) key must not collide
                # with a row an earlier verb created under the seeded parent.
                for name, related in relations.items():
                    data[name] = str(self._fresh_row(related, parent_tenant))
                client.post(f"{base}/add", data=data)
                created = count_where(self.app, model, add_texts[0], value)
                if parent_tenant == other:
                    self._case(t, "add-foreign-ref", username, created > 0,
                               "row created referencing another tenant's parent")
                elif expect_created:
                    self._control(t, "add", created == 1, "own add with own parent failed")

        self._deletes(t, username, "delete", lambda pk: client.post(f"{base}/delete/{pk}"),
                      their_pk, own, can["can_delete"], before)

    # --- REST API ---

    def _api(self, client: FlaskClient, username: str, t: Target, own: int, other: int) -> None:
        api, model, rows = t.instance, t.model, self.rows
        base = f"/api/v1/{api.resource_name}"
        theirs, mine = rows.marker[other], rows.marker[own]
        their_pk, my_pk = rows.pk[(model, other)], rows.pk[(model, own)]
        before = snapshot(self.app, model, their_pk)
        can = {p: self.allowed(username, t.name, p) for p in
               ("can_get", "can_put", "can_post", "can_delete", "can_info")}

        listing = client.get(f"{base}/?q=(page_size:100)").get_data(as_text=True)
        self._case(t, "api-list", username, theirs in listing, "marker in API list")
        if can["can_get"]:
            self._control(t, "api-list", mine in listing, "own marker missing from API list")
        response = client.get(f"{base}/{their_pk}")
        self._case(t, "api-get", username, response.status_code == 200 or
                   theirs in response.get_data(as_text=True), f"status {response.status_code}")
        info = client.get(f"{base}/_info").get_data(as_text=True)
        self._case(t, "api-related-choices", username, theirs in info, "marker in _info")

        texts = [c for c in text_columns(model) if c in (api.edit_columns or [])]
        if texts:
            value = f"PUT{uuid.uuid4().hex[:8]}"
            client.put(f"{base}/{their_pk}", json={texts[0]: value})
            self._case(t, "api-put", username, snapshot(self.app, model, their_pk) != before,
                       "other tenant's row changed by PUT")
            if can["can_put"]:
                spare = rows.spare[(model, own)]
                client.put(f"{base}/{spare}", json={texts[0]: value})
                self._control(t, "api-put", snapshot(self.app, model, spare)[texts[0]] == value,
                              "own row not changed by PUT")

        relations = tenant_relations(model, list(api.add_columns or []))
        add_texts = [c for c in text_columns(model) if c in (api.add_columns or [])]
        if relations and add_texts:
            mine_row = snapshot(self.app, model, my_pk) or {}
            for parent_tenant in (other, own):
                value = f"POST{uuid.uuid4().hex[:8]}"
                payload = {c: mine_row[c] for c in api.add_columns
                           if c in mine_row and c not in relations}
                payload[add_texts[0]] = value
                for name, related in relations.items():
                    payload[name] = self._fresh_row(related, parent_tenant)
                response = client.post(f"{base}/", json=payload)
                created = count_where(self.app, model, add_texts[0], value)
                if parent_tenant == other:
                    self._case(t, "api-post-foreign-ref", username, created > 0,
                               f"created via POST (status {response.status_code})")
                elif can["can_post"]:
                    self._control(t, "api-post", created == 1,
                                  f"own POST failed: {response.status_code} "
                                  f"{response.get_data(as_text=True)[:300]}")

        self._deletes(t, username, "api-delete", lambda pk: client.delete(f"{base}/{pk}"),
                      their_pk, own, can["can_delete"], before)
