"""What tenant isolation costs: one sub-district's page of rows, with and without the layers.

`make bench` prints the figures; nothing here asserts a time.
"""

from __future__ import annotations

import statistics
import time

import sqlalchemy as sa

from onemeter.database import db
from onemeter.tenancy import TenantScope, use_scope
from onemeter_example.models import Checklist
from tests.support.stack import TEST_DB

ROWS_PER_TENANT = 25_000
REPEAT = 30


def _timed(fn) -> float:
    samples = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def test_cost_of_isolation_layers(app, stack, tenant_ids):
    owner = sa.create_engine(stack.owner_url)
    with owner.begin() as connection:
        if TEST_DB == "postgresql":
            connection.exec_driver_sql("SELECT set_config('app.all_tenants','on',true)")
        for tenant_id in tenant_ids.values():
            if TEST_DB == "postgresql":
                connection.exec_driver_sql(
                    "SELECT set_config('app.write_tenant_id', %(t)s, true)", {"t": str(tenant_id)})
            connection.execute(Checklist.__table__.insert(), [
                {"tenant_id": tenant_id, "name": f"清单{i}"} for i in range(ROWS_PER_TENANT)])
    tenant = tenant_ids["pingqiao"]
    query = sa.select(Checklist.__table__).where(Checklist.__table__.c.tenant_id == tenant
                                                 ).order_by(Checklist.__table__.c.id.desc()
                                                            ).limit(25)

    def floor() -> None:
        with owner.connect() as connection:
            connection.execute(query).all()

    def orm_all_layers() -> None:
        with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
            db.session.scalars(sa.select(Checklist).order_by(Checklist.id.desc()).limit(25)).all()
            db.session.remove()

    def orm_count() -> None:
        with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
            db.session.scalar(sa.select(sa.func.count(Checklist.id)))
            db.session.remove()

    base = _timed(floor)
    layered = _timed(orm_all_layers)
    counted = _timed(orm_count)
    owner.dispose()
    print(f"\n[bench isolation, {TEST_DB}, {ROWS_PER_TENANT * len(tenant_ids):,} rows] "
          f"page of 25: floor (owner, explicit WHERE) {base:.2f} ms; ORM + guard + RLS "
          f"{layered:.2f} ms (×{layered / base:.1f}); count of own rows {counted:.2f} ms")
