"""The real services a test run uses: its own PostgreSQL database and role, Redis, tenants.

Each run creates a database and an application role with fresh names and drops both at the
end. The example plugin is installed into a run-local folder (a real dist-info with an entry
point), so importlib discovers it exactly as it would a pip-installed plugin.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import sys
import tempfile
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import redis
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
TEST_DB = os.environ.get("ONEMETER_TEST_DB", "postgresql")
PG_ADMIN_URL = os.environ.get("ONEMETER_TEST_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("ONEMETER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PASSWORD = "Test-password-1"
EXAMPLE_SRC = ROOT / "tests" / "example_plugin"
#: 燃气: a third party's plugin with a pyproject of its own, installed run-locally like the example.
GAS_SRC = ROOT / "plugins" / "onemeter_gas"
#: The plugins every test app and worker loads (ONEMETER_TEST_PLUGINS replaces the list;
#: ONEMETER_CONTRACT_PLUGIN, the plugin `make contract` checks, is added to it).
TEST_PLUGINS = os.environ.get("ONEMETER_TEST_PLUGINS") or \
    "example,water,electricity,funding,litigation,gas"
CONTRACT_PLUGIN = os.environ.get("ONEMETER_CONTRACT_PLUGIN", "").strip()
if CONTRACT_PLUGIN and CONTRACT_PLUGIN not in TEST_PLUGINS.split(","):
    TEST_PLUGINS = f"{TEST_PLUGINS},{CONTRACT_PLUGIN}"
#: The shipped tenants/*.toml enable the built-in plugins; 平桥办事处 also enables these.
PINGQIAO_ONLY = [p for p in TEST_PLUGINS.split(",")
                 if p not in ("water", "electricity", "funding", "litigation")]


def check_services() -> str | None:
    """A message naming the unreachable service, or None when everything answers."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:
        return f"Redis 不可达（{REDIS_URL}）：{exc}。请启动 Redis 或设置 ONEMETER_TEST_REDIS_URL。"
    if TEST_DB == "postgresql":
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except Exception as exc:
            return (f"PostgreSQL 不可达（{PG_ADMIN_URL}）：{exc.__class__.__name__}: {exc}。"
                    "请启动 PostgreSQL 或设置 ONEMETER_TEST_PG_URL。")
        finally:
            engine.dispose()
    return None


def plugin_sources() -> list[Path]:
    """Source folders (each with its pyproject.toml) of the plugins installed run-locally:
    the example plugin, the gas plugin, and any named in ONEMETER_TEST_PLUGIN_SOURCES."""
    extra = [Path(p) for p in os.environ.get("ONEMETER_TEST_PLUGIN_SOURCES", "").split(
        os.pathsep) if p]
    return [EXAMPLE_SRC, GAS_SRC, *extra]


def plugin_entry_points(source: Path) -> dict[str, str]:
    """The `onemeter.plugins` entry points a plugin's pyproject.toml declares."""
    meta = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    return dict(meta.get("entry-points", {}).get("onemeter.plugins", {}))


def install_local_plugin(source: Path, target: Path) -> None:
    """Make a plugin importable and discoverable through its entry points, as `pip install`
    would: a dist-info with METADATA and entry_points.txt in `target`, its source on the path."""
    meta = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    dist_name = re.sub(r"[-_.]+", "_", meta["name"]).lower()
    dist = target / f"{dist_name}-{meta['version']}.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    lines = ["[onemeter.plugins]"] + [
        f"{k} = {v}" for k, v in plugin_entry_points(source).items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    (target / f"{dist_name}.pth").write_text(str(source) + "\n")
    for path in (str(target), str(source)):
        if path not in sys.path:
            sys.path.insert(0, path)


def install_example_plugin(target: Path) -> None:
    """Make `onemeter_example` importable and discoverable through its entry point."""
    install_local_plugin(EXAMPLE_SRC, target)


_SITE: list[Path] = []


def example_plugin_site() -> Path:
    """Install the run-local plugins once per process (before test modules import them)."""
    if not _SITE:
        site = Path(tempfile.mkdtemp(prefix="onemeter-site-"))
        for source in plugin_sources():
            install_local_plugin(source, site)
        atexit.register(shutil.rmtree, site, True)
        _SITE.append(site)
    return _SITE[0]


@dataclass
class Stack:
    """URLs and folders of one test run."""

    work: Path
    owner_url: str
    app_url: str
    app_role: str
    queue_prefix: str
    tenants_dir: Path
    plugin_dir: Path
    dbname: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def config(self, **overrides: object) -> dict[str, object]:
        config: dict[str, object] = {
            "SQLALCHEMY_DATABASE_URI": self.app_url,
            "ONEMETER_OWNER_DATABASE_URL": self.owner_url,
            "ONEMETER_APP_DB_ROLE": self.app_role,
            "ONEMETER_REDIS_URL": REDIS_URL,
            "ONEMETER_QUEUE_PREFIX": self.queue_prefix,
            "ONEMETER_TENANTS_DIR": str(self.tenants_dir),
            "ONEMETER_UPLOAD_DIR": str(self.work / "uploads"),
            "ONEMETER_PLUGINS": TEST_PLUGINS,
            "SECRET_KEY": "test-secret-key-of-at-least-32-bytes-" + self.queue_prefix,
            "WTF_CSRF_ENABLED": False,
            "AUTH_RATE_LIMIT": "10000 per minute",
            "TESTING": True,
        }
        config.update(overrides)
        return config

    def subprocess_env(self) -> dict[str, str]:
        """Environment for a worker or CLI subprocess of this run."""
        env = os.environ.copy()
        env.update({
            "ONEMETER_DATABASE_URL": self.app_url,
            "ONEMETER_OWNER_DATABASE_URL": self.owner_url,
            "ONEMETER_APP_DB_ROLE": self.app_role,
            "ONEMETER_REDIS_URL": REDIS_URL,
            "ONEMETER_QUEUE_PREFIX": self.queue_prefix,
            "ONEMETER_TENANTS_DIR": str(self.tenants_dir),
            "ONEMETER_VAR_DIR": str(self.work / "var"),
            "ONEMETER_UPLOAD_DIR": str(self.work / "uploads"),
            "ONEMETER_PLUGINS": TEST_PLUGINS,
            "PYTHONPATH": os.pathsep.join([str(self.plugin_dir),
                                           *(str(s) for s in plugin_sources()),
                                           env.get("PYTHONPATH", "")]),
        })
        return env


def pingqiao_utilities() -> list[str]:
    """Codes of the utilities the plugins only 平桥办事处 enables declare (gas …)."""
    from onemeter.plugins import build_plugin_manager
    from onemeter.utilities import collect_utilities

    specs = collect_utilities(build_plugin_manager(only=PINGQIAO_ONLY))
    return sorted(code for code, spec in specs.items() if spec.plugin in PINGQIAO_ONLY)


def write_test_tenants(target: Path) -> None:
    """The plan's four sub-districts; only 平桥办事处 enables the plugins the shipped TOMLs do
    not list (example, gas, a plugin under contract test) and their utilities."""
    target.mkdir(parents=True, exist_ok=True)
    plugins = "".join(f'"{p}", ' for p in PINGQIAO_ONLY)
    utilities = "".join(f'"{u}", ' for u in pingqiao_utilities())
    for source in sorted((ROOT / "tenants").glob("*.toml")):
        text = source.read_text(encoding="utf-8")
        if source.stem == "pingqiao":
            text = text.replace('plugins = [', f'plugins = [{plugins}', 1)
            text = text.replace('utilities = [', f'utilities = [{utilities}', 1)
        (target / source.name).write_text(text, encoding="utf-8")


def create_stack(work: Path) -> Stack:
    suffix = uuid.uuid4().hex[:10]
    plugin_dir = example_plugin_site()
    tenants_dir = work / "tenants"
    write_test_tenants(tenants_dir)
    os.environ["ONEMETER_VAR_DIR"] = str(work / "var")
    if TEST_DB == "postgresql":
        dbname, role = f"onemeter_test_{suffix}", f"onemeter_app_{suffix}"
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{dbname}"')
            connection.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS')
        admin.dispose()
        base = sa.engine.make_url(PG_ADMIN_URL)
        owner = base.set(database=dbname).render_as_string(hide_password=False)
        app_url = base.set(database=dbname, username=role, password=None).render_as_string(
            hide_password=False)
        return Stack(work, owner, app_url, role, f"t{suffix}-", tenants_dir, plugin_dir,
                     dbname=dbname)
    db_path = work / "onemeter.db"
    url = f"sqlite:///{db_path}"
    return Stack(work, url, url, "", f"t{suffix}-", tenants_dir, plugin_dir)


def drop_stack(stack: Stack) -> None:
    keys = redis.Redis.from_url(REDIS_URL)
    for key in keys.scan_iter(f"*{stack.queue_prefix}*"):
        keys.delete(key)
    if stack.dbname:
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{stack.dbname}" WITH (FORCE)')
            connection.exec_driver_sql(f'DROP ROLE IF EXISTS "{stack.app_role}"')
        admin.dispose()
    shutil.rmtree(stack.work, ignore_errors=True)
