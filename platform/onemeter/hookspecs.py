"""Every extension point of OneMeter: the whole plugin contract, nothing else.

A plugin is a module (or object) registered under the entry-point group `onemeter.plugins`;
it implements some of these with `@onemeter.plugins.hookimpl`. Names start with `onemeter_`.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click
    from flask import Flask

    from onemeter.plugins import PluginInfo, RoleSpec, RollupMetric, ViewRegistrar
    from onemeter.tenancy import Tenant
    from onemeter.utilities import UtilitySpec

hookspec = pluggy.HookspecMarker("onemeter")


@hookspec
def onemeter_plugin_info() -> PluginInfo:
    """Describe the plugin: called once by `create_app()` while plugins are validated.

    Every plugin except the core must implement it. Return a `PluginInfo` (label in Chinese,
    version, the hook API version it was written against). A plugin whose `hook_api` major
    version differs from the core's stops start-up with a message naming it.
    """


@hookspec
def onemeter_migrations_location() -> str | None:
    """Where the plugin's Alembic revisions live: called when migrations are configured.

    Return an absolute directory path (its revisions carry the plugin's own `branch_labels`
    and `depends_on` the core branch), or None if the plugin has no tables.
    """


@hookspec
def onemeter_register_views(registrar: ViewRegistrar) -> None:
    """Add pages, menus and REST APIs: called once per plugin inside `create_app()`.

    Use `registrar.add_view(...)`, `registrar.add_view_no_menu(...)`, `registrar.add_api(...)`.
    Everything added this way is owned by the plugin: invisible and refused (403/redirect)
    for users of tenants that do not enable the plugin. Each view declares `om_roles`
    (role → permissions); the roles' rules are built from these. Returns nothing.
    """


@hookspec
def onemeter_roles() -> list[RoleSpec]:
    """Extra roles the plugin introduces: called when roles are created (`onemeter init`).

    Return a list of `RoleSpec` (name, Chinese label, whether it is a tenant role). The
    permissions of a role come from the `om_roles` declared on views, never from here.
    """


@hookspec
def onemeter_cli_commands() -> list[click.Command]:
    """Command-line commands: called when the `onemeter` CLI is assembled.

    Return click commands or groups; each is added under `onemeter <name>`. A command runs
    inside an app context with no tenant scope: it must set one (`use_scope`) to see data.
    """


@hookspec
def onemeter_job_kinds() -> dict[str, str]:
    """Background job kinds: called when the worker and the job pages are set up.

    Return {kind: "package.module:function"}. The function takes a `JobContext` and the
    keyword arguments given to `enqueue_job`; it runs in an RQ worker under the tenant
    scope of its JobRun, and reports progress through the context.
    """


@hookspec
def onemeter_tenant_synced(tenant: Tenant, created: bool) -> None:
    """A tenant was created or updated by `onemeter tenants sync`: called once per tenant.

    Runs inside the sync's transaction scope with that tenant as write scope; use it to seed
    per-tenant defaults. `created` is True the first time. Returns nothing.
    """


@hookspec
def onemeter_app_ready(app: Flask) -> None:
    """The app is assembled: called last in `create_app()`, inside its app context.

    For before/after-request handlers or template globals a plugin needs. Do no database
    work here: the schema may not exist yet. Returns nothing.
    """


@hookspec
def onemeter_project_referred_to_litigation(project_id: int, tenant_id: int,
                                            developer_id: int | None) -> None:
    """A retrofit project was referred to litigation (五(四)): called once per referral.

    Called by `onemeter.retrofit.service.apply_transition` right after the 依法提起诉讼
    step is recorded (the developer and its legal representative refused the retrofit), in
    the same transaction and tenant scope, so a plugin may add rows of its own (a lawsuit
    case). `developer_id` is the community's developer, None if none is recorded. Raising
    an exception rolls the referral back. Returns nothing.
    """


@hookspec
def onemeter_utilities() -> list[UtilitySpec]:
    """The utilities the plugin brings (供水, 供电, heating …): called once by `create_app()`.

    Return a list of `onemeter.utilities.UtilitySpec` (usually one): code, Chinese name,
    the company, account- and meter-number formats, the fees the plan cancelled, header
    aliases for imports. Retrofit projects, meter accounts and charges of that code are
    then checked against it, and shown only to tenants that enable the plugin (and to
    that utility's own staff). A code declared twice stops start-up.
    """


@hookspec(firstresult=True)
def onemeter_award_rule(as_of: date) -> Any | None:
    """The municipal award rule (以奖代补, 四(一)) in force on `as_of`: called each time the
    award cap and its allocation are computed (the finance pages, the recomputation job).

    firstresult: the first answer that is not None wins, and plugins registered later are
    asked first, so a city's own rule plugin overrides the funding plugin's default without
    touching it. Return the rule object in force on that date (the funding plugin's
    `onemeter_funding.rules.AwardRule` is the reference and documents the interface: a
    code, a version, the date it takes effect and how it computes the cap), or None when
    this plugin has no rule for that date. Recomputing with an older `as_of` must return
    the rule that was in force then, so an older result can be reproduced.
    """


@hookspec
def onemeter_developer_payment_recovered(tenant_id: int, project_id: int, amount: Decimal,
                                         paid_on: date, reference: str, source: str) -> None:
    """Money was recovered from a developer for one retrofit project: called once per
    recovery by the plugin that recorded it (the litigation plugin, when enforcement of a
    judgment brings money in, 五(四)), in the same transaction and tenant scope.

    `amount` is a Decimal in 元 (two places), `reference` names the document (案号, receipt),
    `source` the plugin that recorded it. A funding plugin records it as a developer
    payment for that project; with no funding plugin nothing else happens. Raising rolls
    the recovery back. Returns nothing.
    """


@hookspec
def onemeter_rollup_metrics(tenant_ids: list[int], as_of: date) -> list[RollupMetric]:
    """Figures a plugin adds to the district office's rollups: called when the district
    rollup page, the monthly bulletin or a bulletin snapshot is built.

    Runs under a read-only scope over all tenants. `tenant_ids` are the sub-districts in the
    rollup; report only those that enable the plugin (`Tenant.enables`). `as_of` is the
    day the figures are for. Return a list of `onemeter.plugins.RollupMetric` (code, Chinese
    label, unit, tenant id → value), or an empty list.
    """


@hookspec
def onemeter_demo_loaded(session: Any, tenant_ids: list[int], seed: int,
                         today: date) -> dict[str, int] | None:
    """The demo district was just written: called once by `onemeter demo load` (and so by
    `make run`), after the core's demo rows, in the same transaction.

    `session` is the loader's SQLAlchemy session; set a tenant's write scope
    (`onemeter.tenancy.use_scope(TenantScope.tenant(id), session)`) before adding its rows
    and seed only tenants that enable the plugin. Use `seed` for any randomness, so the same
    seed gives the same data. Return {Chinese label: rows written} for the summary the
    command prints, or None.
    """


def all_hook_names() -> list[str]:
    """Names of every hook, for docs and the contract tests."""
    return sorted(n for n, v in globals().items()
                  if n.startswith("onemeter_") and callable(v))


__all__: list[Any] = ["all_hook_names", "hookspec"]
