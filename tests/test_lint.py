"""The linter is part of the suite, so CI (which runs exactly the README's test command) runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


#: the longest function the product code may have (lines, decorators excluded): a function
#: longer than a screen does more than one thing (DEVELOPERS.md: "functions under ~80 lines")
MAX_FUNCTION_LINES = 80
PRODUCT_PACKAGES = ("engine", "index_builder", "bot", "web")


def long_functions(root: Path = ROOT, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``path:line name (n lines)`` of every product function longer than ``limit``."""
    import ast

    found = []
    for package in PRODUCT_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    if n > limit:
                        found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_no_product_function_is_over_80_lines() -> None:
    assert long_functions() == []


def test_the_length_check_finds_a_long_function(tmp_path: Path) -> None:
    (tmp_path / "engine").mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(85))
    (tmp_path / "engine" / "m.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n")
    assert long_functions(tmp_path) == ["engine/m.py:5 long (86 lines)"]
