"""Users, roles and permissions: users belong to one tenant or hold a cross-tenant role.

The FAB security manager is extended so that a plugin a tenant has not enabled is invisible
and refused, residents' phone and ID numbers are masked without `view_pii`, and each
sub-district's admin manages its own staff and nothing else.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from flask import current_app, g, has_request_context
from flask_appbuilder import ModelView
from flask_appbuilder.const import AUTH_DB
from flask_appbuilder.exceptions import PasswordComplexityValidationError
from flask_appbuilder.models.sqla.filters import FilterEqualFunction, FilterInFunction
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.sqla.manager import SecurityManager
from flask_appbuilder.security.sqla.models import User
from flask_appbuilder.security.views import UserDBModelView
from flask_appbuilder.widgets import FormWidget
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import generate_password_hash
from wtforms import PasswordField
from wtforms.validators import EqualTo, Optional, ValidationError

from onemeter.database import Model
from onemeter.errors import SaveErrorMessages
from onemeter.tenancy import Tenant, TenantScope, current_scope

# --- roles -----------------------------------------------------------------------------

PLATFORM_ADMIN = "platform_admin"
TENANT_ADMIN = "tenant_admin"
TENANT_STAFF = "tenant_staff"
DISTRICT_VIEWER = "district_viewer"
FINANCE = "finance"
UTILITY_STAFF = "utility_staff"

#: Role name → Chinese label, as shown in the staff pages and printed by `make run`.
ROLE_LABELS: dict[str, str] = {
    PLATFORM_ADMIN: "平台管理员",
    TENANT_ADMIN: "办事处管理员",
    TENANT_STAFF: "办事处工作人员",
    DISTRICT_VIEWER: "区领导小组办公室（只读）",
    FINANCE: "财政局",
    UTILITY_STAFF: "供水/供电公司",
}
#: Roles held by users of one sub-district; a tenant admin may grant only these.
TENANT_ROLES = (TENANT_ADMIN, TENANT_STAFF)
#: Roles held by users of no tenant, with an explicit read-only scope over all tenants.
CROSS_TENANT_ROLES = (PLATFORM_ADMIN, DISTRICT_VIEWER, FINANCE, UTILITY_STAFF)

READ_PERMISSIONS = ("can_list", "can_show", "can_get", "can_info", "can_export")
WRITE_PERMISSIONS = (*READ_PERMISSIONS, "can_add", "can_edit", "can_delete", "can_post",
                     "can_put")
#: The permission (on the pseudo view "PII") that shows residents' phone and ID unmasked.
PII_VIEW, PII_PERMISSION = "PII", "can_view_pii"

#: What every signed-in user may do on FAB's own pages (own profile, own password).
_SELF_SERVICE = [
    (r"^UserInfoEditView$", r"^can_this_form_(get|post)$"),
    (r"^ResetMyPasswordView$", r"^can_this_form_(get|post)$"),
    (r"^(UserDBModelView|OMUserView)$", r"^can_userinfo$"),
    (r"^(UserDBModelView|OMUserView)$", r"^resetmypassword$"),
    (r"^(UserDBModelView|OMUserView)$", r"^userinfoedit$"),
    (r"^MenuApi$", r"^can_get$"),
]
#: The OpenAPI description and its Swagger UI (/swagger/v1): the platform admin's.
_API_DOCS = [(r"^SwaggerView$", r"^can_show$"), (r"^OpenApi$", r"^can_get$")]


# --- password policy ---------------------------------------------------------------------

def password_policy(password: str) -> None:
    """At least 10 characters with a letter and a digit (等保 minimum); raises with a reason."""
    if len(password or "") < 10:
        raise PasswordComplexityValidationError("密码至少 10 位")
    if not re.search(r"[A-Za-z]", password) or not re.search(r"\d", password):
        raise PasswordComplexityValidationError("密码须同时包含字母和数字")


# --- the user model --------------------------------------------------------------------

class OMUser(User):
    """A FAB user with the tenant it belongs to (None for cross-tenant roles)."""

    __tablename__ = "ab_user"
    __table_args__ = {"extend_existing": True}

    tenant_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("om_tenant.id"), nullable=True, index=True
    )
    #: For utility_staff: the utility code (water, electricity, …) they work for.
    utility_code: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    tenant: Mapped[Tenant | None] = relationship(Tenant, foreign_keys=[tenant_id])


def role_names(user: Any) -> set[str]:
    return {r.name for r in (getattr(user, "roles", None) or [])}


def scope_for_user(user: Any, orm_enforced: bool = True,
                   tenant_roles: frozenset[str] = frozenset(TENANT_ROLES),
                   cross_roles: frozenset[str] = frozenset(CROSS_TENANT_ROLES)) -> TenantScope:
    """The tenant scope a signed-in user gets; anything unclear gets nothing (fail closed).

    `tenant_roles`/`cross_roles` include the roles plugins add (OMSecurityManager knows them).
    """
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return TenantScope.nothing(orm_enforced)
    roles = role_names(user)
    if user.tenant_id is not None:
        tenant = user.tenant
        if roles & tenant_roles and tenant is not None and tenant.active:
            return TenantScope.tenant(user.tenant_id, orm_enforced)
        return TenantScope.nothing(orm_enforced)
    if roles & cross_roles:
        utility = user.utility_code if UTILITY_STAFF in roles else None
        return TenantScope.all_read_only(orm_enforced, utility=utility)
    return TenantScope.nothing(orm_enforced)


# --- PII masking -------------------------------------------------------------------------

def mask_phone(value: str | None) -> str | None:
    """138****5678: keep the operator prefix and the last four digits."""
    if not value:
        return value
    s = str(value)
    return s[:3] + "*" * max(len(s) - 7, 1) + s[-4:] if len(s) > 7 else "*" * len(s)


def mask_id_number(value: str | None) -> str | None:
    """4115**********1234: keep the region prefix and the last four characters."""
    if not value:
        return value
    s = str(value)
    return s[:4] + "*" * max(len(s) - 8, 1) + s[-4:] if len(s) > 8 else "*" * len(s)


PII_MASKS = {"phone": mask_phone, "id_number": mask_id_number}


def can_view_pii() -> bool:
    """Whether the current user may see residents' phone and ID numbers unmasked."""
    if not has_request_context():
        return False
    return current_app.appbuilder.sm.has_access(PII_PERMISSION, PII_VIEW)


def pii_columns(model: type) -> dict[str, str]:
    """Column name → PII kind for columns declared with `info={"pii": "phone"|"id_number"}`."""
    table = getattr(model, "__table__", None)
    if table is None:
        return {}
    return {c.key: c.info["pii"] for c in table.columns if c.info.get("pii") in PII_MASKS}


def mask_value(kind: str, value: Any) -> Any:
    return PII_MASKS[kind](value)


def mask_logged_values(values: Any) -> Any:
    """A change-log `before`/`after` dict with the value of every PII column masked.

    The log names the model in another column, so any key that is a PII column of any model
    is masked: over-masking a same-named column is the safe side.
    """
    if not isinstance(values, dict):
        return values
    kinds = {column: kind for mapper in Model.registry.mappers
             for column, kind in pii_columns(mapper.class_).items() if kind != LOGGED_VALUES}
    return {key: mask_value(kinds[key], value) if key in kinds else value
            for key, value in values.items()}


#: The PII kind of the change log's before/after columns: JSON holding other models' columns.
LOGGED_VALUES = "logged_values"
PII_MASKS[LOGGED_VALUES] = mask_logged_values


# --- user administration -----------------------------------------------------------------

def _current_write_tenant() -> int:
    scope = current_scope()
    return scope.write if scope.write is not None else -1


def _tenant_role_names() -> list[str]:
    return sorted(current_app.appbuilder.sm.tenant_roles)


class _PasswordFields:
    """Password and confirmation fields with the platform policy, for user add forms."""

    @staticmethod
    def build(required: bool) -> dict[str, Any]:
        from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget
        from flask_appbuilder.validators import PasswordComplexityValidator
        from wtforms.validators import DataRequired

        first = [DataRequired()] if required else [Optional()]
        return {
            "password": PasswordField(
                _l("Password"), validators=[*first, PasswordComplexityValidator()],
                widget=BS3PasswordFieldWidget(),
                description="至少 10 位，须同时包含字母和数字" if required
                else "留空则不修改；填写即为该人员重置密码",
            ),
            "conf_password": PasswordField(
                _l("Confirm Password"),
                validators=[EqualTo("password", message="两次输入的密码不一致")],
                widget=BS3PasswordFieldWidget(),
            ),
        }


def _tenant_roles_field() -> Any:
    """Roles a sub-district admin may grant, shown by their Chinese names.

    Any other role id posted is "not a valid choice": the form says so and nothing is saved.
    """
    from flask_appbuilder.fields import QuerySelectMultipleField
    from flask_appbuilder.fieldwidgets import Select2ManyWidget
    from flask_appbuilder.security.sqla.models import Role

    def query() -> Any:
        sm = current_app.appbuilder.sm
        return sm.session.query(Role).filter(Role.name.in_(sorted(sm.tenant_roles)))

    def label(role: Any) -> str:
        return current_app.appbuilder.sm.role_labels.get(role.name, role.name)

    class TenantRolesField(QuerySelectMultipleField):
        def pre_validate(self, form: Any) -> None:
            # FAB checks for unknown ids before it has read the posted ones: read them first.
            _ = self.data
            if self._invalid_formdata:
                raise ValidationError("只能授予本办事处的角色")
            super().pre_validate(form)

    return TenantRolesField("角色", query_func=query, get_label=label,
                                    get_pk_func=lambda role: role.id,
                                    widget=Select2ManyWidget())


class TenantStaffView(SaveErrorMessages, ModelView):
    """A sub-district admin's page for their own staff: create, deactivate, reset, assign roles.

    Every query is limited to the admin's tenant and the roles offered are the tenant roles;
    the same rules are checked again before a write, whatever the form posted.
    """

    datamodel = SQLAInterface(OMUser)
    route_base = "/tenantstaff"
    class_permission_name = "TenantStaffView"
    om_roles = {TENANT_ADMIN: ("can_list", "can_show", "can_add", "can_edit")}
    base_permissions = ["can_list", "can_show", "can_add", "can_edit"]
    base_filters = [["tenant_id", FilterEqualFunction, _current_write_tenant]]
    list_title = show_title = "本办事处人员"
    add_title = "新建人员账号"
    edit_title = "修改人员账号"
    list_columns = ["username", "first_name", "last_name", "email", "roles", "active",
                    "last_login"]
    show_columns = list_columns
    formatters_columns = {
        "roles": lambda roles: "、".join(
            current_app.appbuilder.sm.role_labels.get(r.name, r.name) for r in roles or []),
        "active": lambda active: "是" if active else "否",
        # FAB records sign-ins in the server's local time.
        "last_login": lambda at: at.strftime("%Y-%m-%d %H:%M") if at else "从未登录",
    }
    add_columns = ["username", "first_name", "last_name", "email", "roles", "active",
                   "password", "conf_password"]
    edit_columns = ["first_name", "last_name", "email", "roles", "active", "password",
                    "conf_password"]
    search_columns = ["username", "first_name", "last_name", "email", "active"]
    label_columns = {"username": "用户名", "first_name": "姓", "last_name": "名",
                     "email": "电子邮箱", "roles": "角色", "active": "启用",
                     "last_login": "最近登录", "password": "密码", "conf_password": "确认密码"}
    add_form_query_rel_fields = {"roles": [["name", FilterInFunction, _tenant_role_names]]}
    edit_form_query_rel_fields = add_form_query_rel_fields
    add_form_extra_fields = {**_PasswordFields.build(required=True),
                             "roles": _tenant_roles_field()}
    edit_form_extra_fields = {**_PasswordFields.build(required=False),
                              "roles": _tenant_roles_field()}
    add_widget = FormWidget

    def _check(self, item: OMUser) -> None:
        tenant_id = _current_write_tenant()
        bad = role_names(item) - current_app.appbuilder.sm.tenant_roles
        if bad:
            raise ValueError(f"不能授予本办事处以外的角色：{', '.join(sorted(bad))}")
        if item.tenant_id not in (None, tenant_id):
            raise ValueError("不能管理其他办事处的人员")
        item.tenant_id = tenant_id
        item.utility_code = None

    def process_form(self, form: Any, is_created: bool) -> None:
        # The password never goes through populate_obj: it fills the user in field-creation
        # order, so the roles' lazy load after it autoflushed the clear text (or an empty
        # password) before pre_update could hash it.
        g.om_new_password = form.password.data or ""
        del form.password
        del form.conf_password

    def pre_add(self, item: OMUser) -> None:
        self._check(item)
        item.password = generate_password_hash(g.pop("om_new_password"))

    def pre_update(self, item: OMUser) -> None:
        self._check(item)
        password = g.pop("om_new_password", "")
        if password:  # left empty: the password stays as it was
            item.password = generate_password_hash(password)

    def pre_delete(self, item: OMUser) -> None:
        raise ValueError("人员账号不能删除，请停用")


class OMUserView(SaveErrorMessages, UserDBModelView):
    """The platform admin's user page: every user, with their tenant and utility."""

    datamodel = SQLAInterface(OMUser)
    class_permission_name = "OMUserView"
    list_columns = ["username", "first_name", "last_name", "tenant", "utility_code", "roles",
                    "active", "last_login"]
    add_columns = ["username", "first_name", "last_name", "email", "tenant", "utility_code",
                   "roles", "active", "password", "conf_password"]
    edit_columns = ["first_name", "last_name", "username", "email", "tenant", "utility_code",
                    "roles", "active"]
    show_columns = list_columns + ["email", "login_count", "fail_login_count", "created_on"]
    label_columns = {"tenant": "所属办事处", "utility_code": "所属公用事业（供水/供电）"}
    add_form_extra_fields = _PasswordFields.build(required=True)

    def _check(self, item: OMUser) -> None:
        roles = role_names(item)
        tenant_roles = current_app.appbuilder.sm.tenant_roles
        if item.tenant is not None and roles - tenant_roles:
            raise ValueError("属于办事处的用户只能授予办事处角色")
        if item.tenant is None and roles & tenant_roles:
            raise ValueError("办事处角色须指定所属办事处")
        if UTILITY_STAFF in roles and not item.utility_code:
            raise ValueError("供水/供电公司人员须填写所属公用事业")

    def pre_add(self, item: OMUser) -> None:
        self._check(item)
        super().pre_add(item)

    def pre_update(self, item: OMUser) -> None:
        self._check(item)
        super().pre_update(item)


class OMSecurityManager(SecurityManager):
    """FAB's security manager with tenants, plugin enablement and no external chart assets."""

    user_model = OMUser
    userdbmodelview = OMUserView
    # FAB's user statistics chart loads Google Charts from the internet: not on an intranet.
    userstatschartview = None

    def __init__(self, appbuilder: Any) -> None:
        super().__init__(appbuilder)
        #: Filled by the view registry: view/menu name → plugin name, and the role rules.
        self.om_view_plugin: dict[str, str] = {}
        self.om_role_rules: dict[str, list[tuple[str, str]]] = {PLATFORM_ADMIN: [*_API_DOCS]}
        self.om_category_owners: dict[str, set[str | None]] = {}
        #: Role name → label, the core's and those plugins add (onemeter_roles).
        self.role_labels: dict[str, str] = dict(ROLE_LABELS)
        self.tenant_roles: frozenset[str] = frozenset(TENANT_ROLES)
        self.cross_tenant_roles: frozenset[str] = frozenset(CROSS_TENANT_ROLES)
        self._builtin_roles = self.om_role_rules
        # FAB checks CSRF tokens on every POST, and refuses deletes by GET, only when Flask-WTF's
        # CSRFProtect is on the app: without it a cross-site link could delete a ledger row.
        # Created here, before any API, so FAB exempts its token-authenticated REST blueprints.
        if "csrf" not in current_app.extensions:
            CSRFProtect(current_app)

    @property
    def builtin_roles(self) -> dict[str, Any]:
        return self.om_role_rules

    # --- plugin enablement per tenant ---

    def enabled_plugins(self) -> set[str] | None:
        """Plugins the current user's tenant enables; for cross-tenant users, any tenant's.

        None means "no restriction" (outside a request: CLI, jobs).
        """
        if not has_request_context():
            return None
        if "om_enabled_plugins" in g.__dict__:
            return g.om_enabled_plugins
        scope = current_scope()
        tenants = self.session.query(Tenant).filter(Tenant.active.is_(True))
        if scope.read is None:
            enabled = {p for t in tenants for p in (t.plugins or [])}
        else:
            enabled = {p for t in tenants.filter(Tenant.id.in_(scope.read or {-1}))
                       for p in (t.plugins or [])}
        g.om_enabled_plugins = enabled
        return enabled

    def _plugin_allows(self, name: str) -> bool:
        plugin = self.om_view_plugin.get(name)
        if plugin is None:
            return True
        enabled = self.enabled_plugins()
        return enabled is None or plugin in enabled

    def has_access(self, permission_name: str, view_name: str) -> bool:
        return self._plugin_allows(view_name) and super().has_access(permission_name, view_name)

    def get_user_menu_access(self, menu_names: list[str] | None = None) -> set[str]:
        allowed = super().get_user_menu_access(menu_names)
        return {name for name in allowed if self._plugin_allows(name)}

    # --- roles ---

    def add_plugin_roles(self, specs: list[Any]) -> None:
        """Take the roles plugins declare (RoleSpec): tenant roles or cross-tenant ones."""
        for spec in specs:
            self.role_labels[spec.name] = spec.label
            if spec.tenant_role:
                self.tenant_roles = self.tenant_roles | {spec.name}
            else:
                self.cross_tenant_roles = self.cross_tenant_roles | {spec.name}

    def scope_for(self, user: Any, orm_enforced: bool = True) -> TenantScope:
        """The scope of `user`, knowing the plugins' roles."""
        return scope_for_user(user, orm_enforced, self.tenant_roles, self.cross_tenant_roles)

    def ensure_roles(self) -> None:
        """Create a row for every role known to the platform (idempotent)."""
        for name in [*self.role_labels, *self.om_role_rules, self.auth_role_public]:
            if self.find_role(name) is None and self.add_role(name) is None:
                raise RuntimeError(f"could not create role {name}")

    def add_user_checked(self, username: str, first_name: str, last_name: str, email: str,
                         role_names_: list[str], password: str, tenant: Tenant | None = None,
                         utility_code: str | None = None) -> OMUser:
        """Create a user through the same policy as the pages; raises ValueError with why."""
        try:
            password_policy(password)
        except PasswordComplexityValidationError as exc:
            raise ValueError(str(exc)) from exc
        roles = [self.find_role(r) for r in role_names_]
        if None in roles:
            raise ValueError(f"未知角色：{role_names_}")
        user = OMUser(username=username, first_name=first_name, last_name=last_name,
                      email=email, active=True, password=generate_password_hash(password),
                      roles=roles, tenant=tenant, utility_code=utility_code)
        OMUserView._check(None, user)  # type: ignore[arg-type]
        self.session.add(user)
        self.session.commit()
        return user


def current_user_or_none() -> Any:
    """The signed-in user of this request, or None (CLI, jobs, anonymous)."""
    if has_request_context() and current_user and current_user.is_authenticated:
        return current_user
    return None


__all__ = [
    "AUTH_DB", "CROSS_TENANT_ROLES", "OMSecurityManager", "OMUser", "ROLE_LABELS",
    "TENANT_ROLES", "TenantStaffView", "can_view_pii", "mask_id_number", "mask_phone",
    "password_policy", "pii_columns", "scope_for_user",
]
