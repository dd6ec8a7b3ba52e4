"""Reconciliation of 1,000,000 ledger rows against 1,000,000 account rows (onemeter.reconcile
.engine): generates both sides (most rows paired by account number, some only by meter
number or address, some on one side only, some with a different meter number or name) and
prints the time and the peak RSS. Target: under 10 s on a 2-core machine.

    .venv/bin/python tests/bench/bench_reconcile.py [rows]
"""

from __future__ import annotations

import os
import resource
import sys
import time

import numpy as np
import pandas as pd

from onemeter.reconcile.engine import reconcile


def generate(n: int, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = np.arange(n)
    account = pd.Series(ids).map("{:010d}".format)
    meter = pd.Series(ids).map("M{:012d}".format)
    community = pd.Series(rng.integers(0, 2000, n)).map("小区{}".format)
    building = pd.Series(ids // 100 % 30 + 1).astype(str)
    unit = pd.Series(ids // 10 % 6 + 1).astype(str)
    room = pd.Series(ids % 10 + 101 + (ids // 6000) * 1000).astype(str)
    names = pd.Series(rng.integers(0, 50000, n)).map("户主{}".format)
    ledger = pd.DataFrame({"account_no": account, "meter_no": meter, "owner_name": names,
                           "community": community,
                           "natural_key": building + "-" + unit + "-" + room})
    accounts = pd.DataFrame({"account_no": account.copy(), "meter_no": meter.copy(),
                             "owner_name": names.copy(), "community": community.copy(),
                             "building": building + "号楼", "unit": unit + "单元",
                             "room": room + "室"})
    # 5 % of the list has no account number (paired by meter), 3 % neither (by address),
    # 2 % of each side is missing from the other, 1 % other meter, 1 % other name.
    pick = rng.random(n)
    accounts.loc[pick < 0.08, "account_no"] = ""
    accounts.loc[pick < 0.03, "meter_no"] = ""
    accounts.loc[(pick >= 0.12) & (pick < 0.13), "meter_no"] = "X"
    accounts.loc[(pick >= 0.13) & (pick < 0.14), "owner_name"] = "另一人"
    accounts = accounts[~((pick >= 0.08) & (pick < 0.10))]
    ledger = ledger[~((pick >= 0.10) & (pick < 0.12))]
    return ledger.reset_index(drop=True), accounts.reset_index(drop=True)


def main(n: int | None = None) -> None:
    n = n or (int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
    t0 = time.perf_counter()
    ledger, accounts = generate(n)
    t1 = time.perf_counter()
    result = reconcile(ledger, accounts)
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"generated {len(ledger):,} ledger × {len(accounts):,} account rows in {t1 - t0:.1f} s")
    print(f"reconcile: {t2 - t1:.2f} s (target < 10 s); peak RSS {peak:,.0f} MB")
    print("counts:", result.counts)
    print(f"reconcile {len(ledger):,} x {len(accounts):,}: {'PASS' if t2 - t1 < 10 else 'MISS'} (target < 10 s at 1M x 1M)")


def test_reconcile_speed() -> None:
    """`make bench` runs this file through pytest: print the figures, assert nothing timed."""
    main(int(os.environ.get("ONEMETER_BENCH_RECONCILE_ROWS", "1000000")))


if __name__ == "__main__":
    main()
