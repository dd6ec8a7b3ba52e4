"""The vectorized comparison of a ledger (the registry's 户表 of one utility) with the
utility's own account list.

Both sides are DataFrames with (any of) the columns `account_no`, `meter_no`, `owner_name`,
`community` and either `natural_key` or `building`/`unit`/`room`. Rows are paired in three
rounds, each a pandas merge on the rows still unpaired:

1. by account number (户号), 2. by meter number (表号), 3. by normalized address
(community + the registry's household key, normalized over unique values only).

A key that occurs more than once on one side is used for its first row only (the others go
on to the next round). Paired rows whose meter numbers or names differ are `conflicts`.
No per-row Python: 1M × 1M runs in seconds (tests/bench/bench_reconcile.py).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from onemeter.registry.normalize import normalize_part

MATCHED, LEDGER_ONLY, UTILITY_ONLY, CONFLICT = "matched", "ledger_only", "utility_only", \
    "conflict"
CLASSES = (MATCHED, LEDGER_ONLY, UTILITY_ONLY, CONFLICT)
CLASS_LABELS = {MATCHED: "一致", LEDGER_ONLY: "仅台账有", UTILITY_ONLY: "仅公司有",
                CONFLICT: "信息不一致"}
_SPACE = re.compile(r"[^\S\x00]+")
ROUNDS = ("account_no", "meter_no", "address")
ROUND_LABELS = {"account_no": "户号", "meter_no": "表号", "address": "地址"}
CONFLICT_FIELDS = {"meter_no": "表号不同", "owner_name": "户名不同"}


@dataclass
class Result:
    """Pairs (ledger row index, account row index, round) and what is left on each side."""

    pairs: pd.DataFrame  # columns ledger, account, matched_by, meter_differs, name_differs
    ledger_only: np.ndarray  # ledger row positions
    utility_only: np.ndarray  # account row positions
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def conflicts(self) -> pd.DataFrame:
        return self.pairs[self.pairs["meter_differs"] | self.pairs["name_differs"]]


def _text(series: pd.Series | None, n: int) -> pd.Series:
    """Cells as compact upper-case strings, "" for empty (NFKC, no spaces), vectorized.

    Text columns are normalized in one pass over all their cells joined into one string
    (C speed: NFKC, whitespace removal and upper-casing), then split again; a column mixing
    numbers (Excel's 1.0) with text is normalized over its unique values.
    """
    if series is None:
        return pd.Series([""] * n, dtype=object)
    values = series.astype(object)
    values = values.where(values.notna(), "")
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind not in ("string", "empty"):
        mapping = {u: _one(u) for u in pd.unique(values)}
        return values.map(mapping)
    joined = unicodedata.normalize("NFKC", "\x00".join(values.tolist()))
    joined = _SPACE.sub("", joined).upper()
    return pd.Series(joined.split("\x00"), index=values.index, dtype=object)


def _one(value: object) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        if value != value:
            return ""
        if value.is_integer():
            value = int(value)
    return "".join(unicodedata.normalize("NFKC", str(value)).split()).upper()


def _parts(series: pd.Series | None, n: int) -> pd.Series:
    """One address part normalized like the household key, over unique values only."""
    if series is None:
        return pd.Series([""] * n, dtype=object)
    values = series.astype(object).where(series.notna(), "")
    mapping = {u: normalize_part(u) for u in pd.unique(values)}
    return values.map(mapping)


def address_key(frame: pd.DataFrame) -> pd.Series:
    """community|building-unit-room normalized; "" when there is no room."""
    n = len(frame)
    community = _parts(frame.get("community"), n)
    if "natural_key" in frame:
        key = frame["natural_key"].astype(object).where(frame["natural_key"].notna(), "")
        room_known = ~key.str.endswith("-") & (key != "")
    else:
        building = _parts(frame.get("building"), n)
        unit = _parts(frame.get("unit"), n)
        room = _parts(frame.get("room"), n)
        key = building + "-" + unit + "-" + room
        room_known = room != ""
    out = community + "|" + key
    return out.where(room_known & (community != ""), "")


def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """The comparable columns of one side: account_no, meter_no, owner_name, address."""
    n = len(frame)
    return pd.DataFrame({"account_no": _text(frame.get("account_no"), n).to_numpy(),
                         "meter_no": _text(frame.get("meter_no"), n).to_numpy(),
                         "owner_name": _text(frame.get("owner_name"), n).to_numpy(),
                         "address": address_key(frame).to_numpy()})


def _round(left: pd.DataFrame, right: pd.DataFrame, key: str) -> pd.DataFrame:
    a = left.loc[left[key] != "", ["_pos", key]].drop_duplicates(key)
    b = right.loc[right[key] != "", ["_pos", key]].drop_duplicates(key)
    merged = a.merge(b, on=key, how="inner", suffixes=("_l", "_r"), sort=False)
    return pd.DataFrame({"ledger": merged["_pos_l"].to_numpy(),
                         "account": merged["_pos_r"].to_numpy()})


def reconcile(ledger: pd.DataFrame, accounts: pd.DataFrame) -> Result:
    """Pair the ledger's rows with the account list's; see the module docstring."""
    left = prepare(ledger)
    right = prepare(accounts)
    left["_pos"] = np.arange(len(left))
    right["_pos"] = np.arange(len(right))
    rounds = []
    free_l = np.ones(len(left), dtype=bool)
    free_r = np.ones(len(right), dtype=bool)
    for key in ROUNDS:
        found = _round(left[free_l], right[free_r], key)
        found["matched_by"] = key
        free_l[found["ledger"].to_numpy()] = False
        free_r[found["account"].to_numpy()] = False
        rounds.append(found)
    pairs = pd.concat(rounds, ignore_index=True)
    li, ri = pairs["ledger"].to_numpy(), pairs["account"].to_numpy()
    lm, rm = left["meter_no"].to_numpy()[li], right["meter_no"].to_numpy()[ri]
    ln, rn = left["owner_name"].to_numpy()[li], right["owner_name"].to_numpy()[ri]
    pairs["meter_differs"] = (lm != "") & (rm != "") & (lm != rm)
    pairs["name_differs"] = (ln != "") & (rn != "") & (ln != rn)
    ledger_only = np.flatnonzero(free_l)
    utility_only = np.flatnonzero(free_r)
    conflict = pairs["meter_differs"] | pairs["name_differs"]
    counts = {
        MATCHED: int((~conflict).sum()),
        CONFLICT: int(conflict.sum()),
        LEDGER_ONLY: int(len(ledger_only)),
        UTILITY_ONLY: int(len(utility_only)),
        "meter_differs": int(pairs["meter_differs"].sum()),
        "name_differs": int(pairs["name_differs"].sum()),
        "ledger_rows": int(len(left)),
        "account_rows": int(len(right)),
    }
    for key in ROUNDS:
        counts[f"by_{key}"] = int((pairs["matched_by"] == key).sum())
    return Result(pairs=pairs, ledger_only=ledger_only, utility_only=utility_only,
                  counts=counts)
