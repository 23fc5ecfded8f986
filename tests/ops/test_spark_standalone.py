"""The workers' private temp folder (ops.stack.spark_standalone.isolated), run for real with ``unshare``:
what a worker runs from stays visible wherever it lives, the rest of the folder is hidden, and
what the worker writes there stays its own."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from ops.stack import spark_standalone


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs root and `unshare --mount` (mount namespaces)")
def test_a_worker_sees_its_checkout_and_shared_folders_but_not_the_rest(tmp_path):
    top = tmp_path / "tmp"  # stands in for /tmp
    for path in ("clone/.venv/bin", "clone/pkg", "shared/data", "driver-local"):
        (top / path).mkdir(parents=True)
    (top / "clone" / "pkg" / "code.py").write_text("x = 1\n")
    (top / "shared" / "data" / "in.txt").write_text("input\n")
    (top / "driver-local" / "secret.txt").write_text("driver only\n")
    hold = tmp_path / "hold"
    hold.mkdir()
    probe = ("cat clone/pkg/code.py shared/data/in.txt; ls -A; "
             "echo from-worker > shared/data/out.txt; mkdir -p driver-local; echo w > driver-local/part-0")
    needs = spark_standalone.worker_needs(top / "clone" / ".venv" / "bin", "/usr/bin/python3", top / "clone")
    cmd = spark_standalone.isolated(["sh", "-c", f"cd {top} && {probe}"],
                                    [str(top / "shared"), str(top / "shared" / "data"), *needs],
                                    str(hold), private=str(top))
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["x", "=", "1", "input", "clone", "shared"]  # driver-local/ is hidden
    assert (top / "shared" / "data" / "out.txt").read_text() == "from-worker\n"  # shared: the same folder
    assert sorted(os.listdir(top / "driver-local")) == ["secret.txt"]  # the worker's write stayed its own
    assert str(top / "clone") in needs and str(top / "clone" / ".venv") in needs
