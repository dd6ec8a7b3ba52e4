"""The plugin contract: every utility plugin the run loads is checked by the same tests.

Plugins are found the way the core finds them (the plugin manager: those whose
`onemeter_utilities` returns specs), never named here. `make contract PLUGIN=gas` (or
ONEMETER_CONTRACT_PLUGIN=gas) loads that plugin, has 平桥办事处 enable it, and checks only it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from onemeter.utilities import UtilitySpec
from tests.support.stack import CONTRACT_PLUGIN, PG_ADMIN_URL, TEST_DB, TEST_PLUGINS


def utility_plugins() -> list[str]:
    """Names of the loaded plugins that declare a utility (the contract's subjects)."""
    from onemeter.plugins import build_plugin_manager
    from onemeter.utilities import collect_utilities

    specs = collect_utilities(build_plugin_manager(only=TEST_PLUGINS.split(",")))
    names = sorted({spec.plugin for spec in specs.values()})
    if CONTRACT_PLUGIN:
        if CONTRACT_PLUGIN not in names:
            raise pytest.UsageError(f"插件 {CONTRACT_PLUGIN} 没有声明公用事业（onemeter_utilities）")
        return [CONTRACT_PLUGIN]
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "utility_plugin" in metafunc.fixturenames:
        metafunc.parametrize("utility_plugin", utility_plugins())


@pytest.fixture
def specs(app: Flask, utility_plugin: str) -> list[UtilitySpec]:
    """The utilities the plugin declares, as the app registered them."""
    found = [s for s in app.extensions["onemeter_utilities"].values()
             if s.plugin == utility_plugin]
    assert found, f"{utility_plugin} declares no utility"
    return found


@pytest.fixture
def fresh_database(tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of its own, dropped afterwards."""
    if TEST_DB != "postgresql":
        yield f"sqlite:///{tmp_path / 'contract.db'}"
        return
    name = f"onemeter_contract_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(
            hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
