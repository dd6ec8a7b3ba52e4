"""The demo job: counts with progress, to prove the web → Redis → worker → page loop."""

from __future__ import annotations

import time

from onemeter_worker.runner import JobContext, TransientJobError


def count_to(ctx: JobContext, n: int = 20, delay: float = 0.05,
             fail_attempts: int = 0) -> dict[str, int]:
    """Count to `n`, reporting progress each step; returns the counts shown on the page.

    `fail_attempts` makes the first attempts fail halfway with a transient error, to see the
    automatic retry at work (the counts start again from zero on each attempt).
    """
    n = max(0, int(n))
    for i in range(1, n + 1):
        ctx.check_cancelled()
        time.sleep(delay)
        ctx.progress(i, n, counts={"counted": i})
        if ctx.attempt <= fail_attempts and i >= n // 2:
            raise TransientJobError(f"演示：第 {ctx.attempt} 次运行在 {i}/{n} 处遇到暂时性错误")
    return {"counted": n}
