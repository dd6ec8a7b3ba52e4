"""供水 (water) as a utility plugin: its spec (formats, company) and the fees the plan cancelled.

Written only against the public hooks and the core's public classes, as a third party would.
"""

from __future__ import annotations

from onemeter.plugins import PluginInfo, hookimpl
from onemeter.utilities import UtilitySpec

__version__ = "0.1.0"

#: 五(六): 供水部门在用水报装工程验收接入环节取消的收费（依国办函〔2020〕129号）, verbatim.
CANCELLED_FEES = ("接水费", "增容费", "报装费", "开关闸费", "竣工核验费", "竣工导线测量费",
                  "管线探测费", "勾头费", "水钻工程费", "碰头费", "出图费")

SPEC = UtilitySpec(
    order=10,  # 供水, 供电, then the others
    code="water",
    label="供水",
    company="信阳供水公司",
    account_label="用水户号",
    account_pattern=r"\d{6,12}",
    account_hint="6至12位数字",
    meter_label="水表编号",
    meter_pattern=r"[A-Z0-9]{6,20}",
    meter_hint="6至20位数字或大写字母",
    rating_label="水表口径",
    rating_choices=("DN15", "DN20", "DN25", "DN32", "DN40", "DN50"),
    cancelled_fees=CANCELLED_FEES,
    # "等类似名目开户费用 … 类似名目工程费用": the names they go by in practice.
    fee_variants={"接水费": ("开户费", "立户费", "接水工本费"), "增容费": ("扩容费",),
                  "开关闸费": ("开闸费", "关闸费", "停开闸费"), "碰头费": ("接驳费", "碰口费"),
                  "竣工核验费": ("竣工验收费",), "管线探测费": ("管网探测费",)},
    fee_clause="五(六)",
    account_example="1234567890",
    meter_example="SZ20210707",
    header_aliases={"account_no": ("用水户号", "户号", "用户编号", "用户号", "水费户号"),
                    "meter_no": ("水表编号", "水表号", "表号", "水表表号"),
                    "rating": ("水表口径", "口径")},
    account_list_aliases={"account_no": ("用户编号", "户号", "用水户号", "客户编号"),
                          "meter_no": ("表号", "水表编号", "资产编号", "水表号"),
                          "owner_name": ("用户名称", "户名", "客户名称"),
                          "address": ("用水地址", "装表地址", "用户地址")},
)


@hookimpl
def onemeter_plugin_info() -> PluginInfo:
    return PluginInfo(label="供水", version=__version__,
                      description="供水“一户一表”：户表、取消收费项目、改造项目中的供水公司")


@hookimpl
def onemeter_utilities() -> list[UtilitySpec]:
    return [SPEC]

