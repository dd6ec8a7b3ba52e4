"""The source folder is called platform/, like the stdlib module: it must never shadow it.

platform/ is a plain folder holding the onemeter package (no __init__.py of its own), so
`import platform` keeps resolving to the standard library in any process using onemeter.
"""

from __future__ import annotations

import importlib
import platform
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()


def test_stdlib_platform_still_works_after_importing_onemeter() -> None:
    importlib.import_module("onemeter.app")
    found = importlib.reload(platform)  # resolved again, with onemeter on the path

    assert Path(found.__file__).resolve().parent == STDLIB
    assert found.system() and found.machine() is not None
    assert found.python_version() == ".".join(map(str, sys.version_info[:3]))


def test_a_fresh_process_importing_onemeter_first_gets_the_stdlib_platform() -> None:
    code = ("import onemeter.app, platform; "
            "print(platform.__file__); print(platform.system()); print(platform.python_version())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    path, system, version = done.stdout.split("\n")[:3]
    assert Path(path).resolve().parent == STDLIB
    assert system == platform.system() and version == platform.python_version()


def test_platform_folder_is_not_a_package() -> None:
    assert (ROOT / "platform" / "onemeter" / "__init__.py").is_file()
    assert not (ROOT / "platform" / "__init__.py").exists()
