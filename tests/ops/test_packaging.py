"""The package builds without a setuptools warning, as `make venvs` installs it (pip -q, editable).

The builds run on a copy of the packaged files in a temporary folder and install nothing: the
shared venvs are never touched (``pip wheel`` builds only; the editable wheel comes from
setuptools' backend).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGED = ("setup.cfg", "pyproject.toml", "README.md", "ops", "spark_jobs", "training")
WARNING_SIGNS = ("Warning", "!!", "is absent from the `packages` configuration", "deprecated")


def _copy_project(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in PACKAGED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def _make_quiet_env() -> dict[str, str]:
    """PYTHONWARNINGS as the Makefile's QUIET_INSTALL sets it for `pip install -e`."""
    line = next(ln for ln in (REPO / "Makefile").read_text().splitlines() if ln.startswith("QUIET_INSTALL"))
    value = re.search(r"PYTHONWARNINGS='([^']*)'", line).group(1)
    return {**os.environ, "PYTHONWARNINGS": value, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _pip(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    assert args[0] == "wheel", "only `pip wheel`: an install would replace the shared venv's crawl2model"
    done = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    return out


def _assert_quiet(out: str) -> None:
    signs = [s for s in WARNING_SIGNS if s in out]
    assert not signs, f"setuptools/pip printed {signs}:\n{out}"


@pytest.mark.timeout(600)
def test_editable_build_as_make_venvs_runs_it_prints_no_warning(tmp_path):
    """The editable wheel pip would install, built by calling setuptools' backend directly: pip
    itself is not run, since ``pip install --prefix`` uninstalls the venv's own crawl2model."""
    project = _copy_project(tmp_path / "src")
    code = ("import sys; from setuptools import build_meta; "
            "print(build_meta.build_editable(sys.argv[1]))")
    (tmp_path / "dist").mkdir()
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "dist")], cwd=project,
                          env=_make_quiet_env(), capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    _assert_quiet(out)
    assert (tmp_path / "dist" / done.stdout.strip().splitlines()[-1]).is_file()


@pytest.mark.timeout(600)
def test_wheel_declares_every_package_and_its_data_without_warnings(tmp_path):
    project = _copy_project(tmp_path / "src")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONWARNINGS", None)  # the plain build: nothing filtered
    out = _pip(["wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), "."],
               project, env)
    _assert_quiet(out)
    wheel, = (tmp_path / "dist").glob("crawl2model-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"ops/install/build_horovod.sh", "ops/install/horovod-0.28.1.patch", "ops/install/hvd_smoke.py",
            "ops/cli.py", "spark_jobs/__main__.py", "spark_jobs/jobs/crawl.py", "training/pretrain.py"} <= names
    assert not any(n.startswith(("tests/", "dags/", "bench/")) for n in names)
