"""The household ledger import: a dry-run plan, its commit in one transaction, the rollback
of a committed batch, and the error workbook.

`plan_households` reads nothing but the sheet and the tenant's communities and households: it
finds the header (core aliases and every utility plugin's), drops blank/小计/合计 rows,
normalizes the columns (vectorized, `imports.normalize`), resolves each row's community by
name, computes the household's natural key exactly as the registry does, and decides per row:

- error — a bad cell (phone, ID number, building…), no community or no room, a value too long
  for its column, or the same community + household as an earlier row of the file ("与第N行
  重复": every occurrence after the first);
- create — no such household in the community yet (a community the tenant does not have yet
  is created by the commit);
- update — the household exists and a value the file gives differs (owner, phone, ID number,
  opt-out); an EMPTY cell never erases what the registry holds, and building/unit/room keep
  the registry's spelling (they are the key, equal by definition);
- unchanged — the household exists and the file says nothing new.

`commit_plan` writes a plan in the caller's transaction (the worker commits it, or rolls it
all back): communities through the ORM (change-logged), households in bulk — on PostgreSQL
COPY into a TEMP staging table (COPY refuses tables with row-level security) and then
`INSERT … SELECT … ON CONFLICT (tenant_id, community_id, natural_key) DO NOTHING` for creates
and `DO UPDATE` for updates; on SQLite the same INSERT … ON CONFLICT through executemany —
and one `ImportRow` per data row with the before-image of every update and the after-image of
every written household. Bad rows are simply not written.

`plan_and_commit` is what the commit job runs: the same plan and write, in blocks of rows —
a thread plans block k+1 (pure pandas work, no connection) while this thread has the database
write block k, and the error workbook is forked as soon as every block is checked. The plan is
the same for any block size: duplicates of earlier blocks are carried from block to block.

`rollback_batch` removes the households (and communities) a batch created and restores the
ones it updated to their before-image — unless something later depends on them: a created
household that now has a meter account (or any other row referring to it), a household
changed again after the import (its current values differ from the after-image), a created
community someone has since used. Then it refuses, in Chinese, naming the rows.

Callers serialize imports of a tenant with `lock_tenant_imports` before planning a commit or a
rollback (PostgreSQL: an advisory transaction lock, plus row locks on the households read).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import itertools
import json
import multiprocessing
import os
import re
import signal
import time
import traceback
import unicodedata
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from openpyxl.utils import get_column_letter
from sqlalchemy.orm import Session

from onemeter.audit import append_entries, jsonable
from onemeter.exports import write_report
from onemeter.imports.headers import (
    CORE_ALIASES,
    COUNTER_LEFT,
    FIELD_NAMES,
    DataRows,
    HeaderMatch,
    HeaderNotFound,
    cell_strings,
    drop_non_data_rows,
    fill_merged_down,
    header_key,
    locate_header,
    merge_aliases,
    section_rows,
    split_address,
)
from onemeter.imports.models import (
    COMMITTED,
    CREATE,
    ERROR,
    ROLLED_BACK,
    UNCHANGED,
    UPDATE,
    ImportBatch,
    ImportRow,
)
from onemeter.imports.normalize import (
    frame_from_rows,
    has_text,
    normalize_table,
    normalize_text,
)
from onemeter.imports.reader import ImportFileError, RawSheet
from onemeter.registry.models import Community, Household, MeterAccount
from onemeter.tenancy import Tenant
from onemeter.utilities import utilities, utility_label

#: Fields the household import reads; other recognized columns (户号, 表号 …) are ignored.
HOUSEHOLD_FIELDS = ("community", "address", "building", "unit", "room", "owner_name", "phone",
                    "id_number", "opted_out", "delivery_date")
#: Fields an import may change on an existing household.
UPDATABLE = ("owner_name", "phone", "id_number", "opted_out")
#: Column lengths of the registry (a longer value is an error row, never a failed commit).
_LENGTHS = {"community": 100, "building": 32, "unit": 32, "room": 32, "owner_name": 50,
            "natural_key": 100}
#: Every household column but the tenant: the before- and after-images.
IMAGE_COLUMNS = tuple(c.name for c in Household.__table__.columns if c.name != "tenant_id")
#: Rows per sample list on the preview page.
SAMPLE_ROWS = 20
#: Rows per write step (progress and cancellation are checked between steps).
DEFAULT_CHUNK_ROWS = 5000
#: Ids per IN (…) list: SQLite allows 999 parameters by default, PostgreSQL 65535.
_IN_CHUNK = {"sqlite": 900, "postgresql": 20000}
_LOCK_KEY = 7412  # pg_advisory_xact_lock(7412, tenant): imports of one tenant, one at a time

#: progress(done, total, message)
Progress = Callable[[int, int, str], None]


class RollbackRefused(ValueError):
    """A committed batch that cannot be undone without breaking later changes (Chinese)."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _noop(done: int, total: int, message: str) -> None:
    pass


# ---------------------------------------------------------------------------------------------
# The plan


#: The columns of the preview's sample rows.
_SAMPLE_COLUMNS = ("community", "building", "unit", "room", "owner_name", "phone", "id_number",
                   "opted_out", "reason")
#: Those an error row shows as written when its cleaned value is empty (a refused 室号
#: "1-1101" rather than a blank); not 是否自愿不改造, whose column shows 是 or nothing.
_AS_WRITTEN = tuple(c for c in _SAMPLE_COLUMNS if c not in ("opted_out", "reason"))


@dataclass
class ImportPlan:
    """What a commit would do, row by row (a dry run: nothing is written)."""

    tenant_id: int
    tenant_name: str
    header: HeaderMatch
    data: DataRows
    #: How the sheet was read (stored on the batch; JSON).
    mapping: dict[str, Any]
    #: One row per data row, indexed by spreadsheet row number: action, reason, community,
    #: community_id, household_id, natural_key, building, unit, room, the updatable fields,
    #: opted_out_given, duplicate_of, changes (field → [old, new] for updates).
    rows: pd.DataFrame
    #: household id → the household as it stands (every row the plan updates or leaves).
    existing: dict[int, dict[str, Any]]
    #: name → delivery date (or None) of each community the commit creates.
    new_communities: dict[str, dt.date | None]
    counts: dict[str, int]
    #: Per column of the sheet: index, letter, label, field (None if not imported), key.
    columns: list[dict[str, Any]] = field(default_factory=list)

    def samples(self, limit: int = SAMPLE_ROWS) -> dict[str, list[dict[str, Any]]]:
        """Up to `limit` rows per action, for the preview page (JSON)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for action in (CREATE, UPDATE, UNCHANGED, ERROR):
            part = self.rows[self.rows["action"] == action].head(limit)
            items = []
            for number, row in zip(part.index.tolist(),
                                   part.to_dict("records"), strict=True):
                item = {"row": int(number),
                        **{k: jsonable(_plain(row.get(k))) for k in _SAMPLE_COLUMNS}}
                if action == UPDATE:
                    item["changes"] = jsonable(row.get("changes"))
                if action == ERROR:
                    item["source"] = source = self.source_of(int(number))
                    for key in _AS_WRITTEN:  # a refused cell is shown as the clerk wrote it
                        if item.get(key) in (None, "") and source.get(key) not in (None, ""):
                            item[key] = source[key]
                items.append(item)
            out[action] = items
        return out

    def source_of(self, row_number: int) -> dict[str, Any]:
        """The row's cells as read, keyed like `ImportRow.source`."""
        position = self._positions().get(row_number)
        if position is None:
            return {}
        cells = self.data.rows[position]
        return {col["key"]: jsonable(_cell(cells[col["index"]] if col["index"] < len(cells)
                                            else None))
                for col in self.columns}

    def _positions(self) -> dict[int, int]:
        cached = getattr(self, "_position_cache", None)
        if cached is None:
            cached = {n: i for i, n in enumerate(self.data.row_numbers)}
            self._position_cache = cached
        return cached


def _plain(value: Any) -> Any:
    """numpy/pandas scalars and missing values as plain Python."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _cell(value: Any) -> Any:
    """A cell as it is repeated to the clerk: whole floats as integers, "" as empty."""
    value = _plain(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and not value.strip():
        return None
    return value


def import_aliases(overrides: Mapping[str, Any] | None = None,
                   plugins: Collection[str] | None = None) -> dict[str, tuple[str, ...]]:
    """The header spellings: the core's, the utility plugins' (only those of `plugins`, the
    sub-district's enabled ones, when given: a utility it does not enable is not read into
    its ledger), and the clerk's choices (`overrides` field → header text moves that text
    to the field)."""
    aliases = merge_aliases(CORE_ALIASES, *(spec.header_aliases
                                            for spec in utilities().values()
                                            if plugins is None or spec.plugin in plugins))
    for target_field, target in (overrides or {}).items():
        if not isinstance(target, str) or not target.strip():
            continue
        spellings = {target, target.replace("/", "")}
        keys = {header_key(s) for s in spellings}
        for name in list(aliases):
            aliases[name] = tuple(s for s in aliases[name] if header_key(s) not in keys)
        aliases[target_field] = (*aliases.get(target_field, ()), *sorted(spellings))
    return aliases


def _tenant_aliases(session: Session, tenant_id: int, overrides: Mapping[str, Any] | None
                    ) -> dict[str, tuple[str, ...]]:
    """`import_aliases` for the plugins the tenant enables."""
    tenant = session.get(Tenant, tenant_id)
    return import_aliases(overrides, set(tenant.plugins or []) if tenant is not None else set())


def _header_texts(raw: RawSheet, header: HeaderMatch, width: int) -> list[str]:
    texts = []
    for c in range(width):
        parts: list[str] = []
        for r in header.header_rows:
            row = raw.rows[r] if r < len(raw.rows) else []
            value = _cell(row[c] if c < len(row) else None)
            text = "" if value is None else " ".join(str(value).split())
            if text and text not in parts:
                parts.append(text)
        texts.append("/".join(parts))
    return texts


def _apply_overrides(header: HeaderMatch, overrides: Mapping[str, Any] | None,
                     texts: list[str]) -> HeaderMatch:
    if not overrides:
        return header
    columns = dict(header.columns)
    labels = dict(header.labels)
    keys = [header_key(t.replace("/", "")) for t in texts]
    for name, target in overrides.items():
        if isinstance(target, str):
            # A saved profile names the header: that column, wherever this file puts it,
            # even when another column's header is also a spelling of the field.
            wanted = {header_key(target), header_key(target.replace("/", ""))}
            found = next((c for c, k in enumerate(keys) if k in wanted), None)
            target = found if found is not None else target
        if target is None:
            columns.pop(name, None)
            labels.pop(name, None)
        elif isinstance(target, int) and not isinstance(target, bool):
            for other, index in list(columns.items()):
                if index == target:
                    columns.pop(other)
                    labels.pop(other, None)
            columns[name] = target
            labels[name] = texts[target] if target < len(texts) and texts[target] else \
                f"{get_column_letter(target + 1)}列"
    return dataclasses.replace(header, columns=columns, labels=labels)


def check_overrides(overrides: Any) -> dict[str, Any] | None:
    """The clerk's column choices, checked: field → header text, 0-based index or None.

    Raises ValueError (Chinese) for an unknown field or a value of another type.
    """
    if overrides in (None, {}):
        return None
    if not isinstance(overrides, Mapping):
        raise ValueError("列对应设置的格式不对")
    checked: dict[str, Any] = {}
    for name, target in overrides.items():
        if name not in HOUSEHOLD_FIELDS:
            raise ValueError(f"未知的字段“{name}”：可对应的字段是"
                             + "、".join(FIELD_NAMES.get(f, f) for f in HOUSEHOLD_FIELDS))
        if target is not None and not (isinstance(target, str) and target.strip()) and not (
                isinstance(target, int) and not isinstance(target, bool) and 0 <= target < 16384):
            raise ValueError(f"字段“{FIELD_NAMES.get(name, name)}”的对应列无效：应为列名或列号")
        checked[name] = target.strip() if isinstance(target, str) else target
    return checked


def _existing_households(session: Session, tenant_id: int, community_ids: Sequence[int], *,
                         lock: bool) -> pd.DataFrame:
    table = Household.__table__
    frames = []
    ids = sorted(set(community_ids))
    for part in _chunked(session, ids):
        query = (sa.select(*(table.c[name] for name in IMAGE_COLUMNS))
                 .where(table.c.tenant_id == tenant_id, table.c.community_id.in_(part)))
        if lock and session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        result = session.execute(query)
        frames.append(pd.DataFrame(result.all(), columns=list(IMAGE_COLUMNS), dtype=object))
    if not frames:
        return pd.DataFrame(columns=list(IMAGE_COLUMNS), dtype=object)
    return pd.concat(frames, ignore_index=True)


#: Data rows per block of a plan: a block is normalized and classified on its own (the
#: duplicates of earlier blocks carried over), so a commit can write one block while the next
#: is planned (`plan_and_commit`). The result is the same for any block size.
DEFAULT_BLOCK_ROWS = 20000


@dataclass
class _Sheet:
    """What every block of one sheet's plan shares: the header, the tenant's communities as
    they were before the import, and what earlier blocks have seen."""

    tenant_id: int
    tenant_name: str
    raw: RawSheet
    header: HeaderMatch
    used_header: HeaderMatch
    texts: list[str]
    width: int
    ignored: list[str]
    overrides: dict[str, Any] | None
    #: community name (as written and as normalized) → id, the registry's before the import.
    lookup: dict[str, int]
    #: duplicate key → the row number of its first occurrence, over the blocks classified so
    #: far (the classifying thread's alone).
    first_seen: dict[str, int] = field(default_factory=dict)
    #: community name → the first delivery date the file gives for it, over the blocks
    #: checked against the registry so far (the connection's thread's alone, like the next).
    first_dates: dict[str, Any] = field(default_factory=dict)
    #: The registry's households of the communities read so far, as they were before this
    #: import wrote anything: a later block reuses them instead of reading (and locking)
    #: again, with what earlier blocks have just written.
    households: pd.DataFrame | None = None
    households_of: set[int] = field(default_factory=set)
    #: The community every row belongs to, from a title line ("小区名称：桂园小区") of a sheet
    #: with neither a 小区 nor an 地址 column (one community per sheet); else None.
    title_community: str | None = None
    #: Rows (0-based) of section titles merged across the table (`section_rows`).
    sections: frozenset[int] = frozenset()

    @functools.cached_property
    def columns(self) -> list[dict[str, Any]]:
        """Per column of the sheet: index, letter, label, field, key (`ImportPlan.columns`)."""
        return _sheet_columns(self.used_header, self.texts, self.width)

    def blocks(self, block_rows: int) -> list[tuple[int, int]]:
        """(start, stop) list positions of the blocks below the header. The first block is a
        quarter of the others (at least 1,000 rows): the writing starts once it is planned."""
        start, end = self.header.data_start, len(self.raw.rows)
        size = max(1, int(block_rows))
        first = min(size, max(1000, size // 4))
        bounds = [start, *range(start + first, end, size), end]
        return [(a, b) for a, b in itertools.pairwise(bounds) if b > a] or [(start, end)]


def _prepare_sheet(session: Session, tenant_id: int, raw: RawSheet,
                   overrides: dict[str, Any] | None) -> _Sheet:
    """The header and the community lookup (the plan's only reads before the households).

    Raises ImportFileError (Chinese) when the sheet has no recognizable header or lacks the
    community or room columns."""
    tenant = session.get(Tenant, tenant_id)
    header = locate_header(raw.rows, _tenant_aliases(session, tenant_id, overrides),
                           merged=raw.merged, hidden=raw.hidden_columns)
    if raw.merged:  # 小区/楼栋 merged down over their households: every row gets the value
        fill_merged_down(raw.rows, raw.merged, header.data_start)
    data_width = max((len(r) for r in raw.rows[header.data_start:]), default=0)
    width = max(data_width, max(header.columns.values(), default=-1) + 1)
    texts = _header_texts(raw, header, width)
    header = _apply_overrides(header, overrides, texts)
    used = {f: c for f, c in header.columns.items() if f in HOUSEHOLD_FIELDS}
    ignored = sorted(f for f in header.columns if f not in HOUSEHOLD_FIELDS)
    if "room" not in used and "address" not in used:
        raise ImportFileError("表中没有“室号”列（也没有可拆分出室号的“地址”列），无法导入住户；"
                              "请检查表头，或在预览页指定哪一列是室号")
    title_community = None
    if "community" not in used and "address" not in used:
        title_community = _title_community(raw.rows[:header.header_row])
        if title_community is None:
            raise ImportFileError("表中没有“小区”列（也没有含小区名称的“地址”列，标题中也没有"
                                  "“小区名称：…”），无法导入住户；请检查表头，或在预览页指定哪一列是小区")
    used_header = dataclasses.replace(header, columns=used,
                                      labels={f: header.labels.get(f, texts[c])
                                              for f, c in used.items()})
    # Communities: by name as normalized (spaces, full-width), exact spelling first.
    known = session.execute(sa.select(Community.id, Community.name)
                            .where(Community.tenant_id == tenant_id)
                            .order_by(Community.id)).all()
    lookup: dict[str, int] = {}
    if known:
        names = pd.Series([name for _, name in known], dtype=object)
        cleaned, _ = normalize_text(names)
        for (cid, name), clean in zip(known, cleaned.tolist(), strict=True):
            lookup.setdefault(name, cid)
            if clean is not None:
                lookup.setdefault(clean, cid)
    return _Sheet(tenant_id=tenant_id, tenant_name=tenant.name if tenant else "", raw=raw,
                  header=header, used_header=used_header, texts=texts, width=width,
                  ignored=ignored, overrides=overrides, lookup=lookup,
                  title_community=title_community,
                  sections=section_rows(raw.merged, header) if raw.merged else frozenset())


#: "小区名称：" (or 小区名/小区/项目名称) in a title line, and with the name after it (up to
#: the next space).
_TITLE_LABEL = re.compile(r"(?:小区名称|小区名|小区|项目名称)\s*:")
_TITLE_COMMUNITY = re.compile(_TITLE_LABEL.pattern + r"\s*([^\s:]+)")


def _title_community(rows: Sequence[Sequence[Any]]) -> str | None:
    """The community a title line above the header names: "小区名称：桂园小区" in one cell, or
    "小区名称：" with the name in the next filled cell of the row. None without one."""
    for row in rows:
        cells = [unicodedata.normalize("NFKC", str(v)).strip() if v is not None else ""
                 for v in row]
        for i, text in enumerate(cells):
            found = _TITLE_COMMUNITY.search(text)
            if found:
                return found.group(1)
            if _TITLE_LABEL.fullmatch(text):
                following = next((c for c in cells[i + 1:] if c), None)
                if following:
                    return following
    return None


def pick_sheet(session: Session, tenant_id: int, raw: RawSheet,
               overrides: Mapping[str, Any] | None,
               read_sheet: Callable[[str], RawSheet]) -> RawSheet:
    """The worksheet holding the ledger: `raw` (the first visible sheet with data) when its
    header is recognized, else the first other visible sheet whose header is (`read_sheet`
    reads one by name; a sheet the reader refuses is passed over). A workbook often opens
    with a 填表说明 or cover sheet. When no sheet has a header, `raw`: the plan then says so."""
    if len(raw.sheet_names) < 2:
        return raw
    aliases = _tenant_aliases(session, tenant_id, overrides)

    def has_header(sheet: RawSheet) -> bool:
        try:
            locate_header(sheet.rows, aliases, merged=sheet.merged, hidden=sheet.hidden_columns)
        except HeaderNotFound:
            return False
        return True

    if has_header(raw):
        return raw
    for name in raw.sheet_names:
        if name == raw.sheet_name:
            continue
        try:
            other = read_sheet(name)
        except ImportFileError:
            continue
        if has_header(other):
            return other
    return raw


@dataclass
class _Block:
    """One block's rows as classified without the database's households (`_classify`)."""

    data: DataRows
    rows: pd.DataFrame
    duplicates: int
    #: community name → the first delivery date this block gives for it.
    dates: dict[str, Any]


def _classify(sheet: _Sheet, start: int, stop: int) -> _Block:
    """Normalize and check the data rows at list positions [start, stop) — no database: safe
    in a thread beside the connection's owner. Blocks must be classified in sheet order (the
    duplicates of earlier blocks are looked up in, and this block's added to, `sheet`)."""
    data = drop_non_data_rows(sheet.raw.rows, sheet.header, start=start, stop=stop,
                              sections=sheet.sections)
    used_header = sheet.used_header
    frame = frame_from_rows(data, used_header)
    if sheet.title_community is not None:
        frame = frame.assign(community=sheet.title_community)
    norm = normalize_table(frame, labels=used_header.labels)
    d = norm.data
    if "community" not in d.columns and "address" in frame.columns:
        parts = split_address(frame["address"])
        community = parts["community"]
        if "room" in frame.columns:  # beside its own 室号 column, an address that is not one
            named = parts["room"].isna() & ~cell_strings(d["address"]).str.contains(  # names
                COUNTER_LEFT, regex=True)  # the community; one naming a staircase does not
            community = community.where(community.notna(), d["address"].where(named))
        d["community"] = community
    for name in ("community", "building", "unit", "room", *UPDATABLE):
        if name not in d.columns:
            d[name] = pd.Series(None, index=d.index, dtype=object)

    # --- reasons, vectorized ------------------------------------------------------------
    reasons: list[pd.Series] = []
    errors = norm.errors
    if len(errors):
        text = (errors["column"].astype(str) + "：" + errors["reason"].astype(str))
        reasons.append(text.groupby(errors["row"].to_numpy()).agg("；".join))
    room_errors = errors.loc[errors["field"].isin(["room", "address"]), "row"]
    bad_room = pd.Series(d.index.isin(room_errors.to_numpy()), index=d.index)
    missing_community = d["community"].isna()
    missing_room = d["room"].isna() & ~bad_room
    reasons.append(pd.Series("缺少小区名称", index=d.index)[missing_community & ~bad_room])
    reasons.append(pd.Series("缺少室号", index=d.index)[missing_room])
    for name, limit in _LENGTHS.items():
        if name == "natural_key" or name not in d.columns:
            continue
        long = cell_strings(d[name]).str.len() > limit
        label = used_header.labels.get(name, FIELD_NAMES.get(name, name))
        reasons.append(pd.Series(f"{label}过长（最多{limit}个字）", index=d.index)[long])

    keyed = d["community"].notna() & d["room"].notna()
    natural_key = (cell_strings(d["building"]) + "-" + cell_strings(d["unit"]) + "-"
                   + cell_strings(d["room"]))
    natural_key = natural_key.where(keyed, None)
    too_long_key = keyed & (natural_key.str.len() > _LENGTHS["natural_key"])
    reasons.append(pd.Series("楼栋、单元、室号合计过长", index=d.index)[too_long_key])
    keyed &= ~too_long_key

    community_id = d["community"].map(sheet.lookup)
    community_id = pd.array(pd.to_numeric(community_id), dtype="Int64")

    # Duplicates inside the file: the same community and household again (earlier blocks
    # included). A known community by its id (two spellings of one name are one community).
    community_part = pd.Series(community_id, index=d.index).astype(object)
    community_part = ("#" + cell_strings(community_part)).where(community_part.notna(),
                                                            "=" + cell_strings(d["community"]))
    dup_key = community_part + "\x1f" + natural_key.fillna("")
    keys = dup_key[keyed]
    numbers = pd.Series(d.index.to_numpy(), index=d.index)
    first = numbers[keyed].groupby(keys.to_numpy()).transform("min")
    if sheet.first_seen and len(keys):
        earlier = keys.map(sheet.first_seen)
        first = first.where(earlier.isna(), earlier).astype("int64")
    own = first == numbers[keyed]
    sheet.first_seen.update(zip(keys[own].tolist(), first[own].tolist(), strict=True))
    first = first.reindex(d.index)
    is_duplicate = (first.notna() & (first != numbers)).astype(bool)
    duplicate_of = pd.Series(first.fillna(0).astype("int64"), index=d.index,
                             dtype="Int64").where(is_duplicate)
    reasons.append(("与第" + duplicate_of[is_duplicate].astype(str) + "行重复")
                   .astype(object))

    reason = pd.Series([None] * len(d), index=d.index, dtype=object)
    joined = pd.concat([r for r in reasons if len(r)]) if any(len(r) for r in reasons) else None
    if joined is not None:
        reason = joined.groupby(level=0).agg("；".join).reindex(d.index).astype(object)
        reason = reason.where(reason.notna(), None)
    is_error = reason.notna()

    rows = pd.DataFrame({
        "action": pd.Series(np.where(is_error, ERROR, CREATE), index=d.index, dtype=object),
        "reason": reason,
        "community": d["community"].astype(object),
        "community_id": community_id,
        "household_id": pd.array([None] * len(d), dtype="Int64"),
        "natural_key": natural_key.astype(object),
        "building": d["building"].astype(object),
        "unit": d["unit"].astype(object),
        "room": d["room"].astype(object),
        "owner_name": d["owner_name"].astype(object),
        "phone": d["phone"].astype(object),
        "id_number": d["id_number"].astype(object),
        "opted_out": d["opted_out"].astype(object),
        "duplicate_of": duplicate_of,
    }, index=d.index)
    if "opted_out" in frame.columns:
        rows["opted_out_given"] = has_text(frame["opted_out"]) & d["opted_out"].notna(
        ).to_numpy(dtype=bool)
    else:
        rows["opted_out_given"] = False
    rows["changes"] = pd.Series(None, index=d.index, dtype=object)
    for name in UPDATABLE:
        rows[f"chg_{name}"] = False

    first_dates: dict[str, Any] = {}
    dates = d.get("delivery_date")
    if dates is not None:  # the first date given per community name, in file order
        given = pd.DataFrame({"community": d["community"], "date": dates})
        given = given[given["community"].notna() & given["date"].notna()]
        given = given.drop_duplicates("community")
        first_dates = dict(zip(given["community"].tolist(), given["date"].tolist(),
                               strict=True))
    return _Block(data=data, rows=rows, duplicates=int(is_duplicate.sum()), dates=first_dates)


def _action_counts(rows: pd.DataFrame) -> dict[str, int]:
    """How many rows of a plan's `rows` each action has (0 for an action none has)."""
    counted = rows["action"].value_counts()
    return {a: int(counted.get(a, 0)) for a in (CREATE, UPDATE, UNCHANGED, ERROR)}


def _against_registry(session: Session, sheet: _Sheet, block: _Block, *, lock: bool
                      ) -> ImportPlan:
    """The block's rows checked against the households the registry holds (read, and locked
    when `lock`): create, update or unchanged; its plan (header and mapping left to
    `_combine`)."""
    for name, date in block.dates.items():
        sheet.first_dates.setdefault(name, date)
    rows = block.rows
    good = rows["action"] != ERROR
    known_ids = set(rows.loc[good & rows["community_id"].notna(), "community_id"]
                    .astype(int).unique().tolist())
    unread = known_ids - sheet.households_of
    if unread or sheet.households is None:
        read = _existing_households(session, sheet.tenant_id, sorted(unread), lock=lock)
        sheet.households = read if sheet.households is None else \
            pd.concat([sheet.households, read], ignore_index=True)
        sheet.households_of |= unread
    existing_frame = sheet.households
    if len(existing_frame) and known_ids != sheet.households_of:
        existing_frame = existing_frame[existing_frame["community_id"].isin(known_ids)]
    existing: dict[int, dict[str, Any]] = {}
    if len(existing_frame):
        ex = existing_frame.set_index(["community_id", "natural_key"])
        candidates = rows[good & rows["community_id"].notna()]
        index = pd.MultiIndex.from_arrays([candidates["community_id"].astype(int).to_numpy(),
                                           candidates["natural_key"].to_numpy()])
        found = ex.reindex(index)
        hit = found["id"].notna().to_numpy()
        matched = candidates.index[hit]
        found = found[hit]
        found.index = matched
        rows.loc[matched, "household_id"] = found["id"].astype(int).to_numpy()
        changed = pd.Series(False, index=matched)
        change_lists: dict[str, pd.Series] = {}
        for name in UPDATABLE:
            new = rows.loc[matched, name]
            old = found[name]
            if name == "opted_out":
                given = rows.loc[matched, "opted_out_given"].astype(bool)
                old = old.astype(object)
                differs = given & (new.astype(object) != old.astype(object))
            else:
                differs = new.notna() & (new.astype(object) != old.astype(object))
            differs = differs.fillna(False).astype(bool)
            change_lists[name] = differs
            rows.loc[matched, f"chg_{name}"] = differs.to_numpy()
            changed |= differs
        rows.loc[matched, "action"] = np.where(changed, UPDATE, UNCHANGED).astype(object)
        updated = matched[changed.to_numpy()]
        if len(updated):
            changes = []
            for number in updated.tolist():
                entry = {}
                for name in UPDATABLE:
                    if change_lists[name].at[number]:
                        entry[name] = [_plain(found.at[number, name]),
                                       _plain(rows.at[number, name])]
                changes.append(entry)
            rows.loc[updated, "changes"] = pd.Series(changes, index=updated, dtype=object)
            rows.loc[updated, "reason"] = [
                "、".join(FIELD_NAMES.get(k, k) for k in c) + "有变化" for c in changes]
        for record in existing_frame[existing_frame["id"].isin(found["id"])].to_dict("records"):
            existing[int(record["id"])] = {k: _plain(v) for k, v in record.items()}

    creates = rows["action"] == CREATE
    new_names = rows.loc[creates & rows["community_id"].isna(), "community"]
    new_communities = {name: sheet.first_dates.get(name)
                       for name in pd.unique(new_names.to_numpy()).tolist()}
    counts = {
        "rows": len(rows), **_action_counts(rows),
        "duplicate_in_file": block.duplicates,
        "skipped": len(block.data.skipped),
        "communities_create": len(new_communities),
    }
    return ImportPlan(tenant_id=sheet.tenant_id, tenant_name=sheet.tenant_name,
                      header=sheet.header, data=block.data, mapping={}, rows=rows,
                      existing=existing, new_communities=new_communities, counts=counts)


def _combine(sheet: _Sheet, parts: Sequence[ImportPlan]) -> ImportPlan:
    """The blocks' plans as one plan of the whole sheet."""
    if len(parts) == 1:
        rows, data = parts[0].rows, parts[0].data
    else:
        rows = pd.concat([p.rows for p in parts])
        data = DataRows(row_numbers=[n for p in parts for n in p.data.row_numbers],
                        rows=[r for p in parts for r in p.data.rows],
                        skipped=[s for p in parts for s in p.data.skipped])
    existing: dict[int, dict[str, Any]] = {}
    new_names: dict[str, None] = {}
    for part in parts:
        existing.update(part.existing)
        new_names.update(dict.fromkeys(part.new_communities))
    new_communities = {name: sheet.first_dates.get(name) for name in new_names}
    counts = {
        "rows": len(rows), **_action_counts(rows),
        "duplicate_in_file": sum(p.counts["duplicate_in_file"] for p in parts),
        "skipped": len(data.skipped),
        "communities_create": len(new_communities),
    }
    header, used_header, texts = sheet.header, sheet.used_header, sheet.texts
    used = used_header.columns
    columns = sheet.columns
    mapping = {
        "sheet": sheet.raw.sheet_name,
        "sheets": list(sheet.raw.sheet_names),
        "title_community": sheet.title_community,
        **_hidden_rows(sheet, data.row_numbers),
        "source_kind": sheet.raw.source_kind,
        "header_rows": [r + 1 for r in header.header_rows],
        "data_start": header.data_start + 1,
        "fields": {f: {"index": c, "letter": get_column_letter(c + 1),
                       "label": used_header.labels.get(f, texts[c] if c < len(texts) else "")}
                   for f, c in used.items()},
        "ignored": sheet.ignored,
        "columns": columns,
        "overrides": sheet.overrides,
    }
    return ImportPlan(tenant_id=sheet.tenant_id, tenant_name=sheet.tenant_name,
                      header=header, data=data, mapping=mapping, rows=rows, existing=existing,
                      new_communities=new_communities, counts=counts, columns=columns)


#: How many hidden rows the batch page names (the count covers them all).
HIDDEN_ROWS_SHOWN = 20


def _hidden_rows(sheet: _Sheet, read: Sequence[int]) -> dict[str, Any]:
    """The hidden rows (1-based, as Excel numbers them) among the rows `read` as data (not
    the skipped 合计 or blank rows): they are read like the others, and the page says so, for
    the clerk who hid rows already dealt with or left a filter on. {} when there are none."""
    if not sheet.raw.hidden_rows:
        return {}
    hidden = sorted(set(read).intersection(r + 1 for r in sheet.raw.hidden_rows))
    if not hidden:
        return {}
    return {"hidden_rows": hidden[:HIDDEN_ROWS_SHOWN], "hidden_row_count": len(hidden)}


def _errors_only(sheet: _Sheet, blocks: Sequence[_Block]) -> ImportPlan:
    """A plan of just the error rows of classified blocks: enough for `error_workbook`."""
    rows = pd.concat([b.rows[b.rows["action"] == ERROR] for b in blocks])
    wanted = set(rows.index.tolist())
    kept = [(n, cells) for b in blocks
            for n, cells in zip(b.data.row_numbers, b.data.rows, strict=True) if n in wanted]
    data = DataRows(row_numbers=[n for n, _ in kept], rows=[c for _, c in kept], skipped=[])
    return ImportPlan(tenant_id=sheet.tenant_id, tenant_name=sheet.tenant_name,
                      header=sheet.header, data=data, mapping={}, rows=rows, existing={},
                      new_communities={}, counts={}, columns=sheet.columns)


def _begin_plan(session: Session, tenant_id: int, raw_sheet: RawSheet,
                mapping_overrides: Mapping[str, Any] | None, block_rows: int,
                report: Progress) -> tuple[_Sheet, list[tuple[int, int]], int]:
    """The sheet, its blocks and the rows below its header (reported as the plan's start)."""
    sheet = _prepare_sheet(session, tenant_id, raw_sheet, check_overrides(mapping_overrides))
    blocks = sheet.blocks(block_rows)
    estimate = blocks[-1][1] - blocks[0][0]
    report(0, estimate, f"表头以下共 {estimate:,} 行，正在校验…")
    return sheet, blocks, estimate


def plan_households(session: Session, tenant_id: int, raw_sheet: RawSheet, *,
                    mapping_overrides: Mapping[str, Any] | None = None,
                    progress: Progress | None = None, lock: bool = False,
                    block_rows: int = DEFAULT_BLOCK_ROWS) -> ImportPlan:
    """Decide, row by row, what importing `raw_sheet` into `tenant_id` would do. Reads only.

    Raises ImportFileError (Chinese) when the sheet has no recognizable header or lacks the
    community or room columns. `lock` (used by the commit) locks the households read on
    PostgreSQL so nobody changes them between the plan and its write. The rows are planned in
    blocks of `block_rows` (the same plan for any size; `plan_and_commit` writes a block
    while it plans the next).
    """
    report = progress or _noop
    sheet, blocks, estimate = _begin_plan(session, tenant_id, raw_sheet, mapping_overrides,
                                          block_rows, report)
    parts = []
    for start, stop in blocks:
        parts.append(_against_registry(session, sheet, _classify(sheet, start, stop),
                                       lock=lock))
        report(stop - blocks[0][0], estimate, "正在校验…")
    plan = _combine(sheet, parts)
    report(plan.counts["rows"], plan.counts["rows"], "校验完成")
    return plan


def _sheet_columns(header: HeaderMatch, texts: list[str], width: int) -> list[dict[str, Any]]:
    by_index = {c: f for f, c in header.columns.items() if f in HOUSEHOLD_FIELDS}
    columns, seen = [], set()
    for c in range(width):
        letter = get_column_letter(c + 1)
        name = by_index.get(c)
        label = (header.labels.get(name) if name else None) or (
            texts[c] if c < len(texts) and texts[c] else f"{letter}列")
        key = name or label
        if key in seen:
            key = f"{label}（{letter}列）"
        seen.add(key)
        columns.append({"index": c, "letter": letter, "label": label, "field": name,
                        "key": key})
    return columns


# ---------------------------------------------------------------------------------------------
# Commit


def lock_tenant_imports(session: Session, batch: ImportBatch) -> None:
    """Serialize commits and rollbacks of one tenant (call first in the job's transaction).

    PostgreSQL: an advisory transaction lock per tenant and the batch row locked. SQLite: a
    write to the batch row takes the database's write lock until the transaction ends.
    """
    connection = session.connection()
    table = ImportBatch.__table__
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k, :t)"),
                           {"k": _LOCK_KEY, "t": batch.tenant_id})
        connection.execute(sa.select(table.c.id).where(table.c.id == batch.id)
                           .with_for_update())
    else:
        connection.execute(table.update().where(table.c.id == batch.id)
                           .values(state=table.c.state))
    session.refresh(batch)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _temp_table(connection: sa.Connection, source: sa.Table, columns: Sequence[str],
                extra: Mapping[str, str]) -> str:
    """A TEMP table (dropped at commit) with `columns` typed as in `source`, plus `extra`.

    Temporary tables have no row-level security, so PostgreSQL accepts COPY into them."""
    name = f"om_stage_{uuid.uuid4().hex[:12]}"
    dialect = connection.dialect
    parts = [f"{c} {source.c[c].type.compile(dialect=dialect)}" for c in columns]
    parts += [f"{c} {kind}" for c, kind in extra.items()]
    connection.exec_driver_sql(f"CREATE TEMP TABLE {name} ({', '.join(parts)}) ON COMMIT DROP")
    return name


def _copy(connection: sa.Connection, table: str, columns: Sequence[str],
          rows: Iterable[Sequence[Any]]) -> None:
    """COPY rows into a (temporary) table through the transaction's psycopg connection."""
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor, \
            cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


#: The household columns an import writes (an update sets only UPDATABLE and opted_out_at).
_WRITE_COLUMNS = ("community_id", "building", "unit", "room", "natural_key", "owner_name",
                  "phone", "id_number", "opted_out", "opted_out_at")
_SET_ON_UPDATE = (*UPDATABLE, "opted_out_at")


def _objects(values: pd.Series) -> np.ndarray:
    """A column as an object array with None for every missing value."""
    array = values.to_numpy(dtype=object, copy=True)  # writable (copy-on-write views are not)
    array[pd.isna(array)] = None
    return array


def _final_values(plan: ImportPlan, write: pd.DataFrame, now: dt.datetime
                  ) -> dict[str, np.ndarray]:
    """Every image column (but id) of the households the create/update rows leave behind:
    the file's values for a create; for an update the registry's row with the changed
    fields replaced (vectorized; the registry's rows are looked up once per update row)."""
    updates = np.flatnonzero((write["action"] == UPDATE).to_numpy())
    creates = np.flatnonzero((write["action"] == CREATE).to_numpy())
    existing: dict[str, np.ndarray] = {}
    if len(updates):
        images = [plan.existing[int(i)] for i in
                  write["household_id"].to_numpy(dtype=object)[updates]]
        existing = {c: np.array([image[c] for image in images], dtype=object)
                    for c in IMAGE_COLUMNS}
    out: dict[str, np.ndarray] = {}
    given = write["opted_out_given"].to_numpy(dtype=bool)
    opted_file = np.array([v is True for v in write["opted_out"].to_numpy(dtype=object)],
                          dtype=bool)
    for c in IMAGE_COLUMNS:
        if c == "id":
            continue
        if c == "community_id":
            values = np.zeros(len(write), dtype=object)
            values[creates] = write["community_id"].to_numpy(dtype=object)[creates]
        elif c in ("opted_out", "opted_out_at", "optout_reason", "optout_letter"):
            values = np.full(len(write), None, dtype=object)
        else:
            values = _objects(write[c])
        if c == "opted_out":
            values[creates] = (given & opted_file)[creates]
        if c == "opted_out_at":
            values[creates] = np.where((given & opted_file)[creates], now, None)
        if len(updates):
            if c in UPDATABLE:
                changed = write[f"chg_{c}"].to_numpy(dtype=bool)[updates]
                values[updates] = np.where(changed, values[updates] if c != "opted_out"
                                           else opted_file[updates], existing[c])
            elif c == "opted_out_at":
                changed = write["chg_opted_out"].to_numpy(dtype=bool)[updates]
                values[updates] = np.where(changed,
                                           np.where(opted_file[updates], now, None),
                                           existing[c])
            else:
                values[updates] = existing[c]
        out[c] = values
    out["community_id"] = np.array([int(v) for v in out["community_id"]], dtype=object)
    out["opted_out"] = np.array([bool(v) for v in out["opted_out"]], dtype=object)
    return out


class _Writer:
    """Writes the blocks of one plan for `batch` in the session's transaction: `write` per
    block (its new communities, households and undo records), then `finish` once with the
    whole plan (the other rows' records, the counts, the batch)."""

    def __init__(self, session: Session, batch: ImportBatch, *, progress: Progress | None,
                 chunk_rows: int, pause: float, check: Callable[[], None] | None) -> None:
        self.session, self.batch = session, batch
        self.report = progress or _noop
        self.chunk_rows = max(1, int(chunk_rows))
        self.pause, self.check = pause, check
        self.now = _now()
        self.made: dict[str, Community] = {}
        self.lost: list[int] = []
        self.written = 0
        #: The number of rows the progress counts up to (None: the rows written so far).
        self.expected: int | None = None

    def _fill_communities(self, rows: pd.DataFrame) -> pd.DataFrame:
        """`rows` (a copy) with the ids of the communities this commit created so far."""
        rows = rows.copy(deep=False)  # copy-on-write: what follows never changes the plan
        if self.made:
            fill = rows["community_id"].isna() & rows["community"].isin(list(self.made))
            rows.loc[fill, "community_id"] = rows.loc[fill, "community"].map(
                {n: c.id for n, c in self.made.items()}).astype("Int64")
        return rows

    def write(self, part: ImportPlan, *, staged: Callable[[], None] | None = None) -> None:
        """Write the create and update rows of `part` (one block, or a whole plan)."""
        session, batch = self.session, self.batch
        if part.tenant_id != batch.tenant_id:
            raise ValueError("导入计划与批次不属于同一个办事处")
        rows = part.rows
        # Communities first: the households need their ids (ORM: change-logged, categorized).
        wanted = set(rows.loc[(rows["action"] == CREATE) & rows["community_id"].isna(),
                              "community"].tolist()) - set(self.made)
        new = {}
        for name, delivered in part.new_communities.items():
            if name in wanted:
                new[name] = Community(tenant_id=batch.tenant_id, name=name,
                                      delivery_date=delivered)
                session.add(new[name])
        if new:
            session.flush()
            self.made.update(new)
        rows = self._fill_communities(rows)

        write = rows[rows["action"].isin([CREATE, UPDATE])]
        final = _final_values(part, write, self.now)
        numbers = write.index.to_numpy(dtype=np.int64)
        chunk_of = np.arange(len(write)) // self.chunk_rows
        befores = [json.dumps(jsonable(part.existing[int(h)]), ensure_ascii=False)
                   if a == UPDATE else None
                   for a, h in zip(write["action"].tolist(), write["household_id"].to_numpy(
                       dtype=object), strict=True)]
        values = {**{c: final[c] for c in _WRITE_COLUMNS},
                  "row_number": numbers.tolist(), "action": write["action"].tolist(),
                  "chunk": chunk_of.tolist(), "household_id": _objects(write["household_id"]),
                  "before": befores, "reason": _objects(write["reason"])}
        for c in ("optout_reason", "optout_letter"):
            values[c] = final[c]
        offset = self.written

        def report(done: int, total: int, message: str) -> None:
            if self.expected is None:
                self.report(offset + done, offset + total, message)
            else:
                self.report(offset + done, max(self.expected, offset + done),
                            f"已写入 {offset + done:,} 行")

        begin = staged or (lambda: None)
        if _dialect(session) == "postgresql":
            self.lost += _write_postgres(session, batch, values, report, self.pause,
                                         self.check, begin)
        else:
            begin()
            self.lost += _write_sqlite(session, batch, values, report, self.chunk_rows,
                                       self.pause, self.check)
        self.written += len(write)

    def finish(self, plan: ImportPlan) -> dict[str, int]:
        """After the last block: the records of the rows not written, the counts and the
        batch, committed state. Returns the counts stored on the batch."""
        session, batch = self.session, self.batch
        for name, community in self.made.items():  # a date a later block gave first
            delivered = plan.new_communities.get(name)
            if delivered is not None and community.delivery_date != delivered:
                community.delivery_date = delivered
        rows = self._fill_communities(plan.rows)
        if self.lost:
            rows.loc[self.lost, "action"] = ERROR
            rows.loc[self.lost, "reason"] = ("提交时本小区已有同一住户（可能刚被他人录入），本行未导入；"
                                             "请重新预览后再导入")
        _write_other_rows(session, batch, plan, rows[~rows["action"].isin([CREATE, UPDATE])])

        created_communities = [c.id for c in self.made.values()]
        counts = {**plan.counts, **_action_counts(rows)}
        counts["communities_create"] = len(created_communities)
        counts["written"] = counts[CREATE] + counts[UPDATE]
        before_state = batch.state
        batch.state = COMMITTED
        batch.committed_at = self.now
        batch.counts = counts
        batch.mapping = plan.mapping
        batch.created_communities = created_communities
        batch.message = None
        session.flush()
        append_entries(session.connection(), [{
            "tenant_id": batch.tenant_id, "model": "ImportBatch", "object_id": batch.id,
            "action": "update", "before": {"state": before_state},
            "after": {"state": COMMITTED, "filename": batch.filename, "counts": counts,
                      "created_communities": created_communities}}])
        self.report(self.written, max(self.written, 1), "导入完成")
        return counts


def commit_plan(session: Session, batch: ImportBatch, plan: ImportPlan, *,
                progress: Progress | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                pause: float = 0.0, check: Callable[[], None] | None = None,
                staged: Callable[[], None] | None = None) -> dict[str, int]:
    """Write `plan` for `batch` in the session's transaction (the caller commits).

    Creates the new communities, inserts the create rows and updates the update rows in
    steps of `chunk_rows` (calling `check` — e.g. a cancellation check — and `progress`
    between steps, and sleeping `pause` seconds: a test setting to be caught mid-way), then
    records one ImportRow per data row. `staged` is called once, when the rows are staged and
    the steps begin (the database busy, this process mostly waiting): the moment to start
    work beside it. Returns the counts stored on the batch.
    """
    writer = _Writer(session, batch, progress=progress, chunk_rows=chunk_rows, pause=pause,
                     check=check)
    writer.write(plan, staged=staged)
    return writer.finish(plan)


class BuilderFailed(RuntimeError):
    """The forked process that built a file died or raised; the message says how."""


class ForkedBuild:
    """`work` running in a forked child process, started at construction; `result()` waits
    for its bytes, `abandon()` kills it. Both reap the child.

    For CPU-bound pure-Python work (openpyxl) that would otherwise take the GIL from the
    thread driving the database: a thread beside the writes slowed them by as much as the
    work itself. The child is a fork, so it reads the caller's objects without pickling them;
    it touches no connection and leaves with `os._exit`, so nothing of the caller's is closed.
    If the caller dies first, the child's send fails and it exits. Where fork is unavailable
    (Windows) the work runs in a thread instead. An exception in the child, or the child dying,
    raises `BuilderFailed` from `result()`.
    """

    def __init__(self, work: Callable[[], bytes]) -> None:
        self._future: Any = None
        self._pid = 0
        if "fork" not in multiprocessing.get_all_start_methods():
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="builder")
            self._future = pool.submit(work)
            pool.shutdown(wait=False)
            return
        self._receive, send = multiprocessing.Pipe(duplex=False)
        pid = os.fork()
        if pid == 0:  # the child: never returns into the caller's code
            code = 0
            try:
                self._receive.close()
                try:
                    send.send_bytes(b"1" + work())
                except BaseException:  # noqa: BLE001 — reported to the parent
                    code = 1
                    send.send_bytes(b"0" + traceback.format_exc().encode("utf-8", "replace"))
            except BaseException:  # noqa: BLE001 — the parent is gone: nothing to report to
                code = 2
            finally:
                os._exit(code)
        send.close()
        self._pid = pid

    def result(self) -> bytes:
        """The child's bytes (waits for it); `BuilderFailed` if it raised or died."""
        if self._future is not None:
            return self._future.result()
        try:
            message = self._receive.recv_bytes()
        except EOFError:
            message = b"0"
        finally:
            self._receive.close()
            _, status = os.waitpid(self._pid, 0)
        if message[:1] == b"1":
            return message[1:]
        detail = message[1:].decode("utf-8", "replace").strip()
        raise BuilderFailed(detail.splitlines()[-1] if detail else
                            f"生成文件的子进程意外退出（{_exit_status(status)}）")

    def abandon(self) -> None:
        """Stop the child (the caller failed and will not use its bytes) and reap it."""
        if self._future is not None:
            self._future.cancel()
            return
        self._receive.close()
        try:
            os.kill(self._pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self._pid, 0)


def _exit_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"信号 {os.WTERMSIG(status)}"
    return f"退出码 {os.WEXITSTATUS(status) if os.WIFEXITED(status) else status}"


def commit_with_error_workbook(session: Session, batch: ImportBatch, plan: ImportPlan,
                               **options: Any) -> tuple[dict[str, int], bytes | None]:
    """`commit_plan` (same options), and the error workbook of the committed batch (None
    when no row is an error).

    The workbook is built from the plan in a forked process (`ForkedBuild`) while the
    database writes, on the machine's other core (started once the rows are staged: during
    the COPY this process and the server are both busy); it is rebuilt from the batch's rows only
    when the commit found errors the plan did not (a household someone inserted meanwhile).
    An exception of either is raised here.
    """
    builds: list[ForkedBuild] = []

    def start() -> None:
        if plan.counts.get(ERROR):
            builds.append(ForkedBuild(lambda: error_workbook(plan)))

    try:
        counts = commit_plan(session, batch, plan, staged=start, **options)
    except BaseException:
        for build in builds:
            build.abandon()
        raise
    return counts, _committed_workbook(session, batch, plan, counts, builds)


def _committed_workbook(session: Session, batch: ImportBatch, plan: ImportPlan,
                        counts: Mapping[str, int], builds: Sequence[ForkedBuild]
                        ) -> bytes | None:
    """The forked build's workbook (None without one; waits for it), rebuilt from the batch's
    rows when the commit found errors the plan did not (a household inserted meanwhile)."""
    data = builds[0].result() if builds else None
    if counts.get(ERROR, 0) != plan.counts.get(ERROR, 0):
        data = error_workbook(batch, session=session)
    return data


def plan_and_commit(session: Session, batch: ImportBatch, raw_sheet: RawSheet, *,
                    mapping_overrides: Mapping[str, Any] | None = None,
                    plan_progress: Progress | None = None, progress: Progress | None = None,
                    chunk_rows: int = DEFAULT_CHUNK_ROWS,
                    block_rows: int = DEFAULT_BLOCK_ROWS, pause: float = 0.0,
                    check: Callable[[], None] | None = None
                    ) -> tuple[ImportPlan, dict[str, int], bytes | None]:
    """Plan `raw_sheet` for `batch` (households locked, as `plan_households(lock=True)`) and
    write it in the session's transaction (the caller took the tenant's import lock first and
    commits after). Returns the plan, the counts stored on the batch and the error workbook
    (None when no row is an error) — what `plan_households` then `commit_with_error_workbook`
    give, with the same options.

    Block by block: while the database writes a block, a thread normalizes and checks the
    next one (pandas/Arrow work; the writing thread mostly waits on the server, so the two
    overlap on a 2-core machine). Only this thread uses the connection and reports progress
    (`plan_progress` as blocks are checked, `progress` as rows are written). The error
    workbook is built in a forked process as soon as every block is classified (the errors
    are known then), beside the blocks still being written. An exception of any part is
    raised here, the planning thread stopped and the child killed.
    """
    report_plan = plan_progress or _noop
    sheet, blocks, estimate = _begin_plan(session, batch.tenant_id, raw_sheet,
                                          mapping_overrides, block_rows, report_plan)
    writer = _Writer(session, batch, progress=progress, chunk_rows=chunk_rows, pause=pause,
                     check=check)
    writer.expected = estimate  # until the plan is complete: every data row at most
    builds: list[ForkedBuild] = []
    parts: list[ImportPlan] = []
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="planner")
    pending = [pool.submit(_classify, sheet, start, stop) for start, stop in blocks]
    workbook_started = False

    def start_workbook() -> None:
        # Once every block is classified its errors are final (the registry only decides
        # between create, update and unchanged): the child builds their workbook while the
        # remaining blocks are written.
        nonlocal workbook_started
        if workbook_started or not all(f.done() for f in pending):
            return
        pool.shutdown(wait=True)  # no thread left when the child forks
        workbook_started = True
        errors = _errors_only(sheet, [f.result() for f in pending])
        if len(errors.rows):
            builds.append(ForkedBuild(lambda: error_workbook(errors)))

    try:
        for (_, stop), future in zip(blocks, pending, strict=True):
            part = _against_registry(session, sheet, future.result(), lock=True)
            parts.append(part)
            report_plan(stop - blocks[0][0], estimate, "正在校验…")
            start_workbook()
            if len(parts) == len(blocks):
                plan = _combine(sheet, parts)
                report_plan(plan.counts["rows"], plan.counts["rows"], "校验完成")
                writer.expected = plan.counts[CREATE] + plan.counts[UPDATE]
            writer.write(part)
        counts = writer.finish(plan)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        for build in builds:
            build.abandon()
        raise
    return plan, counts, _committed_workbook(session, batch, plan, counts, builds)


_STAGE_EXTRA = {"row_number": "integer", "action": "text", "chunk": "integer",
                "household_id": "integer", "before": "json", "reason": "text",
                "optout_reason": "text", "optout_letter": "text"}


def _write_postgres(session: Session, batch: ImportBatch, staged: dict[str, Any],
                    report: Progress, pause: float, check: Callable[[], None] | None,
                    begin: Callable[[], None]) -> list[int]:
    """COPY → TEMP table → INSERT … ON CONFLICT per step; the ImportRows of the written rows
    with the after-image as PostgreSQL stored it. Calls `begin` once the rows are staged.
    Returns the create rows not written."""
    connection = session.connection()
    tenant_id = batch.tenant_id
    total = len(staged["row_number"])
    if not total:
        begin()
        return []
    columns = (*_WRITE_COLUMNS, *_STAGE_EXTRA)
    # Every staged row draws its household id from om_household's own sequence as COPY
    # fills the column's default, so the undo records can find their rows by that integer
    # rather than by a sort-and-merge on (community_id, natural_key).
    sequence = connection.exec_driver_sql(
        "SELECT pg_get_serial_sequence('om_household', 'id')").scalar()
    stage = _temp_table(connection, Household.__table__, _WRITE_COLUMNS,
                        {**_STAGE_EXTRA, "new_id": f"integer DEFAULT nextval('{sequence}')"})
    _copy(connection, stage, columns, zip(*(staged[c] for c in columns), strict=True))
    connection.exec_driver_sql(f"CREATE INDEX ON {stage} (chunk, action)")
    connection.exec_driver_sql(f"ANALYZE {stage} (chunk, action, new_id, household_id)")
    begin()
    names = ", ".join(_WRITE_COLUMNS)
    selected = ", ".join(f"s.{c}" for c in _WRITE_COLUMNS)
    returned = ", ".join(IMAGE_COLUMNS)
    # One statement per step writes the households and their undo records together: the
    # ImportRows come from what INSERT … RETURNING gives back, never from a second pass
    # over om_household (which cost more than the households themselves). A created row is
    # its staged new_id; an updated row keeps its id (the new_id of an update is not used
    # unless the household vanished since the plan — then no undo record matches and the
    # count check below refuses the import).
    insert = (f"WITH written AS (INSERT INTO om_household (id, tenant_id, {names}) "
              f"SELECT s.new_id, :tenant, {selected} FROM {stage} s "
              "WHERE s.chunk = :chunk AND s.action = :action "
              "ON CONFLICT (tenant_id, community_id, natural_key) {conflict} "
              f"RETURNING {returned}) "
              "INSERT INTO om_import_row (tenant_id, batch_id, row_number, action, household_id, "
              "community_id, natural_key, before, after, reason) "
              "SELECT :tenant, :batch, s.row_number, s.action, w.id, w.community_id, "
              "w.natural_key, s.before, row_to_json(w), s.reason "
              f"FROM written w JOIN {stage} s ON s.chunk = :chunk AND s.action = :action "
              "AND s.{key} = w.id")
    create = sa.text(insert.replace("{conflict}", "DO NOTHING").replace("{key}", "new_id"))
    update = sa.text(insert.replace("{conflict}", "DO UPDATE SET " + ", ".join(
        f"{c} = EXCLUDED.{c}" for c in _SET_ON_UPDATE)).replace("{key}", "household_id"))
    missing = sa.text(
        f"SELECT s.row_number FROM {stage} s WHERE s.chunk = :chunk AND s.action = :action "
        "AND NOT EXISTS (SELECT 1 FROM om_import_row r WHERE r.tenant_id = :tenant "
        "AND r.batch_id = :batch AND r.row_number = s.row_number) ORDER BY s.row_number")
    chunks = max(staged["chunk"]) + 1
    actions = np.array(staged["action"], dtype=object)
    chunk_of = np.array(staged["chunk"])
    done, lost = 0, []
    for chunk in range(chunks):
        if check is not None:
            check()
        params = {"tenant": tenant_id, "batch": batch.id, "chunk": chunk}
        in_chunk = chunk_of == chunk
        creates = int((in_chunk & (actions == CREATE)).sum())
        updates = int((in_chunk & (actions == UPDATE)).sum())
        made = connection.execute(create, {**params, "action": CREATE}).rowcount \
            if creates else 0
        changed = connection.execute(update, {**params, "action": UPDATE}).rowcount \
            if updates else 0
        if changed != updates:
            raise RuntimeError("更新住户时行数不符（住户在导入过程中被删除？）")
        if made != creates:
            # A create that met a household someone else inserted meanwhile is not ours:
            # the chunk's create rows that got no undo record (counted, not fetched: 100k
            # row numbers back through the driver cost more than this rare second look).
            lost += connection.execute(missing, {**params, "action": CREATE}).scalars().all()
        done += int(in_chunk.sum())
        report(done, total, f"已写入 {done:,} / {total:,} 行")
        if pause and chunk < chunks - 1:
            time.sleep(pause)
    return lost


def _write_sqlite(session: Session, batch: ImportBatch, staged: dict[str, Any],
                  report: Progress, chunk_rows: int, pause: float,
                  check: Callable[[], None] | None) -> list[int]:
    """executemany INSERT … ON CONFLICT per step (the database's write lock is held since the
    plan, so no create can meet someone else's row); the ImportRows with their images."""
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    connection = session.connection()
    table = Household.__table__
    tenant_id = batch.tenant_id
    total = len(staged["row_number"])
    records = [dict(zip(staged, values, strict=True))
               for values in zip(*staged.values(), strict=True)]
    create = sqlite_insert(table).on_conflict_do_nothing(
        index_elements=["tenant_id", "community_id", "natural_key"])
    update = sqlite_insert(table)
    update = update.on_conflict_do_update(
        index_elements=["tenant_id", "community_id", "natural_key"],
        set_={c: update.excluded[c] for c in _SET_ON_UPDATE})
    first_new = (connection.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0) + 1
    done = 0
    for start in range(0, total, chunk_rows):
        if check is not None:
            check()
        chunk = records[start:start + chunk_rows]
        for statement, action in ((create, CREATE), (update, UPDATE)):
            values = [{"tenant_id": tenant_id, **{c: r[c] for c in _WRITE_COLUMNS}}
                      for r in chunk if r["action"] == action]
            if values:
                connection.execute(statement, values)
        done += len(chunk)
        report(done, total, f"已写入 {done:,} / {total:,} 行")
        if pause and start + chunk_rows < total:
            time.sleep(pause)
    new = {(c, k): h for h, c, k in connection.execute(
        sa.select(table.c.id, table.c.community_id, table.c.natural_key)
        .where(table.c.tenant_id == tenant_id, table.c.id >= first_new))}
    out = []
    for r in records:
        if r["action"] == CREATE:
            household_id = new.get((r["community_id"], r["natural_key"]))
            if household_id is None:  # cannot happen under the write lock
                raise RuntimeError(f"第{r['row_number']}行的住户未能写入")
        else:
            household_id = r["household_id"]
        after = {"id": household_id, **{c: r[c] for c in IMAGE_COLUMNS if c != "id"}}
        out.append({"tenant_id": tenant_id, "batch_id": batch.id,
                    "row_number": r["row_number"], "action": r["action"],
                    "household_id": household_id, "community_id": r["community_id"],
                    "natural_key": r["natural_key"],
                    "before": json.loads(r["before"]) if r["before"] else None,
                    "after": jsonable(after), "source": None, "reason": r["reason"]})
    for start in range(0, len(out), DEFAULT_CHUNK_ROWS):
        connection.execute(ImportRow.__table__.insert(), out[start:start + DEFAULT_CHUNK_ROWS])
    return []


_OTHER_COLUMNS = ("row_number", "action", "household_id", "community_id", "natural_key",
                  "source", "reason")


def _write_other_rows(session: Session, batch: ImportBatch, plan: ImportPlan,
                      rows: pd.DataFrame) -> None:
    """ImportRows of the rows not written: errors (with their cells) and unchanged rows."""
    if not len(rows):
        return
    connection = session.connection()
    numbers = rows.index.tolist()
    actions = rows["action"].tolist()
    values = {
        "row_number": numbers, "action": actions,
        "household_id": _objects(rows["household_id"]).tolist(),
        "community_id": _objects(rows["community_id"]).tolist(),
        "natural_key": _objects(rows["natural_key"]).tolist(),
        "source": [plan.source_of(int(n)) if a == ERROR else None
                   for n, a in zip(numbers, actions, strict=True)],
        "reason": _objects(rows["reason"]).tolist(),
    }
    if connection.dialect.name == "postgresql":
        stage = _temp_table(connection, ImportRow.__table__, _OTHER_COLUMNS, {})
        values["source"] = [json.dumps(v, ensure_ascii=False) if v is not None else None
                            for v in values["source"]]
        _copy(connection, stage, _OTHER_COLUMNS,
              zip(*(values[c] for c in _OTHER_COLUMNS), strict=True))
        connection.execute(sa.text(
            f"INSERT INTO om_import_row (tenant_id, batch_id, {', '.join(_OTHER_COLUMNS)}) "
            f"SELECT :tenant, :batch, {', '.join(_OTHER_COLUMNS)} FROM {stage} "
            "ORDER BY row_number"), {"tenant": batch.tenant_id, "batch": batch.id})
        return
    records = [{"tenant_id": batch.tenant_id, "batch_id": batch.id,
                **dict(zip(_OTHER_COLUMNS, v, strict=True))}
               for v in zip(*(values[c] for c in _OTHER_COLUMNS), strict=True)]
    for start in range(0, len(records), DEFAULT_CHUNK_ROWS):
        connection.execute(ImportRow.__table__.insert(),
                           records[start:start + DEFAULT_CHUNK_ROWS])


# ---------------------------------------------------------------------------------------------
# Rollback


def _restore(column: sa.Column, value: Any) -> Any:
    """A value from a JSON image back to the column's Python type."""
    if value is None:
        return None
    if isinstance(column.type, sa.DateTime) and isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    if isinstance(column.type, sa.Date) and isinstance(value, str):
        return dt.date.fromisoformat(value)
    return value


def _referencing(table_name: str) -> list[tuple[sa.Table, sa.Column]]:
    """Every (table, column) whose foreign key points at `table_name`'s id (the tenant part of
    a composite key left out), except the import tables and the table itself."""
    found = []
    for table in Household.metadata.sorted_tables:
        if table.name in (table_name, "om_import_batch", "om_import_row"):
            continue
        for fk in table.foreign_key_constraints:
            if fk.referred_table.name != table_name:
                continue
            local = [c for c, e in zip(fk.columns, fk.elements, strict=True)
                     if e.column.name == "id"]
            found.extend((table, c) for c in local)
    return found


def _chunked(session: Session, values: Sequence[int]) -> list[Sequence[int]]:
    values = list(values)
    size = _IN_CHUNK.get(session.get_bind().dialect.name, 900)
    return [values[i:i + size] for i in range(0, len(values), size)]


def _describe_table(table: sa.Table) -> str:
    names = {"om_meter_account": "户表", "om_household": "住户", "om_retrofit_project": "改造项目"}
    return names.get(table.name, f"“{table.name}”中的记录")


def _current(session: Session, tenant_id: int, ids: Sequence[int], *, lock: bool
             ) -> dict[int, dict[str, Any]]:
    table = Household.__table__
    current: dict[int, dict[str, Any]] = {}
    for part in _chunked(session, sorted(set(ids))):
        query = sa.select(*(table.c[c] for c in IMAGE_COLUMNS)).where(
            table.c.tenant_id == tenant_id, table.c.id.in_(part))
        if lock and _dialect(session) == "postgresql":
            query = query.with_for_update()
        for row in session.execute(query).mappings():
            current[row["id"]] = dict(row)
    return current


def _where(row: Mapping[str, Any], names: Mapping[int, str]) -> str:
    address = "-".join(str(p) for p in (row.get("building"), row.get("unit"), row.get("room"))
                       if p)
    community = names.get(row.get("community_id"), "")
    return f"{community} {address}".strip()


def rollback_problems(session: Session, batch: ImportBatch, *, lock: bool = False,
                      limit: int = 10) -> tuple[list[str], dict[str, Any]]:
    """Why `batch` cannot be rolled back (Chinese sentences, at most `limit` listed and a
    count of the rest), and what the rollback would do (ids and images)."""
    tenant_id = batch.tenant_id
    rows = session.execute(
        sa.select(ImportRow.row_number, ImportRow.action, ImportRow.household_id,
                  ImportRow.before, ImportRow.after)
        .where(ImportRow.tenant_id == tenant_id, ImportRow.batch_id == batch.id,
               ImportRow.action.in_([CREATE, UPDATE]))
        .order_by(ImportRow.row_number)).all()
    ids = [r.household_id for r in rows if r.household_id is not None]
    current = _current(session, tenant_id, ids, lock=lock)
    communities = dict(session.execute(
        sa.select(Community.id, Community.name).where(Community.tenant_id == tenant_id)).all())
    problems: list[str] = []
    table = Household.__table__
    created = [r for r in rows if r.action == CREATE]
    updated = [r for r in rows if r.action == UPDATE]
    created_ids = {r.household_id for r in created if r.household_id in current}
    for r in rows:
        now = current.get(r.household_id)
        image = r.after or {}
        if now is None:
            if r.action == UPDATE:
                problems.append(f"第{r.row_number}行更新的住户（{_where(image, communities)}）"
                                "导入后已被删除，无法恢复到导入前的样子")
            continue
        # Compared as values, not as JSON text (PostgreSQL writes 12:00:00.5, Python .500000).
        differs = [c for c in IMAGE_COLUMNS if c != "id" and c in image
                   and _restore(table.c[c], image[c]) != now[c]]
        if differs:
            verb = "新增" if r.action == CREATE else "更新"
            fields = "、".join(FIELD_NAMES.get(c, c) for c in differs)
            problems.append(f"第{r.row_number}行{verb}的住户（{_where(now, communities)}）"
                            f"导入后又被修改过（{fields}），撤销会覆盖这些修改")
    # Rows elsewhere that refer to a household the batch created.
    by_id = {r.household_id: r for r in created}
    for table, column in _referencing("om_household"):
        for part in _chunked(session, sorted(created_ids)):
            query = sa.select(column).where(column.in_(part))
            if "tenant_id" in table.c:
                query = query.where(table.c.tenant_id == tenant_id)
            extra = [table.c.utility] if table is MeterAccount.__table__ else []
            for found in session.execute(query.add_columns(*extra)).all():
                r = by_id[found[0]]
                what = _describe_table(table)
                if extra:
                    what = f"{utility_label(found[1])}{what}"
                problems.append(f"第{r.row_number}行新增的住户（"
                                f"{_where(current[found[0]], communities)}）已有{what}，"
                                "请先删除后再撤销")
    # Communities the batch created: nobody else may have used them since.
    made = [c for c in (batch.created_communities or []) if c in communities]
    for table, column in _referencing("om_community"):
        for part in _chunked(session, made):
            query = sa.select(column, table.c.id if "id" in table.c else column).where(
                column.in_(part))
            if "tenant_id" in table.c:
                query = query.where(table.c.tenant_id == tenant_id)
            for community_id, other_id in session.execute(query).all():
                if table is Household.__table__ and other_id in created_ids:
                    continue
                problems.append(f"导入时新建的小区“{communities[community_id]}”已有其他"
                                f"{_describe_table(table)}，不能删除")
    problems = list(dict.fromkeys(problems))
    if len(problems) > limit:
        problems = [*problems[:limit], f"……等共{len(problems)}处"]
    work = {"delete": sorted(created_ids), "restore": [(r.household_id, r.before)
                                                        for r in updated],
            "communities": made}
    return problems, work


def refusal_text(problems: Sequence[str]) -> str:
    """One Chinese message for the clerk from the problems of `rollback_problems`."""
    return ("不能撤销这批导入：导入后又有数据依赖它。\n" + "\n".join(f"· {p}" for p in problems)
            + "\n请先处理这些数据（或改在住户页面逐条修改）后再撤销。")


def rollback_batch(session: Session, batch: ImportBatch, *,
                   progress: Progress | None = None) -> dict[str, int]:
    """Undo a committed batch in the session's transaction (the caller commits).

    Created households (and communities) are deleted, updated ones restored to their
    before-image. Raises RollbackRefused (Chinese, naming the rows) when later changes
    depend on the batch; then nothing is written.
    """
    report = progress or _noop
    if batch.state not in (COMMITTED, "rolling_back"):
        raise RollbackRefused("只有已导入的批次可以撤销")
    problems, work = rollback_problems(session, batch, lock=True)
    if problems:
        raise RollbackRefused(refusal_text(problems))
    connection = session.connection()
    table = Household.__table__
    tenant_id = batch.tenant_id
    total = len(work["delete"]) + len(work["restore"])
    deleted = 0
    for part in _chunked(session, work["delete"]):
        deleted += connection.execute(table.delete().where(
            table.c.tenant_id == tenant_id, table.c.id.in_(part))).rowcount
    report(deleted, total, f"已删除 {deleted:,} 户新增的住户")
    restored = 0
    if work["restore"]:
        names = [c for c in IMAGE_COLUMNS if c != "id"]
        statement = table.update().where(
            table.c.tenant_id == sa.bindparam("t_id"), table.c.id == sa.bindparam("h_id")
        ).values({c: sa.bindparam(f"v_{c}") for c in names})
        params = [{"t_id": tenant_id, "h_id": household_id,
                   **{f"v_{c}": _restore(table.c[c], before.get(c)) for c in names}}
                  for household_id, before in work["restore"]]
        for start in range(0, len(params), DEFAULT_CHUNK_ROWS):
            connection.execute(statement, params[start:start + DEFAULT_CHUNK_ROWS])
        restored = len(params)
    for community in session.execute(sa.select(Community).where(
            Community.tenant_id == tenant_id, Community.id.in_(work["communities"] or [-1]))
    ).scalars():
        session.delete(community)
    before_state = batch.state
    batch.state = ROLLED_BACK
    batch.rolled_back_at = _now()
    batch.message = None
    session.flush()
    result = {"deleted": deleted, "restored": restored,
              "communities_deleted": len(work["communities"])}
    append_entries(session.connection(), [{
        "tenant_id": tenant_id, "model": "ImportBatch", "object_id": batch.id,
        "action": "update", "before": {"state": before_state},
        "after": {"state": ROLLED_BACK, "filename": batch.filename, **result}}])
    report(total, total, "撤销完成")
    return result


# ---------------------------------------------------------------------------------------------
# The error workbook


def error_workbook(source: ImportPlan | ImportBatch, *, session: Session | None = None) -> bytes:
    """An .xlsx repeating each bad row: its spreadsheet row number, every original cell, and
    the reason in Chinese. From a plan (preview) or a committed batch's ImportRows."""
    if isinstance(source, ImportPlan):
        columns = source.columns
        bad = source.rows[source.rows["action"] == ERROR]
        items = [(int(n), source.source_of(int(n)), r)
                 for n, r in zip(bad.index.tolist(), bad["reason"].tolist(), strict=True)]
        unit = source.tenant_name
    else:
        session = session or sa.orm.object_session(source)
        if session is None:
            raise ValueError("batch is not attached to a session")
        columns = (source.mapping or {}).get("columns", [])
        items = [(r.row_number, r.source or {}, r.reason) for r in session.execute(
            sa.select(ImportRow).where(ImportRow.tenant_id == source.tenant_id,
                                       ImportRow.batch_id == source.id,
                                       ImportRow.action == ERROR)
            .order_by(ImportRow.row_number)).scalars()]
        tenant = session.get(Tenant, source.tenant_id)
        unit = tenant.name if tenant else ""
    headers = ["原表行号", *(c["label"] for c in columns), "错误原因"]
    body = [[number, *(_display(values.get(c["key"])) for c in columns), reason]
            for number, values, reason in items]
    return write_report("导入错误明细（请修改后重新上传）", headers, body, unit=unit,
                        sheet="错误行")


def _display(value: Any) -> Any:
    if isinstance(value, str) and len(value) in (10, 19, 26) and value[4:5] == "-":
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
        return parsed.date() if len(value) == 10 else parsed
    return value
