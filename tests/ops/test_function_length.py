"""No function in training/ is longer than 80 lines, unless a comment beside it says why.

A function counts from its ``def`` line to its last line (docstring included). The
exception is a comment starting ``# long:`` on the line above the ``def`` (or its first
decorator), giving the reason. Run as a script to list every function by length.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "training"
LIMIT = 80


def function_lengths(package: Path = PACKAGE):
    """(path, name, first line, length, excused) for every function and method under ``package``."""
    for path in sorted(package.rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                above = lines[first - 2].strip() if first >= 2 else ""
                length = node.end_lineno - node.lineno + 1
                excused = above.startswith("# long:")
                yield path.relative_to(package.parent), node.name, node.lineno, length, excused


def too_long(package: Path = PACKAGE, limit: int = LIMIT) -> list[str]:
    return [
        f"{path}:{line} {name} is {length} lines"
        for path, name, line, length, excused in function_lengths(package)
        if length > limit and not excused
    ]


def test_no_function_over_80_lines():
    assert too_long() == [], "split these functions, or put '# long: <reason>' on the line above the def"


def test_the_checker_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    (tmp_path / "m.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n")
    (tmp_path / "excused.py").write_text(f"# long: a table\ndef table():\n{body}\n")
    assert [msg.split(" ", 1)[1] for msg in too_long(tmp_path)] == [f"long is {LIMIT + 1} lines"]


if __name__ == "__main__":
    rows = sorted(function_lengths(), key=lambda r: -r[3])
    for path, name, line, length, excused in rows[: int(sys.argv[1]) if len(sys.argv) > 1 else 15]:
        print(f"{length:4d}  {path}:{line} {name}{'  (excused)' if excused else ''}")
    sys.exit(1 if too_long() else 0)
