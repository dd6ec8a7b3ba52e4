"""Excel exports in the government's layout: title row, 填报单位/填报日期, headers, data.

Every text cell is formula-injection safe: a leading = + - @ (or tab/CR) is neutralized.
"""

from __future__ import annotations

import copy
import datetime as dt
import decimal
import io
from collections.abc import Iterable, Sequence
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, Side
from openpyxl.utils import get_column_letter

_DANGEROUS_START = ("=", "+", "-", "@", "\t", "\r")
_THIN = Side(style="thin")
_BOX = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)


def safe_cell(value: Any) -> Any:
    """A value safe to put in a spreadsheet cell: text that could start a formula is quoted."""
    if isinstance(value, str) and value.startswith(_DANGEROUS_START):
        return "'" + value
    if isinstance(value, (list, tuple, set)):
        return "、".join(str(v) for v in value)
    if isinstance(value, (bool, int, float, decimal.Decimal, dt.date, dt.datetime)) or \
            value is None:
        return value
    return str(value)


def _number_format(value: Any) -> str | None:
    if isinstance(value, dt.datetime):
        return "yyyy-mm-dd hh:mm"
    if isinstance(value, dt.date):
        return "yyyy-mm-dd"
    if isinstance(value, decimal.Decimal):
        return "#,##0.00"
    return None


def write_report(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]], *,
                 unit: str, date: dt.date | None = None, sheet: str = "Sheet1") -> bytes:
    """Build an .xlsx: merged title, 填报单位/填报日期 line, bold boxed headers, data rows."""
    wb = Workbook()
    ws = wb.active
    ws.title = sheet[:31]
    width = max(len(headers), 2)
    ws.append([title])
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=width)
    ws["A1"].font = Font(size=16, bold=True)
    ws["A1"].alignment = Alignment(horizontal="center")
    date = date or dt.date.today()
    ws.append([f"填报单位：{unit}"] + [None] * (width - 2) +
              [f"填报日期：{date.year}年{date.month}月{date.day}日"])
    ws.append([safe_cell(h) for h in headers])
    for cell in ws[3]:
        cell.font = Font(bold=True)
        cell.border = _BOX
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    # Address cells directly: ws.max_row / ws[n] scan every cell, quadratic over the rows.
    # Each distinct style is built once and copied (openpyxl hashes a style on every
    # assignment: most of the time of a large export).
    styles: dict[str | None, Any] = {}
    for number, row in enumerate(rows, start=4):
        values = [safe_cell(v) for v in row]
        ws.append(values)
        for cell in (ws.cell(row=number, column=c) for c in range(1, len(values) + 1)):
            kind = _number_format(cell.value)
            style = styles.get(kind)
            if style is None:
                cell.border = _BOX
                if kind:
                    cell.number_format = kind
                styles[kind] = copy.copy(cell._style)
            else:
                cell._style = copy.copy(style)
    for index, header in enumerate(headers, start=1):
        ws.column_dimensions[get_column_letter(index)].width = max(10, min(40, 2.2 * len(header)))
    ws.freeze_panes = "A4"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
