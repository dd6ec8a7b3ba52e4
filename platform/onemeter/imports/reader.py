"""Reading an uploaded spreadsheet into rows of cell values, refusing hostile or broken files.

`read_table` decides the type from the CONTENT (a zip is an .xlsx/.xlsm or .ods workbook, an
OLE2 compound file is an .xls workbook, anything else must be UTF-8 / GBK / GB18030 text, i.e. a
CSV) and refuses a file whose extension says otherwise. Every refusal is one `ImportFileError`
whose `str()` is a Chinese sentence for the clerk; no other exception leaves this module for a
bad file, and memory stays bounded:

- the file is read up to `max_bytes` + 1 bytes, never more;
- a zip is checked before anything parses it: member count, the declared uncompressed sizes
  (total and per-member compression ratio), then every member is decompressed once as a stream
  (1 MiB at a time) to count the real size and verify its CRC, and every XML part is searched
  for `<!DOCTYPE` / `<!ENTITY` (calamine does not resolve entities, but no spreadsheet program
  writes them, so a file that has them was made by hand and is refused);
- python-calamine turns a sheet into a DENSE range from its first to its last value cell, so a
  few kilobytes with one value in XFD1048576 ask it for 17 billion cells: the process aborts
  (Rust allocation failure, not a Python exception). So before calamine reads a sheet, the
  sheet's extent is measured from the raw file: for .xlsx the declared `<dimension>` and every
  cell reference in the sheet XML (a regular-expression scan of the decompressed stream); for
  .xls the row/column of every cell record in the BIFF stream (a small compound-file reader);
  for .ods the repeated rows and columns of content.xml. Extents over `max_cells` cells or
  `max_rows` rows are refused before calamine allocates anything. The same scan of an .xlsx
  collects what calamine does not return: hidden rows, and error cells (#N/A …, which
  calamine reads as "") whose text is put back (`_SheetMarks`).

Row 0 of `RawSheet.rows` is spreadsheet row 1 and column 0 is column A (calamine is asked not
to skip the empty area), so `index + 1` is the row number Excel shows.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import posixpath
import re
import shutil
import struct
import tempfile
import zipfile
import zlib
from array import array
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from defusedxml import DTDForbidden, EntitiesForbidden
from defusedxml import ElementTree as SafeET
from python_calamine import CalamineWorkbook, SheetTypeEnum, SheetVisibleEnum

#: Extension → the kind of content it promises.
_EXTENSION_KINDS = {".xlsx": "xlsx", ".xlsm": "xlsx", ".xls": "xls", ".ods": "ods", ".csv": "csv"}
_KIND_NAMES = {"xlsx": "新版Excel（.xlsx）", "xls": "旧版Excel（.xls）",
               "ods": "OpenDocument表格（.ods）", "csv": "CSV文本"}
_KIND_EXTENSIONS = {"xlsx": ".xlsx", "xls": ".xls", "ods": ".ods", "csv": ".csv"}

#: Default limit on data rows of one sheet (a district ledger has tens of thousands).
DEFAULT_MAX_ROWS = 200_000
#: More members than this in one workbook zip is not a spreadsheet a person made.
MAX_ZIP_MEMBERS = 10_000
#: A member may compress at most this well (ordinary sheet XML compresses 5–30 times).
MAX_COMPRESSION_RATIO = 100
#: The ratio is checked on members larger than this; below it the size limit alone suffices.
_RATIO_FLOOR = 1024 * 1024
_CHUNK = 1024 * 1024
_SCAN_CHUNK = 4 * 1024 * 1024
_MARKER_SPAN = 32  # longer than any DTD marker in any encoding

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_CFB_MAGIC = bytes.fromhex("D0CF11E0A1B11AE1")
_ODS_MIMETYPE = b"application/vnd.oasis.opendocument.spreadsheet"
_XML_SUFFIXES = (".xml", ".rels", ".vml")
_DTD_MARKERS = tuple(
    text.encode(enc) for text in ("<!doctype", "<!entity")
    for enc in ("ascii", "utf-16-le", "utf-16-be"))
_NS_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_NS_REL_DOC = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_NS_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"

#: Broken-file advice shared by several refusals.
_RESAVE = "请用Excel或WPS打开后重新保存，再上传"
_PASSWORD = "文件有密码保护，请在Excel中去掉密码后再上传"


class ImportFileError(ValueError):
    """A file that cannot be imported; `str()` says why, in Chinese, for the clerk."""


@dataclass(frozen=True)
class RawSheet:
    """One sheet as read: cell values as python-calamine returns them (str, float, int, bool,
    datetime/date/time/timedelta; "" for an empty cell). CSV cells are str.

    `rows[0]` is spreadsheet row 1 and `rows[r][0]` is column A; every row has `width` cells.
    """

    rows: list[list[Any]]
    sheet_name: str
    #: Hidden columns (0-based), from `<col hidden="1">` of an .xlsx or the COLINFO records of
    #: an .xls; None when the format does not say (.ods, .csv).
    hidden_columns: frozenset[int] | None
    #: "xlsx" (also .xlsm), "xls", "ods" or "csv".
    source_kind: str
    #: Merged ranges, 0-based and inclusive: (first_row, first_col, last_row, last_col).
    merged: tuple[tuple[int, int, int, int], ...] = ()
    #: The text encoding a CSV was decoded with ("utf-8-sig", "utf-8", "gbk", "gb18030").
    encoding: str | None = None
    #: Names of the visible worksheets of the workbook, in order (the CSV has one).
    sheet_names: tuple[str, ...] = field(default=())
    #: Hidden rows (0-based), from `<row hidden="1">` of an .xlsx or the ROW records of an .xls
    #: (rows a filter or the clerk hid); read like the others, the batch page says which they
    #: are. Empty when the format does not say (.ods, .csv).
    hidden_rows: frozenset[int] = frozenset()

    @property
    def height(self) -> int:
        return len(self.rows)

    @property
    def width(self) -> int:
        return len(self.rows[0]) if self.rows else 0


@dataclass(frozen=True)
class _Limits:
    max_bytes: int
    max_uncompressed_bytes: int
    max_cells: int
    max_rows: int


def read_table(source: str | os.PathLike[str] | bytes | bytearray | IO[bytes], filename: str, *,
               max_bytes: int, max_uncompressed_bytes: int, max_cells: int,
               max_rows: int = DEFAULT_MAX_ROWS, sheet: str | None = None) -> RawSheet:
    """Read the first visible worksheet with data (or `sheet`) of an uploaded file.

    `source` is a path, the bytes, or a binary file object; `filename` is the name the clerk
    uploaded (only its extension is used, and only to be compared with the content).
    Raises `ImportFileError` for anything that is not a readable, reasonably sized table.
    """
    limits = _Limits(max_bytes, max_uncompressed_bytes, max_cells, max_rows)
    extension = _extension(filename)
    data = _read_bounded(source, max_bytes)
    try:
        kind = _content_kind(data, extension)
        if kind == "csv":
            return _read_csv(data, limits)
        return _read_workbook(data, kind, limits, sheet, extension)
    except ImportFileError:
        raise
    except MemoryError as exc:
        raise ImportFileError("文件太大，读取时内存不足，请拆分成几个较小的文件后分批导入") from exc
    except BaseException as exc:  # noqa: B036 — pyo3's PanicException derives from BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
            raise
        raise ImportFileError(f"文件已损坏或格式异常，无法读取（{_short(exc)}）。{_RESAVE}") from exc


# ---------------------------------------------------------------------------------------------
# Bytes and type


def _extension(filename: str) -> str:
    ext = Path(filename or "").suffix.lower()
    if ext not in _EXTENSION_KINDS:
        shown = ext or "（无扩展名）"
        raise ImportFileError(f"不支持的文件类型“{shown}”：请上传.xlsx、.xls、.ods或.csv文件")
    return ext


def _read_bounded(source: Any, max_bytes: int) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    elif hasattr(source, "read"):
        try:
            data = source.read(max_bytes + 1)
        except (OSError, ValueError) as exc:
            raise ImportFileError("读取上传的文件失败，请重新上传") from exc
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise ImportFileError(_too_big(max_bytes))
            with path.open("rb") as fh:
                data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise ImportFileError("读取上传的文件失败，请重新上传") from exc
    if not data:
        raise ImportFileError("文件是空的（0字节），请检查是否选错了文件")
    if len(data) > max_bytes:
        raise ImportFileError(_too_big(max_bytes))
    return data


def _too_big(max_bytes: int) -> str:
    return f"文件太大：超过{_size(max_bytes)}的上限，请拆分成几个文件后分批导入"


def _content_kind(data: bytes, extension: str) -> str:
    """What the bytes are ("xlsx", "xls", "ods", "csv"), refused when the extension disagrees."""
    expected = _EXTENSION_KINDS[extension]
    if data.startswith(_ZIP_MAGIC):
        kind = "zip"
    elif data.startswith(_CFB_MAGIC):
        kind = "xls"
    else:
        kind = "csv"
    if kind == "csv":
        if expected != "csv":
            raise ImportFileError(_not_a_workbook(data))
        return "csv"
    if expected == "csv":
        raise ImportFileError(
            f"扩展名是.csv，但文件内容是Excel工作簿；请把扩展名改回{'.xls' if kind == 'xls' else '.xlsx'}"
            "，或在Excel中“另存为”CSV后再上传")
    if kind == "zip":
        return "zip"  # xlsx or ods: decided (and compared with the extension) inside the zip
    if expected != "xls":
        # A password-protected .xlsx is an OLE2 file holding an EncryptedPackage stream.
        try:
            _cfb_workbook_stream(data)
        except ImportFileError as exc:
            if str(exc) == _PASSWORD:
                raise
        raise ImportFileError(
            f"文件内容是旧版Excel（.xls）格式，但扩展名是{extension}；请把扩展名改为.xls，"
            "或在Excel中另存为.xlsx后再上传")
    return "xls"


def _not_a_workbook(data: bytes) -> str:
    head = data[:512].lstrip(codecs.BOM_UTF8).lstrip().lower()
    if head.startswith((b"<html", b"<!doctype html", b"<table", b"<meta")):
        return ("文件内容不是Excel表格，而是网页（HTML），只是扩展名像Excel（常见于从网上系统导出的表）；"
                "请用Excel或WPS打开后另存为.xlsx再上传")
    if head.startswith(b"<?xml"):
        return ("文件内容不是Excel表格，而是XML文本（可能是“XML电子表格2003”格式）；"
                "请用Excel或WPS打开后另存为.xlsx再上传")
    if data.startswith(b"%PDF"):
        return "文件内容不是Excel表格，而是PDF文档；请上传Excel台账文件"
    return "文件内容不是Excel表格，可能是改了扩展名的文本文件；请上传用Excel或WPS保存的原始文件"


# ---------------------------------------------------------------------------------------------
# Workbooks (calamine)


def _read_workbook(data: bytes, kind: str, limits: _Limits, sheet: str | None,
                   extension: str) -> RawSheet:
    parts: dict[str, str] = {}
    xls_marks: dict[int, _SheetMarks] = {}
    zf: zipfile.ZipFile | None = None
    unpacked = _Unpacked(limits)
    if kind == "zip":
        zf = _open_zip(data, limits)
        kind = _zip_kind(zf)
        if kind != _EXTENSION_KINDS[extension]:
            raise ImportFileError(
                f"文件内容是{_KIND_NAMES[kind]}格式，但扩展名是{extension}；请把扩展名改为"
                f"{_KIND_EXTENSIONS[kind]}，或在Excel中另存为.xlsx后再上传")
        if kind == "ods":
            unpacked.check(zf, skip={"content.xml"})
            _check_ods_extent(zf, unpacked)
        else:
            parts = _xlsx_sheet_parts(zf)
            unpacked.check(zf, skip=set(parts.values()) & set(zf.namelist()))
    else:
        xls_marks = _check_xls(data, limits)

    try:
        book = CalamineWorkbook.from_filelike(io.BytesIO(data))
    except Exception as exc:
        raise ImportFileError(_broken(kind, exc)) from exc
    with book:
        metas = book.sheets_metadata
        visible = [m.name for m in metas
                   if m.typ == SheetTypeEnum.WorkSheet and m.visible == SheetVisibleEnum.Visible]
        if sheet is not None:
            if sheet not in [m.name for m in metas]:
                listed = "、".join(visible) or "（无）"
                raise ImportFileError(f"文件中没有名为“{sheet}”的工作表；文件中的工作表：{listed}")
            names = [sheet]
        else:
            names = visible
        if not names:
            raise ImportFileError("工作簿里没有可见的工作表，没有可导入的内容")
        for name in names:
            hidden: frozenset[int] | None = None
            marks = _SheetMarks(limits)
            if kind == "xlsx":
                part = parts.get(name)
                if part is None or zf is None or part not in zf.namelist():
                    raise ImportFileError(f"工作表“{name}”在文件中找不到对应的数据部分，文件可能已损坏。{_RESAVE}")
                marks = _check_xlsx_sheet(zf, part, name, unpacked)
                hidden = frozenset(marks.hidden_columns)
            elif kind == "xls":  # by position: calamine may decode a BIFF5 name otherwise;
                # of two sheets with one name calamine keeps the last
                position = max(i for i, m in enumerate(metas) if m.name == name)
                marks = xls_marks.get(position, marks)
                hidden = frozenset(marks.hidden_columns)
            try:
                rows, merged = _sheet_rows(book, name, limits)
            except Exception as exc:
                if not (kind == "xlsx" and zf is not None and marks.has_newer_errors()):
                    raise ImportFileError(_broken(kind, exc)) from exc
                # calamine refuses a whole sheet for one #SPILL! or #CALC! (Excel 365): read a
                # copy holding #N/A there instead; the scan puts the real text back below.
                with tempfile.TemporaryDirectory(prefix="onemeter-") as scratch:
                    copy_path = os.path.join(scratch, "copy.xlsx")
                    _classic_errors_only(zf, parts[name], copy_path)
                    try:
                        with CalamineWorkbook.from_path(copy_path) as copy:
                            rows, merged = _sheet_rows(copy, name, limits)
                    except Exception as again:
                        raise ImportFileError(_broken(kind, again)) from again
            if len(rows) > limits.max_rows:
                raise ImportFileError(_too_many_rows(name, limits.max_rows))
            marks.put_errors(rows)
            if not any(_filled(value) for row in rows for value in row):
                continue
            width = len(rows[0])
            if hidden is not None:
                hidden = frozenset(c for c in hidden if c < width)
            return RawSheet(rows=rows, sheet_name=name, hidden_columns=hidden, source_kind=kind,
                            merged=merged, sheet_names=tuple(visible),
                            hidden_rows=frozenset(r for r in marks.hidden_rows if r < len(rows)))
    which = f"工作表“{sheet}”" if sheet is not None else "所有可见的工作表"
    raise ImportFileError(f"{which}都是空的，没有可导入的行")


def _sheet_rows(book: CalamineWorkbook, name: str, limits: _Limits
                ) -> tuple[list[list[Any]], tuple[tuple[int, int, int, int], ...]]:
    """A sheet's rows from A1 (up to one past `max_rows`) and its merged ranges."""
    calamine_sheet = book.get_sheet_by_name(name)
    rows = calamine_sheet.to_python(skip_empty_area=False, nrows=limits.max_rows + 1)
    merged = tuple((a[0], a[1], b[0], b[1]) for a, b in (calamine_sheet.merged_cell_ranges or ()))
    return rows, merged


def _classic_errors_only(zf: zipfile.ZipFile, part: str, path: str) -> None:
    """Write the workbook again to `path`, with every newer error value (#SPILL!, #CALC! …)
    cached in the worksheet `part` written as #N/A, which calamine reads. Only for a sheet
    that has them; every member was already checked for its size and a DTD. Streamed in
    chunks (cut before the last start tag, so a value and the "<" after it stay together):
    memory does not grow with the sheet."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as copy:
        for info in zf.infolist():
            if info.is_dir():
                continue
            with zf.open(info) as source, copy.open(info.filename, "w", force_zip64=True) as out:
                if info.filename != part:
                    shutil.copyfileobj(source, out, _CHUNK)
                    continue
                carry = b""
                while block := source.read(_CHUNK):
                    buffer = carry + block
                    cut = buffer.rfind(b"<")
                    # back to a start tag ("<" last in the buffer may begin an end tag)
                    while cut > 0 and buffer[cut + 1:cut + 2] in (b"/", b""):
                        cut = buffer.rfind(b"<", 0, cut)
                    cut = max(cut, 0)
                    out.write(_NEWER_ERROR_VALUE.sub(rb"\1#N/A", buffer[:cut]))
                    carry = buffer[cut:]
                    if len(carry) > _SCAN_CHUNK:
                        raise ImportFileError(
                            f"“{part}”中有异常长的XML标签，文件已损坏或是人为构造的。{_RESAVE}")
                out.write(_NEWER_ERROR_VALUE.sub(rb"\1#N/A", carry))


def _broken(kind: str, exc: BaseException) -> str:
    return f"{_KIND_NAMES[kind]}文件已损坏或不完整，无法读取（{_short(exc)}）。{_RESAVE}"


def _too_many_rows(name: str, max_rows: int) -> str:
    return f"工作表“{name}”超过{max_rows:,}行的上限，请拆分成几个文件后分批导入"


def _filled(value: Any) -> bool:
    return not (value is None or (isinstance(value, str) and not value.strip()))


# ---------------------------------------------------------------------------------------------
# Zip containers (.xlsx, .xlsm, .ods)


def _open_zip(data: bytes, limits: _Limits) -> zipfile.ZipFile:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
            struct.error) as exc:
        raise ImportFileError(
            f"文件已损坏或不完整（压缩包无法打开：{_short(exc)}），可能是上传中断或文件只复制了一部分。"
            f"{_RESAVE}") from exc
    if len(infos) > MAX_ZIP_MEMBERS:
        raise ImportFileError(f"文件内部包含{len(infos):,}个部分，不是正常的Excel工作簿，已拒绝")
    if any(info.flag_bits & 0x1 for info in infos):
        raise ImportFileError(_PASSWORD)
    declared = sum(info.file_size for info in infos)
    if declared > limits.max_uncompressed_bytes:
        raise ImportFileError(_bomb(f"解压后共{_size(declared)}", limits))
    for info in infos:
        if (info.file_size > _RATIO_FLOOR
                and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1)):
            ratio = info.file_size // max(info.compress_size, 1)
            raise ImportFileError(_bomb(
                f"其中“{info.filename}”压缩了{ratio:,}倍（{_size(info.compress_size)}解压成"
                f"{_size(info.file_size)}）", limits))
    return zf


@dataclass
class _Unpacked:
    """The real (decompressed) bytes counted so far against the limit, across members.

    Declared sizes can lie (zipfile stops at the declared size and then checks the CRC), so
    every member calamine may read is decompressed once as a stream: its real size counts
    here, and no XML part may carry a DTD. A worksheet is streamed by the cell scan itself
    (`_check_xlsx_sheet`), which does both checks in the same pass."""

    limits: _Limits
    total: int = 0

    def chunks(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, size: int = _CHUNK
               ) -> Iterator[bytes]:
        """The member's bytes in chunks, counted and (XML parts) checked for a DTD."""
        is_xml = info.filename.lower().endswith(_XML_SUFFIXES)
        tail = b""
        for chunk in _member_chunks(zf, info, size):
            self.total += len(chunk)
            if self.total > self.limits.max_uncompressed_bytes:
                raise ImportFileError(_bomb(f"解压后超过{_size(self.total)}", self.limits))
            if is_xml:  # the chunk, and a marker split between this chunk and the last
                _refuse_dtd(chunk, info.filename)
                _refuse_dtd(tail + chunk[:_MARKER_SPAN], info.filename)
                tail = chunk[-_MARKER_SPAN:]
            yield chunk

    def check(self, zf: zipfile.ZipFile, skip: Collection[str] = ()) -> None:
        """Stream every member but those in `skip` (the worksheets, scanned later)."""
        for info in zf.infolist():
            if info.filename not in skip:
                for _chunk in self.chunks(zf, info):
                    pass


def _member_chunks(zf: zipfile.ZipFile, info: zipfile.ZipInfo, size: int) -> Iterator[bytes]:
    """A member's bytes in chunks of `size`; a broken member is an `ImportFileError`."""
    try:
        with zf.open(info) as fh:
            while True:
                block = fh.read(size)
                if not block:
                    return
                yield block
    except ImportFileError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
            NotImplementedError, struct.error) as exc:
        raise _undecompressable(info.filename, exc) from exc


def _undecompressable(part: str, exc: BaseException) -> ImportFileError:
    return ImportFileError(f"文件已损坏或不完整（“{part}”无法解压：{_short(exc)}）。{_RESAVE}")


def _refuse_dtd(chunk: bytes, part: str) -> None:
    if b"!" not in chunk:  # every marker has one, in every encoding; '!' is rare in XML
        return
    lowered = chunk.lower()
    if any(marker in lowered for marker in _DTD_MARKERS):
        raise _dtd_refused(part)


def _dtd_refused(part: str) -> ImportFileError:
    return ImportFileError(
        f"文件的“{part}”部分含有DOCTYPE/ENTITY声明（XML外部实体）。Excel和WPS保存的文件不会有这种声明，"
        "这通常是人为构造的恶意文件；虽然本系统读取时不会解析实体，为安全起见仍拒绝导入")


def _bomb(what: str, limits: _Limits) -> str:
    return (f"文件解压后异常庞大（{what}，上限{_size(limits.max_uncompressed_bytes)}），"
            "可能是恶意构造的“压缩炸弹”，已拒绝；如确是正常台账，请拆分后分批导入")


def _zip_kind(zf: zipfile.ZipFile) -> str:
    names = set(zf.namelist())
    if "mimetype" in names:
        with zf.open("mimetype") as fh:
            mimetype = fh.read(200).strip()
        if mimetype == _ODS_MIMETYPE:
            if "content.xml" not in names:
                raise ImportFileError(f"ODS表格缺少content.xml，文件已损坏。{_RESAVE}")
            return "ods"
    if "[Content_Types].xml" in names and any(n.startswith("xl/") for n in names):
        return "xlsx"
    if any(n.startswith("word/") for n in names):
        raise ImportFileError("文件内容是Word文档，不是Excel表格；请上传Excel台账文件")
    if any(n.startswith("ppt/") for n in names):
        raise ImportFileError("文件内容是PowerPoint演示文稿，不是Excel表格；请上传Excel台账文件")
    raise ImportFileError("文件内容是一个压缩包，但不是Excel工作簿；请上传用Excel或WPS保存的表格")


def _xml(zf: zipfile.ZipFile, part: str) -> Any:
    """Parse a small XML part (workbook, relationships) with defusedxml, DTDs forbidden."""
    try:
        with zf.open(part) as fh:
            return SafeET.fromstring(fh.read(), forbid_dtd=True)
    except KeyError as exc:
        raise ImportFileError(f"工作簿缺少“{part}”部分，文件已损坏。{_RESAVE}") from exc
    except ImportFileError:
        raise
    except Exception as exc:
        raise ImportFileError(f"工作簿的“{part}”部分无法解析（{_short(exc)}）。{_RESAVE}") from exc


def _rels(zf: zipfile.ZipFile, part: str) -> dict[str, tuple[str, str]]:
    """Relationship id → (type, target resolved to a part name) of `part`."""
    folder, name = posixpath.split(part)
    rels_part = posixpath.join(folder, "_rels", name + ".rels")
    if rels_part not in zf.namelist():
        return {}
    result = {}
    for rel in _xml(zf, rels_part).iter(f"{{{_NS_PKG_REL}}}Relationship"):
        target = rel.get("Target", "")
        if rel.get("TargetMode") == "External":
            continue
        resolved = target.lstrip("/") if target.startswith("/") else posixpath.normpath(
            posixpath.join(folder, target))
        result[rel.get("Id", "")] = (rel.get("Type", ""), resolved)
    return result


def _xlsx_sheet_parts(zf: zipfile.ZipFile) -> dict[str, str]:
    """Sheet name → the part holding its XML, from the package and workbook relationships."""
    workbook = "xl/workbook.xml"
    for rel_type, target in _rels(zf, "").values():
        if rel_type.endswith("/officeDocument"):
            workbook = target
    rels = _rels(zf, workbook)
    parts = {}
    for sheet in _xml(zf, workbook).iter(f"{{{_NS_MAIN}}}sheet"):
        rel = rels.get(sheet.get(f"{{{_NS_REL_DOC}}}id", ""))
        name = sheet.get("name", "")
        if name in parts:  # calamine reads the first, and the checks would scan the last
            raise ImportFileError(f"工作簿中有两个都叫“{name}”的工作表，Excel不允许这样，"
                                  f"文件已损坏或是人为构造的。{_RESAVE}")
        if rel:
            parts[name] = rel[1]
    return parts


# Cells are scanned on raw bytes. Every writer seen (Excel, WPS, LibreOffice, openpyxl, POI,
# SheetJS) writes `<c r="B7" ...>` with r first and no namespace prefix; then one findall of
# non-self-closing cells (a self-closing <c/> has no value and calamine skips cells without a
# value) gives every position. A buffer with any other cell tag (r later, r missing, odd
# spacing, a prefix: one search each finds it) is walked tag by tag instead, whatever the
# prefix: slower, same bounds. (The root's prefix is not trusted: a comment before the root
# could name another, and the fast path would then see no cells at all.)
#: Tag patterns stop at the next "<" (never in a tag: XML forbids it in attribute values) and
#: never backtrack (possessive), so a hostile run of "<c <c <c …" without ">" costs linear
#: time: with `[^>]*?` each of its n starts scanned to the far end, n² steps.
_ROW_OR_CELL = re.compile(rb"<(?:[\w.-]+:)?(row|c)(?=[\s/>])([^<>]*+)>")
_ERROR_ATTR = re.compile(rb"(?<![\w:])t\s*=\s*[\"']e[\"']")
_HIDDEN_ATTR = re.compile(rb"(?<![\w:])hidden\s*=\s*[\"'](?:1|true)[\"']")
_REF_ATTR = re.compile(rb"(?<![\w:])r\s*=\s*[\"']\$?([A-Z]{0,3})\$?([0-9]{0,7})[\"']")
_DIMENSION = re.compile(r"^\$?([A-Z]{1,3})\$?([0-9]{1,7})(?::\$?([A-Z]{1,3})\$?([0-9]{1,7}))?$")
#: The fast path's cells (unprefixed, r first), and what sends a buffer to the slow path:
#: an unprefixed cell tag without r first, or anything that may be a prefixed cell tag.
_VALUED = re.compile(rb'<c r="([A-Z]{1,3})([0-9]{1,7})"[^<>]*+(?<!/)>')
_ODD = re.compile(rb'<c(?! r=")[\s/>]')
_PREFIXED = re.compile(rb":c[\s/>]")
#: Any prefix: a cell tag (attributes, with a trailing "/" if self-closing); a row tag; a
#: cell's end, or the next cell's start (then it had no end).
_CELL = re.compile(rb"<(?:[\w.-]+:)?c(?=[\s/>])([^<>]*+)>")
_ROW = re.compile(rb"<(?:[\w.-]+:)?row(?=[\s/>])([^<>]*+)>")
_CELL_END = re.compile(rb"<(/?)(?:[\w.-]+:)?c(?=[\s/>])")


#: Excel's classic seven error values, which calamine reads (as ""); it refuses a sheet
#: holding any newer one (#SPILL!, #CALC!, #FIELD!, #TIMEOUT! … Excel 365 adds more).
_CLASSIC_ERRORS = ("#N/A", "#REF!", "#VALUE!", "#DIV/0!", "#NAME?", "#NUM!", "#NULL!")
#: Excel's error values (a formula failed), the newer ones by their form, as a regular
#: expression; `normalize_table` refuses them in any imported column.
EXCEL_ERROR = r"#(?:N/A|GETTING_DATA|[A-Z][A-Z0-9_/]{0,19}[!?])"
_ERROR_VALUE = re.compile(rb"<(?:[\w.-]+:)?v>(" + EXCEL_ERROR.encode() + rb")<")
#: A cached value that is not a classic error, for `_classic_errors_only`.
_NEWER_ERROR_VALUE = re.compile(
    rb"(<(?:[\w.-]+:)?v>)(?!#(?:"
    + b"|".join(re.escape(text[1:]).encode() for text in _CLASSIC_ERRORS)
    + rb")<)" + EXCEL_ERROR.encode() + rb"(?=<)")


@dataclass
class _SheetMarks:
    """What a sheet's XML (.xlsx) or BIFF records (.xls) say that calamine does not return:
    hidden columns and rows (0-based) and the error cells' texts by (row, column). calamine
    reads an error cell (`t="e"`, BOOLERR, a FORMULA's cached error: #N/A, #REF! …) as "",
    which showed as 缺少室号 or a blank owner; the reader puts the text back for
    `normalize_table` to refuse."""

    #: Error cells past the sheet's `max_cells` (only the same cell written again and again
    #: gets there) refuse the sheet; the rows of hidden rows past `max_rows` are not kept.
    limits: _Limits
    hidden_columns: set[int] = field(default_factory=set)
    hidden_rows: set[int] = field(default_factory=set)
    #: The error cells, compactly (9 bytes each): row, column (0-based), a code into
    #: `error_texts` (the classic seven first, then each other text as it is met).
    error_rows: array = field(default_factory=lambda: array("I"))
    error_cols: array = field(default_factory=lambda: array("I"))
    error_codes: bytearray = field(default_factory=bytearray)
    error_texts: list[str] = field(default_factory=lambda: list(_CLASSIC_ERRORS))

    def scan(self, buffer: bytes, name: str, final: bool) -> int:
        """Collect the hidden rows and error cells of `buffer` (whole tags only); return how
        much of it was consumed: up to an error cell whose end is in the next chunk."""
        # Every writer spells them so; the cheaper test saves ≈0.06 s per 100k rows (the
        # 44 MB of a bench sheet are searched once for each). Other spellings read as before.
        if b'hidden="' in buffer:
            for match in _ROW.finditer(buffer):
                attrs = match.group(1)
                ref = _REF_ATTR.search(attrs) if _HIDDEN_ATTR.search(attrs) else None
                if ref and ref.group(2) and 0 < int(ref.group(2)) <= self.limits.max_rows:
                    self.hidden_rows.add(int(ref.group(2)) - 1)
        if b't="e"' not in buffer:
            return len(buffer)
        for match in _CELL.finditer(buffer):
            attrs = match.group(1)
            if attrs.endswith(b"/") or not _ERROR_ATTR.search(attrs):
                continue  # not an error cell, or <c … t="e"/> with no value to show
            # The cell's end, looked for up to the next cell's start only (linear time).
            end = _CELL_END.search(buffer, match.end())
            if end is None:
                if not final:
                    return match.start()
                break
            if not end.group(1):
                continue  # the next cell starts before this one ends: malformed, left as is
            ref = _REF_ATTR.search(attrs)
            if not (ref and ref.group(1) and ref.group(2)):
                continue  # a cell without its reference cannot be placed (no program writes it)
            value = _ERROR_VALUE.search(buffer, match.end(), end.start())
            if value is not None:  # no cached value (<c t="e"></c>): empty, as Excel shows it
                self.add_error(int(ref.group(2)) - 1,
                               _column_number(ref.group(1).decode()) - 1,
                               value.group(1).decode(), name)
        return len(buffer)

    def add_error(self, row: int, col: int, text: str, name: str) -> None:
        """Note an error cell (0-based). More of them than the sheet may have cells means the
        same cells written again and again: refused, so memory stays bounded."""
        if row >= self.limits.max_rows or col >= 16384:
            return  # past what is read (the extent check refuses such a sheet anyway)
        if text not in self.error_texts and len(self.error_texts) < 256:
            self.error_texts.append(text)
        self.error_rows.append(row)
        self.error_cols.append(col)
        self.error_codes.append(self.error_texts.index(text) if text in self.error_texts else 0)
        if len(self.error_codes) > self.limits.max_cells:
            raise ImportFileError(
                f"工作表“{name}”中的Excel错误值单元格超过{self.limits.max_cells:,}个，多于表格能有的"
                f"单元格，文件已损坏或是人为构造的。{_RESAVE}")

    def has_newer_errors(self) -> bool:
        """Whether an error cell holds one of the newer errors calamine refuses (#SPILL! …)."""
        return len(self.error_texts) > len(_CLASSIC_ERRORS)

    def put_errors(self, rows: list[list[Any]]) -> None:
        """Write each error cell's text (#N/A …) where calamine left "" for it."""
        height = len(rows)
        for r, c, code in zip(self.error_rows, self.error_cols, self.error_codes, strict=True):
            if r < height and c < len(rows[r]) and rows[r][c] == "":
                rows[r][c] = self.error_texts[code]


@dataclass
class _Extent:
    """The furthest row and column (1-based) holding a value, as the scan goes."""

    name: str
    limits: _Limits
    max_row: int = 0
    max_col: int = 0
    row: int = 0  # the current row while walking rows without r=

    def add(self, row: int, col: int) -> None:
        if row > self.max_row:
            self.max_row = row
        if col > self.max_col:
            self.max_col = col
        if self.max_row > self.limits.max_rows:
            raise ImportFileError(_too_many_rows(self.name, self.limits.max_rows))
        if self.max_row * self.max_col > self.limits.max_cells:
            raise ImportFileError(
                f"工作表“{self.name}”的内容一直延伸到第{self.max_row:,}行、第{self.max_col:,}列"
                f"（{_column_letters(self.max_col)}{self.max_row}），读取需要"
                f"{self.max_row * self.max_col:,}个单元格，超过{self.limits.max_cells:,}的上限；"
                "通常是表格很远处有零星内容，请删除多余的行和列后重新保存，或拆分后分批导入")


def _check_xlsx_sheet(zf: zipfile.ZipFile, part: str, name: str,
                      unpacked: _Unpacked) -> _SheetMarks:
    """Refuse a sheet whose declared or real extent is too large, whose real size takes the
    file over the limit, or that carries a DTD; return its hidden columns and rows and its
    error cells."""
    limits = unpacked.limits
    marks = _SheetMarks(limits)
    hidden = marks.hidden_columns
    try:
        with zf.open(part) as fh:
            for seen, (_event, element) in enumerate(
                    SafeET.iterparse(fh, events=("start",), forbid_dtd=True)):
                tag = element.tag.rsplit("}", 1)[-1]
                if seen > 100_000:
                    raise ImportFileError(
                        f"工作表“{name}”在数据之前有异常多的设置项，文件已损坏或是人为构造的。{_RESAVE}")
                if tag == "dimension":
                    _check_dimension(element.get("ref", ""), name, limits)
                elif tag == "col" and element.get("hidden") in ("1", "true"):
                    first = int(element.get("min", "0"))
                    last = min(int(element.get("max", "0")), 16384)
                    hidden.update(range(max(first, 1) - 1, max(last, 0)))
                elif tag == "sheetData":
                    break
    except ImportFileError:
        raise
    except (DTDForbidden, EntitiesForbidden) as exc:
        raise _dtd_refused(part) from exc
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise _undecompressable(part, exc) from exc
    except Exception as exc:
        raise ImportFileError(f"工作表“{name}”的数据无法解析（{_short(exc)}）。{_RESAVE}") from exc

    extent = _Extent(name, limits)
    carry = b""
    info = zf.getinfo(part)
    for chunk in unpacked.chunks(zf, info, _SCAN_CHUNK):
        buffer = carry + chunk
        cut = buffer.rfind(b"<")  # every tag before the last "<" is complete
        head = buffer[:cut] if cut > 0 else b""
        if head:  # … and an error cell is scanned whole, its value with it
            cut = marks.scan(head, name, final=False)
        if cut <= 0:
            carry = buffer
            if len(carry) > 2 * _SCAN_CHUNK:
                raise ImportFileError(f"工作表“{name}”中有异常长的XML标签，文件已损坏或是人为构造的。{_RESAVE}")
            continue
        _scan_cells(head[:cut] if cut < len(head) else head, extent)
        carry = buffer[cut:]
        if len(carry) > _SCAN_CHUNK:
            raise ImportFileError(f"工作表“{name}”中有异常长的XML标签，文件已损坏或是人为构造的。{_RESAVE}")
    marks.scan(carry, name, final=True)
    _scan_cells(carry, extent)
    return marks


def _check_dimension(ref: str, name: str, limits: _Limits) -> None:
    match = _DIMENSION.match(ref.strip().upper())
    if not match:
        return  # calamine ignores a dimension it cannot read; the cell scan decides
    first_col, first_row, last_col, last_row = match.groups()
    # Rows are read from spreadsheet row 1 and column A, so the extent counts from there.
    rows = int(last_row or first_row)
    cols = _column_number(last_col or first_col)
    if rows * cols > limits.max_cells:
        raise ImportFileError(
            f"工作表“{name}”声明的范围是{ref}（{rows:,}行×{cols:,}列，共{rows * cols:,}个单元格），"
            f"超过{limits.max_cells:,}个单元格的上限，读取前已拒绝；"
            "请删除多余的行和列后重新保存，或拆分后分批导入")
    if rows > limits.max_rows:
        raise ImportFileError(_too_many_rows(name, limits.max_rows) + f"（工作表声明的范围是{ref}）")


def _scan_cells(buffer: bytes, extent: _Extent) -> None:
    if not buffer:
        return
    if _ODD.search(buffer) is None and _PREFIXED.search(buffer) is None:
        refs = _VALUED.findall(buffer)
        if refs:
            rows = max(map(int, {row for _, row in refs}))
            cols = max(_column_number(col.decode()) for col in {col for col, _ in refs})
            extent.add(rows, cols)
            extent.row = max(extent.row, rows)
        return
    col = 0
    for match in _ROW_OR_CELL.finditer(buffer):
        tag, attrs = match.group(1), match.group(2)
        closed = attrs.endswith(b"/")
        ref = _REF_ATTR.search(attrs)
        if tag == b"row":
            extent.row = int(ref.group(2)) if ref and ref.group(2) else extent.row + 1
            col = 0
            continue
        if ref and ref.group(1):
            col = _column_number(ref.group(1).decode())
            row = int(ref.group(2)) if ref.group(2) else extent.row
        else:
            col, row = col + 1, extent.row
        if not closed:
            extent.add(max(row, 1), col)


def _column_number(letters: str) -> int:
    number = 0
    for ch in letters:
        number = number * 26 + (ord(ch) - 64)
    return number


def _column_letters(number: int) -> str:
    letters = ""
    while number > 0:
        number, rem = divmod(number - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


# ODS: content.xml holds every table; calamine expands repeated rows and columns at open time.
_ODS_TOKEN = re.compile(
    rb"<(/?)(?:[\w.-]+:)?(table|table-row|table-cell|covered-table-cell)(?=[\s/>])([^<>]*+)>")
_ODS_NAME = re.compile(rb"(?<![\w.-])(?:[\w.-]+:)?name\s*=\s*[\"']([^\"']*)[\"']")
_ODS_ROWS = re.compile(rb"number-rows-repeated\s*=\s*[\"']([0-9]{1,12})[\"']")
_ODS_COLS = re.compile(rb"number-columns-repeated\s*=\s*[\"']([0-9]{1,12})[\"']")


def _check_ods_extent(zf: zipfile.ZipFile, unpacked: _Unpacked) -> None:
    """Refuse an ODS whose tables reach too far; its content.xml is streamed once, through
    `unpacked` (real size and DTD checked in the same pass, as for an xlsx worksheet)."""
    limits = unpacked.limits
    state: dict[str, Any] = {"extent": None, "row": 0, "col": 0, "repeat": 1}

    def walk(buffer: bytes) -> None:
        for match in _ODS_TOKEN.finditer(buffer):
            end, tag, attrs = match.groups()
            closed = attrs.endswith(b"/")
            if tag == b"table":
                if not end:
                    name = _ODS_NAME.search(attrs)
                    label = name.group(1).decode("utf-8", "replace") if name else "?"
                    state.update(extent=_Extent(label, limits), row=0, col=0, repeat=1)
                continue
            extent = state["extent"]
            if extent is None:
                continue
            if tag == b"table-row":
                if end:
                    state["row"] += state["repeat"]
                    continue
                repeat = _ODS_ROWS.search(attrs)
                state.update(repeat=int(repeat.group(1)) if repeat else 1, col=0)
                if closed:
                    state["row"] += state["repeat"]
                continue
            if end:
                continue
            repeat = _ODS_COLS.search(attrs)
            state["col"] += int(repeat.group(1)) if repeat else 1
            if not closed or b"value-type" in attrs:
                # The last row of a repeated row group, the last column of a repeated cell.
                extent.add(state["row"] + state["repeat"], state["col"])

    carry = b""
    for chunk in unpacked.chunks(zf, zf.getinfo("content.xml"), _SCAN_CHUNK):
        buffer = carry + chunk
        cut = buffer.rfind(b"<")
        if cut <= 0:
            carry = buffer
            continue
        walk(buffer[:cut])
        carry = buffer[cut:]
        if len(carry) > _SCAN_CHUNK:
            raise ImportFileError(f"ODS表格中有异常长的XML标签，文件已损坏或是人为构造的。{_RESAVE}")
    walk(carry)


# ---------------------------------------------------------------------------------------------
# .xls: an OLE2 compound file holding a BIFF "Workbook" stream


_FREE, _END_OF_CHAIN = 0xFFFFFFFF, 0xFFFFFFFE
#: BIFF cell records that carry a value: FORMULA, NUMBER, LABEL, BOOLERR, RK, LABELSST, RSTRING.
_BIFF_CELLS = frozenset((0x0006, 0x0203, 0x0204, 0x0205, 0x027E, 0x00FD, 0x00D6))
_BIFF_MULRK, _BIFF_BOF, _BIFF_EOF, _BIFF_BOUNDSHEET = 0x00BD, 0x0809, 0x000A, 0x0085
_BIFF_FORMULA, _BIFF_BOOLERR, _BIFF_ROW, _BIFF_COLINFO = 0x0006, 0x0205, 0x0208, 0x007D
_BIFF_CODEPAGE = 0x0042
#: BIFF8 error codes (BOOLERR, or a FORMULA's cached result) → the text Excel shows.
_BIFF_ERRORS = {0x00: "#NULL!", 0x07: "#DIV/0!", 0x0F: "#VALUE!", 0x17: "#REF!",
                0x1D: "#NAME?", 0x24: "#NUM!", 0x2A: "#N/A", 0x2B: "#GETTING_DATA"}


def _check_xls(data: bytes, limits: _Limits) -> dict[int, _SheetMarks]:
    """Refuse an .xls that is truncated, encrypted, not a workbook, or whose sheets reach too
    far (calamine reads every sheet of an .xls at open time, each as a dense range); return
    each sheet's hidden rows and columns and error cells (`_SheetMarks`), by the sheet's
    position among the BOUNDSHEET records (the order calamine lists the sheets in)."""
    stream = _cfb_workbook_stream(data)
    names: dict[int, tuple[int, str]] = {}  # a sheet's BOF offset → (position, name)
    found: dict[int, _SheetMarks] = {}
    stack: list[tuple[_Extent, int] | None] = []  # substreams nest (a chart in a worksheet)
    current: tuple[_Extent, int] | None = None
    biff8, codepage = True, "cp1252"
    hidden_total = 0  # hidden rows kept, over all sheets: bounded like a sheet's cells

    def marks() -> _SheetMarks:
        assert current is not None
        if current[1] not in found:
            found[current[1]] = _SheetMarks(limits)
        return found[current[1]]

    pos, end = 0, len(stream)
    while pos + 4 <= end:
        rtype, length = struct.unpack_from("<HH", stream, pos)
        body = pos + 4
        if body + length > end:
            raise ImportFileError(_truncated_xls("工作簿数据在记录中间结束"))
        if rtype == _BIFF_BOF:
            stack.append(current)
            current = None
            if pos > 0:
                position, name = names.get(pos, (-1, "?"))
                current = (_Extent(name, limits), position)
            if pos == 0 and length >= 2:  # the workbook's own BOF: 0x0600 BIFF8, 0x0500 BIFF5
                biff8 = struct.unpack_from("<H", stream, body)[0] != 0x0500
        elif rtype == _BIFF_EOF:
            current = stack.pop() if stack else None
        elif rtype == _BIFF_CODEPAGE and length >= 2:
            codepage = _codec(struct.unpack_from("<H", stream, body)[0])
        elif rtype == _BIFF_BOUNDSHEET and length >= 8:
            offset = struct.unpack_from("<I", stream, body)[0]
            names[offset] = (len(names),
                             _boundsheet_name(stream[body + 6:body + length], biff8, codepage))
        elif current is None:
            pass
        elif length >= 4 and rtype in _BIFF_CELLS:
            row, col = struct.unpack_from("<HH", stream, body)
            current[0].add(row + 1, col + 1)
            if rtype in (_BIFF_BOOLERR, _BIFF_FORMULA):
                code = _xls_error(rtype, stream[body:body + length])
                if code is not None:
                    marks().add_error(row, col, _BIFF_ERRORS.get(code, "#N/A"), current[0].name)
        elif rtype == _BIFF_MULRK and length >= 6:
            row = struct.unpack_from("<H", stream, body)[0]
            last = struct.unpack_from("<H", stream, body + length - 2)[0]
            current[0].add(row + 1, last + 1)
        elif rtype == _BIFF_ROW and length >= 14:
            if struct.unpack_from("<H", stream, body + 12)[0] & 0x0020:  # fDyZero: hidden
                marks().hidden_rows.add(struct.unpack_from("<H", stream, body)[0])
                hidden_total += 1
                if hidden_total > limits.max_cells:
                    raise ImportFileError(
                        f"工作簿中标记为隐藏的行超过{limits.max_cells:,}个，文件已损坏或是人为构造的。"
                        f"{_RESAVE}")
        elif rtype == _BIFF_COLINFO and length >= 10:
            first, last, _width, _xf, flags = struct.unpack_from("<HHHHH", stream, body)
            if flags & 0x0001:  # fHidden
                marks().hidden_columns.update(range(first, min(last, 255) + 1))
        pos = body + length
    return found


def _codec(codepage: int) -> str:
    """The Python codec of an .xls CODEPAGE (936 → cp936, i.e. GBK; 1200 is UTF-16, which
    BIFF8 names do not need); cp1252 when Python has none."""
    name = {1200: "utf-16-le", 367: "ascii", 10000: "mac_roman", 32768: "mac_roman",
            32769: "cp1252"}.get(codepage, f"cp{codepage}")
    try:
        return codecs.lookup(name).name
    except LookupError:
        return "cp1252"


def _xls_error(rtype: int, record: bytes) -> int | None:
    """The error code of a BOOLERR record (fError set) or of a FORMULA's cached result
    (type 2, marked by 0xFFFF in its last two bytes), else None: calamine reads both as ""."""
    if rtype == _BIFF_BOOLERR and len(record) >= 8 and record[7] == 1:
        return record[6]
    if (rtype == _BIFF_FORMULA and len(record) >= 14 and record[6] == 0x02
            and record[12:14] == b"\xff\xff"):
        return record[8]
    return None


def _boundsheet_name(raw: bytes, biff8: bool = True, codepage: str = "cp1252") -> str:
    """A BOUNDSHEET record's sheet name: BIFF8 a length, flags (bit 0: UTF-16) and the
    characters; BIFF5 (Excel 95) a length and bytes in the workbook's code page."""
    if not biff8:
        return raw[1:1 + raw[0]].decode(codepage, "replace") if raw else "?"
    if len(raw) < 2:
        return "?"
    count, flags = raw[0], raw[1]
    if flags & 0x1:
        return raw[2:2 + 2 * count].decode("utf-16-le", "replace")
    return raw[2:2 + count].decode("latin-1")


def _truncated_xls(detail: str) -> str:
    return (f"旧版Excel（.xls）文件已损坏或不完整（{detail}），可能是上传中断或文件只复制了一部分。"
            f"{_RESAVE}")


def _cfb_workbook_stream(data: bytes) -> bytes:
    """The "Workbook" (BIFF8) or "Book" (BIFF5) stream of an OLE2 compound file, read with
    every chain bounded by the file's own sector count (no loops, no reads past the end)."""
    if len(data) < 512:
        raise ImportFileError(_truncated_xls("文件头不完整"))
    (major, _order, shift, mini_shift) = struct.unpack_from("<HHHH", data, 0x1A)
    if shift not in (9, 12) or mini_shift != 6:
        raise ImportFileError(_truncated_xls("文件头无效"))
    sector_size = 1 << shift
    n_fat, dir_start = struct.unpack_from("<II", data, 0x2C)
    cutoff, minifat_start, n_minifat, difat_start, n_difat = struct.unpack_from("<IIIII", data, 0x38)
    n_sectors = (len(data) - sector_size) // sector_size + (1 if len(data) % sector_size else 0)
    per_sector = sector_size // 4

    def sector(index: int) -> bytes:
        offset = (index + 1) * sector_size
        if index >= n_sectors or offset >= len(data):
            raise ImportFileError(_truncated_xls("数据扇区超出了文件末尾"))
        # Some writers cut the last sector short; read it as zero-padded.
        return data[offset:offset + sector_size].ljust(sector_size, b"\0")

    difat = [s for s in struct.unpack_from("<109I", data, 0x4C) if s not in (_FREE, _END_OF_CHAIN)]
    next_difat, seen = difat_start, 0
    while next_difat not in (_FREE, _END_OF_CHAIN) and seen < min(n_difat, n_sectors):
        entries = struct.unpack(f"<{per_sector}I", sector(next_difat))
        difat.extend(s for s in entries[:-1] if s not in (_FREE, _END_OF_CHAIN))
        next_difat, seen = entries[-1], seen + 1
    if n_fat > n_sectors or len(difat) < n_fat:
        raise ImportFileError(_truncated_xls("分配表不完整"))
    fat = array("I")
    for index in difat[:n_fat]:
        fat.frombytes(sector(index))

    def chain(start: int, table: array, fetch: Any, limit: int) -> bytes:
        out, index, steps = [], start, 0
        while index not in (_END_OF_CHAIN, _FREE):
            if index >= len(table) or steps >= limit:
                raise ImportFileError(_truncated_xls("数据链断裂"))
            out.append(fetch(index))
            index, steps = table[index], steps + 1
        return b"".join(out)

    directory = chain(dir_start, fat, sector, n_sectors)
    entries = []
    for offset in range(0, len(directory) - 127, 128):
        entry = directory[offset:offset + 128]
        name_len = min(struct.unpack_from("<H", entry, 0x40)[0], 64)
        name = entry[:max(name_len - 2, 0)].decode("utf-16-le", "replace")
        kind = entry[0x42]
        start = struct.unpack_from("<I", entry, 0x74)[0]
        size = struct.unpack_from("<Q", entry, 0x78)[0]
        if major == 3:
            size &= 0xFFFFFFFF
        entries.append((name, kind, start, size))
    if not entries:
        raise ImportFileError(_truncated_xls("目录为空"))
    by_name = {name.lower(): (kind, start, size) for name, kind, start, size in entries}
    if "encryptedpackage" in by_name or "encryptioninfo" in by_name:
        raise ImportFileError(_PASSWORD)
    found = by_name.get("workbook") or by_name.get("book")
    if found is None or found[0] != 2:
        if "worddocument" in by_name:
            raise ImportFileError("文件内容是旧版Word文档（.doc），不是Excel表格；请上传Excel台账文件")
        raise ImportFileError("文件是Office复合文档，但其中没有Excel工作簿数据；请上传用Excel或WPS保存的表格")
    _kind, start, size = found
    if size > len(data) * 2:
        raise ImportFileError(_truncated_xls("工作簿数据的长度无效"))
    if size < cutoff:
        root_start = entries[0][2]
        ministream = chain(root_start, fat, sector, n_sectors)
        minifat = array("I", chain(minifat_start, fat, sector, n_sectors)) if n_minifat else array("I")
        mini_size = 1 << mini_shift

        def mini(index: int) -> bytes:
            offset = index * mini_size
            if offset + mini_size > len(ministream):
                raise ImportFileError(_truncated_xls("小数据块超出范围"))
            return ministream[offset:offset + mini_size]

        stream = chain(start, minifat, mini, len(minifat))
    else:
        stream = chain(start, fat, sector, n_sectors)
    if len(stream) < size:
        raise ImportFileError(_truncated_xls("工作簿数据比声明的短"))
    return stream[:size]


# ---------------------------------------------------------------------------------------------
# CSV


def _decode(data: bytes) -> tuple[str, str]:
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[len(codecs.BOM_UTF8):].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError as exc:
            raise ImportFileError("文件开头标明是UTF-8编码，但内容有无效字符，文件可能已损坏") from exc
    for encoding in ("utf-8", "gbk", "gb18030"):
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise ImportFileError("无法识别文件的文字编码（不是UTF-8、GBK或GB18030），也不是Excel表格；"
                          "请在Excel中另存为.xlsx或“CSV UTF-8（逗号分隔）”后上传")


_DELIMITERS = (",", "\t", ";", "|")
#: A quoted field (its separators are text: "13812345670\t" keeps Excel off a long number).
_QUOTED = re.compile(r'"(?:[^"]|"")*"')


def _csv_delimiter(sample: str) -> str:
    """The separator most lines of `sample` agree on: for each candidate, how many of the
    first 50 non-blank lines hold its most common count (at least 2; quoted fields left out),
    then that count.
    Comma, tab, semicolon (a European Excel's CSV) or bar; comma when nothing agrees."""
    lines = [_QUOTED.sub('""', line) for line in sample.splitlines()[:200] if line.strip()][:50]
    best, chosen = (0, 0), ","
    for candidate in _DELIMITERS:
        counts = [line.count(candidate) for line in lines]
        usual = max(set(counts), key=lambda n: (counts.count(n), n), default=0)
        score = (counts.count(usual), usual) if usual >= 2 else (0, 0)
        if score > best:
            best, chosen = score, candidate
    return chosen


def _read_csv(data: bytes, limits: _Limits) -> RawSheet:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ImportFileError("文件是UTF-16编码的文本（Excel的“Unicode文本”），请在Excel中另存为“CSV UTF-8（逗号分隔）”后上传")
    if b"\x00" in data[:65536]:
        raise ImportFileError("文件内容不是文本表格（含有二进制数据），也不是Excel工作簿；请上传.xlsx、.xls或.csv文件")
    text, encoding = _decode(data)
    sample = text[:65536]
    stripped = sample.lstrip().lower()
    if stripped.startswith(("<html", "<!doctype", "<table", "<?xml")):
        raise ImportFileError("扩展名是.csv，但内容是网页或XML，不是CSV表格；请用Excel打开后另存为.xlsx再上传")
    delimiter = _csv_delimiter(sample)
    rows: list[list[str]] = []
    width = 0
    cells = 0
    try:
        for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
            rows.append(row)
            cells += len(row)
            if len(row) > width:
                width = len(row)
            if len(rows) > limits.max_rows:
                raise ImportFileError(_too_many_rows("CSV", limits.max_rows))
            if cells > limits.max_cells or len(rows) * width > limits.max_cells:
                raise ImportFileError(
                    f"CSV文件超过{limits.max_cells:,}个单元格的上限（第{len(rows):,}行时已有"
                    f"{width:,}列），请拆分后分批导入")
    except csv.Error as exc:
        raise ImportFileError(f"CSV文件格式错误（{_short(exc)}），请在Excel中重新另存为CSV后上传") from exc
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()
    if not rows:
        raise ImportFileError("CSV文件中没有内容（只有空行）")
    for row in rows:
        if len(row) < width:
            row.extend([""] * (width - len(row)))
    return RawSheet(rows=rows, sheet_name="CSV", hidden_columns=None, source_kind="csv",
                    encoding=encoding, sheet_names=("CSV",))


# ---------------------------------------------------------------------------------------------


def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"
    return f"{n} 字节"


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text if len(text) <= 120 else text[:117] + "…"
