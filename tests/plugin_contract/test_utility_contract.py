"""What every utility plugin promises: a complete spec, headings that resolve, an account
list the reconciliation reads, views inside the access matrix, migrations that go up and
down, and nothing shown to a sub-district that does not enable it."""

from __future__ import annotations

import contextlib
import importlib.util
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa
from flask import Flask
from flask_appbuilder import ModelRestApi, ModelView

from onemeter import HOOK_API_VERSION
from onemeter.cli import main
from onemeter.database import db
from onemeter.imports.headers import CORE_ALIASES, header_key, locate_header, merge_aliases
from onemeter.imports.ledger import import_aliases
from onemeter.imports.reader import read_table
from onemeter.migration_check import schema_differences
from onemeter.plugins import PluginInfo
from onemeter.reconcile.service import account_aliases, account_frame
from onemeter.tenancy import Tenant, TenantScope, use_scope
from onemeter.utilities import UtilitySpec
from tests.support import report
from tests.support.matrix import Matrix, discover, seed, token_client
from tests.support.stack import PASSWORD, TEST_DB

#: Fields a utility must fill in: the pages, error messages and imports use every one.
REQUIRED_TEXT = ("code", "label", "company", "account_label", "account_pattern",
                 "account_hint", "meter_label", "meter_pattern", "meter_hint", "rating_label",
                 "account_example", "meter_example")
LIMITS = {"max_bytes": 10_000_000, "max_uncompressed_bytes": 50_000_000,
          "max_cells": 1_000_000}


def plugin_object(app: Flask, name: str) -> object:
    return app.extensions["onemeter_plugins"].get_plugin(name)


# --- the spec ---------------------------------------------------------------------------------

def test_the_plugin_describes_itself_against_the_core_hook_api(app: Flask,
                                                               utility_plugin: str) -> None:
    info = plugin_object(app, utility_plugin).onemeter_plugin_info()
    assert isinstance(info, PluginInfo) and info.label.strip() and info.version.strip()
    assert info.hook_api.split(".")[0] == HOOK_API_VERSION.split(".")[0]


def test_the_utility_spec_is_complete_and_its_patterns_accept_its_own_examples(
        specs: list[UtilitySpec]) -> None:
    for spec in specs:
        for name in REQUIRED_TEXT:
            assert str(getattr(spec, name)).strip(), f"{spec.code}: {name} 未填写"
        assert spec.rating_choices, f"{spec.code}: rating_choices 未填写"
        for pattern in (spec.account_pattern, spec.meter_pattern):
            re.compile(pattern)
        assert spec.check_account_no(f" {spec.account_example} ") == spec.account_example
        assert spec.check_meter_no(spec.meter_example) == spec.meter_example
        with pytest.raises(ValueError, match=f"{re.escape(spec.account_label)}.*应为"):
            spec.check_account_no("不是号码!")
        with pytest.raises(ValueError, match=f"{re.escape(spec.meter_label)}.*应为"):
            spec.check_meter_no("不是号码!")
        assert {"account_no", "meter_no", "rating"} <= set(spec.header_aliases)
        assert {"account_no", "meter_no"} & set(spec.account_list_aliases)


def test_the_cancelled_fees_are_flagged_under_every_declared_name(
        specs: list[UtilitySpec]) -> None:
    for spec in specs:
        assert spec.cancelled_fees and spec.fee_clause, f"{spec.code}: 取消的收费及条款未声明"
        assert set(spec.fee_variants) <= set(spec.cancelled_fees)
        for fee in spec.cancelled_fees:
            assert spec.cancelled_fee(fee) == fee
            assert spec.cancelled_fee(f"收取{fee} ") == fee
            for variant in spec.fee_variants.get(fee, ()):
                assert spec.cancelled_fee(variant) == fee, (fee, variant)
        assert spec.cancelled_fee("物业服务费") is None


# --- headings ---------------------------------------------------------------------------------

def test_every_heading_alias_resolves_to_its_field_and_none_is_claimed_twice(
        app: Flask, specs: list[UtilitySpec]) -> None:
    with app.app_context():
        aliases = import_aliases()
        # Every utility's headings together with the core's: a clash raises.
        merge_aliases(CORE_ALIASES, *(s.header_aliases
                                      for s in app.extensions["onemeter_utilities"].values()))
        lookup = {header_key(s): f for f, spellings in aliases.items() for s in spellings}
        for spec in specs:
            for field_name, spellings in spec.header_aliases.items():
                for spelling in spellings:
                    assert lookup.get(header_key(spelling)) == field_name, spelling
            # The account list's headings, with the core's, resolve to one field each too.
            merge_aliases(account_aliases(spec.code))
            own = {header_key(s): f for f, ss in account_aliases(spec.code).items() for s in ss}
            for field_name, spellings in spec.account_list_aliases.items():
                for spelling in spellings:
                    assert own.get(header_key(spelling)) == field_name, spelling


def test_a_ledger_in_the_utilitys_headings_is_read_column_by_column(
        app: Flask, specs: list[UtilitySpec]) -> None:
    with app.app_context():
        for spec in specs:
            headings = ["小区", "楼栋", "单元", "室号", "户主姓名",
                        *(spec.header_aliases[f][0] for f in ("account_no", "meter_no",
                                                                "rating"))]
            rows = [["某某小区一户一表台账"], headings,
                    ["幸福里", "1", "2", "301", "张三", spec.account_example,
                     spec.meter_example, spec.rating_choices[0]]]
            header = locate_header(rows, import_aliases())
            assert header.columns["account_no"] == 5 and header.columns["meter_no"] == 6
            assert header.columns["rating"] == 7 and header.columns["room"] == 3


# --- reconciliation ---------------------------------------------------------------------------

def account_list(path: Path, spec: UtilitySpec) -> list[dict[str, str]]:
    """An account list as the company exports it: a title row, its headings, three rows."""
    fields = [f for f in ("account_no", "meter_no", "owner_name", "address")
              if f in spec.account_list_aliases]
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append([f"{spec.company}用户清单"])
    sheet.append([spec.account_list_aliases[f][0] for f in fields])
    rows = []
    for n in range(3):
        row = {"account_no": spec.account_example, "meter_no": spec.meter_example,
               "owner_name": f"户主{n}", "address": f"幸福里小区{n + 1}号楼1单元{n + 1}01室"}
        sheet.append([row[f] for f in fields])
        rows.append({f: row[f] for f in fields})
    book.save(path)
    return rows


def test_the_reconciliation_reads_an_account_list_in_the_companys_headings(
        app: Flask, specs: list[UtilitySpec], tmp_path: Path) -> None:
    with app.app_context():
        for spec in specs:
            path = tmp_path / f"{spec.code}.xlsx"
            written = account_list(path, spec)
            frame = account_frame(read_table(path, path.name, **LIMITS), spec.code)
            assert len(frame) == len(written)
            for name in written[0]:
                assert [str(v) for v in frame[name]] == [r[name] for r in written], name
            if "address" in written[0]:
                assert list(frame["room"].astype(str)) == ["101", "201", "301"]


# --- views, menus, routes ---------------------------------------------------------------------

def owned_views(app: Flask, plugin: str) -> list[object]:
    owners = app.appbuilder.sm.om_view_plugin
    return [v for v in app.appbuilder.baseviews
            if owners.get(v.class_permission_name) == plugin]


def test_the_plugins_views_are_covered_by_the_access_matrix_without_leaks(
        app: Flask, utility_plugin: str, tenant_ids: dict[str, int]) -> None:
    views = owned_views(app, utility_plugin)
    targets = [t for t in discover(app) if t.instance in views]
    tenant_models = [v for v in views if isinstance(v, ModelView | ModelRestApi)
                     and "tenant_id" in v.datamodel.obj.__table__.columns]
    # Every page or API of the plugin over a sub-district's rows is a matrix target.
    assert {id(v) for v in tenant_models} == {id(t.instance) for t in targets}
    if not targets:
        return
    # Rows of every tenant model: the plugin's forms refer to the core's (a household …).
    rows = seed(app, {t.model for t in discover(app) if t.model is not None},
                [tenant_ids["pingqiao"], tenant_ids["pingxi"]])
    matrix = Matrix(app, rows)
    for username, own, other in (("pingqiao_admin", "pingqiao", "pingxi"),
                                 ("pingqiao_staff", "pingqiao", "pingxi"),
                                 ("pingxi_admin", "pingxi", "pingqiao")):
        matrix.run(username, tenant_ids[own], tenant_ids[other], targets)
    report.add(f"plugin contract ({utility_plugin}): {sum(matrix.cases.values())} matrix cases "
               f"over {len(targets)} views/APIs, {len(matrix.leaks)} leaks")
    assert not matrix.leaks, "\n".join(matrix.leaks)
    assert matrix.controls["list"] > 0


@contextlib.contextmanager
def enabled_only_by(app: Flask, plugin: str, code: str) -> Iterator[None]:
    """Only tenant `code` enables `plugin` for the duration (the others' lists restored)."""
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        before = {t.id: list(t.plugins or []) for t in db.session.query(Tenant)}
        for tenant in db.session.query(Tenant):
            wanted = [p for p in tenant.plugins or [] if p != plugin]
            tenant.plugins = [*wanted, plugin] if tenant.code == code else wanted
        db.session.commit()
    try:
        yield
    finally:
        with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
            for tenant in db.session.query(Tenant):
                tenant.plugins = before[tenant.id]
            db.session.commit()


def test_a_sub_district_that_does_not_enable_the_plugin_sees_nothing_of_it(
        app: Flask, login: Callable, utility_plugin: str, specs: list[UtilitySpec]) -> None:
    views = owned_views(app, utility_plugin)
    menus = [item for item in app.appbuilder.menu.get_list()
             for item in [item, *(item.childs or [])]
             if app.appbuilder.sm.om_view_plugin.get(item.name) == utility_plugin]
    with app.app_context():
        utilities = app.extensions["onemeter_utilities"].values()
        others = {s.plugin for s in utilities} - {utility_plugin}
        shared = {header_key(s) for table in (CORE_ALIASES, *(u.header_aliases for u in utilities
                                                             if u.plugin != utility_plugin))
                  for ss in table.values() for s in ss}
        own_only = {header_key(s) for spec in specs for ss in spec.header_aliases.values()
                    for s in ss} - shared
        read = {header_key(s) for ss in import_aliases().values() for s in ss}
        without = {header_key(s) for ss in import_aliases(plugins=others).values() for s in ss}
        # Its own headings (燃气户号 …) are read only in the ledgers of sub-districts that
        # enable it.
        assert own_only and own_only <= read and own_only.isdisjoint(without)
    with enabled_only_by(app, utility_plugin, "pingqiao"):
        own, other = login("pingqiao_admin"), login("pingxi_admin")
        pages = {who: c.get("/reconcile/list/").get_data(as_text=True)
                 for who, c in (("own", own), ("other", other))}
        for spec in specs:
            option = f'<option value="{spec.code}">'
            assert option in pages["own"] and option not in pages["other"]
            # Nor can it be chosen by hand.
            refused = other.post("/reconcile/upload", data={"utility": spec.code},
                                 follow_redirects=True)
            assert "请选择本办事处已启用的公用事业单位" in refused.get_data(as_text=True)
        for item in menus:
            with app.test_request_context():
                url = item.get_url()
            if url and url != "#":
                assert f'href="{url}"' in pages["own"] and f'href="{url}"' not in pages["other"]
        for view in views:
            if isinstance(view, ModelView):
                url = f"{view.route_base}/list/"
                assert own.get(url).status_code == 200, url
                assert other.get(url).status_code in (302, 403), url
            elif isinstance(view, ModelRestApi):
                url = f"/api/v1/{view.resource_name}/"
                assert token_client(app, "pingqiao_admin", PASSWORD).get(url).status_code == 200
                assert token_client(app, "pingxi_admin", PASSWORD).get(url).status_code in (
                    401, 403), url


# --- migrations -------------------------------------------------------------------------------

def branch_labels(location: str) -> set[str]:
    """The branch labels of the revisions in a plugin's migrations folder."""
    labels: set[str] = set()
    for path in sorted(Path(location).glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"_contract_rev_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        labels |= set(getattr(module, "branch_labels", None) or ())
    return labels


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def forced_rls(url: str, names: set[str]) -> set[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return set(connection.execute(sa.text(
                "SELECT relname FROM pg_class WHERE relname = ANY(:names)"
                " AND relrowsecurity AND relforcerowsecurity"), {"names": sorted(names)}
            ).scalars())
    finally:
        engine.dispose()


def test_the_plugins_migrations_go_up_and_down_cleanly(
        app: Flask, make_app: Callable[..., Flask], utility_plugin: str,
        fresh_database: str) -> None:
    pm = app.extensions["onemeter_plugins"]
    folder = next((impl.function() for impl in pm.hook.onemeter_migrations_location
                   .get_hookimpls() if impl.plugin_name == utility_plugin), None)
    if not folder:
        # No migrations: then no models either (a table nobody creates would break start-up).
        package = plugin_object(app, utility_plugin).__name__.split(".")[0]
        models = [m.class_ for m in db.Model.registry.mappers
                  if m.class_.__module__.split(".")[0] == package]
        assert models == [], f"{utility_plugin} maps tables but has no migrations"
        return
    labels = branch_labels(folder)
    assert labels, f"{folder}: no revision carries branch_labels"
    fresh = make_app(SQLALCHEMY_DATABASE_URI=fresh_database,
                     ONEMETER_OWNER_DATABASE_URL=fresh_database, ONEMETER_APP_DB_ROLE="")
    runner = fresh.test_cli_runner()

    def db_cli(*args: str) -> None:
        result = runner.invoke(main, ["db", *args])
        assert result.exit_code == 0, f"db {' '.join(args)}: {result.output}{result.exception!r}"

    db_cli("upgrade")
    everything = tables(fresh_database)
    for label in sorted(labels):
        db_cli("downgrade", f"{label}@base")
    core = tables(fresh_database)
    own = everything - core
    assert own, f"{utility_plugin}: its branch created no table"
    assert {"om_tenant", "om_household"} <= core
    db_cli("upgrade")
    assert tables(fresh_database) == everything
    with fresh.app_context():
        assert schema_differences() == []
        tenant_tables = {name for name in own
                         if "tenant_id" in db.metadata.tables[name].columns}
    if TEST_DB == "postgresql":
        assert forced_rls(fresh_database, tenant_tables) == tenant_tables
    db_cli("downgrade", "base")
    assert tables(fresh_database) == {"alembic_version"}
