"""`make test` fails, naming the service, when PostgreSQL or Redis is unreachable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from onemeter.config import PROJECT_ROOT


def _pytest_with(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_docs.py"],
        cwd=PROJECT_ROOT, env={**os.environ, **env}, capture_output=True, text=True,
        timeout=120)


@pytest.mark.parametrize(("env", "named"), [
    ({"ONEMETER_TEST_DB": "postgresql",
      "ONEMETER_TEST_PG_URL": "postgresql+psycopg://postgres@127.0.0.1:1/postgres"},
     "PostgreSQL 不可达"),
    ({"ONEMETER_TEST_REDIS_URL": "redis://127.0.0.1:1/0"}, "Redis 不可达"),
])
def test_an_unreachable_service_stops_the_run_and_says_which(env, named):
    result = _pytest_with(**env)
    assert result.returncode == 3
    assert named in result.stdout + result.stderr
    assert "passed" not in result.stdout
