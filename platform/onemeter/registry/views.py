"""Registry pages and APIs: 开发建设单位, 小区, 住户, 改造计划 (registered as a core plugin)."""

from __future__ import annotations

from typing import Any

from onemeter.plugins import hookimpl
from onemeter.registry import models  # noqa: F401 - the tables join the metadata


@hookimpl
def onemeter_register_views(registrar: Any) -> None:
    """Pages come in the next commit; the tables are registered already."""
