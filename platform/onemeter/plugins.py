"""The plugin manager: discovery through entry points, validation, and view ownership.

The core registers its own pages through the same hooks (DEFAULT_PLUGINS), so built-in and
third-party plugins are treated alike and a disabled plugin shows nothing to a tenant.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

import pluggy

from onemeter import HOOK_API_VERSION, hookspecs

log = logging.getLogger(__name__)

#: The entry-point group every plugin, built-in or third-party, registers under.
ENTRY_POINT_GROUP = "onemeter.plugins"
hookimpl = pluggy.HookimplMarker("onemeter")

#: The core's own hook implementations, registered before any entry point (always enabled).
DEFAULT_PLUGINS = ("onemeter.views", "onemeter.jobs", "onemeter.registry.views",
                   "onemeter.registry.commands", "onemeter.registry.accounts",
                   "onemeter.retrofit.views", "onemeter.imports.views",
                   "onemeter.reconcile.views", "onemeter.district.views")
CORE = "core"


class PluginLoadError(RuntimeError):
    """A plugin failed to import, implements an unknown hook, or declares itself wrongly."""


@dataclass(frozen=True)
class PluginInfo:
    """What a plugin says about itself (returned by `onemeter_plugin_info`)."""

    label: str
    version: str
    hook_api: str = HOOK_API_VERSION
    description: str = ""


@dataclass(frozen=True)
class RoleSpec:
    """A role a plugin adds (returned by `onemeter_roles`)."""

    name: str
    label: str
    tenant_role: bool = False


@dataclass(frozen=True)
class RollupMetric:
    """One figure a plugin adds to the district rollups (returned by `onemeter_rollup_metrics`).

    `values` maps tenant id → value (an int count or a Decimal amount in 元); the district
    total is their sum. `unit` is shown after the number: "元", "户", "件", "个".
    """

    code: str
    label: str
    unit: str
    values: Mapping[int, int | Decimal] = field(default_factory=dict)
    plugin: str = ""

    def total(self) -> int | Decimal:
        """The district figure: the sum over tenants (Decimal if any value is one)."""
        return sum(self.values.values(), Decimal(0) if any(
            isinstance(v, Decimal) for v in self.values.values()) else 0)


def _trace(pm: pluggy.PluginManager) -> None:
    """ONEMETER_TRACE_PLUGINS=1: log every hook call with its arguments and results."""

    def before(hook_name: str, impls: Any, kwargs: dict) -> None:
        log.warning("hook %s(%r) → %s", hook_name, kwargs, [i.plugin_name for i in impls])

    def after(outcome: Any, hook_name: str, impls: Any, kwargs: dict) -> None:
        log.warning("hook %s returned %r", hook_name, outcome.get_result())

    pm.add_hookcall_monitoring(before, after)


def build_plugin_manager(only: list[str] | None = None, extra: dict[str, Any] | None = None,
                         trace: bool = False) -> pluggy.PluginManager:
    """Build the plugin manager for one app.

    `only`: entry-point names to load (None: every installed plugin). `extra`: name → plugin
    object registered as if discovered (used by tests for throwaway plugins). Raises
    PluginLoadError naming the plugin when one cannot be loaded or is invalid.
    """
    pm = pluggy.PluginManager("onemeter")
    pm.add_hookspecs(hookspecs)
    for module_name in DEFAULT_PLUGINS:
        pm.register(import_module(module_name), name=f"{CORE}:{module_name}")
    wanted = set(only) if only is not None else None
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if wanted is not None and ep.name not in wanted:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # any import-time failure is reported the same way
            raise PluginLoadError(f"插件 {ep.name} 加载失败（{ep.value}）：{exc!r}") from exc
        _register(pm, ep.name, plugin)
    if wanted is not None:
        missing = wanted - {n for n in pm.list_name_plugin() if not n[0].startswith(CORE)}
        missing = {m for m in missing if pm.get_plugin(m) is None}
        if missing and extra is None:
            raise PluginLoadError(f"插件未安装：{', '.join(sorted(missing))}")
    for name, plugin in (extra or {}).items():
        _register(pm, name, plugin)
    if trace:
        _trace(pm)
    return pm


def _register(pm: pluggy.PluginManager, name: str, plugin: Any) -> None:
    try:
        pm.register(plugin, name=name)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(name=name)
        raise PluginLoadError(f"插件 {name} 无效：{exc}") from exc
    except ValueError as exc:
        raise PluginLoadError(f"插件 {name} 无效：{exc}") from exc
    impl = getattr(plugin, "onemeter_plugin_info", None)
    if impl is None:
        raise PluginLoadError(f"插件 {name} 没有实现 onemeter_plugin_info")
    info = impl()
    if not isinstance(info, PluginInfo):
        raise PluginLoadError(f"插件 {name} 的 onemeter_plugin_info 须返回 PluginInfo")
    if info.hook_api.split(".")[0] != HOOK_API_VERSION.split(".")[0]:
        raise PluginLoadError(
            f"插件 {name} 基于钩子接口 {info.hook_api} 编写，平台为 {HOOK_API_VERSION}"
        )


def plugin_names(pm: pluggy.PluginManager) -> list[str]:
    """Names of the loaded plugins, the core excluded."""
    return sorted(n for n, _ in pm.list_name_plugin() if not n.startswith(CORE))


def plugin_infos(pm: pluggy.PluginManager) -> dict[str, PluginInfo]:
    return {name: pm.get_plugin(name).onemeter_plugin_info() for name in plugin_names(pm)}


def _exact(name: str) -> str:
    return f"^{re.escape(name)}$"


class ViewRegistrar:
    """Adds one plugin's pages and APIs to FAB and records that the plugin owns them.

    Ownership drives per-tenant enablement (see OMSecurityManager.has_access) and the role
    rules (from each view's `om_roles`).
    """

    def __init__(self, appbuilder: Any, plugin: str | None) -> None:
        self.appbuilder = appbuilder
        self.plugin = plugin
        self.sm = appbuilder.sm

    def _own(self, view: Any, menu_names: list[str]) -> None:
        names = [view.class_permission_name, *menu_names]
        if self.plugin is not None:
            for name in names:
                self.sm.om_view_plugin[name] = self.plugin
        for role, permissions in getattr(view, "om_roles", {}).items():
            rules = self.sm.om_role_rules.setdefault(role, [])
            allowed = set(permissions) & set(view.base_permissions or permissions)
            for permission in sorted(allowed):
                rules.append((_exact(view.class_permission_name), _exact(permission)))
            for menu in menu_names:
                rules.append((_exact(menu), _exact("menu_access")))

    def add_view(self, view: type, name: str, *, category: str | None = None,
                 label: str | None = None, category_label: str | None = None,
                 icon: str = "", category_icon: str = "") -> Any:
        """Add a page with a menu entry (and its category), owned by this plugin.

        A category shared by several owners belongs to none, so it stays visible while any
        of its entries is.
        """
        instance = self.appbuilder.add_view(
            view, name, category=category or "", label=label or name, icon=icon,
            category_label=category_label or category or "", category_icon=category_icon,
        )
        self._own(instance, [name])
        if category:
            owners = self.sm.om_category_owners.setdefault(category, set())
            owners.add(self.plugin)
            if owners == {self.plugin} and self.plugin is not None:
                self.sm.om_view_plugin[category] = self.plugin
            else:
                self.sm.om_view_plugin.pop(category, None)
            for role in getattr(view, "om_roles", {}):
                self.sm.om_role_rules.setdefault(role, []).append(
                    (_exact(category), _exact("menu_access")))
        return instance

    def add_view_no_menu(self, view: type) -> Any:
        """Add a page reachable by URL only, owned by this plugin."""
        instance = self.appbuilder.add_view_no_menu(view)
        self._own(instance, [])
        return instance

    def add_api(self, api: type) -> Any:
        """Add a REST API under /api/v1, owned by this plugin."""
        instance = self.appbuilder.add_api(api)
        self._own(instance, [])
        return instance


def register_plugin_views(pm: pluggy.PluginManager, appbuilder: Any) -> None:
    """Call every plugin's `onemeter_register_views` with a registrar that records ownership."""
    for impl in pm.hook.onemeter_register_views.get_hookimpls():
        owner = None if impl.plugin_name.startswith(CORE) else impl.plugin_name
        impl.function(registrar=ViewRegistrar(appbuilder, owner))
