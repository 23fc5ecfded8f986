"""``crawl2model up --spark-workers N``'s cluster: started beside the stack, shown by status,
handed to Airflow as C2M_SPARK_MASTER, stopped by ``down`` (real master and worker JVMs)."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ops import cli
from ops.launch.settings import get_settings
from ops.stack import components, layout, monitor, services, spark_cluster, spark_standalone

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def stack(tmp_path, monkeypatch):
    monkeypatch.setenv("C2M_STACK_DIR", str(tmp_path / "stack"))
    monkeypatch.setenv("C2M_DATA_ROOT", str(tmp_path / "data"))
    for var in ("C2M_AIRFLOW_PORT", "C2M_MLFLOW_PORT", "C2M_SITE_PORT", "C2M_REVIEWS_PORT"):
        monkeypatch.setenv(var, str(_free_port()))
    for var in ("C2M_S3", "C2M_SPARK_MASTER"):
        monkeypatch.delenv(var, raising=False)
    return get_settings()


def _jvms_under(folder: Path) -> list[int]:
    """Live java processes whose command line names ``folder`` (the cluster's work dirs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "java" in cmd and str(folder) in cmd:
                found.append(int(entry.name))
    return found


def test_up_flag_is_parsed():
    assert cli._parser().parse_args(["up", "--spark-workers", "2"]).spark_workers == 2
    assert cli._parser().parse_args(["up"]).spark_workers == 0


def test_spark_cluster_beside_the_stack_is_listed_and_stopped_by_down(stack, capsys):
    s = spark_cluster.start_spark_cluster(stack, workers=2, timeout=240)
    cluster = spark_cluster.running_spark_cluster(stack)
    try:
        assert cluster is not None and s.spark_master == cluster.master_url
        assert s.spark_master.startswith("spark://127.0.0.1:")
        workers = spark_standalone.alive_workers(cluster.ui_url)
        assert len(workers) == 2 and {w["cores"] for w in workers} == {1}
        # PIDs and logs live under the stack dir; the DAGs' tasks get the master
        assert Path(stack.stack_dir, "spark", "cluster.json").exists()
        assert Path(stack.stack_dir, "spark", "logs", "worker-1.log").exists()
        assert components.airflow_env(s)["C2M_SPARK_MASTER"] == cluster.master_url
        assert monitor.urls(stack)["spark master"] == f"{cluster.ui_url} ({cluster.master_url})"
        # a second `up --spark-workers` keeps the running cluster
        assert spark_cluster.start_spark_cluster(stack, workers=2).spark_master == cluster.master_url
    finally:
        services.down(stack)
    assert spark_cluster.running_spark_cluster(stack) is None
    assert not spark_standalone.group_pids(cluster.pids)
    assert not _jvms_under(Path(stack.stack_dir, "spark"))
    assert "spark master" not in monitor.urls(stack)
    assert "stopped the Spark cluster" in capsys.readouterr().out


def test_a_cluster_is_refused_beside_an_airflow_started_without_it(stack, monkeypatch):
    monkeypatch.setattr(spark_cluster, "read_pid",
                        lambda s, name: 4242 if name == "airflow-scheduler" else None)
    with pytest.raises(layout.StackError, match="crawl2model down"):
        spark_cluster.start_spark_cluster(stack, workers=1)
