"""The Params forms of every DAG, as plain JSON-schema dicts.

The DAG files wrap these in ``airflow.sdk.Param``; the Airflow UI renders them as forms and
the REST API refuses a value outside its schema (HTTP 400, naming the field) before any work
starts. Choices users pick by name (model sizes, objectives, fine-tuning tasks) are read from
the training code's own pure-Python config modules, so the forms cannot drift from what the
jobs accept. Nothing here imports Airflow, Spark or torch.
"""
from __future__ import annotations

from typing import Any, Callable

from ops.settings import Settings

# Choices users pick by name come from the training code itself (pure-Python config modules,
# safe to import while a DAG file is parsed); these are the fallbacks if that import fails.
MODEL_SIZES = ("tiny", "small")
OBJECTIVES = ("clm",)
FINETUNE_TASKS = ("sentiment", "ner", "pos", "classification", "tagging", "generation")
PROMOTE_MODES = ("gate", "always", "never")
FINETUNE_SUBSETS = ("sentences", "reviews", "oanc", "wsj")
COMPRESS_METHODS = ("distill", "quantize", "prune")
HPO_SAMPLERS = ("tpe", "random")
HPO_PRUNERS = ("median", "none")
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MODEL_URI_PATTERN = (r"^(models:/[A-Za-z0-9][A-Za-z0-9_.-]*(@[A-Za-z0-9][A-Za-z0-9_-]*|/[0-9]+)"
                     r"|runs:/[0-9a-f]{32}/\S+)$")
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
DATA_URI_PATTERN = r"^(s3://[a-z0-9][a-z0-9.-]{1,62}/\S*|/\S+)$"
STUDY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
SOURCES = ("crawl", "warc", "both")  # data_refresh: crawl the seeds, ingest WARC files, or both
WARC_GLOB_PATTERN = r"^(s3://[a-z0-9][a-z0-9.-]{1,62}/\S+|/\S+)$"


def training_choice(module: str, attr: str, fallback: tuple[str, ...]) -> tuple[str, ...]:
    """Names from a training config module (e.g. the named model configs), or ``fallback``.

    Those modules hold dataclasses only; if one ever imports torch, the Airflow venv cannot
    import it and the form falls back rather than the DAG failing to parse.
    """
    import importlib

    try:
        return tuple(getattr(importlib.import_module(module), attr))
    except Exception:
        return fallback


def model_names() -> tuple[str, ...]:
    return training_choice("training.config", "MODEL_SIZES", MODEL_SIZES)


def objective_names() -> tuple[str, ...]:
    return training_choice("training.config", "OBJECTIVES", OBJECTIVES)


def finetune_tasks() -> tuple[str, ...]:
    return training_choice("training.tasks.config", "TASKS", FINETUNE_TASKS)


def _p(default: Any, title: str, description: str, section: str | None = None, **schema: Any) -> dict:
    """One Param as plain data: default, the form's title/description/section, its JSON schema."""
    spec = {"default": default, "title": title, "description": description, **schema}
    if section:
        spec["section"] = section
    return spec


NULL_STR, NULL_INT, NULL_NUM = ["null", "string"], ["null", "integer"], ["null", "number"]
HOST_PATTERN = r"^[A-Za-z0-9.-]+(:\d+)?$"


def _launch(s: Settings) -> dict[str, dict]:
    return {
        "np": _p(s.train_np, "Processes", "Horovod ranks (one per GPU on a cluster).", "Launch",
                 type="integer", minimum=1, maximum=1024),
        "extra_args": _p([], "Extra flags", "More flags passed verbatim to the job (see its --help).",
                         "Launch", type="array", items={"type": "string", "pattern": r"^\S.*$"}, maxItems=64),
    }


def data_refresh_params(s: Settings) -> dict[str, dict]:
    return {
        "source": _p("crawl", "Source", "Where pages come from: crawl the seeds, ingest existing "
                     "WARC/WET/ARC files (warc: e.g. a Common Crawl dump, see WARC glob), or both.", "Source",
                     type="string", enum=list(SOURCES)),
        "warc_glob": _p(None, "WARC glob", "Files to ingest when Source is warc or both: a local glob "
                        "(/data/cc/*.warc.gz) or s3://bucket/prefix/*.warc.wet.gz.", "Source",
                        type=NULL_STR, pattern=WARC_GLOB_PATTERN),
        "seeds": _p([f"{s.site_url}/"], "Seed URLs", "Start URLs. The default is the local demo site.",
                    "Crawl", type="array", minItems=1, maxItems=1000,
                    items={"type": "string", "pattern": r"^https?://\S+$"}),
        "allow_domains": _p([], "Allowed domains",
                            "host[:port] the crawler may visit; empty = the seeds' hosts.", "Crawl",
                            type="array", items={"type": "string", "pattern": HOST_PATTERN}),
        "allow_private": _p(False, "Allow private addresses",
                            "Also fetch loopback/private IPs (the local demo site is on 127.0.0.1). Off by "
                            "default: a crawl must not reach internal services. Link-local and cloud "
                            "metadata addresses stay refused either way.", "Crawl", type="boolean"),
        "max_pages": _p(150, "Max pages", "Most URLs to fetch.", "Crawl",
                        type="integer", minimum=1, maximum=1_000_000),
        "crawl_shards": _p(1, "Crawl shards", "Parallel crawl tasks (dynamic task mapping). Seeds are "
                           "grouped by host, so a host is only ever crawled by one shard; at most one shard "
                           "per host, and Max pages is shared out between them.", "Crawl",
                           type="integer", minimum=1, maximum=64),
        "max_depth": _p(3, "Max depth", "Link hops from a seed.", "Crawl",
                        type="integer", minimum=0, maximum=50),
        "delay": _p(1.0, "Delay (s)", "Seconds between requests to one host; a larger Crawl-delay wins.",
                    "Crawl", type="number", minimum=0, maximum=600),
        "max_retries": _p(3, "Retries per URL", "Retries of a 429, 5xx, timeout or connection error "
                          "(refused, reset), with exponential backoff and jitter (a Retry-After header is "
                          "honoured).", "Crawl",
                          type="integer", minimum=0, maximum=20),
        "retry_budget": _p(120.0, "Retry budget (s)", "Most seconds one URL may spend in tries and waits.",
                           "Crawl", type="number", minimum=1, maximum=3600),
        "fetch_deadline": _p(60.0, "Fetch deadline (s)", "Most seconds for one response, body included; "
                             "a server that drips bytes fails as fetch_deadline.", "Crawl",
                             type="number", minimum=1, maximum=3600),
        "user_agent": _p(None, "User-Agent", "Sent with every request and matched against robots.txt; "
                         "empty = the crawler's default.", "Crawl", type=NULL_STR, maxLength=300),
        "langs": _p(["en"], "Languages", "ISO 639-1 codes the clean stage keeps.", "Clean",
                    type="array", minItems=1, items={"type": "string", "pattern": "^[a-z]{2}$"}),
        "min_lang_score": _p(0.5, "Min language score", "Least language-ID probability to keep a document.",
                             "Clean", type="number", minimum=0.0, maximum=1.0),
        "near_dedup": _p(True, "Near-duplicate removal", "MinHash-LSH near-dedup after exact dedup.",
                         "Dedup", type="boolean"),
        "dedup_threshold": _p(None, "Near-dup threshold", "Jaccard similarity counted as a near duplicate; "
                              "empty = FineWeb's 14 bands x 8 rows.", "Dedup", type=NULL_NUM,
                              minimum=0.5, maximum=0.99),
        "dedup_against": _p("earlier", "Dedup against", "earlier: also drop what earlier corpus versions "
                            "hold; none: this version only.", "Dedup",
                            type="string", enum=["earlier", "none"]),
        "vocab_size": _p(4096, "Vocabulary size", "Tokenizer vocabulary size.", "Tokenize",
                         type="integer", minimum=512, maximum=1_048_576),
        "seq_len": _p(128, "Sequence length", "Tokens per packed training sequence.", "Tokenize",
                      type="integer", minimum=8, maximum=65_536),
        "val_fraction": _p(0.05, "Validation fraction", "Share of documents (by id hash) held out.",
                           "Tokenize", type="number", minimum=0.0, maximum=0.5),
        "version": _p(None, "Dataset version",
                      "Version to write; default: the logical date, else the run id.", "Run",
                      type=NULL_STR, pattern=VERSION_PATTERN),
        "publish": _p(True, "Publish corpus", "Emit the corpus Asset at the end, which starts pretrain. "
                      "end_to_end turns this off and triggers pretrain itself.", "Run", type="boolean"),
        "pretrain": _p({}, "Pretrain overrides", "Overrides for the pretrain run this refresh starts "
                       "(carried in the corpus event).", "Run", type="object", additionalProperties=False,
                       properties={"model": {"type": "string", "enum": list(model_names())},
                                   "max_steps": {"type": "integer", "minimum": 1},
                                   "batch_size": {"type": "integer", "minimum": 1},
                                   "np": {"type": "integer", "minimum": 1, "maximum": 1024}}),
    }


def pretrain_params(s: Settings) -> dict[str, dict]:
    return {
        "shards_uri": _p(None, "Shards", "shards/v=V folder (path or s3://); default: the corpus "
                         "event's, else the newest complete version.", "Data",
                         type=NULL_STR, pattern=DATA_URI_PATTERN),
        "model": _p("tiny", "Model config", "Named model config in training/config.py.", "Model",
                    type="string", enum=list(model_names())),
        "objective": _p(None, "Objective", "Pretraining objective (clm for GPT, mlm for BERT); "
                        "empty = the job's default.", "Model", type=NULL_STR,
                        enum=[None, *objective_names()]),
        "max_steps": _p(300, "Max steps", "Optimizer steps.", "Model",
                        type="integer", minimum=1, maximum=10_000_000),
        "batch_size": _p(None, "Batch size", "Sequences per rank per micro-step; empty = the job's default.",
                         "Model", type=NULL_INT, minimum=1, maximum=65_536),
        "lr": _p(None, "Learning rate", "Peak learning rate; empty = the job's default (1e-3).", "Model",
                 type=NULL_NUM, exclusiveMinimum=0, maximum=1),
        "seed": _p(None, "Seed", "Random seed; empty = the job's default.", "Model",
                   type=NULL_INT, minimum=0, maximum=2**31 - 1),
        **_launch(s),
    }


def _task_fields() -> dict[str, dict]:
    """What finetune and hpo share: which base model, which task and data."""
    return {
        "base_model": _p("models:/c2m-base@champion", "Base model", "Registered model: "
                         "models:/<name>@<alias>, models:/<name>/<version> or runs:/<id>/<path>.", "Task",
                         type="string", pattern=MODEL_URI_PATTERN),
        "task": _p("sentiment", "Task", "Labelled task (generation: prompt -> completion, BLEU); "
                   "classification/tagging need a data folder.", "Task",
                   type="string", enum=list(finetune_tasks())),
        "subset": _p(None, "Subset", "sentiment: sentences|reviews; pos: oanc|wsj; empty = the default.",
                     "Task", type=NULL_STR, enum=[None, *FINETUNE_SUBSETS]),
        "data": _p(None, "Task data", "Folder with train/val/test .jsonl (text,label; tokens,tags; "
                     "or prompt,completion).",
                   "Task", type=NULL_STR, pattern=DATA_URI_PATTERN),
        "max_examples": _p(None, "Max examples", "Use a fixed subset of this many examples; empty = all.",
                           "Task", type=NULL_INT, minimum=1),
    }


def finetune_params(s: Settings) -> dict[str, dict]:
    return {
        **_task_fields(),
        "epochs": _p(None, "Epochs", "Passes over the training split; empty = picked from the training-set "
                     "size, with early stopping on validation (training/tasks/recipe.py).", "Training",
                     type=NULL_INT, minimum=1, maximum=1000),
        "lr": _p(None, "Learning rate", "AdamW learning rate; empty = picked from the training-set size.",
                 "Training",
                 type=NULL_NUM, exclusiveMinimum=0, maximum=1),
        "batch_size": _p(None, "Batch size", "Examples per rank per step; empty = the job's default.",
                         "Training", type=NULL_INT, minimum=1, maximum=65_536),
        "freeze_layers": _p(None, "Frozen layers", "Freeze the embeddings and the first k blocks.",
                            "Training", type=NULL_INT, minimum=0, maximum=256),
        "promote": _p("gate", "Promotion", "champion alias: gate (only if better), always or never.",
                      "Training", type="string", enum=list(PROMOTE_MODES)),
        **_launch(s),
    }


def hpo_params(s: Settings) -> dict[str, dict]:
    return {
        **_task_fields(),
        "n_trials": _p(8, "Trials", "Optuna trials in the study.", "Study",
                       type="integer", minimum=1, maximum=1000),
        "parallel_trials": _p(1, "Parallel trial tasks", "Mapped tasks that run trials at once on one "
                              "shared Optuna storage (each a process; trials split evenly).", "Study",
                              type="integer", minimum=1, maximum=64),
        "epochs": _p(2, "Epochs per trial", "Training epochs of each trial.", "Study",
                     type="integer", minimum=1, maximum=100),
        "sampler": _p("tpe", "Sampler", "Optuna sampler.", "Study", type="string", enum=list(HPO_SAMPLERS)),
        "pruner": _p("median", "Pruner", "Stop bad trials early (median of earlier trials per epoch).",
                     "Study", type="string", enum=list(HPO_PRUNERS)),
        "study_name": _p(None, "Study name", "Reuse a study to add trials; default: <task>-<run id>.",
                         "Study", type=NULL_STR, pattern=STUDY_PATTERN),
        "lr_min": _p(1e-5, "LR lower bound", "Smallest learning rate tried (log scale).", "Search space",
                     type="number", exclusiveMinimum=0, maximum=1),
        "lr_max": _p(1e-3, "LR upper bound", "Largest learning rate tried (log scale).", "Search space",
                     type="number", exclusiveMinimum=0, maximum=1),
        # No "np": training.hpo runs one rank per process; trials fan out over tasks instead.
        "extra_args": _launch(s)["extra_args"],
    }


def compress_params(s: Settings) -> dict[str, dict]:
    return {
        "model": _p("models:/c2m-sentiment@champion", "Model", "The fine-tuned model to compress.", "Model",
                    type="string", pattern=MODEL_URI_PATTERN),
        "method": _p("quantize", "Method", "distill (smaller student), quantize (dynamic int8) or prune.",
                     "Model", type="string", enum=list(COMPRESS_METHODS)),
        "register_name": _p(None, "Register as", "Registered model name; default: <model>-<method>.",
                            "Model", type=NULL_STR, pattern=MODEL_NAME_PATTERN),
        "sparsity": _p(0.5, "Target sparsity", "prune: share of weights set to zero.", "Pruning",
                       type="number", minimum=0.0, maximum=0.99),
        "structured": _p(False, "Structured pruning", "prune: remove whole rows instead of single weights.",
                         "Pruning", type="boolean"),
        "student_layers": _p(None, "Student layers", "distill: blocks in the student; default: half.",
                             "Distillation", type=NULL_INT, minimum=1, maximum=256),
        "temperature": _p(2.0, "Temperature", "distill: softmax temperature of the soft targets.",
                          "Distillation", type="number", exclusiveMinimum=0, maximum=20),
        "alpha": _p(0.5, "Soft-target weight", "distill: weight of the soft loss against the hard labels.",
                    "Distillation", type="number", minimum=0, maximum=1),
        "finetune_epochs": _p(1, "Recovery epochs", "distill/prune: epochs of training after compressing.",
                              "Training", type="integer", minimum=0, maximum=100),
        "max_examples": _p(None, "Max examples", "Use a fixed subset of this many examples; empty = all.",
                           "Training", type=NULL_INT, minimum=1),
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
