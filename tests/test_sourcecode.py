"""flake8 and mypy run as tests (after uvloop's tests/test_sourcecode.py).

Both run from the repository root, whatever the current directory, so they read its .flake8 and
pyproject.toml ([tool.mypy]). mypy checks the fastloop/ sources; fastloop._core resolves to
fastloop/_core.pyi, so a fresh clone with fastloop installed (no extension built in place) passes.
Each test skips when its tool is not installed (both are in the `test` extra).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What flake8 checks, relative to ROOT.
FLAKE8_PATHS = ["fastloop", "tests", "fuzz", "benchmarks"]


def run_tool(module: str, args: List[str]) -> None:
    """Runs `python -m module args` in ROOT; fails with its output unless it exits 0."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"{module} exited {proc.returncode}:\n{proc.stdout}", pytrace=False)


def test_flake8():
    run_tool("flake8", ["--config", str(ROOT / ".flake8"), *FLAKE8_PATHS])


def test_mypy():
    run_tool("mypy", ["--config-file", str(ROOT / "pyproject.toml")])
