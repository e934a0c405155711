"""The test suite's own disk use: `make test-all` copies whole runs (hundreds of MB each), and CI's /tmp outlives
a run, so what a passing session writes must not stay. An inner pytest session, with this project's pytest.ini and
`module_scratch`, runs in a temporary root of its own."""
from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

INNER_CONFTEST = f"""
import importlib.util
import sys

spec = importlib.util.spec_from_file_location("project_conftest", {str(PROJECT_ROOT / "tests" / "conftest.py")!r})
project = sys.modules["project_conftest"] = importlib.util.module_from_spec(spec)  # its dataclasses look it up
spec.loader.exec_module(project)
module_scratch = project.module_scratch
"""

FIRST_MODULE = """
import pytest

@pytest.fixture(scope="module")
def big(module_scratch):
    folder = module_scratch("big")
    (folder / "model.pt").write_bytes(b"x" * 1000)
    return folder

def test_writes(big, tmp_path):
    (tmp_path / "copy.pt").write_bytes(b"y" * 1000)
    (big.parent / "seen.txt").write_text(str(big))
"""

# runs after the first module (files run in name order): its module folder must be gone by then
SECOND_MODULE = """
from pathlib import Path

def test_the_first_modules_folder_is_gone(tmp_path):
    seen = Path((tmp_path.parent / "seen.txt").read_text())
    assert not seen.exists(), seen
"""


def test_a_passing_session_leaves_nothing_in_the_temporary_root(tmp_path):
    project, root = tmp_path / "inner", tmp_path / "temproot"
    project.mkdir()
    root.mkdir()
    shutil.copy(PROJECT_ROOT / "pytest.ini", project / "pytest.ini")
    (project / "tests").mkdir()
    (project / "tests" / "conftest.py").write_text(INNER_CONFTEST)
    (project / "tests" / "test_a.py").write_text(FIRST_MODULE)
    (project / "tests" / "test_b.py").write_text(SECOND_MODULE)
    env = {**os.environ, "PYTEST_DEBUG_TEMPROOT": str(root)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert left == [f"pytest-of-{getpass.getuser()}"], f"a passing session left {left}"
