"""The `onemeter` command: setup, tenants, plugins, audit, worker, web and `run` (all-in-one)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import FlaskGroup

from onemeter.app import create_app
from onemeter.audit import acting_as, verify_chain
from onemeter.database import db
from onemeter.tenancy import Tenant, TenantScope, use_scope

#: The demo password printed by `make run` (meets the password policy). Demo data only.
DEMO_PASSWORD = "Pingqiao-2021"


def _create_app_for_cli() -> Any:
    return create_app()


main = FlaskGroup(name="onemeter", create_app=_create_app_for_cli, load_dotenv=False,
                  set_debug_flag=False, help="一户一表改造管理平台 — 命令行")


def _owner_engine() -> sa.Engine:
    return sa.create_engine(current_app.config["ONEMETER_OWNER_DATABASE_URL"])


# --- database ------------------------------------------------------------------------------

@main.group("db")
def db_group() -> None:
    """Schema migrations (Alembic through Flask-Migrate; core and plugin branches)."""


def upgrade_database(revision: str = "heads") -> None:
    """Apply migrations as the owner, then grant the app role and create the roles."""
    import flask_migrate

    flask_migrate.upgrade(revision=revision)
    role = current_app.config["ONEMETER_APP_DB_ROLE"]
    engine = _owner_engine()
    if role and engine.dialect.name == "postgresql":
        from onemeter.tenancy import grant_app_role

        with engine.begin() as connection:
            grant_app_role(connection, role)
    engine.dispose()
    with use_scope(TenantScope.all_read_only()), acting_as(None, "cli:db upgrade"):
        current_app.appbuilder.sm.ensure_roles()


@db_group.command("upgrade")
@click.option("--revision", default="heads", show_default=True)
def db_upgrade(revision: str) -> None:
    """Build or update the schema (every branch), grant the app role, create the roles."""
    upgrade_database(revision)
    click.echo("数据库已升级到最新版本")


@db_group.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Step the schema back to REVISION (e.g. `base`, or `example@base` for one plugin)."""
    import flask_migrate

    flask_migrate.downgrade(revision=revision)


@db_group.command("check")
def db_check() -> None:
    """Fail if the models and the migrations disagree (autogenerate would emit something)."""
    from onemeter.migration_check import schema_differences

    diffs = schema_differences()
    if diffs:
        for diff in diffs:
            click.echo(f"  {diff}")
        raise click.ClickException(f"模型与迁移不一致：{len(diffs)} 处差异")
    click.echo("模型与迁移一致")


@db_group.command("revision")
@click.option("-m", "--message", required=True)
@click.option("--head", default="core@head", show_default=True,
              help="branch to extend, e.g. example@head")
def db_revision(message: str, head: str) -> None:
    """Autogenerate a new revision on one branch."""
    import flask_migrate

    flask_migrate.revision(message=message, autogenerate=True, head=head)


# --- tenants -------------------------------------------------------------------------------

@main.group("tenants")
def tenants_group() -> None:
    """Sub-districts (办事处) from tenants/*.toml."""


def sync_tenant_files(directory: Path | None = None) -> Any:
    from onemeter.plugins import plugin_names
    from onemeter.tenant_files import sync_tenants

    pm = current_app.extensions["onemeter_plugins"]
    directory = directory or Path(current_app.config["ONEMETER_TENANTS_DIR"])
    with use_scope(TenantScope.all_read_only(), db.session), \
            acting_as(None, "cli:tenants sync"):
        report = sync_tenants(db.session, directory, set(plugin_names(pm)))
    for code in report.created + report.updated:
        tenant = db.session.query(Tenant).filter_by(code=code).one()
        with use_scope(TenantScope.tenant(tenant.id), db.session), \
                acting_as(None, "cli:tenants sync"):
            pm.hook.onemeter_tenant_synced(tenant=tenant, created=code in report.created)
            db.session.commit()
    return report


@tenants_group.command("sync")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path))
def tenants_sync(directory: Path | None) -> None:
    """Create/update tenants from their files; deactivate those whose file is gone."""
    from onemeter.tenant_files import TenantFileError

    try:
        report = sync_tenant_files(directory)
    except TenantFileError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"新建 {len(report.created)}，更新 {len(report.updated)}，"
               f"未变 {len(report.unchanged)}，停用 {len(report.deactivated)}")
    for code in report.deactivated:
        click.echo(f"  已停用（配置文件已删除，数据保留）：{code}")
    for code, names in report.unknown_plugins.items():
        click.echo(f"  注意：{code} 启用了未安装的插件 {', '.join(names)}")


@tenants_group.command("list")
def tenants_list() -> None:
    """List tenants and whether they are active."""
    with use_scope(TenantScope.all_read_only(), db.session):
        for tenant in db.session.query(Tenant).order_by(Tenant.code):
            state = "启用" if tenant.active else "停用"
            click.echo(f"{tenant.code:14} {tenant.name:12} {state} 插件：{', '.join(tenant.plugins)}")


# --- plugins -------------------------------------------------------------------------------

@main.command("plugins")
def plugins_list() -> None:
    """List installed plugins, their versions and which tenants enable them."""
    from onemeter.plugins import plugin_infos

    pm = current_app.extensions["onemeter_plugins"]
    with use_scope(TenantScope.all_read_only(), db.session):
        try:
            tenants = db.session.query(Tenant).filter(Tenant.active.is_(True)).all()
        except sa.exc.SQLAlchemyError:
            tenants = []  # no schema yet: still list what is installed
    infos = plugin_infos(pm)
    if not infos:
        click.echo("没有安装插件")
    for name, info in infos.items():
        enabled = [t.name for t in tenants if t.enables(name)] or ["（无）"]
        click.echo(f"{name:14} {info.version:8} {info.label}  钩子接口 {info.hook_api}  "
                   f"启用：{'、'.join(enabled)}")


@main.group("docs")
def docs_group() -> None:
    """Generated documentation."""


@docs_group.command("hooks", with_appcontext=False)
def docs_hooks() -> None:
    """Print the hook reference (Markdown) from the hookspec docstrings."""
    from onemeter.hookdocs import hooks_markdown

    click.echo(hooks_markdown(), nl=False)


@main.group("plugin")
def plugin_group() -> None:
    """Plugin development."""


@plugin_group.command("new", with_appcontext=False)
@click.argument("name")
@click.option("--label", help="中文名称，如 供暖（默认与 NAME 相同）")
@click.option("--company", help="公用事业单位，如 信阳热力公司（默认：中文名称加“公司”）")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), show_default=True, help="where to write onemeter_NAME/")
def plugin_new(name: str, label: str | None, company: str | None,
               directory: Path) -> None:
    """Write a working utility plugin skeleton NAME (own pyproject, hooks, migration branch)
    that passes the plugin contract tests as generated."""
    from onemeter.scaffold import new_plugin

    try:
        target = new_plugin(name, directory, label=label, company=company)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"已生成插件骨架：{target}")
    click.echo(f"下一步：pip install -e {target}，然后 make contract PLUGIN={name}；"
               f"在 tenants/<code>.toml 的 plugins 和 utilities 中加入 \"{name}\" 即为该办事处启用")


# --- audit ---------------------------------------------------------------------------------

@main.group("audit")
def audit_group() -> None:
    """The hash-chained change log."""


@audit_group.command("verify")
def audit_verify() -> None:
    """Recompute every chain of the change log; exit 1 naming each altered entry."""
    engine = _owner_engine()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SELECT set_config('app.all_tenants', 'on', true)")
        count, problems = verify_chain(connection)
    engine.dispose()
    for problem in problems:
        click.echo(f"  第 {problem.entry_id} 条（办事处 {problem.tenant_id}）：{problem.reason}",
                   err=True)
    if problems:
        raise click.ClickException(f"变更记录校验失败：{len(problems)} 处问题（共 {count} 条）")
    click.echo(f"变更记录完整：共 {count} 条，哈希链无误")


# --- users ---------------------------------------------------------------------------------

@main.group("users")
def users_group() -> None:
    """User accounts."""


def demo_logins() -> list[tuple[str, str, str]]:
    """(username, role, description) for one user per role per tenant, as `make run` prints."""
    from onemeter.security import (
        DISTRICT_VIEWER,
        FINANCE,
        PLATFORM_ADMIN,
        TENANT_ADMIN,
        TENANT_STAFF,
        UTILITY_STAFF,
    )

    logins = [("admin", PLATFORM_ADMIN, "平台管理员"),
              ("district", DISTRICT_VIEWER, "区领导小组办公室（全区只读）"),
              ("finance", FINANCE, "财政局"),
              ("water", UTILITY_STAFF, "供水公司"),
              ("power", UTILITY_STAFF, "供电公司")]
    with use_scope(TenantScope.all_read_only(), db.session):
        for tenant in db.session.query(Tenant).filter(Tenant.active.is_(True)).order_by(Tenant.id):
            logins.append((f"{tenant.code}_admin", TENANT_ADMIN, f"{tenant.name} 管理员"))
            logins.append((f"{tenant.code}_staff", TENANT_STAFF, f"{tenant.name} 工作人员"))
    return logins


@users_group.command("create-demo")
@click.option("--password", default=DEMO_PASSWORD, show_default=True)
def users_create_demo(password: str) -> None:
    """Create one user per role (and per tenant for tenant roles); existing ones are kept."""
    sm = current_app.appbuilder.sm
    with use_scope(TenantScope.all_read_only(), db.session), acting_as(None, "cli:create-demo"):
        tenants = {t.code: t for t in db.session.query(Tenant)}
        for username, role, label in demo_logins():
            if sm.find_user(username=username) is not None:
                continue
            code = username.rsplit("_", 1)[0] if "_" in username else None
            utility = {"water": "water", "power": "electricity"}.get(username)
            sm.add_user_checked(username, label, "", f"{username}@onemeter.local", [role],
                                password, tenant=tenants.get(code) if code else None,
                                utility_code=utility)
    click.echo(f"演示账号（密码均为 {password}）：")
    for username, _, label in demo_logins():
        click.echo(f"  {username:20} {label}")


@users_group.command("create")
@click.argument("username")
@click.option("--role", required=True)
@click.option("--tenant", "tenant_code")
@click.option("--utility")
@click.option("--name", default="")
@click.password_option()
def users_create(username: str, role: str, tenant_code: str | None, utility: str | None,
                 name: str, password: str) -> None:
    """Create one user (e.g. the first platform_admin of a production install)."""
    sm = current_app.appbuilder.sm
    with use_scope(TenantScope.all_read_only(), db.session), acting_as(None, "cli:users create"):
        tenant = None
        if tenant_code:
            tenant = db.session.query(Tenant).filter_by(code=tenant_code).one_or_none()
            if tenant is None:
                raise click.ClickException(f"没有办事处 {tenant_code}")
        try:
            sm.add_user_checked(username, name or username, "", f"{username}@onemeter.local",
                                [role], password, tenant=tenant, utility_code=utility)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"已创建用户 {username}")


# --- demo data -----------------------------------------------------------------------------

@main.group("demo")
def demo_group() -> None:
    """Demo data: a synthetic district at the plan's size (信平政办〔2021〕26号)."""


@demo_group.command("load")
@click.option("--seed", default=2021, show_default=True, help="random seed (same seed, same data)")
@click.option("--scale", default=1.0, show_default=True, type=click.FloatRange(0.01, 10.0),
              help="1 = the plan's numbers; smaller for a quick try")
@click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]),
              help="the day the demo's history ends (default: today, Beijing)")
def demo_load(seed: int, scale: float, today: Any) -> None:
    """Load the demo district (synthetic names and numbers); a second run changes nothing."""
    from onemeter.demo import load_demo

    with acting_as(None, "cli:demo load"):
        try:
            report = load_demo(db.session, seed=seed, scale=scale,
                               today=today.date() if today else None)
            db.session.commit()
        except Exception:
            db.session.rollback()
            raise
    if report.loaded:
        # Fresh statistics at once (the app role may not ANALYZE; the owner may), so the
        # pages do not plan for empty tables until autovacuum comes round.
        engine = _owner_engine()
        if engine.dialect.name == "postgresql":
            from onemeter.demo import DEMO_TABLES

            with engine.begin() as connection:
                connection.exec_driver_sql(f"ANALYZE {', '.join(DEMO_TABLES)}")
        engine.dispose()
    for line in report.lines():
        click.echo(line)


# --- processes -----------------------------------------------------------------------------

@main.command("init")
def init() -> None:
    """Migrate, create roles, sync tenants, load the plan: all `make run` needs to start."""
    from onemeter.registry.commands import load_shipped_plan

    upgrade_database()
    report = sync_tenant_files()
    click.echo(f"办事处：新建 {len(report.created)}，更新 {len(report.updated)}，"
               f"未变 {len(report.unchanged)}")
    added, updated = load_shipped_plan()
    click.echo(f"改造计划：新增 {added} 条，更新 {updated} 条")


@main.command("worker")
@click.option("--burst", is_flag=True, help="exit when the queues are empty")
@click.option("--queue", "queues", multiple=True, help="default: imports, reconcile, reports")
def worker(burst: bool, queues: tuple[str, ...]) -> None:
    """Start an RQ worker on the OneMeter queues."""
    from onemeter.jobs import QUEUES, queue_name, redis_connection
    from onemeter_worker.runner import OneMeterWorker, reap_abandoned

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    app.config["_ONEMETER_PID"] = os.getpid()
    connection = redis_connection(app)
    reaped = reap_abandoned(app)
    if reaped:
        click.echo(f"已将中断的任务标记为失败：{reaped}")
    names = [queue_name(q) for q in (queues or QUEUES)]
    OneMeterWorker(names, connection=connection).work(burst=burst, with_scheduler=False)


@main.command("web")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True)
def web(host: str, port: int) -> None:
    """Serve the web app (threaded; in production use gunicorn, see docker/)."""
    from werkzeug.serving import run_simple

    run_simple(host, port, current_app._get_current_object(),  # type: ignore[attr-defined]
               threaded=True, use_reloader=False)


@main.command("run", with_appcontext=False)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True)
def run_all(host: str, port: int) -> None:
    """All-in-one demo: embedded Redis, migrate, tenants, demo users and demo district, web and
    worker; Ctrl-C stops. Production runs `onemeter web` (gunicorn) and `onemeter worker`."""
    from onemeter.config import load_config
    from onemeter.jobs import embedded_redis

    env = os.environ.copy()
    server = None
    if not env.get("ONEMETER_REDIS_URL"):
        server = embedded_redis(load_config()["ONEMETER_VAR_DIR"])
        env["ONEMETER_REDIS_URL"] = f"unix://{server.socket_file}"
    me = [sys.executable, "-m", "onemeter.cli"]
    subprocess.run([*me, "init"], env=env, check=True)
    subprocess.run([*me, "users", "create-demo"], env=env, check=True)
    subprocess.run([*me, "demo", "load"], env=env, check=True)
    web = subprocess.Popen([*me, "web", "--host", host, "--port", str(port)], env=env)
    worker = subprocess.Popen([*me, "worker"], env=env)
    children = [web, worker]
    click.echo(f"\n一户一表改造管理平台已启动：http://{host}:{port}/  （Ctrl-C 停止）\n")
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    # Set explicitly: a shell may start us with SIGINT ignored (background jobs).
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping and all(c.poll() is None for c in children):
            time.sleep(0.5)
    finally:
        # The worker finishes its current job on SIGINT (warm shutdown); the web just stops.
        if worker.poll() is None:
            worker.send_signal(signal.SIGINT)
        if web.poll() is None:
            web.terminate()
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        if server is not None:
            server.shutdown()
        click.echo("已停止")


if __name__ == "__main__":
    main()
