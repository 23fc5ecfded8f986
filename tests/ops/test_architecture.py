"""The layers point one way and nothing imports in a cycle (setup.cfg's [importlinter] contracts).

lint-imports reads every import, those inside functions too; the DAG files are not a package,
so their imports are checked here against what a DAG file may use.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]
# A DAG file orchestrates: it uses the DAG helpers, the REST clients and the launchers (and the
# settings beside them), never a job's code, the lake directly, the local stack or the CLI.
DAG_ALLOWED = ("ops.dagkit", "ops.clients", "ops.launch")
PROJECT = ("ops", "spark_jobs", "training")


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.fail(f"{lint} is missing: install the dev extra (pip install -e '.[dev]')")
    # this checkout's packages, whichever checkout the venv's editable install points at
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([str(lint), "--no-cache"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"import contracts broken (setup.cfg [importlinter]):\n{proc.stdout}\n{proc.stderr}"


def test_the_graph_holds_imports_made_inside_functions():
    # training.finetune.main imports training.tasks.transfer inside the function: the contracts
    # see such imports, so a cycle cannot hide behind one.
    graph = grimp.build_graph("training", cache_dir=None)
    details = graph.get_import_details(importer="training.finetune", imported="training.tasks.transfer")
    assert details, "grimp no longer reports imports made inside functions"
    source = (REPO / "training" / "finetune.py").read_text().splitlines()
    assert all(source[d["line_number"] - 1].startswith((" ", "\t")) for d in details)


def _project_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module in PROJECT else [node.module]
            found += [(node.lineno, n) for n in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] in PROJECT]


@pytest.mark.parametrize("dag_file", sorted((REPO / "dags").glob("*.py")), ids=lambda p: p.name)
def test_dag_files_import_only_orchestration_modules(dag_file):
    bad = [f"{dag_file.name}:{line} imports {name}" for line, name in _project_imports(dag_file)
           if not (name + ".").startswith(tuple(m + "." for m in DAG_ALLOWED))]
    assert not bad, f"DAG files may import only {', '.join(DAG_ALLOWED)}: " + "; ".join(bad)
