"""No function outside tests is longer than 80 lines, unless a comment beside it says why.

Checked packages: ops/, spark_jobs/, training/, dags/ and bench/. A function counts from its
``def`` line to its last line (docstring included). The exception is a comment starting
``# long:`` on the line above the ``def`` (or its first decorator), giving the reason. Run as a
script to list the longest functions.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ops", "spark_jobs", "training", "dags", "bench")
LIMIT = 80

# (path, function) pairs allowed over the limit for now, each with the reason beside it.
TEMPORARILY_ALLOWED: set[tuple[str, str]] = set()


def function_lengths(root: Path = ROOT, packages=PACKAGES):
    """(path, name, first line, length, excused) for every function and method under ``packages``."""
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            lines = path.read_text().splitlines()
            for node in ast.walk(ast.parse("\n".join(lines), str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                    above = lines[first - 2].strip() if first >= 2 else ""
                    length = node.end_lineno - node.lineno + 1
                    excused = above.startswith("# long:")
                    yield path.relative_to(root).as_posix(), node.name, node.lineno, length, excused


def too_long(root: Path = ROOT, packages=PACKAGES, limit: int = LIMIT, allowed=frozenset()) -> list[str]:
    return [
        f"{path}:{line} {name} is {length} lines"
        for path, name, line, length, excused in function_lengths(root, packages)
        if length > limit and not excused and (path, name) not in allowed
    ]


def test_no_function_over_80_lines():
    assert too_long(allowed=TEMPORARILY_ALLOWED) == [], (
        "split these functions, or put '# long: <reason>' on the line above the def"
    )


def test_the_checker_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n")
    (tmp_path / "pkg" / "excused.py").write_text(f"# long: a table\ndef table():\n{body}\n")
    (tmp_path / "pkg" / "allowed.py").write_text(f"def big():\n{body}\n")
    found = too_long(tmp_path, ("pkg",), allowed={("pkg/allowed.py", "big")})
    assert [msg.split(" ", 1)[1] for msg in found] == [f"long is {LIMIT + 1} lines"]


if __name__ == "__main__":
    rows = sorted(function_lengths(), key=lambda r: -r[3])
    for path, name, line, length, excused in rows[: int(sys.argv[1]) if len(sys.argv) > 1 else 15]:
        print(f"{length:4d}  {path}:{line} {name}{'  (excused)' if excused else ''}")
    sys.exit(1 if too_long(allowed=TEMPORARILY_ALLOWED) else 0)
