"""Utilities (供水, 供电, any plugin's …) as the plugins declare them: `UtilitySpec`.

The core knows no utility by name: each utility plugin answers `onemeter_utilities` with its
spec, and projects, meter accounts and charges look the spec up here by its code.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pluggy
from flask import current_app, has_app_context

from onemeter.plugins import CORE, PluginLoadError

#: A utility's code: stored in projects and accounts, used in URLs.
CODE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True)
class UtilitySpec:
    """What a utility plugin tells the core about its utility.

    `cancelled_fees` are the fees the plan says may no longer be charged (quoted verbatim);
    `fee_variants` maps one of them to other spellings seen in practice. The number patterns
    are full-match regular expressions; the hints say them in Chinese for error messages.
    `header_aliases` maps a ledger field (account_no, meter_no, rating, …) to the column
    headings sub-districts use for it. `account_example` / `meter_example` are a valid number
    of each kind (optional): the plugin contract tests check the patterns accept them and
    reject nonsense, and the scaffold shows them. `order` places the utility in menus, choice
    lists, report columns and the district's tables (lower first, equal orders by code; the
    built-in water 10, electricity 20; optional, hook API 1.5). `plugin` is filled in by the
    core.
    """

    code: str
    label: str
    company: str
    account_label: str
    account_pattern: str
    account_hint: str
    meter_label: str
    meter_pattern: str
    meter_hint: str
    rating_label: str
    rating_choices: tuple[str, ...] = ()
    cancelled_fees: tuple[str, ...] = ()
    fee_variants: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    fee_clause: str = ""
    header_aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Headers of the company's own account-list export (核对): field → spellings.
    account_list_aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: A valid account number and meter number (examples for tests and hints; optional).
    account_example: str = ""
    meter_example: str = ""
    #: Display position (lower first); a utility that does not say comes after those that do.
    order: int = 100
    plugin: str = ""

    def check_account_no(self, value: str | None) -> str | None:
        """The account number, stripped; ValueError in Chinese if it is not the utility's."""
        return _check(value, self.account_pattern, self.account_label, self.account_hint)

    def check_meter_no(self, value: str | None) -> str | None:
        """The meter number, stripped; ValueError in Chinese if it is not the utility's."""
        return _check(value, self.meter_pattern, self.meter_label, self.meter_hint)

    def cancelled_fee(self, charge_name: str | None) -> str | None:
        """The cancelled fee (verbatim from the plan) that `charge_name` is, or None.

        Matches the plan's name, its stem (the name without 费) inside a longer name
        (收取接水费用, 二次开关闸费), and the declared variants, after removing spaces,
        punctuation and full-width forms.
        """
        name = fee_text(charge_name)
        if not name:
            return None
        for fee in self.cancelled_fees:
            forms = (fee, *self.fee_variants.get(fee, ()))
            for form in forms:
                text = fee_text(form)
                stem = text[:-1] if text.endswith("费") and len(text) > 2 else text
                if text in name or stem in name:
                    return fee
        return None


def _check(value: str | None, pattern: str, label: str, hint: str) -> str | None:
    text = unicodedata.normalize("NFKC", value or "").strip().replace(" ", "")
    if not text:
        return None
    if not re.fullmatch(pattern, text):
        raise ValueError(f"{label}「{text}」格式不对：应为{hint}")
    return text


_NOT_TEXT = re.compile(r"[\s\W_]+", re.UNICODE)


def fee_text(name: str | None) -> str:
    """A fee's name reduced for comparison: NFKC, no spaces or punctuation, 费用 → 费."""
    text = _NOT_TEXT.sub("", unicodedata.normalize("NFKC", name or ""))
    return text.replace("费用", "费")


def collect_utilities(pm: pluggy.PluginManager) -> dict[str, UtilitySpec]:
    """Every plugin's `UtilitySpec`, by code, with the owning plugin recorded.

    Raises PluginLoadError for a malformed spec or a code declared twice.
    """
    specs: dict[str, UtilitySpec] = {}
    for impl in pm.hook.onemeter_utilities.get_hookimpls():
        owner = "" if impl.plugin_name.startswith(CORE) else impl.plugin_name
        for spec in impl.function() or ():
            if not isinstance(spec, UtilitySpec):
                raise PluginLoadError(f"插件 {owner} 的 onemeter_utilities 须返回 UtilitySpec")
            if not CODE_PATTERN.match(spec.code):
                raise PluginLoadError(f"插件 {owner} 的公用事业代码「{spec.code}」不合规")
            if spec.code in specs:
                raise PluginLoadError(
                    f"公用事业 {spec.code} 重复声明：{specs[spec.code].plugin} 与 {owner}")
            for pattern in (spec.account_pattern, spec.meter_pattern):
                re.compile(pattern)
            for example, pattern in ((spec.account_example, spec.account_pattern),
                                     (spec.meter_example, spec.meter_pattern)):
                if example and not re.fullmatch(pattern, example):
                    raise PluginLoadError(
                        f"插件 {owner} 的示例号码「{example}」不符合它自己的格式 {pattern}")
            specs[spec.code] = replace(spec, plugin=owner)
    return dict(sorted(specs.items(), key=lambda item: (item[1].order, item[0])))


def utilities() -> dict[str, UtilitySpec]:
    """The current app's utilities by code, in display order (empty outside an app)."""
    if not has_app_context():
        return {}
    return current_app.extensions.get("onemeter_utilities", {})


def utility_spec(code: str | None) -> UtilitySpec | None:
    """The spec of utility `code` in the current app, None if no plugin declares it."""
    return utilities().get(code or "")


def utility_label(code: str | None) -> str:
    """供水 for water; an unknown code is shown as itself."""
    spec = utility_spec(code)
    return spec.label if spec else (code or "")


def utility_company(code: str | None) -> str:
    """供水公司 for water; an unknown code is shown as its code followed by 单位."""
    spec = utility_spec(code)
    return spec.company if spec else f"{code}单位"


def utility_choices(enabled_plugins: set[str] | None = None) -> list[tuple[str, str]]:
    """(code, label) of the utilities whose plugin is in `enabled_plugins` (None: all)."""
    return [(code, spec.label) for code, spec in utilities().items()
            if enabled_plugins is None or spec.plugin in enabled_plugins]


__all__: list[Any] = ["UtilitySpec", "collect_utilities", "fee_text", "utilities",
                      "utility_choices", "utility_company", "utility_label", "utility_spec"]
