"""Static checks that are part of the test command: mypy --strict and ruff stay clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    found = str(exe) if exe.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return found


@pytest.mark.slow
def test_mypy_strict_is_clean() -> None:
    """`mypy --strict src/tcs_core src/transports` reports no issue."""
    out = subprocess.run(
        [_tool("mypy"), "--strict", "src/tcs_core", "src/transports"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_is_clean() -> None:
    """`ruff check` reports no issue on the whole tree."""
    out = subprocess.run(
        [_tool("ruff"), "check", "--output-format", "concise", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_engine_never_imports_transports() -> None:
    """Layering: nothing under src/tcs_core imports the `transports` package."""
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "src" / "tcs_core").rglob("*.py")
        for line in p.read_text(encoding="utf-8").splitlines()
        if line.lstrip().startswith(("import transports", "from transports"))
    ]
    assert offenders == []
