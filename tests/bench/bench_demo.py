"""How fast the demo district loads: the plan's full size on the run's database.

`make bench` prints the figures; nothing here asserts a time. The load is rolled back, so the
other benchmarks see the database as it was.
"""

from __future__ import annotations

import datetime as dt
import time

from flask import Flask
from sqlalchemy.orm import Session

from onemeter.database import db
from onemeter.demo import DemoTenant, build_demo, load_demo
from onemeter.tenancy import Tenant, TenantScope, use_scope
from onemeter.utilities import utility_spec
from tests.support.stack import TEST_DB

TODAY = dt.date(2026, 11, 25)


def test_demo_load_speed(app: Flask) -> None:
    with app.app_context():
        session = Session(bind=db.engine)
        specs = {code: utility_spec(code) for code in ("water", "electricity")}
    try:
        with use_scope(TenantScope.all_read_only(), session):
            tenants = [DemoTenant(t.id, t.code, t.name, tuple(t.utilities))
                       for t in session.query(Tenant).order_by(Tenant.id)]
        started = time.perf_counter()
        build_demo(tenants, specs, today=TODAY)
        generated = time.perf_counter() - started
        with app.app_context():
            started = time.perf_counter()
            report = load_demo(session, today=TODAY)
            session.flush()
            loaded = time.perf_counter() - started
    finally:
        session.rollback()
        session.close()
    rows = report.total_rows
    print(f"\n[bench demo, {TEST_DB}] {rows:,} rows ({report.rows['households']:,} households, "
          f"{report.rows['meter_accounts']:,} accounts, {report.rows['events']:,} events) "
          f"in {loaded:.2f} s = {rows / loaded:,.0f} rows/s; of which generating the district "
          f"(projects fired through the procedure, no database) {generated:.2f} s")
