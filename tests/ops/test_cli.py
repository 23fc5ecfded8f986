"""The crawl2model CLI: verbatim pass-through to the launchers, honest about unbuilt stages."""
from __future__ import annotations

import subprocess
import sys

import pytest

from ops import cli, launchers


@pytest.fixture
def calls(monkeypatch):
    seen = []
    monkeypatch.setattr(launchers, "spark_submit", lambda job, args: seen.append(("spark", job, args)))
    monkeypatch.setattr(launchers, "horovodrun",
                        lambda mod, args, np=None: seen.append(("hvd", mod, args, np)))
    return seen


def test_data_stage_args_pass_through_verbatim(calls):
    argv = ["crawl", "--version", "v1", "--seeds", "http://127.0.0.1:1/", "--help"]
    assert cli.main(argv) == 0
    assert calls == [("spark", "crawl", argv[1:])]


def test_training_stage_takes_a_leading_np(calls):
    assert cli.main(["pretrain", "--np", "2", "--shards", "/d/shards/v=1", "--max-steps", "5"]) == 0
    assert cli.main(["finetune", "--np=1", "--epochs", "1"]) == 0
    assert cli.main(["finetune", "--epochs", "1", "--np", "3"]) == 0
    assert calls == [
        ("hvd", "training.pretrain", ["--shards", "/d/shards/v=1", "--max-steps", "5"], 2),
        ("hvd", "training.finetune", ["--epochs", "1"], 1),
        ("hvd", "training.finetune", ["--epochs", "1", "--np", "3"], None),
    ]


def test_bad_np_is_an_error():
    with pytest.raises(SystemExit, match="--np"):
        cli.main(["pretrain", "--np", "two"])


@pytest.mark.parametrize("stage", ["evaluate", "hpo", "compress"])
def test_unbuilt_stages_say_so_and_exit_2(stage, capsys, calls):
    assert cli.main([stage, "--anything"]) == 2
    assert "not built yet" in capsys.readouterr().err
    assert calls == []


def test_launch_errors_exit_1(monkeypatch, capsys):
    def boom(job, args):
        raise launchers.LaunchError("spark job crawl failed with exit code 3")

    monkeypatch.setattr(launchers, "spark_submit", boom)
    assert cli.main(["crawl", "--version", "x"]) == 1
    assert "exit code 3" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "crawl2model" in capsys.readouterr().out


def test_cli_and_stack_modules_import_nothing_heavy():
    code = ("import sys, ops.cli, ops.services, ops.demo, ops.airflow_api, ops.dag_support, ops.demo_site; "
            "heavy = {'pyspark', 'torch', 'airflow', 'mlflow', 'horovod', 'requests'} & set(sys.modules); "
            "print(sorted(heavy)); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
