"""Every job's DAG Params agree with the job: the same defaults, and the flags a DAG builds from
its default Params parse back to the job's own defaults.

The job side is each job's real parser (``build_parser``/``parse_args``) given only its required
flags; the DAG side is :mod:`ops.dagkit.dag_params` (what the DAG files wrap in ``Param``) and the
flag builders of :mod:`ops.dagkit.flags`.
"""
from __future__ import annotations

import argparse
from typing import Any, Callable

import pytest

from ops.dagkit import dag_params as dp
from ops.dagkit import flags
from ops.lake.jobconfig import settings
from ops.launch.settings import Settings
from spark_jobs.jobs.config import SETTINGS as STAGE_SETTINGS
from training.job_settings import JOB_SETTINGS

ROOT, VERSION, SHARDS = "/data", "v1", "/data/shards/v=v1"
WARC = "/data/cc/*.warc.gz"
# Params that are the DAG's own, not a job's flag (what to run, how many processes, overrides).
DAG_ONLY = {
    "data_refresh": {"source", "crawl_shards", "version", "publish", "pretrain"},
    "pretrain": {"np", "extra_args"},
    "finetune": {"np", "extra_args"},
    "hpo": {"parallel_trials", "extra_args"},
    "compress": {"np", "extra_args"},
}
# Params the DAG fills in per run when left empty: a crawl's scope (its seeds' hosts, explicit per
# shard) and an HPO study's name (<task>-<run id>).
DAG_DECIDES = {"allow_domains", "study_name"}


def _spark(stage: str) -> Callable[[list[str]], argparse.Namespace]:
    import importlib

    return importlib.import_module(f"spark_jobs.jobs.{stage}").build_parser().parse_args


def _training(module: str) -> Callable[[list[str]], argparse.Namespace]:
    import importlib

    return importlib.import_module(module).parse_args


# job -> (the DAG whose Params feed it, its settings, its parser, its required flags,
#         the DAG's flag builder for given Param values)
JOBS: dict[str, tuple] = {
    "crawl": ("data_refresh", STAGE_SETTINGS["crawl"], lambda: _spark("crawl"),
              ["--version", VERSION, "--seeds", "http://127.0.0.1:1/"],
              lambda p: flags.stage_args("crawl", p, ROOT, VERSION)),
    "ingest": ("data_refresh", STAGE_SETTINGS["ingest"], lambda: _spark("ingest"),
               ["--version", VERSION, "--warc-glob", WARC],
               lambda p: flags.ingest_args({**p, "warc_glob": WARC}, ROOT, VERSION)),
    "extract": ("data_refresh", STAGE_SETTINGS["extract"], lambda: _spark("extract"), ["--version", VERSION],
                lambda p: flags.stage_args("extract", p, ROOT, VERSION)),
    "clean": ("data_refresh", STAGE_SETTINGS["clean"], lambda: _spark("clean"), ["--version", VERSION],
              lambda p: flags.stage_args("clean", p, ROOT, VERSION)),
    "dedup": ("data_refresh", STAGE_SETTINGS["dedup"], lambda: _spark("dedup"), ["--version", VERSION],
              lambda p: flags.stage_args("dedup", p, ROOT, VERSION)),
    "tokenize": ("data_refresh", STAGE_SETTINGS["tokenize"], lambda: _spark("tokenize"),
                 ["--version", VERSION], lambda p: flags.stage_args("tokenize", p, ROOT, VERSION)),
    "pretrain": ("pretrain", JOB_SETTINGS["training.pretrain"], lambda: _training("training.pretrain"),
                 ["--shards", SHARDS], lambda p: flags.pretrain_args(p, SHARDS, ROOT, "run", "/r.json")),
    "finetune": ("finetune", JOB_SETTINGS["training.finetune"], lambda: _training("training.finetune"), [],
                 lambda p: flags.finetune_args(p, "/r.json")),
    "hpo": ("hpo", JOB_SETTINGS["training.hpo"], lambda: _training("training.hpo"), [],
            lambda p: flags.hpo_args(p, "study", "run", "/r.json", trials=p["n_trials"])),
    "compress": ("compress", JOB_SETTINGS["training.compress"], lambda: _training("training.compress"),
                 ["--model", "models:/c2m-sentiment@champion", "--method", "quantize"],
                 lambda p: flags.compress_args(p, "run", "/r.json")),
}


def _params(dag_id: str) -> dict[str, dict]:
    return dp.PARAM_SPECS[dag_id](Settings())


def _compared(dag_id: str, spec, skip: set[str] = set()) -> list[str]:
    """The job's settings on the DAG's form, less the required ones (the DAG gives them) and ``skip``."""
    params = _params(dag_id)
    return [s.key for s in settings(spec) if s.key in params and not s.meta["required"] and s.key not in skip]


@pytest.mark.parametrize("job", sorted(JOBS))
def test_param_defaults_are_the_job_defaults(job):
    dag_id, spec, parser, required, _ = JOBS[job]
    job_defaults = vars(parser()(required))
    params = _params(dag_id)
    keys = _compared(dag_id, spec)
    assert keys or job in ("extract", "ingest"), f"{job}: no setting of the job on the {dag_id} form"
    assert {k: params[k]["default"] for k in keys} == {k: job_defaults[k] for k in keys}


@pytest.mark.parametrize("job", sorted(JOBS))
def test_flags_from_default_params_parse_back_to_the_job_defaults(job):
    dag_id, spec, parser, required, build = JOBS[job]
    parse = parser()
    defaults: dict[str, Any] = {k: p["default"] for k, p in _params(dag_id).items()}
    from_dag = vars(parse(build(defaults)))
    job_defaults = vars(parse(required))
    keys = _compared(dag_id, spec, skip=DAG_DECIDES)
    assert {k: from_dag[k] for k in keys} == {k: job_defaults[k] for k in keys}


@pytest.mark.parametrize("dag_id", sorted(DAG_ONLY))
def test_every_param_is_a_job_setting_or_the_dags_own(dag_id):
    """A Param spelled by hand beside a job's declared setting would be a second declaration."""
    declared = {s.key for spec in [j[1] for j in JOBS.values() if j[0] == dag_id] for s in settings(spec)}
    assert set(_params(dag_id)) - declared == DAG_ONLY[dag_id]
    assert not DAG_ONLY[dag_id] & declared, f"{dag_id}: a DAG-only Param is also a job setting"
