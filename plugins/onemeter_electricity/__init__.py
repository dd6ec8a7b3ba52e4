"""供电 (electricity) as a utility plugin: its spec (formats, company) and the fees the plan cancelled.

Written only against the public hooks and the core's public classes, as a third party would.
"""

from __future__ import annotations

from onemeter.plugins import PluginInfo, hookimpl
from onemeter.utilities import UtilitySpec

__version__ = "0.1.0"

#: 五(六): 供电部门在用电报装工程验收接入环节取消的收费（依国办函〔2020〕129号）, verbatim.
CANCELLED_FEES = ("移表费", "计量装置赔偿费", "环境监测费", "高压电缆介损试验费",
                  "高压电缆震荡波试验费", "低压电缆试验费", "低压计量检测费", "互感器试验费",
                  "网络自动化费", "配电室试验费", "开闭站集资费", "调试费")

SPEC = UtilitySpec(
    order=20,  # 供水, 供电, then the others
    code="electricity",
    label="供电",
    company="信阳供电公司",
    account_label="用电户号",
    account_pattern=r"\d{10}",
    account_hint="10位数字",
    meter_label="电能表资产编号",
    meter_pattern=r"\d{22}|\d{10,14}",
    meter_hint="22位资产编号或10至14位表号（数字）",
    rating_label="用电容量",
    rating_choices=("单相4kW", "单相6kW", "单相8kW", "单相10kW", "三相12kW", "三相16kW",
                    "三相20kW"),
    cancelled_fees=CANCELLED_FEES,
    fee_variants={"移表费": ("迁表费", "表位移动费"), "计量装置赔偿费": ("电表赔偿费", "表计赔偿费"),
                  "互感器试验费": ("互感器校验费",), "开闭站集资费": ("开闭所集资费",),
                  "低压计量检测费": ("电表检测费", "计量检测费"), "调试费": ("送电调试费",)},
    fee_clause="五(六)",
    account_example="0123456789",
    meter_example="3410001000200030004000",
    header_aliases={"account_no": ("用电户号", "户号", "用户编号", "电费户号", "客户编号"),
                    "meter_no": ("电能表资产编号", "电表编号", "资产编号", "表号", "电表号"),
                    "rating": ("用电容量", "容量", "报装容量")},
    account_list_aliases={"account_no": ("用户编号", "户号", "用电户号", "客户编号"),
                          "meter_no": ("资产编号", "表号", "电能表资产编号", "电表编号"),
                          "owner_name": ("用户名称", "户名", "客户名称"),
                          "address": ("用电地址", "装表地址", "用户地址")},
)


@hookimpl
def onemeter_plugin_info() -> PluginInfo:
    return PluginInfo(label="供电", version=__version__,
                      description="供电“一户一表”：户表、取消收费项目、改造项目中的供电公司")


@hookimpl
def onemeter_utilities() -> list[UtilitySpec]:
    return [SPEC]

