"""The local launcher: failures carry the job's last output lines; one interface chosen by config."""
from __future__ import annotations

import sys

import pytest

from ops.launch import local
from ops.launch.choose import get_launcher, launcher_kind
from ops.launch.local import LaunchError, LocalLauncher, run


def _script(lines: int, code: int) -> list[str]:
    return [sys.executable, "-c",
            f"import sys\nfor i in range({lines}): print(f'line {{i}}')\n"
            f"print('ShardError: no shards at /x', file=sys.stderr)\nsys.exit({code})"]


def test_a_failed_job_raises_with_its_last_lines(capsys):
    with pytest.raises(LaunchError) as err:
        run(_script(100, 3), what="test job")
    exc = err.value
    assert exc.returncode == 3
    assert len(exc.tail) == local.TAIL_LINES == 40
    assert exc.tail[-1] == "ShardError: no shards at /x"  # stderr is merged, in order
    assert exc.tail[0] == "line 61"
    text = str(exc)
    assert "test job failed with exit code 3" in text and "last 40 lines" in text
    assert "ShardError: no shards at /x" in text and "line 60" not in text
    assert "line 99" in capsys.readouterr().out  # everything still streams to the caller


def test_a_short_failure_keeps_all_its_lines():
    with pytest.raises(LaunchError) as err:
        run(_script(2, 1), what="short")
    assert err.value.tail == ["line 0", "line 1", "ShardError: no shards at /x"]
    assert err.value.summary.startswith("short failed with exit code 1")


def test_success_raises_nothing(capsys):
    run([sys.executable, "-c", "print('ok')"], what="fine")
    assert "ok" in capsys.readouterr().out


def test_a_command_that_cannot_start_says_so():
    with pytest.raises(LaunchError, match="could not start"):
        run(["/nonexistent/binary"], what="ghost")


def test_launch_error_still_takes_one_message():
    exc = LaunchError("plain")
    assert str(exc) == "plain" and exc.tail == [] and exc.returncode is None


def test_launcher_kind_comes_from_argument_then_env(monkeypatch):
    monkeypatch.delenv("C2M_LAUNCHER", raising=False)
    assert launcher_kind() == "local"
    monkeypatch.setenv("C2M_LAUNCHER", "kubernetes")
    assert launcher_kind() == "kubernetes"
    assert launcher_kind("LOCAL") == "local"  # a Variable wins over the environment
    with pytest.raises(LaunchError, match="choose one of local, kubernetes"):
        launcher_kind("slurm")


def test_local_launcher_runs_the_same_functions_as_the_cli(monkeypatch):
    seen = []
    monkeypatch.setattr(local, "spark_submit",
                        lambda job, args, s=None: seen.append(("spark", job, args)))
    monkeypatch.setattr(local, "horovodrun",
                        lambda module, args, np=None, s=None, extra_env=None: seen.append(
                            ("train", module, args, np, extra_env)))
    launcher = get_launcher("local")
    assert isinstance(launcher, LocalLauncher) and launcher.kind == "local"
    launcher.spark("crawl", ["--version", "v"])
    launcher.train("training.pretrain", ["--max-steps", "1"], 2, name="x", env={"A": "1"})
    assert seen == [("spark", "crawl", ["--version", "v"]),
                    ("train", "training.pretrain", ["--max-steps", "1"], 2, {"A": "1"})]


def test_horovodrun_passes_extra_env_to_the_ranks(monkeypatch, tmp_path):
    from ops.launch.settings import Settings

    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "horovodrun").touch()
    captured = {}
    monkeypatch.setattr(local, "run", lambda cmd, env=None, what="": captured.update(cmd=cmd, env=env))
    local.horovodrun("training.pretrain", ["--x"], 2, Settings(jobs_venv=venv),
                         extra_env={"MLFLOW_RUN_CONTEXT": "{}"})
    assert captured["env"]["MLFLOW_RUN_CONTEXT"] == "{}" and captured["env"]["OMP_NUM_THREADS"]
    assert captured["cmd"][-3:] == ["-m", "training.pretrain", "--x"]


def test_kubernetes_launcher_is_the_cluster_one(monkeypatch):
    from ops.launch.kubernetes.cluster import ClusterConfig
    from ops.launch.kubernetes.launcher import KubernetesLauncher

    launcher = get_launcher("kubernetes", cfg=ClusterConfig(namespace="ml"))
    assert isinstance(launcher, KubernetesLauncher) and launcher.cfg.namespace == "ml"


def _fake_repo(root, job: str, master: str):
    """Settings for a repo with an empty entry file and spark-submit: enough to build the command."""
    from ops.launch.settings import Settings

    (root / "spark_jobs").mkdir(parents=True)
    (root / "spark_jobs" / "__main__.py").write_text("")
    (root / "venv" / "bin").mkdir(parents=True)
    (root / "venv" / "bin" / "spark-submit").write_text("")
    return Settings(repo_root=root, jobs_venv=root / "venv", spark_master=master)


C1 = "-XX:TieredStopAtLevel=1"


@pytest.mark.parametrize("master, job, java", [
    ("local[*]", "tokenize", C1), ("local[2]", "dedup", C1), ("local[2]", "clean", C1),
    ("local[2]", "extract", None), ("k8s://https://api:443", "tokenize", None)])
def test_measured_local_stages_run_c1_only_jit(tmp_path, monkeypatch, master, job, java):
    """Local clean, dedup and tokenize get C1-only JIT (measured faster there); others and clusters do not."""
    monkeypatch.delenv("C2M_SPARK_DRIVER_JAVA_OPTIONS", raising=False)
    cmd = local.spark_submit_command(job, ["--version", "v"], _fake_repo(tmp_path, job, master))
    assert cmd[-4:] == [str(tmp_path / "spark_jobs" / "__main__.py"), job, "--version", "v"]
    got = cmd[cmd.index("--driver-java-options") + 1] if "--driver-java-options" in cmd else None
    assert got == java


@pytest.mark.parametrize("value, java", [("", None), ("-Xss4m", "-Xss4m")])
def test_driver_java_options_can_be_replaced_from_the_environment(tmp_path, monkeypatch, value, java):
    monkeypatch.setenv("C2M_SPARK_DRIVER_JAVA_OPTIONS", value)
    cmd = local.spark_submit_command("dedup", [], _fake_repo(tmp_path, "dedup", "local[*]"))
    assert (cmd[cmd.index("--driver-java-options") + 1] if "--driver-java-options" in cmd else None) == java
