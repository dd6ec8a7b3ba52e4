"""`onemeter plan load|check`: the shipped district plan into the database, and its totals."""

from __future__ import annotations

from typing import Any

import click
from flask.cli import AppGroup

from onemeter.plugins import hookimpl


def load_shipped_plan() -> tuple[int, int]:
    """Load plan_2021_26.toml as district-wide targets (idempotent) and commit."""
    from onemeter.database import db
    from onemeter.registry.plan import load_plan
    from onemeter.tenancy import TenantScope, use_scope

    with use_scope(TenantScope.all_read_only(), db.session):
        result = load_plan(db.session)
        db.session.commit()
    return result


@click.group("plan", cls=AppGroup)
def plan_group() -> None:
    """改造计划：方案数字（信平政办〔2021〕26号）。"""


@plan_group.command("load")
def plan_load() -> None:
    """Load the plan's targets; running it again changes nothing."""
    added, updated = load_shipped_plan()
    click.echo(f"改造计划已载入：新增 {added} 条，更新 {updated} 条")


@plan_group.command("check")
def plan_check() -> None:
    """Print every stated total that differs from the sum of the plan's own rows."""
    from onemeter.registry.plan import PLAN_FILE, plan_totals_check, read_plan

    source, rows = read_plan(PLAN_FILE)
    differences = plan_totals_check(rows)
    if not differences:
        click.echo(f"{source}：各项合计一致")
        return
    click.echo(f"{source}：方案所列合计与各项之和有 {len(differences)} 处不一致（照录，不更正）：")
    for difference in differences:
        click.echo(f"  {difference.describe()}")


@hookimpl
def onemeter_cli_commands() -> list[Any]:
    """The `plan` command group."""
    return [plan_group]
