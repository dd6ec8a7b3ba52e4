"""A real `onemeter worker` (RQ) subprocess of this test run: the one helper the job, import
and 核对 tests start their workers with.

The worker runs on one queue of this run (its Redis prefix, database and folders come from
`Stack.subprocess_env()`, upload folder included) and writes its output to a log file under
the test's tmp_path. Failures quote the end of that log.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from tests.support.stack import ROOT, Stack

#: Generous upper bound for a burst worker to empty its queue; a healthy run needs a fraction.
WORKER_WAIT = 180.0


class WorkerProcess:
    """One `onemeter worker --queue <queue>` subprocess of this test run, with its log.

    `burst` makes the worker exit once its queue is empty; `env` adds to (or overrides) the
    stack's subprocess environment.
    """

    def __init__(self, stack: Stack, log_path: Path, queue: str, burst: bool = True,
                 env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        args = [sys.executable, "-m", "onemeter.cli", "worker", "--queue", queue]
        if burst:
            args.append("--burst")
        self.popen = subprocess.Popen(args, env={**stack.subprocess_env(), **(env or {})},
                                      cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.popen.pid

    def log(self) -> str:
        """The end of the worker's log so far, headed with its path (for failure messages)."""
        self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return f"--- worker log ({self.log_path}) ---\n{text[-6000:]}"

    def horses(self) -> list[psutil.Process]:
        """The work-horses: children the worker forked to run a job."""
        try:
            return psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []

    def wait(self, timeout: float = WORKER_WAIT) -> int:
        """Wait for a burst worker to exit; its exit code. Fail with its log if it does not."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker did not exit within {timeout:.0f} s\n{self.log()}")

    def stop(self) -> None:
        """Terminate the worker and its horses if still running; close the log."""
        horses = self.horses()
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=15)
        for horse in horses:
            try:
                horse.kill()
            except psutil.NoSuchProcess:
                pass
        self._log.close()


@contextmanager
def worker_process(stack: Stack, tmp_path: Path, queue: str, name: str = "worker",
                   burst: bool = True,
                   env: dict[str, str] | None = None) -> Iterator[WorkerProcess]:
    """A running worker subprocess on `queue`, always stopped afterwards.

    Its log is `<name>-<random>.log` in tmp_path, so each worker of a test has its own log.
    """
    process = WorkerProcess(stack, tmp_path / f"{name}-{uuid.uuid4().hex[:6]}.log", queue,
                            burst=burst, env=env)
    try:
        yield process
    finally:
        process.stop()


def run_burst_worker(stack: Stack, tmp_path: Path, queue: str, name: str = "burst",
                     env: dict[str, str] | None = None) -> str:
    """Run a burst worker on `queue` until the queue is empty; return its log.

    Fails with the log when the worker does not exit in time or exits with a non-zero code.
    """
    with worker_process(stack, tmp_path, queue, name, env=env) as worker:
        code = worker.wait()
        assert code == 0, f"the worker exited with {code}\n{worker.log()}"
        return worker.log()
