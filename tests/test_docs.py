"""The documentation runs: every ```python block of README.md and docs/*.md is executed.

Blocks of one file run in order in one fresh namespace (so a later block may use what an earlier
one defined), with a fresh temporary directory as the working directory. A block fenced as
```python no-run is shown to readers but not executed (e.g. code that needs a server).
Only fences that start at the beginning of a line count.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
QUICK_START = (
    "python3 -m venv .venv && .venv/bin/pip install -e '.[all]' && .venv/bin/tcs demo",
    "python3 -m venv .venv && .venv/bin/pip install -e '.[all,test]' && .venv/bin/pytest",
)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """The runnable ```python blocks of a Markdown text: (line of the fence, source)."""
    blocks = []
    for match in FENCE.finditer(text):
        if match.group(1).strip():  # ```python no-run (shown, not run), or ```pythonconsole
            continue
        line = text.count("\n", 0, match.start()) + 1
        blocks.append((line, match.group(2)))
    return blocks


def _param(path: Path) -> object:
    """One test case per file; pages that load the whole history (5-10 s) are marked slow."""
    slow = "load_history(" in path.read_text(encoding="utf-8")
    marks = [pytest.mark.slow] if slow else []
    return pytest.param(path, id=path.relative_to(ROOT).as_posix(), marks=marks)


@pytest.mark.parametrize("path", [_param(p) for p in DOCS])
def test_python_blocks_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each ```python block of the file runs without error, in order, in one namespace."""
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("TCS_")]:
        monkeypatch.delenv(name)
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem.replace('-', '_')}"}
    for line, source in python_blocks(path.read_text(encoding="utf-8")):
        # Pad with newlines so that a traceback points at the real line of the Markdown file.
        code = compile("\n" * line + source, str(path), "exec")
        exec(code, namespace)


def test_fence_parser_skips_no_run_and_other_languages() -> None:
    """Only plain ```python fences run; ```python no-run and other languages are skipped."""
    text = (
        "intro\n```python\nx = 1\n```\n"
        "```python no-run\nraise SystemExit\n```\n"
        "```bash\nrm -rf /\n```\n"
        "```python\ny = x + 1\n```\n"
    )
    assert python_blocks(text) == [(2, "x = 1\n"), (11, "y = x + 1\n")]


def test_readme_has_a_runnable_example() -> None:
    """The README shows the public API in at least one runnable ```python block."""
    assert python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))


def test_readme_quick_start_has_the_two_commands() -> None:
    """The README's quick start shows exactly the two set-up commands, verbatim."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [line for line in section.splitlines() if line.startswith("python3 -m venv")]
    assert commands == list(QUICK_START)


def test_relative_links_resolve() -> None:
    """Every relative link in the README and docs points at a file of the repository."""
    broken = []
    for path in DOCS:
        for target in LINK.findall(path.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (path.parent / target).exists():
                broken.append(f"{path.relative_to(ROOT)} -> {target}")
    assert broken == []
