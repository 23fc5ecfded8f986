"""Every job's flags, built from a DAG's Params through the jobs' typed settings
(:func:`ops.lake.jobconfig.to_flags`: values equal to the job's defaults are left out)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ops.dagkit.fanout import seed_hosts
from ops.lake import storage
from ops.lake.jobconfig import to_flags
from spark_jobs.jobs.config import SETTINGS as STAGE_SETTINGS
from spark_jobs.jobs.config import CrawlSettings, IngestSettings
from training.job_settings import COMPRESS_SETTINGS, FINETUNE_SETTINGS, HPO_SETTINGS, PRETRAIN_SETTINGS


def crawl_args(params: dict[str, Any], root: str, version: str) -> list[str]:
    """Flags for spark_jobs/jobs/crawl.py from the data_refresh Params (the scope defaults to the
    seeds' hosts, so every crawl shard's scope is explicit)."""
    domains = list(params.get("allow_domains") or []) or seed_hosts(list(params["seeds"]))
    return ["--root", root, "--version", version,
            *to_flags(CrawlSettings, {**params, "allow_domains": domains})]


def shard_crawl_args(params: dict[str, Any], root: str, shard: dict[str, Any]) -> list[str]:
    """Flags for one crawl shard: the run's crawl Params with the shard's seeds, scope and pages."""
    narrowed = {**params, "seeds": shard["seeds"], "allow_domains": shard["allow_domains"],
                "max_pages": shard["max_pages"]}
    return crawl_args(narrowed, root, shard["version"])


def ingest_args(params: dict[str, Any], root: str, version: str) -> list[str]:
    """Flags for the ingest stage (spark_jobs/jobs/ingest.py): the Param ``warc_glob`` into raw/v=version."""
    glob = (params.get("warc_glob") or "").strip()
    if not glob:
        raise ValueError(f"source={params.get('source')!r} needs the Param warc_glob: a local glob "
                         "(/data/cc/*.warc.gz) or s3://bucket/prefix/*.warc.gz")
    return ["--root", root, "--version", version, *to_flags(IngestSettings, {"warc_glob": glob})]


def stage_args(stage: str, params: dict[str, Any], root: str, version: str,
               inputs: list[str] | None = None) -> list[str]:
    """Flags for one data stage; every stage reads the same version of its input.

    ``inputs`` (extract only) are the raw versions of a sharded crawl; one input equal to
    ``version`` gives today's flags.
    """
    if stage == "crawl":
        return crawl_args(params, root, version)
    if stage == "extract" and inputs and list(inputs) != [version]:
        return ["--root", root, "--version", version, "--input-versions", ",".join(inputs)]
    return ["--root", root, "--version", version, "--input-version", version,
            *to_flags(STAGE_SETTINGS[stage], params)]


ENCODER_OBJECTIVES = ("mlm", "contrastive")


def register_name_for(objective: str | None) -> str:
    """GPT objectives register ``c2m-base`` (what finetune loads); BERT ones ``c2m-bert``, so an
    encoder never becomes the decoder's champion."""
    return "c2m-bert" if objective in ENCODER_OBJECTIVES else "c2m-base"


def pretrain_args(p: dict[str, Any], shards_uri: str, root: str, run_name: str,
                  result_file: Path | str, more: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Flags for training.pretrain from its Params (those equal to the job's defaults left out);
    ``more`` goes before the user's ``extra_args`` (which win)."""
    values = {**p, "shards_uri": shards_uri, "result_file": str(result_file),
              "checkpoint_dir": storage.join(root, "checkpoints", "pretrain", run_name),
              "experiment": "pretrain", "register_name": register_name_for(p.get("objective"))}
    return to_flags(PRETRAIN_SETTINGS, values) + list(more) + [str(a) for a in p.get("extra_args") or []]


def finetune_args(p: dict[str, Any], result_file: Path | str,
                  more: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Flags for training.finetune from its Params (those equal to the job's defaults left out);
    ``more`` goes before the user's ``extra_args`` (which win)."""
    values = {**p, "experiment": "finetune", "register_name": f"c2m-{p['task']}",
              "result_file": str(result_file)}
    return to_flags(FINETUNE_SETTINGS, values) + list(more) + [str(a) for a in p.get("extra_args") or []]


def hpo_args(p: dict[str, Any], study: str, run_name: str, result_file: str, trials: int,
             parent_run_id: str | None = None, finalize: bool = False) -> list[str]:
    """Flags for one ``python -m training.hpo`` process of a fanned-out study.

    ``trials=0`` with ``finalize`` off sets the study and the MLflow parent run up; mapped
    processes each add ``trials`` trials under ``parent_run_id``; ``trials=0`` with
    ``finalize`` logs, registers and gates the best trial on the parent. The storage is not
    a flag: the job reads it from ``$C2M_OPTUNA_STORAGE`` (:func:`optuna_env`).
    """
    values = {**p, "n_trials": trials, "study_name": study, "experiment": "hpo", "run_name": run_name,
              "result_file": result_file, "parent_run_id": parent_run_id, "no_finalize": not finalize}
    return to_flags(HPO_SETTINGS, values) + [str(a) for a in p.get("extra_args") or []]


def compress_args(p: dict[str, Any], run_name: str, result_file: str) -> list[str]:
    """Flags for ``python -m training.compress`` from its Params (a method ignores the others' knobs)."""
    values = {**p, "experiment": "compress", "run_name": run_name, "result_file": result_file}
    return to_flags(COMPRESS_SETTINGS, values) + [str(a) for a in p.get("extra_args") or []]
