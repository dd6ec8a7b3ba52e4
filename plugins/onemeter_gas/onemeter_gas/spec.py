"""燃气 as the core sees it: the `UtilitySpec` (formats, headings) and the cancelled fee.

四(二)3 of the plan: developers may not collect a gas initial-installation fee (燃气初装费)
"in any form" (发改价格〔2019〕1131号, 信发改价管〔2020〕351号, 〔2021〕36号).
"""

from __future__ import annotations

from onemeter.utilities import UtilitySpec

#: 四(二)3: "监督开发建设单位不得以任何形式收取燃气初装费", verbatim.
CANCELLED_FEES = ("燃气初装费",)

#: "以任何形式": the names the same charge goes by (1131号 lists 开户、接口、集资 … as 初装).
FEE_VARIANTS = {"燃气初装费": ("初装费", "燃气开户费", "天然气开户费", "燃气接口费",
                               "燃气集资费", "燃气配套费", "燃气入网费", "管道气安装费")}

SPEC = UtilitySpec(
    code="gas",
    label="燃气",
    company="信阳燃气公司",
    account_label="燃气户号",
    account_pattern=r"\d{8,12}",
    account_hint="8至12位数字",
    meter_label="燃气表编号",
    meter_pattern=r"[A-Z0-9]{8,20}",
    meter_hint="8至20位数字或大写字母",
    rating_label="燃气表规格",
    rating_choices=("G1.6", "G2.5", "G4", "G6"),
    cancelled_fees=CANCELLED_FEES,
    fee_variants=FEE_VARIANTS,
    fee_clause="四(二)3",
    header_aliases={"account_no": ("燃气户号", "用气户号", "燃气用户号", "气费户号", "户号"),
                    "meter_no": ("燃气表编号", "气表编号", "燃气表号", "气表号", "表号"),
                    "rating": ("燃气表规格", "气表规格", "燃气表型号")},
    account_list_aliases={"account_no": ("用户编号", "户号", "燃气户号", "用气户号", "客户编号"),
                          "meter_no": ("表号", "气表编号", "燃气表编号", "表具编号"),
                          "owner_name": ("用户名称", "户名", "客户名称"),
                          "address": ("用气地址", "装表地址", "用户地址")},
    account_example="20210707",
    meter_example="G4X2021000123",
)
