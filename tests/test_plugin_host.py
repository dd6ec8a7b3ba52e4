"""The plugin host: discovery by entry point, validation at start-up, enablement per tenant.

Plugins that cannot be trusted to work stop `create_app()` with a message naming them; a
plugin a sub-district has not enabled shows that sub-district nothing.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import textwrap
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace

import pytest
from flask import Flask
from flask.testing import FlaskClient

from onemeter import HOOK_API_VERSION, hookspecs
from onemeter.app import create_app
from onemeter.cli import main
from onemeter.plugins import (
    ENTRY_POINT_GROUP,
    PluginInfo,
    PluginLoadError,
    hookimpl,
    plugin_infos,
    plugin_names,
)
from tests.support.stack import PASSWORD, Stack
from tests.support.web import api_headers

# --- discovery ----------------------------------------------------------------------------


def test_example_plugin_is_discovered_through_its_entry_point(app: Flask) -> None:
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert found.get("example") == "onemeter_example.plugin"
    # the built-in utility plugins come through the same group
    assert found.get("water") == "onemeter_water"
    assert found.get("electricity") == "onemeter_electricity"

    pm = app.extensions["onemeter_plugins"]
    assert plugin_names(pm) == ["electricity", "example", "funding", "gas", "litigation", "water"]
    assert pm.get_plugin("example") is importlib.import_module("onemeter_example.plugin")
    info = plugin_infos(pm)["example"]
    assert info.version == "0.1.0" and info.hook_api.split(".")[0] == HOOK_API_VERSION[0]


def test_plugins_command_lists_version_and_the_sub_districts_enabling_it(app: Flask) -> None:
    result = app.test_cli_runner().invoke(main, ["plugins"])

    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("example"))
    assert "0.1.0" in line and "示例插件" in line
    assert "平桥办事处" in line
    assert "平西办事处" not in line and "平东办事处" not in line


def test_loaded_plugins_implement_only_hooks_that_exist(app: Flask) -> None:
    app.extensions["onemeter_plugins"].check_pending()


# --- validation at start-up -----------------------------------------------------------------


@pytest.fixture
def install_plugin(tmp_path: Path) -> Iterator[Callable[[str, str], None]]:
    """Install a throwaway plugin as pip would: a module plus a dist-info with an entry point."""
    installed: list[tuple[str, str]] = []

    def install(name: str, source: str) -> None:
        module = f"om_test_{name}_plugin"
        site = tmp_path / f"site-{name}"
        dist = site / f"{module}-0.1.0.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1.0\n")
        (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{name} = {module}\n")
        (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        sys.path.insert(0, str(site))
        importlib.invalidate_caches()
        installed.append((str(site), module))

    yield install
    for site, module in installed:
        sys.path.remove(site)
        sys.modules.pop(module, None)
    importlib.invalidate_caches()


def test_plugin_that_fails_to_import_stops_start_up_naming_it(
        stack: Stack, install_plugin: Callable[[str, str], None]) -> None:
    install_plugin("broken", """
        raise RuntimeError("this plugin is broken on purpose")
    """)
    assert "broken" in {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}

    with pytest.raises(PluginLoadError) as caught:
        create_app(stack.config(ONEMETER_PLUGINS="example,broken"))

    message = str(caught.value)
    assert "broken" in message and "om_test_broken_plugin" in message
    assert "broken on purpose" in message


def test_selected_plugin_that_is_not_installed_stops_start_up_naming_it(stack: Stack) -> None:
    with pytest.raises(PluginLoadError, match="heating"):
        create_app(stack.config(ONEMETER_PLUGINS="example,heating"))


def _info(hook_api: str = HOOK_API_VERSION) -> Callable[[], PluginInfo]:
    @hookimpl
    def onemeter_plugin_info() -> PluginInfo:
        return PluginInfo(label="测试插件", version="9.9.9", hook_api=hook_api)

    return onemeter_plugin_info


def test_plugin_implementing_a_misspelled_hook_stops_start_up_naming_it(stack: Stack) -> None:
    @hookimpl
    def onemeter_register_view(registrar: object) -> None:  # the hook is onemeter_register_views
        raise AssertionError("never called")

    typo = SimpleNamespace(onemeter_plugin_info=_info(),
                           onemeter_register_view=onemeter_register_view)

    with pytest.raises(PluginLoadError) as caught:
        create_app(stack.config(), extra_plugins={"typo": typo})

    assert "typo" in str(caught.value) and "onemeter_register_view" in str(caught.value)


def test_plugin_asking_for_an_argument_the_hook_does_not_pass_fails_naming_it(
        stack: Stack) -> None:
    @hookimpl
    def onemeter_register_views(registrar: object, tenant: object) -> None:
        raise AssertionError("never called")

    greedy = SimpleNamespace(onemeter_plugin_info=_info(),
                             onemeter_register_views=onemeter_register_views)

    with pytest.raises(PluginLoadError) as caught:
        create_app(stack.config(), extra_plugins={"greedy": greedy})

    assert "greedy" in str(caught.value) and "tenant" in str(caught.value)


def test_plugin_that_does_not_describe_itself_stops_start_up_naming_it(stack: Stack) -> None:
    @hookimpl
    def onemeter_migrations_location() -> None:
        return None

    silent = SimpleNamespace(onemeter_migrations_location=onemeter_migrations_location)

    with pytest.raises(PluginLoadError) as caught:
        create_app(stack.config(), extra_plugins={"silent": silent})

    assert "silent" in str(caught.value) and "onemeter_plugin_info" in str(caught.value)


def test_plugin_written_for_another_hook_api_major_version_stops_start_up(stack: Stack) -> None:
    major = int(HOOK_API_VERSION.split(".")[0])
    future = SimpleNamespace(onemeter_plugin_info=_info(f"{major + 1}.0"))

    with pytest.raises(PluginLoadError) as caught:
        create_app(stack.config(), extra_plugins={"future": future})

    assert "future" in str(caught.value) and f"{major + 1}.0" in str(caught.value)


def test_plugin_for_a_newer_minor_hook_api_loads(stack: Stack) -> None:
    major = HOOK_API_VERSION.split(".")[0]
    minor = SimpleNamespace(onemeter_plugin_info=_info(f"{major}.99"))

    built = create_app(stack.config(), extra_plugins={"minor": minor})

    assert "minor" in plugin_names(built.extensions["onemeter_plugins"])


# --- enablement per tenant ------------------------------------------------------------------


def _menu(client: FlaskClient) -> str:
    response = client.get("/")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_sub_district_enabling_the_plugin_sees_its_menu_pages_and_api(
        app: Flask, login: Callable[[str], FlaskClient]) -> None:
    client = login("pingqiao_staff")
    token = api_headers(app, "pingqiao_staff", PASSWORD)

    html = _menu(client)
    assert "检查清单" in html and 'href="/example/checklists/list/"' in html
    assert client.get("/example/checklists/list/").status_code == 200
    assert client.get("/example/items/list/").status_code == 200
    response = client.get("/api/v1/example_checklist/", headers=token)
    assert response.status_code == 200 and "result" in response.get_json()
    assert client.get("/api/v1/example_checklist_item/", headers=token).status_code == 200


@pytest.mark.parametrize("username", ["pingxi_staff", "pingxi_admin", "pingdong_staff"])
def test_sub_district_not_enabling_the_plugin_sees_nothing_of_it(
        app: Flask, login: Callable[[str], FlaskClient], username: str) -> None:
    client = login(username)
    token = api_headers(app, username, PASSWORD)

    html = _menu(client)
    assert "检查清单" not in html and "/example/" not in html and "示例插件" not in html
    for url in ("/example/checklists/list/", "/example/checklists/add",
                "/example/items/list/", "/example/checklists/export/"):
        response = client.get(url)
        assert response.status_code in (302, 403), (url, response.status_code)
        if response.status_code == 302:
            assert "/example/" not in response.headers["Location"]
    for url in ("/api/v1/example_checklist/", "/api/v1/example_checklist_item/",
                "/api/v1/example_checklist/_info"):
        assert client.get(url, headers=token).status_code in (401, 403), url
    refused = client.post("/api/v1/example_checklist/", json={"name": "不应写入"},
                          headers=token)
    assert refused.status_code in (401, 403)


# --- the contract ---------------------------------------------------------------------------


def test_every_hook_says_when_it_is_called_and_what_it_returns() -> None:
    names = hookspecs.all_hook_names()
    assert "onemeter_plugin_info" in names and "onemeter_register_views" in names
    for name in names:
        spec = getattr(hookspecs, name)
        assert getattr(spec, "onemeter_spec", None) is not None, f"{name} is not a hookspec"
        doc = inspect.getdoc(spec) or ""
        assert "called" in doc.lower(), f"{name}: the docstring does not say when it is called"
        assert "return" in doc.lower(), f"{name}: the docstring does not say what it returns"


def test_every_hook_of_the_manager_is_documented_in_hookspecs(app: Flask) -> None:
    pm = app.extensions["onemeter_plugins"]
    hooks = {name for name in dir(pm.hook) if name.startswith("onemeter_")}
    assert hooks == set(hookspecs.all_hook_names())
