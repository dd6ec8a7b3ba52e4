"""The example plugin's job: count the sub-district's checklists (runs in the RQ worker)."""

from __future__ import annotations

import sqlalchemy as sa

from onemeter.database import db
from onemeter_example.models import Checklist


def tally(ctx, **params) -> dict[str, int]:
    """Count checklists visible under the job's tenant scope."""
    total = db.session.scalar(sa.select(sa.func.count(Checklist.id)))
    ctx.progress(1, 1, counts={"checklists": total})
    return {"checklists": total}
