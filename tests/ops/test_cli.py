"""The crawl2model CLI: verbatim pass-through to the local, honest about unbuilt stages."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ops import cli
from ops.launch import local


@pytest.fixture
def calls(monkeypatch):
    seen = []
    monkeypatch.setattr(local, "spark_submit", lambda job, args: seen.append(("spark", job, args)))
    monkeypatch.setattr(local, "horovodrun",
                        lambda mod, args, np=None: seen.append(("hvd", mod, args, np)))
    return seen


def test_data_stage_args_pass_through_verbatim(calls):
    argv = ["crawl", "--version", "v1", "--seeds", "http://127.0.0.1:1/", "--", "--help"]
    assert cli.main(argv) == 0
    assert calls == [("spark", "crawl", argv[1:])]


def test_ingest_is_a_data_stage(calls, capsys):
    argv = ["ingest", "--version", "cc", "--warc-glob", "s3://bucket/cc/*.warc.gz"]
    assert cli.main(argv) == 0
    assert calls == [("spark", "ingest", argv[1:])]
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "ingest" in capsys.readouterr().out


def test_training_stage_takes_a_leading_np(calls):
    assert cli.main(["pretrain", "--np", "2", "--shards", "/d/shards/v=1", "--max-steps", "5"]) == 0
    assert cli.main(["finetune", "--np=1", "--epochs", "1"]) == 0
    assert cli.main(["finetune", "--epochs", "1", "--np", "3"]) == 0
    assert calls == [
        ("hvd", "training.pretrain", ["--shards", "/d/shards/v=1", "--max-steps", "5"], 2),
        ("hvd", "training.finetune", ["--epochs", "1"], 1),
        ("hvd", "training.finetune", ["--epochs", "1", "--np", "3"], None),
    ]


@pytest.mark.parametrize("stage", cli.DATA_STAGES + cli.TRAIN_STAGES + cli.PY_STAGES)
def test_stage_help_prints_the_jobs_usage_once_without_a_launcher(stage, monkeypatch, capsys):
    def no_launch(*args, **kwargs):
        raise AssertionError("--help must not launch spark-submit, horovodrun or the job")

    for name in ("spark_submit", "horovodrun", "run"):
        monkeypatch.setattr(local, name, no_launch)
    args = [stage, "--np", "2", "--help"] if stage in cli.TRAIN_STAGES else [stage, "-h"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert out.count("usage:") == 1 and "[0]<stdout>" not in out and "[1]<stdout>" not in out
    assert f"training.{stage}" in out or f"crawl2model {stage}" in out  # the job's own parser
    assert "--version" in out or "--help" in out


def test_help_command_is_plain_python():
    for stage in cli.DATA_STAGES + cli.TRAIN_STAGES + cli.PY_STAGES:
        cmd = cli.help_command(stage, "/venv/bin/python", Path("/repo"))
        assert cmd[0] == "/venv/bin/python" and cmd[-1] == "--help"
        assert not any("spark-submit" in c or "horovodrun" in c for c in cmd)
    assert cli.wants_help(["--max-steps", "3", "-h"]) and not cli.wants_help(["--", "--help"])


@pytest.mark.timeout(120)
def test_pretrain_help_from_the_console_answers_once():
    done = subprocess.run([sys.executable, "-m", "ops.cli", "pretrain", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("usage: python -m training.pretrain") == 1
    assert "<stdout>" not in done.stdout + done.stderr and "launching" not in done.stdout


def test_bad_np_is_an_error():
    with pytest.raises(SystemExit, match="--np"):
        cli.main(["pretrain", "--np", "two"])


@pytest.mark.parametrize("stage", ["evaluate", "hpo", "compress"])
def test_single_process_stages_run_the_module_in_the_jobs_venv(stage, monkeypatch, calls):
    from ops.launch.settings import get_settings

    ran = []
    monkeypatch.setattr(local, "run", lambda cmd, env=None, what="": ran.append((cmd, env, what)))
    assert cli.main([stage, "--model", "models:/m@champion", "--np", "2"]) == 0
    (cmd, env, what), = ran
    assert cmd == [str(get_settings().jobs_python), "-m", f"training.{stage}",
                   "--model", "models:/m@champion", "--np", "2"]  # flags pass through verbatim
    assert env["MLFLOW_TRACKING_URI"] and what == f"training.{stage}" and calls == []


def test_single_process_stage_failure_exits_1(monkeypatch, capsys):
    def boom(cmd, env=None, what=""):
        raise local.LaunchError("training.hpo failed with exit code 2")

    monkeypatch.setattr(local, "run", boom)
    assert cli.main(["hpo", "--trials", "1"]) == 1
    assert "exit code 2" in capsys.readouterr().err


def test_launch_errors_exit_1(monkeypatch, capsys):
    def boom(job, args):
        raise local.LaunchError("spark job crawl failed with exit code 3")

    monkeypatch.setattr(local, "spark_submit", boom)
    assert cli.main(["crawl", "--version", "x"]) == 1
    assert "exit code 3" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "crawl2model" in capsys.readouterr().out


def test_cli_and_stack_modules_import_nothing_heavy():
    ops = Path(cli.__file__).parent
    # every module of the stack and the DAG helpers, but the two that are Airflow classes
    modules = [f"ops.{p.parent.name}.{p.stem}" for p in sorted([*ops.glob("stack/*.py"), *ops.glob("dagkit/*.py")])
               if p.stem not in ("__init__", "assets", "training_operator")]
    code = (f"import sys, ops.cli, ops.clients.airflow_api, {', '.join(modules)}; "
            "heavy = {'pyspark', 'torch', 'airflow', 'mlflow', 'horovod', 'requests'} & set(sys.modules); "
            "print(sorted(heavy)); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
