"""Plain helpers behind the DAGs: versions, job flags, manifest summaries, result files.

DAG files stay orchestration only; what they compute (which version a run writes, which
flags a stage gets, what small summary goes to XCom, how a failure is reported, which
launcher runs a job, how MLflow runs link back to Airflow) lives here as plain functions,
so it is unit-tested without Airflow and shared with the demo. Nothing here imports
Airflow, Spark or torch at module level; the few functions that must talk to Airflow from
inside a running task import it lazily.

The Params schemas live in :mod:`ops.dagkit.dag_params`.
"""
from __future__ import annotations

import json
import logging
import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, urlsplit

from ops.lake import storage
from ops.lake.datasets import DatasetVersion, check_version
from ops.lake.jobconfig import to_flags
from ops.launch.settings import Settings
from spark_jobs.jobs.config import SETTINGS as STAGE_SETTINGS
from spark_jobs.jobs.config import CrawlSettings, IngestSettings
from training.job_settings import COMPRESS_SETTINGS, FINETUNE_SETTINGS, HPO_SETTINGS, PRETRAIN_SETTINGS

# CLI stage -> the dataset stage folder it writes.
OUTPUT_STAGE = {
    "crawl": "raw", "ingest": "raw", "extract": "extracted", "clean": "clean", "dedup": "corpus",
    "tokenize": "shards",
}
DATA_STAGES = tuple(OUTPUT_STAGE)
# Keys of the corpus Asset event extra, read by the pretrain DAG.
EXTRA_SHARDS_URI = "shards_uri"
EXTRA_PRETRAIN = "pretrain"


def derive_version(logical_date: datetime | None, run_id: str) -> str:
    """A dataset version for a DAG run: its logical date when it has one, else its run_id.

    Weekly runs get readable versions (``2026-11-29``); manual runs without a logical date get
    their sanitised run_id, which is unique per DAG. Either way a retry of the same run writes
    the same version, so it replaces rather than duplicates.
    """
    if logical_date is not None:
        if (logical_date.hour, logical_date.minute, logical_date.second) == (0, 0, 0):
            return logical_date.strftime("%Y-%m-%d")
        return logical_date.strftime("%Y-%m-%dT%H%M%S")
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_.-")
    if len(text) > 64:  # keep the unique tail (timestamps, random suffixes)
        text = text[-64:].lstrip("_.-")
    return check_version(text or "run")


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def seed_hosts(seeds: list[str]) -> list[str]:
    """``host[:port]`` of each seed URL, in order, without repeats."""
    hosts: list[str] = []
    for url in seeds:
        netloc = urlsplit(url).netloc
        if not netloc:
            raise ValueError(f"seed {url!r} is not an absolute http(s) URL")
        if netloc not in hosts:
            hosts.append(netloc)
    return hosts


def crawl_args(params: dict[str, Any], root: str, version: str) -> list[str]:
    """Flags for spark_jobs/jobs/crawl.py from the data_refresh Params (the scope defaults to the
    seeds' hosts, so every crawl shard's scope is explicit)."""
    domains = list(params.get("allow_domains") or []) or seed_hosts(list(params["seeds"]))
    return ["--root", root, "--version", version,
            *to_flags(CrawlSettings, {**params, "allow_domains": domains})]


# ---------------------------------------------------------------- crawl shards (dynamic task mapping)

def _seed_host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return (parts.hostname or "").lower(), parts.port or {"https": 443}.get(parts.scheme, 80)


def _parse_entry(entry: str) -> tuple[str, int | None]:
    parts = urlsplit(entry if "//" in entry else f"//{entry}")
    return (parts.hostname or "").lower(), parts.port


def _covers(entry: tuple[str, int | None], host: str, port: int | None) -> bool:
    """The crawler's scope rule (spark_jobs.crawl.urls.in_scope): a bare host admits its
    subdomains on any port, ``host:port`` exactly that."""
    e_host, e_port = entry
    if e_port is not None:
        return host == e_host and port == e_port
    return host == e_host or host.endswith("." + e_host)


def _scope_units(seeds: list[str], allowed: list[str]) -> tuple[dict, dict, list[str]]:
    """Seeds grouped into units no two shards may share: ``(unit -> seeds, unit -> scope, loose)``.

    Without ``allowed`` a unit is one seed host (its scope is that host). With it, a unit is a
    set of allowed entries that overlap (one admits another's host), so no host is in the
    scope of two shards; a seed joins the unit whose entry admits it. ``loose`` are seeds no
    entry admits: the crawler skips them whatever shard they are in. Units without seeds
    (entries only reachable by links) have an empty seed list.
    """
    if not allowed:
        units: dict[str, list[str]] = {}
        for url in seeds:
            units.setdefault(seed_hosts([url])[0], []).append(url)
        return units, {host: [host] for host in units}, []
    entries = [_parse_entry(e) for e in allowed]
    group = list(range(len(allowed)))  # union-find over overlapping entries

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    for i, a in enumerate(entries):
        for j, b in enumerate(entries):
            if i != j and _covers(a, *b) and root(i) != root(j):
                group[root(j)] = root(i)
    scope: dict[str, list[str]] = {}
    for i, entry in enumerate(allowed):
        scope.setdefault(allowed[root(i)], []).append(entry)
    units = {key: [] for key in scope}
    loose = []
    for url in seeds:
        host, port = _seed_host_port(url)
        hit = next((i for i, e in enumerate(entries) if _covers(e, host, port)), None)
        if hit is None:
            loose.append(url)
        else:
            units[allowed[root(hit)]].append(url)
    return units, scope, loose


def shard_version(version: str, index: int) -> str:
    """Raw version of crawl shard ``index``: ``{version}-c{index}``; a version too long for the
    suffix keeps its head and a hash of the whole, so shard versions stay unique and valid."""
    import hashlib

    suffix = f"-c{index}"
    if len(version) + len(suffix) > 64:
        digest = hashlib.sha1(version.encode()).hexdigest()[:8]
        version = f"{version[:64 - len(suffix) - 9].rstrip('._-')}-{digest}"
    return check_version(version + suffix)


def ingest_version(version: str, source: str) -> str:
    """Raw version the WARC ingest writes: the run's ``version`` when it is the only source,
    ``{version}-w`` beside a crawl (``source`` both), shortened like a shard version."""
    import hashlib

    if source != "both":
        return version
    suffix = "-w"
    if len(version) + len(suffix) > 64:
        digest = hashlib.sha1(version.encode()).hexdigest()[:8]
        version = f"{version[:64 - len(suffix) - 9].rstrip('._-')}-{digest}"
    return check_version(version + suffix)


def ingest_args(params: dict[str, Any], root: str, version: str) -> list[str]:
    """Flags for the ingest stage (spark_jobs/jobs/ingest.py): the Param ``warc_glob`` into raw/v=version."""
    glob = (params.get("warc_glob") or "").strip()
    if not glob:
        raise ValueError(f"source={params.get('source')!r} needs the Param warc_glob: a local glob "
                         "(/data/cc/*.warc.gz) or s3://bucket/prefix/*.warc.gz")
    return ["--root", root, "--version", version, *to_flags(IngestSettings, {"warc_glob": glob})]


def crawl_shards(params: dict[str, Any], version: str) -> list[dict[str, Any]]:
    """Split this run's crawl into at most ``crawl_shards`` shards, one mapped task each.

    Seeds stay together per host (per-host politeness: no host is crawled by two shards at
    once, and scopes never overlap), units are sorted and dealt round-robin (deterministic,
    so a retry plans the same shards), ``max_pages`` is shared out so the total is unchanged
    and every shard fetches at least one page. One shard is exactly today's crawl: all seeds,
    the same scope and ``version`` itself as the raw version.
    """
    seeds = list(params["seeds"])
    allowed = list(params.get("allow_domains") or [])
    units, scope, loose = _scope_units(seeds, allowed)
    seeded = sorted(key for key, urls in units.items() if urls)
    n = max(1, min(int(params.get("crawl_shards") or 1), len(seeded), int(params["max_pages"])))
    if n == 1:
        return [{"index": 0, "version": version, "seeds": seeds,
                 "allow_domains": allowed or seed_hosts(seeds), "max_pages": int(params["max_pages"])}]
    members: list[list[str]] = [[] for _ in range(n)]
    for k, key in enumerate(seeded):
        members[k % n].append(key)
    for k, key in enumerate(sorted(key for key, urls in units.items() if not urls)):
        members[k % n].append(key)  # link-only entries: each in exactly one shard's scope
    pages = split_trials(int(params["max_pages"]), n)
    shards = []
    for k, keys in enumerate(members):
        own = {url for key in keys for url in units[key]}
        shard_seeds = [url for url in seeds if url in own or (k == 0 and url in loose)]
        shards.append({"index": k, "version": shard_version(version, k), "seeds": shard_seeds,
                       "allow_domains": [d for key in keys for d in scope[key]], "max_pages": pages[k]})
    return shards


def shard_crawl_args(params: dict[str, Any], root: str, shard: dict[str, Any]) -> list[str]:
    """Flags for one crawl shard: the run's crawl Params with the shard's seeds, scope and pages."""
    narrowed = {**params, "seeds": shard["seeds"], "allow_domains": shard["allow_domains"],
                "max_pages": shard["max_pages"]}
    return crawl_args(narrowed, root, shard["version"])


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


def manifest_summary(root: str, stage: str, version: str) -> dict[str, Any]:
    """The small facts of a finished stage, for XCom and the demo summary."""
    ds = DatasetVersion(root, OUTPUT_STAGE[stage], version)
    m = ds.read_manifest()
    out = {
        "stage": stage, "uri": ds.uri, "version": version,
        "rows_in": m.get("rows_in"), "rows_out": m.get("rows_out"), "dropped": m.get("dropped", {}),
    }
    if stage == "tokenize":
        splits = m.get("splits", {})
        out["tokens"] = {name: split.get("tokens") for name, split in splits.items()}
        out["sequences"] = {name: split.get("sequences") for name, split in splits.items()}
        out["vocab_size"] = m.get("vocab_size")
        out["seq_len"] = m.get("seq_len")
    return out


def result_path(s: Settings, dag_id: str, run_id: str, task_id: str) -> Path:
    """Where a training task asks rank 0 to write its result JSON (local: horovodrun is local)."""
    return s.stack_dir / "results" / dag_id / safe_name(run_id) / f"{task_id}.json"


def read_result(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RuntimeError(
            f"the training job exited 0 but wrote no result file at {path}; "
            "rank 0 must write it (--result-file)") from None


def training_overrides(params: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Params with the asset event's overrides on top (only keys the Params already have)."""
    merged = dict(params)
    for key, value in (overrides or {}).items():
        if key in merged and value is not None:
            merged[key] = value
    return merged


def resolve_pretrain(params: dict[str, Any], run_type: str, event_extra: dict[str, Any] | None,
                     data_root: str) -> tuple[dict[str, Any], str]:
    """The Params and shards a pretrain run uses.

    An asset-triggered run trains on the shards its corpus event names, with the overrides the
    refresh carried; a manual run uses its Params, and without ``shards_uri`` the newest
    complete shards version under the data root.
    """
    from ops.lake.datasets import latest_version

    shards = params.get("shards_uri")
    if run_type == "asset_triggered":
        extra = event_extra or {}
        shards = shards or extra.get(EXTRA_SHARDS_URI)
        params = training_overrides(params, extra.get(EXTRA_PRETRAIN))
    if not shards:
        version = latest_version(data_root, "shards")
        if version is None:
            raise RuntimeError(f"no complete shards under {data_root}/shards: run the data_refresh DAG "
                               "(or `crawl2model tokenize`) first, or pass shards_uri")
        shards = DatasetVersion(data_root, "shards", version).uri
    return params, shards


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


# ---------------------------------------------------------------- task defaults and failure reports

OWNER_DATA = "data-platform"
OWNER_ML = "ml-platform"
RETRY_DELAY_ENV = "C2M_RETRY_DELAY_S"  # tests shorten the retry delay through this
TRIGGER_POKE_ENV = "C2M_TRIGGER_POKE_S"  # and how often end_to_end checks the runs it triggered
log = logging.getLogger("crawl2model")


def task_defaults(owner: str, retries: int, timeout: timedelta, retry_delay: timedelta = timedelta(minutes=1),
                  max_retry_delay: timedelta = timedelta(minutes=30)) -> dict[str, Any]:
    """default_args for a DAG: owner, retries with exponential backoff, a timeout, failure reports.

    The delay doubles with each try (1, 2, 4 … minutes, at most ``max_retry_delay``).
    ``$C2M_RETRY_DELAY_S`` (read at parse time, environment only) shortens it for tests.
    """
    raw = os.environ.get(RETRY_DELAY_ENV)
    if raw:
        retry_delay = timedelta(seconds=float(raw))
        max_retry_delay = max(retry_delay * 4, timedelta(seconds=1))
    return {
        "owner": owner,
        "retries": retries,
        "retry_delay": retry_delay,
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": max_retry_delay,
        "execution_timeout": timeout,
        "on_failure_callback": report_failure,
        "on_retry_callback": report_retry,
    }


def trigger_poke_interval(default: float = 10.0) -> float:
    """Seconds between two checks of a triggered DAG run (end_to_end's ``poke_interval``).

    ``$C2M_TRIGGER_POKE_S`` (read at parse time, environment only) shortens it for tests.
    """
    raw = os.environ.get(TRIGGER_POKE_ENV)
    return max(float(raw), 0.5) if raw else default


def airflow_base_url(s: Settings | None = None) -> str:
    """The UI/API base URL: Airflow's own setting when tasks have it, else the local stack's."""
    from ops.launch.settings import get_settings

    return (os.environ.get("AIRFLOW__API__BASE_URL") or (s or get_settings()).airflow_url).rstrip("/")


def dag_run_url(base: str, dag_id: str, run_id: str) -> str:
    return f"{base.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe=':+')}"


def task_url(base: str, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    url = f"{dag_run_url(base, dag_id, run_id)}/tasks/{quote(task_id, safe='')}"
    return f"{url}/mapped/{map_index}" if map_index is not None and map_index >= 0 else url


def _ti_facts(context: dict[str, Any]) -> dict[str, Any]:
    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    task = context.get("task")
    retries = getattr(task, "retries", None)
    max_tries = getattr(ti, "max_tries", None)
    return {
        "dag_id": getattr(ti, "dag_id", None) or getattr(dag, "dag_id", "?"),
        "task_id": getattr(ti, "task_id", None) or getattr(task, "task_id", "?"),
        "run_id": getattr(ti, "run_id", None) or context.get("run_id", "?"),
        "try_number": getattr(ti, "try_number", None) or 1,
        "tries": 1 + (max_tries if isinstance(max_tries, int) else
                      retries if isinstance(retries, int) else 0),
        "map_index": getattr(ti, "map_index", -1),
    }


def failure_summary(context: dict[str, Any], will_retry: bool = False) -> str:
    """A few lines that say what failed, on which try, why, and the job's last output lines."""
    f = _ti_facts(context)
    exc = context.get("exception")
    outcome = "failed, will retry" if will_retry else "FAILED"
    lines = [f"[crawl2model] {f['dag_id']}.{f['task_id']} {outcome} "
             f"(try {f['try_number']} of {f['tries']}, run {f['run_id']})"]
    if exc is not None:
        reason = getattr(exc, "summary", None) or str(exc).split("\n--- last", 1)[0]
        reason = "\n    ".join(reason.strip().splitlines()[:5]) or "(no message)"
        if type(exc).__name__ == "AirflowTaskTimeout":
            reason += " (execution_timeout reached; raise it in the DAG's default_args if the job needs it)"
        lines.append(f"  error: {type(exc).__name__}: {reason}")
        tail = getattr(exc, "tail", None) or []
        if tail:
            lines.append(f"  last {len(tail)} lines of the job's output:")
            lines += [f"    | {line}" for line in tail]
    try:
        url = task_url(airflow_base_url(), f["dag_id"], f["run_id"], f["task_id"], f["map_index"])
        lines.append(f"  task: {url}")
    except Exception:  # a report must never fail on a missing setting
        pass
    return "\n".join(lines)


def report_failure(context: dict[str, Any]) -> None:
    """on_failure_callback: log the summary into the task log (the last try)."""
    log.error("%s", failure_summary(context))


def report_retry(context: dict[str, Any]) -> None:
    """on_retry_callback: the same summary, marked as retried."""
    log.warning("%s", failure_summary(context, will_retry=True))


# ---------------------------------------------------------------- launchers and MLflow links

LAUNCHER_VARIABLE = "c2m_launcher"  # Airflow Variable: local | kubernetes
CLUSTER_VARIABLE = "c2m_cluster"  # Airflow Variable: JSON of ops.launch.kubernetes.ClusterConfig fields
S3_CONNECTION = "c2m_s3"  # Airflow connection (aws): keys, extra endpoint_url / region_name


def airflow_variable(key: str) -> str | None:
    """An Airflow Variable from inside a running task; None outside one or when unset."""
    try:
        from airflow.sdk import Variable
    except ImportError:
        return None
    try:
        return Variable.get(key, default=None)
    except Exception:  # no task context (CLI, tests) or no API: configuration falls back to env
        return None


def airflow_connection(conn_id: str):
    """An Airflow connection from inside a running task; None outside one or when it does not exist."""
    try:
        from airflow.sdk import BaseHook
    except ImportError:
        return None
    try:
        return BaseHook.get_connection(conn_id)
    except Exception:  # not defined, or no task context (CLI, tests)
        return None


def apply_s3_connection(connection: Callable[[str], Any] = airflow_connection) -> bool:
    """Export the Airflow connection ``c2m_s3`` (type aws) as AWS_* variables of this task.

    Storage calls in the task and every job it launches then use it; values that are already
    set in the environment (e.g. by ``crawl2model up --s3``) are left alone. The values are
    never logged: only the variable names are.
    """
    conn = connection(S3_CONNECTION)
    if conn is None:
        return False
    added = {k: v for k, v in storage.env_from_airflow_connection(conn).items() if not os.environ.get(k)}
    os.environ.update(added)
    if added:
        log.info("S3 settings from Airflow connection %s: %s", S3_CONNECTION, ", ".join(sorted(added)))
    return True


def task_launcher(s: Settings, variable: Callable[[str], str | None] = airflow_variable):
    """The launcher for this task, chosen at run time: Variable c2m_launcher, else $C2M_LAUNCHER.

    Also exports the ``c2m_s3`` connection (if any) so the launched job can reach the lake.
    """
    from ops.launch.choose import get_launcher, launcher_kind

    apply_s3_connection()

    kind = launcher_kind(variable(LAUNCHER_VARIABLE))
    if kind == "local":
        return get_launcher(kind, s)
    from ops.launch.kubernetes import ClusterConfig

    cfg = ClusterConfig.from_env()
    raw = variable(CLUSTER_VARIABLE)
    if raw:
        cfg = ClusterConfig.from_mapping(json.loads(raw), cfg)
    return get_launcher(kind, s, cfg=cfg)


def mlflow_run_name(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """``dag_id.task_id[map]@run_id``: says which Airflow task made an MLflow run."""
    task = f"{task_id}[{map_index}]" if map_index is not None and map_index >= 0 else task_id
    return f"{dag_id}.{task}@{run_id}"


def task_tracking_env(ctx: dict[str, Any], s: Settings) -> dict[str, str]:
    """:func:`tracking_env` for the running task, from its Airflow context."""
    f = _ti_facts(ctx)
    map_index = f["map_index"] if isinstance(f["map_index"], int) else -1
    return tracking_env(f["dag_id"], f["run_id"], f["task_id"], f["try_number"], airflow_base_url(s), map_index)


def tracking_env(dag_id: str, run_id: str, task_id: str, try_number: int, base_url: str,
                 map_index: int = -1) -> dict[str, str]:
    """Environment linking a job's MLflow run to its Airflow task.

    MLflow applies ``MLFLOW_RUN_CONTEXT`` (JSON tags) to every run the job starts, with no
    code in the job; the ``C2M_AIRFLOW_*`` variables are there for code that wants them.
    """
    run_url = dag_run_url(base_url, dag_id, run_id)
    t_url = task_url(base_url, dag_id, run_id, task_id, map_index)
    tags = {"airflow.dag_id": dag_id, "airflow.run_id": run_id, "airflow.task_id": task_id,
            "airflow.try_number": str(try_number), "airflow.dag_run_url": run_url, "airflow.task_url": t_url}
    if map_index is not None and map_index >= 0:
        tags["airflow.map_index"] = str(map_index)
    return {
        "MLFLOW_RUN_CONTEXT": json.dumps(tags, sort_keys=True),
        "C2M_AIRFLOW_DAG_ID": dag_id, "C2M_AIRFLOW_RUN_ID": run_id, "C2M_AIRFLOW_TASK_ID": task_id,
        "C2M_AIRFLOW_TRY_NUMBER": str(try_number), "C2M_AIRFLOW_MAP_INDEX": str(map_index),
        "C2M_AIRFLOW_RUN_URL": run_url, "C2M_AIRFLOW_TASK_URL": t_url,
    }


def result_location(s: Settings, launcher_kind: str, dag_id: str, run_id: str, task_id: str) -> str:
    """Where rank 0 writes the result JSON: the stack dir locally, the data root on a cluster
    (the launcher pod and the Airflow task share no disk)."""
    if launcher_kind == "local":
        return str(result_path(s, dag_id, run_id, task_id))
    return storage.join(s.data_root, "_airflow", "results", dag_id, safe_name(run_id), f"{task_id}.json")


def read_result_uri(uri: str) -> dict[str, Any]:
    """Like :func:`read_result` for a local path or an s3:// URI."""
    if not storage.is_s3(uri):
        return read_result(Path(uri))
    try:
        return json.loads(storage.read_text(uri))
    except Exception as exc:
        raise RuntimeError(f"the training job exited 0 but its result file {uri} is unreadable ({exc}); "
                           "rank 0 must write it (--result-file)") from None


def require_module(s: Settings, module: str, hint: str) -> None:
    """Fail early, before any launch, when a job module is not in this checkout."""
    path = s.repo_root.joinpath(*module.split(".")).with_suffix(".py")
    if not path.exists():
        raise RuntimeError(f"{module} is not available (no {path}). {hint}")


class TrainingTask:
    """One training task's launch: launcher, MLflow run name and tags, result file, links back.

    ``ctx`` is the Airflow task context (a dict); ``launcher`` is chosen at run time.
    """

    def __init__(self, ctx: dict[str, Any], s: Settings, launcher=None):
        f = _ti_facts(ctx)
        self.s = s
        self.dag_id, self.run_id, self.task_id = f["dag_id"], f["run_id"], f["task_id"]
        self.map_index = f["map_index"] if isinstance(f["map_index"], int) else -1
        self.launcher = launcher or task_launcher(s)
        self.base_url = airflow_base_url(s)
        self.run_name = mlflow_run_name(self.dag_id, self.run_id, self.task_id, self.map_index)
        self.env = tracking_env(self.dag_id, self.run_id, self.task_id, f["try_number"], self.base_url,
                                self.map_index)
        suffix = f"{self.task_id}-{self.map_index}" if self.map_index >= 0 else self.task_id
        self.result_file = result_location(s, self.launcher.kind, self.dag_id, self.run_id, suffix)

    def run(self, module: str, args: list[str], np: int | None) -> dict[str, Any]:
        """Launch ``module``, wait here for it to end, and return :meth:`collect`'s result."""
        self.launcher.train(module, args, np, name=self.prepare(), env=self.env)
        return self.collect()

    def submit(self, module: str, args: list[str], np: int | None) -> str:
        """Create the cluster job and return its name without waiting (the launcher must have
        ``submit``: Kubernetes); :meth:`collect` reads its result once it has ended."""
        return self.launcher.submit(module, args, np, name=self.prepare(), env=self.env)

    def prepare(self) -> str:
        """Clear the result file of an earlier try; return the job's name."""
        if storage.is_s3(self.result_file):
            storage.remove_tree(self.result_file)
        else:
            Path(self.result_file).parent.mkdir(parents=True, exist_ok=True)
            Path(self.result_file).unlink(missing_ok=True)
        if self.launcher.kind != "local":
            from ops.launch.kubernetes import job_name

            return job_name(self.dag_id, self.task_id, self.run_id, str(self.map_index))
        return f"{self.dag_id}-{self.task_id}-{self.run_id}"

    def collect(self) -> dict[str, Any]:
        """The job's result JSON plus ``mlflow_run_url`` (when it has a run)."""
        result = read_result_uri(self.result_file)
        url = mlflow_url(self.s.mlflow_uri, result.get("run_id"))
        if url:
            result["mlflow_run_url"] = url
        return result

    def note(self, text: str) -> bool:
        return set_run_note(self.dag_id, self.run_id, text, self.base_url)


def mlflow_url(tracking_uri: str, run_id: str | None) -> str | None:
    """The MLflow UI link of a run, or None (no run, or MLflow unreachable: links are a courtesy)."""
    if not run_id:
        return None
    from ops.clients.mlflow_helpers import MlflowLookupError, run_link

    try:
        return run_link(tracking_uri, run_id)
    except (MlflowLookupError, KeyError) as exc:
        log.warning("no MLflow link for run %s: %s", run_id, exc)
        return None


def mlflow_note(label: str, result: dict[str, Any]) -> str:
    """Markdown for a DAG run's note: the MLflow run and the model version it registered."""
    url = result.get("mlflow_run_url")
    parts = [f"**{label}** MLflow run: [{result.get('run_id')}]({url})" if url
             else f"**{label}** MLflow run: {result.get('run_id')}"]
    if result.get("model_uri") or result.get("model_version"):
        parts.append(f"model: `{result.get('model_uri') or result.get('model_version')}`")
    return "  \n".join(parts)


def set_run_note(dag_id: str, run_id: str, note: str, base_url: str) -> bool:
    """Set the DAG run's note over the REST API; False (and a warning) when that is not possible.

    On the local stack the API hands out tokens without a login; where a login is on, the
    admin password file under $AIRFLOW_HOME is used. The note is a convenience: the same link
    is in the task's XCom.
    """
    from ops.clients.airflow_api import AirflowAPIError, AirflowClient

    try:
        AirflowClient(base_url, os.environ.get("AIRFLOW_HOME"), timeout=10).set_note(dag_id, run_id, note)
        return True
    except AirflowAPIError as exc:
        log.warning("could not set the note of %s/%s: %s", dag_id, run_id, exc)
        return False


# ---------------------------------------------------------------- job flags for training tasks

OPTUNA_STORAGE_ENV = "C2M_OPTUNA_STORAGE"


def optuna_storage(s: Settings, study: str) -> str:
    """The study's shared storage: $C2M_OPTUNA_STORAGE (Postgres on a cluster), else SQLite here."""
    return os.environ.get(OPTUNA_STORAGE_ENV) or f"sqlite:///{s.stack_dir / 'optuna' / safe_name(study)}.db"


def optuna_env(s: Settings, study: str) -> dict[str, str]:
    """The job's environment entry naming the study's storage (its URL may hold a DB password, so it
    travels by environment only: never XCom, argv, logs); a local SQLite file's folder is created."""
    url = optuna_storage(s, study)
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return {OPTUNA_STORAGE_ENV: url}


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


def split_trials(n_trials: int, slots: int) -> list[int]:
    """``n_trials`` over at most ``slots`` mapped tasks, as evenly as possible (no empty slot)."""
    slots = max(1, min(slots, n_trials))
    return [n_trials // slots + (1 if i < n_trials % slots else 0) for i in range(slots)]


def compress_args(p: dict[str, Any], run_name: str, result_file: str) -> list[str]:
    """Flags for ``python -m training.compress`` from its Params (a method ignores the others' knobs)."""
    values = {**p, "experiment": "compress", "run_name": run_name, "result_file": result_file}
    return to_flags(COMPRESS_SETTINGS, values) + [str(a) for a in p.get("extra_args") or []]


def check_training_params(p: dict[str, Any]) -> None:
    """Cross-field checks a per-field JSON schema cannot express; raised before any launch."""
    if p.get("task") in ("classification", "tagging") and not p.get("data"):
        raise ValueError(f"task={p['task']!r} has no built-in data set: set the 'data' Param to a folder "
                         "with train/val/test .jsonl")
    subsets = {"sentiment": ("sentences", "reviews"), "pos": ("oanc", "wsj")}
    if p.get("subset") and p["subset"] not in subsets.get(p.get("task"), ()):
        raise ValueError(f"subset={p['subset']!r} does not belong to task {p.get('task')!r}; "
                         f"valid: {list(subsets.get(p.get('task'), ())) or 'none'}")
    if p.get("lr_min") is not None and p.get("lr_max") is not None and p["lr_min"] >= p["lr_max"]:
        raise ValueError(f"lr_min={p['lr_min']} must be below lr_max={p['lr_max']}")


# ---------------------------------------------------------------- end_to_end

def end_to_end_confs(p: dict[str, Any], version: str, data_root: str) -> dict[str, dict[str, Any]]:
    """The confs end_to_end triggers data_refresh, pretrain and finetune with.

    data_refresh writes ``version`` and does not publish the corpus Asset (so pretrain is not
    started twice); pretrain gets that version's shards explicitly.
    """
    refresh = {**dict(p.get("refresh_conf") or {}), "seeds": list(p["seeds"]), "max_pages": p["max_pages"],
               "version": version, "publish": False}
    pretrain = {**dict(p.get("pretrain_conf") or {}), "model": p["model"], "max_steps": p["max_steps"],
                "shards_uri": DatasetVersion(data_root, "shards", version).uri}
    finetune = {**dict(p.get("finetune_conf") or {}), "task": p["task"], "epochs": p["epochs"]}
    return {"data_refresh": refresh, "pretrain": pretrain, "finetune": finetune}
