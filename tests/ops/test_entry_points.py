"""How code is started: one entry file for the Spark stages, no module named like the standard
library where Python puts a folder first on ``sys.path``, and no code that edits ``sys.path``."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", "__pycache__", "node_modules", "results"}
PATH_EDITS = {"insert", "append", "extend", "pop", "remove", "clear"}


def _python_files(root: Path):
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")]
        for name in files:
            if name.endswith(".py"):
                yield Path(folder) / name


def _is_sys_path(node: ast.AST) -> bool:
    while isinstance(node, ast.Subscript):
        node = node.value
    return (isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name)
            and node.value.id == "sys")


def _path_edits(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in PATH_EDITS and _is_sys_path(node.func.value)):
            lines.append(node.lineno)
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
        lines += [node.lineno for t in targets if _is_sys_path(t)]
    return sorted(lines)


def test_no_code_outside_tests_edits_sys_path():
    found = [f"{path.relative_to(REPO)}:{line}" for path in _python_files(REPO)
             if path.relative_to(REPO).parts[0] != "tests"
             for line in _path_edits(ast.parse(path.read_text(), str(path)))]
    assert not found, ("these edit sys.path; run the code as a module (python -m ...) or put the project "
                       f"on PYTHONPATH instead: {found}")


def test_the_scan_sees_each_way_of_editing_sys_path():
    code = "import sys\nsys.path.insert(0, 'x')\nsys.path.pop(0)\nsys.path[:0] = ['y']\nsys.path += ['z']\n"
    assert _path_edits(ast.parse(code)) == [2, 3, 4, 5]


def _runs_as_script(path: Path) -> bool:
    """A file run by path (``if __name__ == "__main__":`` at its top level) or collected by pytest."""
    if path.name.startswith("test_") or path.name == "conftest.py":
        return True
    for node in ast.parse(path.read_text(), str(path)).body:
        test = ast.unparse(node.test) if isinstance(node, ast.If) else ""
        if "__name__" in test and "__main__" in test:
            return True
    return False


def first_on_sys_path() -> set[Path]:
    """Folders Python puts first on sys.path: the repository root (``python -m``, pytest), the DAG
    folder (Airflow), and the folder of every file run as a script (spark-submit's entry file,
    the bench drivers, the test files)."""
    folders = {REPO, REPO / "dags", REPO / "spark_jobs"}
    return folders | {p.parent for p in _python_files(REPO) if _runs_as_script(p)}


def _module_names(folder: Path) -> set[str]:
    names = {p.stem for p in folder.glob("*.py")}
    return names | {p.parent.name for p in folder.glob("*/__init__.py")}


def test_no_module_first_on_sys_path_shadows_the_standard_library():
    folders = first_on_sys_path()
    assert REPO / "spark_jobs" in folders and REPO / "bench" in folders
    clashes = {f"{folder.relative_to(REPO)}/{name}" for folder in folders
               for name in _module_names(folder) & set(sys.stdlib_module_names)}
    assert not clashes, f"rename these: they would hide the standard library module of that name: {clashes}"


def test_the_entry_file_runs_a_stage_as_spark_submit_runs_it():
    # as a script, its folder first on sys.path: the tokenize stage's imports reach the stdlib's tokenize
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(REPO / "spark_jobs" / "__main__.py"), "tokenize", "--help"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: crawl2model tokenize" in done.stdout and "--vocab-size" in done.stdout


def test_every_stage_is_declared_once_and_run_by_the_runner(capsys):
    import importlib

    from spark_jobs.__main__ import main
    from spark_jobs.jobs import STAGES
    from spark_jobs.stage import Stage

    for name in STAGES:
        stage = importlib.import_module(f"spark_jobs.jobs.{name}").STAGE
        assert isinstance(stage, Stage) and stage.name == name
    assert main(["nope"]) == 2 and "usage: python -m spark_jobs {crawl," in capsys.readouterr().err
