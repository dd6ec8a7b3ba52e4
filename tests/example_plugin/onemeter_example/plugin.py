"""The example plugin's hook implementations."""

from __future__ import annotations

from pathlib import Path

import click
import sqlalchemy as sa
from flask_appbuilder.models.sqla.interface import SQLAInterface

from onemeter.database import db
from onemeter.plugins import PluginInfo, RoleSpec, ViewRegistrar, hookimpl
from onemeter.security import READ_PERMISSIONS
from onemeter.tenancy import Tenant, TenantScope, use_scope
from onemeter.views import TenantModelRestApi, TenantModelView
from onemeter_example.models import Checklist, ChecklistItem

#: A tenant role the plugin adds: may read checklists, nothing else.
INSPECTOR = "example_inspector"


class ChecklistView(TenantModelView):
    datamodel = SQLAInterface(Checklist)
    route_base = "/example/checklists"
    om_roles = {**TenantModelView.om_roles, INSPECTOR: READ_PERMISSIONS}
    list_title = "检查清单"
    list_columns = ["name", "contact_phone"]
    search_columns = ["name", "contact_phone"]
    label_columns = {"name": "名称", "contact_phone": "联系电话"}


class ChecklistItemView(TenantModelView):
    datamodel = SQLAInterface(ChecklistItem)
    route_base = "/example/items"
    list_title = "检查项"
    list_columns = ["checklist", "text"]
    add_columns = edit_columns = ["checklist", "text"]
    search_columns = ["checklist", "text"]
    label_columns = {"checklist": "检查清单", "text": "内容"}


class ChecklistApi(TenantModelRestApi):
    datamodel = SQLAInterface(Checklist)
    resource_name = "example_checklist"
    list_columns = show_columns = ["id", "name", "contact_phone"]
    add_columns = edit_columns = ["name", "contact_phone"]


class ChecklistItemApi(TenantModelRestApi):
    datamodel = SQLAInterface(ChecklistItem)
    resource_name = "example_checklist_item"
    list_columns = show_columns = ["id", "checklist.name", "text"]
    add_columns = edit_columns = ["checklist", "text"]


@hookimpl
def onemeter_plugin_info() -> PluginInfo:
    return PluginInfo(label="示例插件（检查清单）", version="0.1.0",
                      description="测试用：父子两张办事处数据表、页面和 REST 接口")


@hookimpl
def onemeter_migrations_location() -> str:
    return str(Path(__file__).parent / "migrations")


@hookimpl
def onemeter_register_views(registrar: ViewRegistrar) -> None:
    registrar.add_view(ChecklistView, "检查清单", category="示例插件", icon="fa-list")
    registrar.add_view(ChecklistItemView, "检查项", category="示例插件", icon="fa-check")
    registrar.add_api(ChecklistApi)
    registrar.add_api(ChecklistItemApi)


@hookimpl
def onemeter_roles() -> list[RoleSpec]:
    return [RoleSpec(INSPECTOR, "检查员（示例插件）", tenant_role=True)]


@click.command("example-count")
def example_count() -> None:
    """Print the number of checklists per sub-district."""
    with use_scope(TenantScope.all_read_only(), db.session):
        rows = db.session.execute(
            sa.select(Tenant.code, sa.func.count(Checklist.id))
            .join(Checklist, Checklist.tenant_id == Tenant.id).group_by(Tenant.code)).all()
    for code, total in sorted(rows):
        click.echo(f"{code} {total}")


@hookimpl
def onemeter_cli_commands() -> list[click.Command]:
    return [example_count]


@hookimpl
def onemeter_job_kinds() -> dict[str, str]:
    return {"example.tally": "onemeter_example.jobs:tally"}
