"""The Params forms of every DAG, as plain JSON-schema dicts.

The DAG files wrap these in ``airflow.sdk.Param``; the Airflow UI renders them as forms and
the REST API refuses a value outside its schema (HTTP 400, naming the field) before any work
starts. A Param that a job takes as a flag is built from that job's declared settings
(spark_jobs/jobs/config.py, training/job_settings.py) with :func:`ops.lake.jobconfig.param_specs`:
the same default, bounds, choices and help as the job's ``--help``, so the forms cannot drift
from what the jobs accept. The Params written here are the DAGs' own (source, shards, version,
processes, overrides). Nothing here imports Airflow, Spark or torch.
"""
from __future__ import annotations

from typing import Any, Callable

from ops.lake.jobconfig import param_specs
from ops.launch.settings import Settings
from spark_jobs.jobs.config import (CleanSettings, CrawlSettings, DedupSettings, IngestSettings,
                                    TokenizeSettings)
from training.job_settings import (COMPRESS_SETTINGS, FINETUNE_SETTINGS, HPO_SETTINGS, PRETRAIN_SETTINGS,
                                   PretrainRun)

VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
SOURCES = ("crawl", "warc", "both")  # data_refresh: crawl the seeds, ingest WARC files, or both
NULL_STR = ["null", "string"]


def _schemas(specs: dict[str, dict], names: tuple[str, ...]) -> dict[str, dict]:
    """The JSON schemas of some Params (no default or form text): an object Param's properties."""
    form = ("default", "title", "description", "section")
    return {name: {k: v for k, v in specs[name].items() if k not in form} for name in names}


def _p(default: Any, title: str, description: str, section: str | None = None, **schema: Any) -> dict:
    """One Param as plain data: default, the form's title/description/section, its JSON schema."""
    spec = {"default": default, "title": title, "description": description, **schema}
    if section:
        spec["section"] = section
    return spec


def _launch(s: Settings) -> dict[str, dict]:
    return {
        "np": _p(s.train_np, "Processes", "Horovod ranks (one per GPU on a cluster).", "Launch",
                 type="integer", minimum=1, maximum=1024),
        "extra_args": _p([], "Extra flags", "More flags passed verbatim to the job (see its --help).",
                         "Launch", type="array", items={"type": "string", "pattern": r"^\S.*$"}, maxItems=64),
    }


CRAWL_FORM = ("seeds", "allow_domains", "allow_private", "max_pages", "max_depth", "delay", "max_retries",
              "retry_budget", "fetch_deadline", "user_agent")


def data_refresh_params(s: Settings) -> dict[str, dict]:
    """The stages' settings come from spark_jobs/jobs/config.py; ``source``, ``crawl_shards`` and
    the Run section are the DAG's own."""
    return {
        "source": _p("crawl", "Source", "Where pages come from: crawl the seeds, ingest existing "
                     "WARC/WET/ARC files (warc: e.g. a Common Crawl dump, see WARC glob), or both.", "Source",
                     type="string", enum=list(SOURCES)),
        **param_specs(IngestSettings, "Source"),
        **param_specs(CrawlSettings, "Crawl", only=CRAWL_FORM, defaults={"seeds": [f"{s.site_url}/"]}),
        "crawl_shards": _p(1, "Crawl shards", "Parallel crawl tasks (dynamic task mapping). Seeds are "
                           "grouped by host, so a host is only ever crawled by one shard; at most one shard "
                           "per host, and Max pages is shared out between them.", "Crawl",
                           type="integer", minimum=1, maximum=64),
        **param_specs(CleanSettings, "Clean", only=("langs", "min_lang_score")),
        **param_specs(DedupSettings, "Dedup", only=("near_dedup", "dedup_threshold", "dedup_against")),
        **param_specs(TokenizeSettings, "Tokenize", only=("vocab_size", "seq_len", "val_fraction")),
        "version": _p(None, "Dataset version",
                      "Version to write; default: the logical date, else the run id.", "Run",
                      type=NULL_STR, pattern=VERSION_PATTERN),
        "publish": _p(True, "Publish corpus", "Emit the corpus Asset at the end, which starts pretrain. "
                      "end_to_end turns this off and triggers pretrain itself.", "Run", type="boolean"),
        "pretrain": _p({}, "Pretrain overrides", "Overrides for the pretrain run this refresh starts "
                       "(carried in the corpus event).", "Run", type="object", additionalProperties=False,
                       properties=_schemas(pretrain_params(s), ("model", "objective", "max_steps", "batch_size",
                                                                   "np"))),
    }


PRETRAIN_FORM = ("model", "objective", "max_steps", "batch_size", "lr", "seed")


def pretrain_params(s: Settings) -> dict[str, dict]:
    return {
        **param_specs(PretrainRun, "Data", only=("shards_uri",)),
        **param_specs(PRETRAIN_SETTINGS, "Model", only=PRETRAIN_FORM),
        **_launch(s),
    }


def _task_fields(spec: tuple) -> dict[str, dict]:
    """What finetune and hpo share: which base model, which task and data."""
    return param_specs(spec, "Task", only=("base_model", "task", "subset", "data", "max_examples"))


def finetune_params(s: Settings) -> dict[str, dict]:
    return {
        **_task_fields(FINETUNE_SETTINGS),
        **param_specs(FINETUNE_SETTINGS, "Training",
                      only=("epochs", "lr", "batch_size", "freeze_layers", "ngram_buckets", "promote")),
        **_launch(s),
    }


def hpo_params(s: Settings) -> dict[str, dict]:
    return {
        **_task_fields(HPO_SETTINGS),
        **param_specs(HPO_SETTINGS, "Study", only=("n_trials",)),
        "parallel_trials": _p(1, "Parallel trial tasks", "Mapped tasks that run trials at once on one "
                              "shared Optuna storage (each a process; trials split evenly).", "Study",
                              type="integer", minimum=1, maximum=64),
        **param_specs(HPO_SETTINGS, "Study", only=("epochs", "sampler", "pruner", "study_name")),
        **param_specs(HPO_SETTINGS, "Search space", only=("lr_min", "lr_max")),
        # No "np": training.hpo runs one rank per process; trials fan out over tasks instead.
        "extra_args": _launch(s)["extra_args"],
    }


def compress_params(s: Settings) -> dict[str, dict]:
    return {
        **param_specs(COMPRESS_SETTINGS, "Model", only=("model", "method", "register_name"),
                      defaults={"model": "models:/c2m-sentiment@champion", "method": "quantize"}),
        **param_specs(COMPRESS_SETTINGS, "Pruning", only=("sparsity", "structured")),
        **param_specs(COMPRESS_SETTINGS, "Distillation", only=("student_layers", "temperature", "alpha")),
        **param_specs(COMPRESS_SETTINGS, "Training", only=("finetune_epochs", "max_examples")),
        **_launch(s),
        "np": _p(1, "Processes", "Horovod ranks (quantisation uses one).", "Launch",
                 type="integer", minimum=1, maximum=1024),
    }


def end_to_end_params(s: Settings) -> dict[str, dict]:
    refresh, pre, fin = data_refresh_params(s), pretrain_params(s), finetune_params(s)

    def more(dag_id: str) -> dict:
        return _p({}, f"More {dag_id} conf", f"Further {dag_id} Params (checked by {dag_id}).", "Overrides",
                  type="object")

    return {
        "seeds": refresh["seeds"], "max_pages": refresh["max_pages"],
        "model": pre["model"], "max_steps": pre["max_steps"],
        "task": fin["task"], "epochs": fin["epochs"],
        "refresh_conf": more("data_refresh"), "pretrain_conf": more("pretrain"),
        "finetune_conf": more("finetune"),
    }


PARAM_SPECS: dict[str, Callable[[Settings], dict[str, dict]]] = {
    "data_refresh": data_refresh_params, "pretrain": pretrain_params, "finetune": finetune_params,
    "hpo": hpo_params, "compress": compress_params, "end_to_end": end_to_end_params,
}
