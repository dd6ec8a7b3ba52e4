"""`create_app()`: the one place the application is assembled.

Config, database, tenancy listeners, plugins, Flask-AppBuilder, views, roles and the
per-request tenant scope. It does no database work: the schema may not exist yet.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from flask import Flask, g, request
from flask_appbuilder import AppBuilder
from flask_login import current_user
from flask_migrate import Migrate

from onemeter.audit import install_audit_listeners
from onemeter.config import PROJECT_ROOT, load_config
from onemeter.database import db
from onemeter.plugins import build_plugin_manager, register_plugin_views
from onemeter.security import (
    _SELF_SERVICE,
    PII_PERMISSION,
    PII_VIEW,
    PLATFORM_ADMIN,
    TENANT_ADMIN,
    TENANT_STAFF,
    OMSecurityManager,
    password_policy,
)
from onemeter.tenancy import TenantScope, _scope, install_tenancy_listeners, set_scope
from onemeter.utilities import collect_utilities

HERE = Path(__file__).resolve().parent
MIGRATIONS_DIR = PROJECT_ROOT / "migrations"

#: FAB's own security pages: the platform admin's alone.
_FAB_SECURITY_VIEWS = (r"^(OMUserView|RoleModelView|UserGroupModelView|PermissionModelView|"
                       r"ViewMenuModelView|PermissionViewModelView|ResetPasswordView|"
                       r"RegisterUserModelView)$")
_FAB_SECURITY_MENUS = (r"^(Security|List Users|List Roles|List Groups|Base Permissions|"
                       r"Views/Menus|Permission on Views/Menus)$")


def _finish_roles(sm: OMSecurityManager) -> None:
    rules = sm.om_role_rules
    for role in sm.role_labels:
        rules.setdefault(role, []).extend(_SELF_SERVICE)
    for role in (TENANT_ADMIN, TENANT_STAFF):
        rules[role].append((f"^{PII_VIEW}$", f"^{PII_PERMISSION}$"))
    rules[PLATFORM_ADMIN] += [(_FAB_SECURITY_VIEWS, r".*"),
                              (_FAB_SECURITY_MENUS, r"^menu_access$")]


def _scope_request(app: Flask) -> None:
    """Give each request the tenant scope of its user, and an id for the change log."""

    @app.before_request
    def set_request_scope() -> None:
        g.request_id = (request.headers.get("X-Request-ID") or uuid.uuid4().hex)[:64]
        user = current_user if current_user and current_user.is_authenticated else None
        if user is None:
            user = _jwt_user(app)
        scope = app.appbuilder.sm.scope_for(user, app.config["ONEMETER_ORM_ISOLATION"])
        set_scope(scope, db.session)

    @app.teardown_request
    def clear_request_scope(exc: BaseException | None) -> None:
        _scope.set(TenantScope.nothing())


def _jwt_user(app: Flask) -> Any:
    """The user of a Bearer-token API request (FAB's /api/v1/security/login), if any."""
    if not request.headers.get("Authorization", "").startswith("Bearer "):
        return None
    from flask_jwt_extended import current_user as jwt_user
    from flask_jwt_extended import verify_jwt_in_request

    try:
        verify_jwt_in_request(optional=True)
    except Exception:  # an invalid token is refused later by FAB's @protect
        return None
    return jwt_user or None


def create_app(config: dict[str, Any] | None = None, *,
               extra_plugins: dict[str, Any] | None = None) -> Flask:
    """Assemble the OneMeter web app.

    `config` overrides settings from the environment (tests pass a database URL, a queue
    prefix, ONEMETER_PLUGINS…). `extra_plugins` registers plugin objects directly, as if
    discovered, for tests of the plugin host.
    """
    app = Flask("onemeter", template_folder=str(HERE / "templates"),
                static_folder=str(HERE / "static"), static_url_path="/om-static")
    app.config.update(load_config(config))
    app.config.setdefault("FAB_PASSWORD_COMPLEXITY_VALIDATOR", password_policy)
    app.config["FAB_CREATE_DB"] = False
    app.config["FAB_UPDATE_PERMS"] = False  # roles are rules in code (see _finish_roles)
    app.config.setdefault("RATELIMIT_STORAGE_URI", "memory://")
    # Several installs (or test runs) on one Redis keep their own login counters.
    app.config.setdefault("RATELIMIT_KEY_PREFIX", "onemeter" + app.config["ONEMETER_QUEUE_PREFIX"])
    if app.config["ONEMETER_REDIS_URL"].startswith(("redis://", "rediss://")):
        app.config["RATELIMIT_STORAGE_URI"] = app.config["ONEMETER_REDIS_URL"]
        app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    Path(app.config["ONEMETER_UPLOAD_DIR"]).mkdir(parents=True, exist_ok=True)

    db.init_app(app)
    install_tenancy_listeners()
    install_audit_listeners()

    only = [p.strip() for p in app.config["ONEMETER_PLUGINS"].split(",") if p.strip()] or None
    pm = build_plugin_manager(only, extra_plugins, trace=app.config["ONEMETER_TRACE_PLUGINS"])
    app.extensions["onemeter_plugins"] = pm
    app.extensions["onemeter_utilities"] = collect_utilities(pm)

    migrate = Migrate(app, db, directory=str(MIGRATIONS_DIR), compare_type=True)

    @migrate.configure
    def add_plugin_branches(alembic_config: Any) -> Any:
        locations = [str(MIGRATIONS_DIR / "versions")]
        locations += [loc for loc in pm.hook.onemeter_migrations_location() if loc]
        alembic_config.set_main_option("version_locations", " ".join(locations))
        return alembic_config

    from onemeter.views import OneMeterIndexView

    with app.app_context():
        appbuilder = AppBuilder(
            security_manager_class=OMSecurityManager, indexview=OneMeterIndexView,
            base_template="onemeter/base.html",
        )
        appbuilder.init_app(app, db.session)
        appbuilder.sm.add_plugin_roles([s for specs in pm.hook.onemeter_roles() for s in specs])
        register_plugin_views(pm, appbuilder)
        _finish_roles(appbuilder.sm)
        pm.hook.onemeter_app_ready(app=app)
    for commands in pm.hook.onemeter_cli_commands():
        for command in commands:
            app.cli.add_command(command)
    app.config["_ONEMETER_PID"] = os.getpid()

    # Hand-written forms (job buttons) post a token whether or not CSRFProtect is on.
    from flask_wtf.csrf import generate_csrf

    app.jinja_env.globals.setdefault("csrf_token", generate_csrf)
    _scope_request(app)
    from onemeter.errors import register_error_pages

    register_error_pages(app)
    return app
