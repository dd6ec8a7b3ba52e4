"""The demo job: counts with progress, to prove the web → Redis → worker → page loop."""

from __future__ import annotations

import time

from onemeter_worker.runner import JobContext


def count_to(ctx: JobContext, n: int = 20, delay: float = 0.05) -> dict[str, int]:
    """Count to `n`, reporting progress each step; returns the counts shown on the page."""
    for i in range(1, n + 1):
        ctx.check_cancelled()
        time.sleep(delay)
        ctx.progress(i, n, counts={"counted": i})
    return {"counted": n}
