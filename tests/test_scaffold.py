"""`onemeter plugin new NAME`: the skeleton is a plugin of its own that passes the plugin
contract tests exactly as generated, installed the way pip would install it."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from click.testing import CliRunner

from onemeter.cli import main
from tests.support.stack import ROOT, TEST_DB


def test_the_scaffold_refuses_a_bad_name_and_an_existing_folder(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(main, ["plugin", "new", "Heating-2", "--dir", str(tmp_path)])
    assert bad.exit_code != 0 and "插件名「Heating-2」不合规" in bad.output
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "onemeter_heating").mkdir()
    again = runner.invoke(main, ["plugin", "new", "heating", "--dir", str(tmp_path)])
    assert again.exit_code != 0 and "已存在，未改动" in again.output
    assert list((tmp_path / "onemeter_heating").iterdir()) == []


def test_a_scaffolded_plugin_passes_the_contract_tests_as_generated(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["plugin", "new", "heating", "--label", "供暖",
                                       "--company", "信阳热力公司", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    source = tmp_path / "onemeter_heating"
    project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    assert project["name"] == "onemeter-heating"
    assert project["entry-points"]["onemeter.plugins"] == {"heating": "onemeter_heating.plugin"}
    assert (source / "onemeter_heating" / "migrations" / "heating0001_initial.py").exists()
    # The contract tests in a run of their own: the plugin installed run-locally (a
    # dist-info with its entry point), loaded, enabled by 平桥办事处, checked alone.
    env = {**os.environ, "ONEMETER_TEST_DB": TEST_DB,
           "ONEMETER_TEST_PLUGIN_SOURCES": str(source), "ONEMETER_CONTRACT_PLUGIN": "heating"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                          "tests/plugin_contract"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    contract = (ROOT / "tests" / "plugin_contract" / "test_utility_contract.py").read_text()
    expected = sum(line.startswith("def test_") for line in contract.splitlines())
    summary = output.strip().splitlines()[-1]
    assert f"{expected} passed" in summary and "skipped" not in summary, summary
    assert "plugin contract (heating)" in output and ", 0 leaks" in output
