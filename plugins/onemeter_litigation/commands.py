"""`onemeter litigation …`: file earlier referrals under cases (after enabling, after a demo)."""

from __future__ import annotations

import click

from onemeter.audit import acting_as
from onemeter.database import db
from onemeter.tenancy import Tenant, TenantScope, use_scope
from onemeter_litigation.service import PLUGIN, file_earlier_referrals


@click.group("litigation")
def litigation_group() -> None:
    """诉讼插件：案件维护。"""


@litigation_group.command("sync")
def sync_command() -> None:
    """Open or join cases for projects referred to litigation that have none yet.

    Referrals made before a sub-district enabled the plugin (or loaded by the demo without
    the hook) get their case; running it again files nothing twice.
    """
    with use_scope(TenantScope.all_read_only(), db.session):
        tenants = [(t.id, t.name) for t in db.session.query(Tenant).order_by(Tenant.id)
                   if t.enables(PLUGIN)]
        db.session.rollback()
    for tenant_id, name in tenants:
        with use_scope(TenantScope.tenant(tenant_id), db.session), \
                acting_as(None, "cli:litigation sync"):
            filed = file_earlier_referrals(db.session, tenant_id)
            db.session.commit()
        click.echo(f"{name}：{filed} 个改造项目已立卷或并入案件")
