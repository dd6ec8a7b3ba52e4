"""tenants/*.toml are the source of truth for sub-districts: the sync follows them, safely.

Every test syncs a temporary copy of the run's tenant files plus tenants of its own (new
codes: the run shares one database), and the fixture syncs the run's files again afterwards
so the four test sub-districts are exactly as the other tests expect.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from onemeter.cli import main, sync_tenant_files
from onemeter.database import db
from onemeter.tenancy import Tenant, TenantScope, use_scope
from onemeter.tenant_files import SyncReport, TenantFileError, read_tenant_file

BASE_CODES = {"pingqiao", "pingxi", "pingdong", "zhenleishan"}


def tenant_toml(code: str, name: str = "测试街道办事处", *, plugins: str = '["example"]',
                extra: str = "") -> str:
    return (f'code = "{code}"\nname = "{name}"\nactive = true\n'
            f'utilities = ["water"]\nplugins = {plugins}\n{extra}')


@pytest.fixture
def tenants_dir(app: Flask, tmp_path: Path) -> Iterator[Path]:
    """A copy of the run's tenant files to add to, change and remove from."""
    source = Path(app.config["ONEMETER_TENANTS_DIR"])
    target = tmp_path / "tenants"
    shutil.copytree(source, target)
    yield target
    with app.app_context():
        sync_tenant_files(source)  # our extra tenants are deactivated, the four unchanged


@pytest.fixture
def code() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def sync(app: Flask, directory: Path) -> SyncReport:
    with app.app_context():
        return sync_tenant_files(directory)


def tenant(app: Flask, code: str) -> Tenant | None:
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        found = db.session.query(Tenant).filter_by(code=code).one_or_none()
        if found is not None:
            db.session.expunge(found)
        return found


def test_new_tenant_file_creates_the_tenant_with_its_settings(app: Flask, tenants_dir: Path,
                                                              code: str) -> None:
    (tenants_dir / f"{code}.toml").write_text(tenant_toml(code, extra=(
        '[[contacts]]\nrole = "主任"\nname = "张三"\nphone = "0376-1234567"\n')),
        encoding="utf-8")

    report = sync(app, tenants_dir)

    assert report.created == [code]
    assert set(report.unchanged) == BASE_CODES
    assert report.updated == [] and report.deactivated == []
    created = tenant(app, code)
    assert created is not None and created.active
    assert created.name == "测试街道办事处"
    assert created.utilities == ["water"] and created.plugins == ["example"]
    assert created.contacts == [{"role": "主任", "name": "张三", "phone": "0376-1234567"}]
    assert created.source_file == f"{code}.toml" and created.synced_at is not None


def test_second_sync_of_the_same_files_changes_nothing(app: Flask, tenants_dir: Path,
                                                       code: str) -> None:
    (tenants_dir / f"{code}.toml").write_text(tenant_toml(code), encoding="utf-8")
    sync(app, tenants_dir)
    synced_at = tenant(app, code).synced_at

    again = sync(app, tenants_dir)

    assert again.created == [] and again.updated == [] and again.deactivated == []
    assert set(again.unchanged) == BASE_CODES | {code}
    assert tenant(app, code).synced_at == synced_at


def test_changed_tenant_file_updates_the_tenant(app: Flask, tenants_dir: Path,
                                                code: str) -> None:
    path = tenants_dir / f"{code}.toml"
    path.write_text(tenant_toml(code), encoding="utf-8")
    sync(app, tenants_dir)

    path.write_text(tenant_toml(code, "改名后的街道办事处", plugins="[]"), encoding="utf-8")
    report = sync(app, tenants_dir)

    assert report.updated == [code]
    assert set(report.unchanged) == BASE_CODES
    updated = tenant(app, code)
    assert updated.name == "改名后的街道办事处" and updated.plugins == []


def test_unknown_plugin_in_a_tenant_file_is_reported_not_fatal(app: Flask, tenants_dir: Path,
                                                               code: str) -> None:
    (tenants_dir / f"{code}.toml").write_text(
        tenant_toml(code, plugins='["example", "heating"]'), encoding="utf-8")

    report = sync(app, tenants_dir)

    assert report.created == [code]
    assert report.unknown_plugins[code] == ["heating"]


def test_removed_tenant_file_deactivates_the_tenant_and_keeps_its_data(
        app: Flask, tenants_dir: Path, code: str) -> None:
    from onemeter_example.models import Checklist

    path = tenants_dir / f"{code}.toml"
    path.write_text(tenant_toml(code), encoding="utf-8")
    sync(app, tenants_dir)
    tenant_id = tenant(app, code).id
    with app.app_context(), use_scope(TenantScope.tenant(tenant_id), db.session):
        db.session.add(Checklist(name=f"{code} 的检查清单", contact_phone="13800000000"))
        db.session.commit()

    path.unlink()
    report = sync(app, tenants_dir)

    assert report.deactivated == [code]
    assert set(report.unchanged) == BASE_CODES
    kept = tenant(app, code)
    assert kept is not None and kept.id == tenant_id and not kept.active
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        rows = db.session.execute(
            sa.select(Checklist.name).where(Checklist.tenant_id == tenant_id)).scalars().all()
    assert rows == [f"{code} 的检查清单"]

    # Syncing again does not report it a second time; bringing the file back reactivates it.
    assert sync(app, tenants_dir).deactivated == []
    path.write_text(tenant_toml(code), encoding="utf-8")
    assert sync(app, tenants_dir).updated == [code]
    restored = tenant(app, code)
    assert restored.active and restored.id == tenant_id


@pytest.mark.parametrize(("content", "expected"), [
    pytest.param('code = "{code}"\nname = "未闭合的引号\n', ["TOML", "line 2"], id="bad-toml"),
    pytest.param('code = "{code}"\n', ["name"], id="missing-name"),
    pytest.param('code = "{code}"\nname = ""\n', ["name"], id="empty-name"),
    pytest.param('code = "Ping-Qiao"\nname = "某办事处"\n', ["code", "小写字母"], id="bad-code"),
    pytest.param('code = "elsewhere"\nname = "某办事处"\n', ["code", "elsewhere", "文件名"],
                 id="code-is-not-the-file-name"),
    pytest.param('code = "{code}"\nname = "某办事处"\nplugins = "example"\n', ["plugins"],
                 id="plugins-not-a-list"),
    pytest.param('code = "{code}"\nname = "某办事处"\n[[contacts]]\nrole = "主任"\n'
                 'name = "张三"\nphone = "请打电话"\n', ["contacts", "phone"], id="bad-contact-phone"),
    pytest.param('code = "{code}"\nname = "某办事处"\n[[contacts]]\nrole = "主任"\n',
                 ["contacts", "name"], id="contact-without-name"),
])
def test_invalid_tenant_file_is_refused_naming_the_file_and_the_field(
        tmp_path: Path, code: str, content: str, expected: list[str]) -> None:
    path = tmp_path / f"{code}.toml"
    path.write_text(content.replace("{code}", code), encoding="utf-8")

    with pytest.raises(TenantFileError) as caught:
        read_tenant_file(path)

    message = str(caught.value)
    assert message.startswith(f"{code}.toml: ")
    for word in expected:
        assert word in message, message
    assert len(message) > len(f"{code}.toml: ") + 10  # says what is wrong, not just where


def test_one_invalid_file_stops_the_whole_sync_before_anything_is_written(
        app: Flask, tenants_dir: Path, code: str) -> None:
    good, bad = f"{code}a", f"{code}b"
    (tenants_dir / f"{good}.toml").write_text(tenant_toml(good), encoding="utf-8")
    (tenants_dir / f"{bad}.toml").write_text(f'code = "{bad}"\n', encoding="utf-8")

    with pytest.raises(TenantFileError, match=f"{bad}.toml"):
        sync(app, tenants_dir)

    assert tenant(app, good) is None and tenant(app, bad) is None


def test_tenants_sync_command_reports_counts_and_invalid_files(app: Flask, tenants_dir: Path,
                                                              code: str) -> None:
    runner = app.test_cli_runner()
    sync_command = ["tenants", "sync", "--dir", str(tenants_dir)]
    (tenants_dir / f"{code}.toml").write_text(tenant_toml(code), encoding="utf-8")

    done = runner.invoke(main, sync_command)
    assert done.exit_code == 0, done.output
    assert "新建 1" in done.output and "未变 4" in done.output

    (tenants_dir / f"{code}.toml").unlink()
    done = runner.invoke(main, sync_command)
    assert done.exit_code == 0, done.output
    assert "停用 1" in done.output and code in done.output

    (tenants_dir / f"{code}.toml").write_text('code = "x"\nname = "某办事处"\n', encoding="utf-8")
    refused = runner.invoke(main, sync_command)
    assert refused.exit_code != 0
    assert f"{code}.toml" in refused.output and "code" in refused.output

