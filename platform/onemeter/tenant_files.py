"""The tenant definitions in tenants/*.toml and their idempotent sync into the database.

A removed file deactivates its tenant; a tenant's data is never deleted by a sync.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate
from sqlalchemy.orm import Session

from onemeter.tenancy import Tenant

_CODE = validate.Regexp(r"^[a-z][a-z0-9_]{1,31}$", error="须为 2–32 位小写字母、数字或下划线，以字母开头")


class TenantFileError(ValueError):
    """An invalid tenant file: the message names the file, the field and what is wrong."""


#: marshmallow's messages in Chinese, so a clerk reading the error sees one language.
_ZH = {"required": "缺少必填字段", "null": "不能为空", "invalid": "类型不正确（须为文本）",
       "validator_failed": "值无效"}
_ZH_BOOL = {**_ZH, "invalid": "须为 true 或 false"}
_ZH_LIST = {**_ZH, "invalid": "须为列表，例如 [\"water\"]"}
_LENGTH = "长度须在 {min} 到 {max} 个字符之间"


class _ContactSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    role = fields.String(required=True, error_messages=_ZH,
                         validate=validate.Length(min=1, max=50, error=_LENGTH))
    name = fields.String(required=True, error_messages=_ZH,
                         validate=validate.Length(min=1, max=50, error=_LENGTH))
    phone = fields.String(load_default="", error_messages=_ZH,
                          validate=validate.Regexp(r"^[0-9\-]{0,20}$",
                                                   error="只能包含数字和连字符，最多 20 位"))


class _TenantSchema(Schema):
    error_messages = {"unknown": "未知字段（拼写错误？）", "type": "格式不正确"}

    code = fields.String(required=True, validate=_CODE, error_messages=_ZH)
    name = fields.String(required=True, error_messages=_ZH,
                         validate=validate.Length(min=2, max=100, error=_LENGTH))
    active = fields.Boolean(load_default=True, error_messages=_ZH_BOOL)
    utilities = fields.List(fields.String(validate=_CODE, error_messages=_ZH),
                            load_default=list, error_messages=_ZH_LIST)
    plugins = fields.List(fields.String(validate=_CODE, error_messages=_ZH),
                          load_default=list, error_messages=_ZH_LIST)
    contacts = fields.List(fields.Nested(_ContactSchema), load_default=list,
                           error_messages=_ZH_LIST)


@dataclass
class SyncReport:
    """What one `tenants sync` did, by tenant code."""

    created: list[str]
    updated: list[str]
    unchanged: list[str]
    deactivated: list[str]
    unknown_plugins: dict[str, list[str]]


def _flatten_errors(errors: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in errors.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(_flatten_errors(value, f"{name}."))
        else:
            out.append(f"{name}: {'; '.join(str(v) for v in value)}")
    return out


def read_tenant_file(path: Path) -> dict[str, Any]:
    """Parse and validate one tenant file, raising TenantFileError naming file and field."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TenantFileError(f"{path.name}: 不是有效的 TOML 文件（{exc}）") from exc
    try:
        data = _TenantSchema().load(raw)
    except ValidationError as exc:
        detail = "；".join(_flatten_errors(exc.messages))
        raise TenantFileError(f"{path.name}: 字段错误 — {detail}") from exc
    if data["code"] != path.stem:
        raise TenantFileError(f"{path.name}: 字段 code 为 “{data['code']}”，须与文件名 {path.stem} 一致")
    return data


def read_tenant_dir(directory: Path) -> list[dict[str, Any]]:
    """Every tenant file in `directory`, all validated before anything is written."""
    files = sorted(directory.glob("*.toml"))
    return [read_tenant_file(f) | {"source_file": f.name} for f in files]


def sync_tenants(session: Session, directory: Path, installed_plugins: set[str]) -> SyncReport:
    """Create or update a Tenant per file; deactivate tenants whose file is gone. Commits."""
    definitions = read_tenant_dir(directory)
    report = SyncReport([], [], [], [], {})
    existing = {t.code: t for t in session.query(Tenant).all()}
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for data in definitions:
        tenant = existing.pop(data["code"], None)
        fields_ = {k: data[k] for k in
                   ("name", "active", "utilities", "plugins", "contacts", "source_file")}
        unknown = sorted(set(data["plugins"]) - installed_plugins)
        if unknown:
            report.unknown_plugins[data["code"]] = unknown
        if tenant is None:
            session.add(Tenant(code=data["code"], synced_at=now, **fields_))
            report.created.append(data["code"])
        elif any(getattr(tenant, k) != v for k, v in fields_.items()):
            for key, value in fields_.items():
                setattr(tenant, key, value)
            tenant.synced_at = now
            report.updated.append(data["code"])
        else:
            report.unchanged.append(data["code"])
    for tenant in existing.values():
        if tenant.active:
            tenant.active = False
            tenant.synced_at = now
            report.deactivated.append(tenant.code)
    session.commit()
    return report
