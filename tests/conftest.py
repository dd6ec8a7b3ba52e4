"""Fixtures: one database (PostgreSQL or SQLite) and Redis per run, the app, users, clients.

`make test` runs the suite twice: ONEMETER_TEST_DB=postgresql (everything) and
ONEMETER_TEST_DB=sqlite (all but the `postgres` tests). A missing service fails the run.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.stack import PASSWORD, TEST_DB, Stack, check_services, create_stack, drop_stack


def pytest_configure(config: pytest.Config) -> None:
    # Test modules import the example plugin: it must be installed before collection.
    from tests.support.stack import example_plugin_site

    example_plugin_site()


def pytest_sessionstart(session: pytest.Session) -> None:
    problem = check_services()
    if problem:
        pytest.exit(f"测试需要的服务不可用 — {problem}", returncode=3)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if TEST_DB != "postgresql":
        selected = [i for i in items if "postgres" not in i.keywords]
        deselected = [i for i in items if "postgres" in i.keywords]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = selected


def pytest_report_header(config: pytest.Config) -> str:
    return f"onemeter: database={TEST_DB}"


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    work = Path(tempfile.mkdtemp(prefix="onemeter-test-"))
    built = create_stack(work)
    try:
        yield built
    finally:
        drop_stack(built)


@pytest.fixture(scope="session")
def make_app(stack: Stack) -> Callable[..., Flask]:
    """Build another app on the run's database, with config overrides."""

    def build(**overrides: Any) -> Flask:
        from onemeter.app import create_app

        return create_app(stack.config(**overrides))

    return build


@pytest.fixture(scope="session")
def app(make_app: Callable[..., Flask]) -> Flask:
    """The app, migrated, with the four tenants and one user per role."""
    from onemeter.cli import sync_tenant_files, upgrade_database
    from tests.support.users import create_test_users

    application = make_app()
    with application.app_context():
        upgrade_database()
        sync_tenant_files()
        create_test_users(application)
    return application


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def login(app: Flask) -> Callable[..., FlaskClient]:
    """login("pingqiao_admin") → a test client signed in as that user."""
    from tests.support.web import signed_in

    def do(username: str, password: str = PASSWORD, application: Flask | None = None
           ) -> FlaskClient:
        return signed_in(application or app, username, password)

    return do


@pytest.fixture
def tenant_ids(app: Flask) -> dict[str, int]:
    from tests.support.users import tenant_ids as ids

    return ids(app)


@pytest.fixture
def pingdong_scope(app: Flask, tenant_ids: dict[str, int]) -> Iterator[int]:
    """平东办事处's id, inside an app context with its scope (read and write) on the session;
    what the test left uncommitted is rolled back."""
    from onemeter.database import db
    from onemeter.tenancy import TenantScope, use_scope

    tenant_id = tenant_ids["pingdong"]
    with app.app_context(), use_scope(TenantScope.tenant(tenant_id), db.session):
        yield tenant_id
        db.session.rollback()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.support import report

    for line in report.LINES:
        terminalreporter.write_line(line)
