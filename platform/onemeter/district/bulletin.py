"""The office's workbooks in the government layout: the monthly bulletin (月度通报) and the
annual task list (附件1–3: 年度“一户一表”改造工作任务清单).

Title row, 填报单位 and 填报日期, merged two-level headers, totals rows, column widths and
number formats; every text cell goes through `onemeter.exports.safe_cell` (a leading
= + - @ cannot start a formula).
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from onemeter.district.service import Figures, Ranking
from onemeter.exports import safe_cell
from onemeter.plugins import RollupMetric
from onemeter.registry.categories import category_label

OFFICE = "平桥区“一户一表”改造工作领导小组办公室"
_THIN = Side(style="thin")
_BOX = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)
_CENTER = Alignment(horizontal="center", vertical="center", wrap_text=True)
_TOTAL_FILL = PatternFill("solid", fgColor="F2F2F2")
INT = "#,##0"
PCT = "0.0%"
MONEY = "#,##0.00"


def _ratio(part: int, whole: int) -> float | None:
    # A cell's number for the "0.0%" format; the figures themselves are integers.
    return round(part / whole, 4) if whole else None


def _heading(ws: Worksheet, title: str, unit: str, date: dt.date, width: int,
             top: Sequence[tuple[str, int]], sub: Sequence[str | None]) -> int:
    """Title, 填报单位/日期 and a two-level header; returns the first data row.

    `top` lists (heading, span); a span of 1 whose `sub` entry is None is merged down.
    """
    ws.cell(1, 1, safe_cell(title)).font = Font(size=16, bold=True)
    ws.cell(1, 1).alignment = _CENTER
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=width)
    ws.row_dimensions[1].height = 30
    ws.cell(2, 1, safe_cell(f"填报单位：{unit}"))
    ws.merge_cells(start_row=2, start_column=1, end_row=2, end_column=width // 2)
    ws.cell(2, width, f"填报日期：{date.year}年{date.month}月{date.day}日").alignment = \
        Alignment(horizontal="right")
    column = 1
    for heading, span in top:
        ws.cell(3, column, safe_cell(heading))
        if span > 1:
            ws.merge_cells(start_row=3, start_column=column, end_row=3,
                           end_column=column + span - 1)
        elif sub[column - 1] is None:
            ws.merge_cells(start_row=3, start_column=column, end_row=4, end_column=column)
        column += span
    for index, heading in enumerate(sub, start=1):
        if heading is not None:
            ws.cell(4, index, safe_cell(heading))
    for row in (3, 4):
        for col in range(1, width + 1):
            cell = ws.cell(row, col)
            cell.font, cell.border, cell.alignment = Font(bold=True), _BOX, _CENTER
    ws.freeze_panes = "C5"
    return 5


def _row(ws: Worksheet, row: int, values: Sequence[Any], formats: Sequence[str | None],
         total: bool = False) -> None:
    for col, (value, fmt) in enumerate(zip(values, formats, strict=True), start=1):
        cell = ws.cell(row, col, safe_cell(value))
        cell.border = _BOX
        if fmt:
            cell.number_format = fmt
        if total:
            cell.font, cell.fill = Font(bold=True), _TOTAL_FILL


def _widths(ws: Worksheet, widths: Sequence[float]) -> None:
    for index, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(index)].width = width


def _save(wb: Workbook) -> bytes:
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


_UTILITY_SUB = ("改造项目", "已接收", "摸底户数", "自愿不改造", "已完成户数", "户完成率")


def monthly_bulletin(ranking: list[Ranking], by_tenant_utility: dict[tuple[int, str], Figures],
                     utilities: dict[str, str], overdue_total: int, formula: str,
                     today: dt.date, metrics: Sequence[RollupMetric] = ()) -> bytes:
    """月度通报: each sub-district by rank, per utility, with overdue items, score and the
    plugins' figures (one column each, 合计 their sum)."""
    wb = Workbook()
    ws = wb.active
    ws.title = f"{today.year}年{today.month}月通报"
    codes = list(utilities)
    width = 2 + 6 * len(codes) + 2 + len(metrics)
    top = [("名次", 1), ("办事处", 1), *((utilities[c], 6) for c in codes), ("逾期事项", 1),
           ("得分", 1), *((f"{m.label}（{m.unit}）", 1) for m in metrics)]
    sub: list[str | None] = [None, None, *(_UTILITY_SUB * len(codes)), None, None,
                             *(None for _ in metrics)]
    row = _heading(ws, f"平桥区“一户一表”改造工作进展通报（{today.year}年{today.month}月）",
                   OFFICE, today, width, top, sub)
    formats = [None, None, *((INT, INT, INT, INT, INT, PCT) * len(codes)), INT, "0.0",
               *(MONEY if m.unit == "元" else INT for m in metrics)]
    totals = {c: Figures() for c in codes}
    for r in ranking:
        values: list[Any] = [r.rank, r.tenant_name]
        for code in codes:
            f = by_tenant_utility.get((r.tenant_id, code), Figures())
            totals[code].add(f)
            values += [f.communities, f.accepted, f.households, f.opted_out, f.done,
                       _ratio(f.done, f.denominator)]
        _row(ws, row, [*values, r.overdue, float(r.score),
                       *(m.values.get(r.tenant_id) for m in metrics)], formats)
        row += 1
    values = ["", "合计"]
    for code in codes:
        f = totals[code]
        values += [f.communities, f.accepted, f.households, f.opted_out, f.done,
                   _ratio(f.done, f.denominator)]
    _row(ws, row, [*values, overdue_total, None, *(m.total() for m in metrics)], formats,
         total=True)
    ws.cell(row + 2, 1, safe_cell(f"说明：{formula}。户完成率不含自愿不改造户。"))
    ws.merge_cells(start_row=row + 2, start_column=1, end_row=row + 2, end_column=width)
    ws.cell(row + 2, 1).alignment = Alignment(wrap_text=True, vertical="top")
    ws.row_dimensions[row + 2].height = 45
    _widths(ws, [6, 18, *([9, 8, 10, 10, 10, 9] * len(codes)), 9, 8, *(16 for _ in metrics)])
    return _save(wb)


def task_list(year: int, lines: list[tuple[str, Any, dict[str, tuple[int, str]]]],
              utilities: dict[str, str], unit: str, today: dt.date) -> bytes:
    """附件: the year's task list — per community of that phase, per utility the households
    and where the project stands, the responsible unit and the deadline; 小计 per
    sub-district and 合计. `lines` are (sub-district, community, {utility: (households,
    progress label)}), sorted by sub-district."""
    wb = Workbook()
    ws = wb.active
    ws.title = f"{year}年度任务清单"
    codes = list(utilities)
    width = 4 + 2 * len(codes) + 2
    top = [("序号", 1), ("办事处", 1), ("小区名称", 1), ("类别", 1),
           *((utilities[c], 2) for c in codes), ("责任单位", 1), ("完成时限", 1)]
    sub: list[str | None] = [None, None, None, None, *(("户数", "进展") * len(codes)), None,
                             None]
    row = _heading(ws, f"{year}年度“一户一表”改造工作任务清单", unit, today, width, top, sub)
    formats = [INT, None, None, None, *((INT, None) * len(codes)), None, 'yyyy"年"m"月"d"日"']
    deadline = dt.date(year, 12, 31)
    number = 0
    grand = {c: [0, 0] for c in codes}

    def subtotal(label: str, sums: dict[str, list[int]]) -> None:
        nonlocal row
        values: list[Any] = ["", label, "", ""]
        for code in codes:
            values += [sums[code][1], f"{sums[code][0]} 个小区"]
        _row(ws, row, [*values, "", None], formats, total=True)
        row += 1

    current, sums = None, {c: [0, 0] for c in codes}
    for tenant_name, community, per_utility in lines:
        if current is not None and tenant_name != current:
            subtotal(f"{current} 小计", sums)
            sums = {c: [0, 0] for c in codes}
        current = tenant_name
        number += 1
        values: list[Any] = [number, tenant_name, community.name,
                             category_label(community.category)]
        for code in codes:
            households, progress = per_utility.get(code, (None, "—"))
            values += [households, progress]
            if code in per_utility:
                for bucket in (sums, grand):
                    bucket[code][0] += 1
                    bucket[code][1] += households or 0
        _row(ws, row, [*values, f"{tenant_name}（责任主体）", deadline], formats)
        row += 1
    if current is not None:
        subtotal(f"{current} 小计", sums)
    subtotal("合计", grand)
    _widths(ws, [6, 18, 24, 22, *([9, 14] * len(codes)), 24, 16])
    return _save(wb)
