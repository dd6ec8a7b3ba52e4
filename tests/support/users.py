"""Test users: per tenant an admin and a staff member; cross-tenant roles; odd cases."""

from __future__ import annotations

from flask import Flask

from onemeter.database import db
from onemeter.security import (
    DISTRICT_VIEWER,
    FINANCE,
    PLATFORM_ADMIN,
    TENANT_ADMIN,
    TENANT_STAFF,
    UTILITY_STAFF,
    OMUser,
)
from onemeter.tenancy import Tenant, TenantScope, use_scope
from tests.support.stack import PASSWORD

CROSS_TENANT_USERS = {
    "admin": (PLATFORM_ADMIN, None),
    "district": (DISTRICT_VIEWER, None),
    "finance": (FINANCE, None),
    "water": (UTILITY_STAFF, "water"),
    "power": (UTILITY_STAFF, "electricity"),
}


def tenant_ids(app: Flask) -> dict[str, int]:
    with app.app_context(), use_scope(TenantScope.all_read_only()):
        return {t.code: t.id for t in db.session.query(Tenant)}


def create_test_users(app: Flask) -> None:
    sm = app.appbuilder.sm
    with use_scope(TenantScope.all_read_only(), db.session):
        tenants = db.session.query(Tenant).all()
        for tenant in tenants:
            sm.add_user_checked(f"{tenant.code}_admin", "管理员", tenant.name,
                                f"{tenant.code}_admin@test.local", [TENANT_ADMIN], PASSWORD,
                                tenant=tenant)
            sm.add_user_checked(f"{tenant.code}_staff", "工作人员", tenant.name,
                                f"{tenant.code}_staff@test.local", [TENANT_STAFF], PASSWORD,
                                tenant=tenant)
        for username, (role, utility) in CROSS_TENANT_USERS.items():
            sm.add_user_checked(username, username, "", f"{username}@test.local", [role],
                                PASSWORD, utility_code=utility)
        # A tenant role with no tenant: must see nothing (fail closed).
        orphan = OMUser(username="orphan", first_name="无", last_name="归属",
                        email="orphan@test.local", active=True,
                        password=sm.find_user("pingqiao_staff").password,
                        roles=[sm.find_role(TENANT_STAFF)])
        db.session.add(orphan)
        db.session.commit()
