"""The README keeps its promises: two commands first, the hook reference, every setting."""

from __future__ import annotations

import re

from onemeter.config import PROJECT_ROOT
from onemeter.hookdocs import hooks_markdown

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_opens_with_make_run_and_make_test():
    first_block = README.split("```")[1]
    assert "make run" in first_block and "make test" in first_block


def test_readme_hook_reference_matches_the_hookspecs():
    section = re.search(r"<!-- hooks:start -->\n(.*)<!-- hooks:end -->", README, re.S)
    assert section, "hooks markers missing"
    assert section.group(1) == hooks_markdown(), "run: make docs (README hook section is stale)"


def test_every_setting_read_from_the_environment_is_documented():
    source = (PROJECT_ROOT / "platform/onemeter/config.py").read_text(encoding="utf-8")
    names = set(re.findall(r'"(ONEMETER_[A-Z_]+)"', source)) - {"ONEMETER_ORM_ISOLATION"}
    read = {n for n in names if f'env.get("{n}"' in source or f'environ.get("{n}"' in source}
    missing = sorted(n for n in read if n not in README)
    assert not missing, missing


def test_ci_calls_make_test_and_nothing_else_of_its_own():
    ci = (PROJECT_ROOT / ".ci/run").read_text()
    commands = [line for line in ci.splitlines() if line.strip() and not line.startswith("#")]
    assert [c for c in commands if not c.startswith(("set ", "cd "))] == ["make test"]
