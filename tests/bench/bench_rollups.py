"""The district rollup page with 1,000,000 households in 100 sub-districts (PostgreSQL).

Generates the district with COPY (communities of every category, one project per community
× utility in every state, households with 2 % opted out, a water account each and an
electricity account for 3 in 4, acceptance events over five years), through the real tables
with their triggers, then times the pages as the district viewer sees them: 汇总 (the target:
p95 under 100 ms), a sub-district's drill-down, the overdue list and the ranking. Prints the
figures and checks that the trigger-kept summary equals the rows. Removes its rows after.

    ONEMETER_BENCH_ROLLUP_HOUSEHOLDS=1000000 ONEMETER_BENCH_ROLLUP_TENANTS=100 make bench
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from onemeter.district.models import COUNT_COLUMNS, LIVE_COUNTS_SQL
from onemeter.registry.categories import CATEGORIES, PHASE_OF_CATEGORY
from onemeter.retrofit.procedure import DEADLINE_STATES, STATES
from tests.support.stack import PASSWORD, TEST_DB
from tests.support.web import signed_in

HOUSEHOLDS = int(os.environ.get("ONEMETER_BENCH_ROLLUP_HOUSEHOLDS", "1000000"))
TENANTS = int(os.environ.get("ONEMETER_BENCH_ROLLUP_TENANTS", "100"))
PER_COMMUNITY = 200
REPEAT = 40


def _copy(cursor: Any, table: str, columns: tuple[str, ...], rows: Iterator[tuple]) -> int:
    n = 0
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


def generate(owner_url: str, households: int = HOUSEHOLDS, tenants: int = TENANTS,
             seed: int = 2021) -> dict[str, Any]:
    """Write the district through COPY as the owner; returns the new tenant ids and counts.

    The owner bypasses row-level security here (a superuser in the test stack): COPY is
    refused on RLS tables for any other role. The statement triggers still run.
    """
    rng = random.Random(seed)
    engine = sa.create_engine(owner_url)
    raw = engine.raw_connection()
    timings: dict[str, float] = {}
    try:
        cursor = raw.cursor()
        cursor.execute("SELECT coalesce(max(id), 0) FROM om_tenant")
        first_tenant = cursor.fetchone()[0] + 1
        tenant_ids = list(range(first_tenant, first_tenant + tenants))
        started = time.perf_counter()
        _copy(cursor, "om_tenant", ("id", "code", "name", "active", "utilities", "plugins",
                                    "contacts"),
              ((t, f"bench{t}", f"测试办事处{t:03d}", True, '["water", "electricity"]',
                '["water", "electricity"]', "[]") for t in tenant_ids))
        cursor.execute("SELECT setval(pg_get_serial_sequence('om_tenant', 'id'), %s)",
                       (tenant_ids[-1],))
        communities_total = max(households // PER_COMMUNITY, tenants)
        cursor.execute("SELECT coalesce(max(id), 0) FROM om_community")
        c0 = cursor.fetchone()[0] + 1
        community_rows = []
        for i in range(communities_total):
            category = CATEGORIES[i % len(CATEGORIES)]
            community_rows.append((c0 + i, tenant_ids[i % tenants], f"测试小区{i:05d}", False,
                                   False, False, category, PHASE_OF_CATEGORY[category]))
        _copy(cursor, "om_community", ("id", "tenant_id", "name", "developer_committed",
                                       "old_renovation", "scattered", "derived_category",
                                       "derived_phase"), iter(community_rows))
        cursor.execute("SELECT setval(pg_get_serial_sequence('om_community', 'id'), %s)",
                       (c0 + communities_total,))
        timings["communities"] = time.perf_counter() - started

        started = time.perf_counter()
        cursor.execute("SELECT coalesce(max(id), 0) FROM om_household")
        h0 = cursor.fetchone()[0] + 1

        def household_rows() -> Iterator[tuple]:
            for i in range(households):
                community = community_rows[i % communities_total]
                room = f"{i // communities_total + 101}"
                yield (h0 + i, community[1], community[0], room, room, rng.random() < 0.02)

        _copy(cursor, "om_household", ("id", "tenant_id", "community_id", "room",
                                       "natural_key", "opted_out"), household_rows())
        cursor.execute("SELECT setval(pg_get_serial_sequence('om_household', 'id'), %s)",
                       (h0 + households,))
        timings["households"] = time.perf_counter() - started

        started = time.perf_counter()
        statuses = ("surveyed", "installed", "active", "active", "closed")

        def account_rows() -> Iterator[tuple]:
            for i in range(households):
                tenant = community_rows[i % communities_total][1]
                yield (tenant, h0 + i, "water", statuses[rng.randrange(5)])
                if i % 4:
                    yield (tenant, h0 + i, "electricity", statuses[rng.randrange(5)])

        accounts = _copy(cursor, "om_meter_account", ("tenant_id", "household_id", "utility",
                                                      "status"), account_rows())
        timings["accounts (with the summary trigger)"] = time.perf_counter() - started

        started = time.perf_counter()
        cursor.execute("SELECT coalesce(max(id), 0) FROM om_retrofit_project")
        p0 = cursor.fetchone()[0] + 1
        states = sorted(STATES)
        project_rows, event_rows = [], []
        for community in community_rows:
            for utility in ("water", "electricity"):
                state = "accepted" if rng.random() < 0.35 else rng.choice(states)
                deadline = (dt.date(2021, 7, 1) + dt.timedelta(days=rng.randrange(2000))
                            if state in DEADLINE_STATES else None)
                pid = p0 + len(project_rows)
                project_rows.append((pid, community[1], community[0], utility, state, deadline))
                if state == "accepted":
                    at = dt.datetime(2021, 8, 1) + dt.timedelta(minutes=rng.randrange(2_750_000))
                    event_rows.append((community[1], pid, at, "accept", "completed", "accepted"))
        _copy(cursor, "om_retrofit_project", ("id", "tenant_id", "community_id", "utility",
                                              "state", "deadline"), iter(project_rows))
        cursor.execute("SELECT setval(pg_get_serial_sequence('om_retrofit_project', 'id'), %s)",
                       (p0 + len(project_rows),))
        _copy(cursor, "om_project_event", ("tenant_id", "project_id", "at", "transition",
                                           "from_state", "to_state"), iter(event_rows))
        timings["projects and events"] = time.perf_counter() - started
        started = time.perf_counter()
        raw.commit()
        cursor.execute("ANALYZE")
        raw.commit()
        timings["commit and analyze"] = time.perf_counter() - started
    finally:
        raw.close()
        engine.dispose()
    return {"tenant_ids": tenant_ids, "communities": communities_total,
            "households": households, "accounts": accounts, "projects": len(project_rows),
            "events": len(event_rows), "timings": timings}


def remove(owner_url: str, tenant_ids: list[int]) -> None:
    engine = sa.create_engine(owner_url)
    with engine.begin() as connection:
        for table in ("om_project_event", "om_retrofit_project", "om_meter_account",
                      "om_household", "om_rollup_count", "om_community", "om_tenant"):
            column = "id" if table == "om_tenant" else "tenant_id"
            connection.exec_driver_sql(f"DELETE FROM {table} WHERE {column} = ANY(%(t)s)",
                                       {"t": tenant_ids})
    engine.dispose()


def _timed(client: Any, url: str, repeat: int = REPEAT) -> tuple[float, float, int]:
    client.get(url)  # warm
    samples = []
    status = 0
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - started) * 1000)
        status = response.status_code
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))], status


@pytest.mark.postgres
def test_rollup_page_with_a_million_households(app: Flask, stack: Any) -> None:
    assert TEST_DB == "postgresql", "the rollup benchmark runs on PostgreSQL"
    started = time.perf_counter()
    made = generate(stack.owner_url)
    generated = time.perf_counter() - started
    try:
        client = signed_in(app, "district", PASSWORD)
        results = {}
        for label, url in (("汇总 /district/", "/district/"),
                           ("办事处下钻", f"/district/subdistrict/{made['tenant_ids'][0]}"),
                           ("逾期与倒排工期", "/district/overdue/"),
                           ("考核排名", "/district/ranking/")):
            results[label] = _timed(client, url, REPEAT if label.startswith("汇总") else 10)
        page = client.get("/district/").get_data(as_text=True)
        charts = json.loads(page.split('id="om-chart-data">')[1].split("</script>")[0])
        shown = sum(charts["tenants"]["done"])
        columns = ", ".join(COUNT_COLUMNS)
        engine = sa.create_engine(stack.owner_url)
        with engine.connect() as connection:
            expected = connection.exec_driver_sql(
                "SELECT count(*) FROM om_meter_account a JOIN om_household h"
                " ON h.tenant_id = a.tenant_id AND h.id = a.household_id"
                " WHERE NOT h.opted_out AND a.status IN ('installed', 'active')").scalar()
            mismatched = connection.exec_driver_sql(
                f"SELECT count(*) FROM (SELECT tenant_id, community_id, utility, {columns}"
                " FROM om_rollup_count WHERE accounts <> 0"
                f" EXCEPT {LIVE_COUNTS_SQL.format(where='')}) d").scalar()
        engine.dispose()
    finally:
        remove(stack.owner_url, made["tenant_ids"])
    print(f"\n[bench rollups, {TEST_DB}] {made['households']:,} households in "
          f"{len(made['tenant_ids'])} sub-districts, {made['communities']:,} communities, "
          f"{made['accounts']:,} accounts, {made['projects']:,} projects, "
          f"{made['events']:,} acceptances; generated and loaded by COPY in {generated:.1f} s ("
          + ", ".join(f"{k} {v:.1f} s" for k, v in made["timings"].items()) + ")")
    for label, (median, p95, status) in results.items():
        print(f"  {label}: median {median:.1f} ms, p95 {p95:.1f} ms (HTTP {status})")
    print(f"  done households on the page {shown:,} = rows {expected:,}; "
          f"summary rows differing from the base rows: {mismatched}")
    assert shown == expected and mismatched == 0
    assert all(status == 200 for _, _, status in results.values())
