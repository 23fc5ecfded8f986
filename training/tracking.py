"""MLflow helpers, called by rank 0 only.

One run per job; params logged once (flattened config); metrics buffered and sent with
``MlflowClient.log_batch`` and an explicit step (one call per value is ~100x slower
against a server); every input dataset logged with ``mlflow.log_input`` so a model
version points back to its data; models registered and promoted with the alias
``champion``.

Registered models use the pytorch flavour in pickle format, so
``mlflow.pytorch.load_model("models:/c2m-base@champion")`` returns the ``nn.Module``
(MLflow 3.17 only unpickles with ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true``). Next to it,
as extra files, go ``tokenizer.json``, ``model_config.json`` and a tensors-only
``weights.pt``: :func:`load_model_bundle` rebuilds the module from those, so our own
jobs never unpickle code from the registry. Fine-tuned task models are text-in pyfuncs
instead (training/tasks/serving.py) carrying the same three files as pyfunc artefacts;
:func:`load_model_bundle` reads either layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pytorch
import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Metric
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from training.config import flatten

CHAMPION = "champion"
MODEL_ARTIFACT = "model"
EXTRA_DIR = "extra_files"  # pytorch flavour (base models): the files ride as extra files
ARTIFACTS_DIR = "artifacts"  # pyfunc flavour (task models, training/tasks/serving.py): pyfunc artefacts
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "model_config.json"
WEIGHTS_FILE = "weights.pt"
_MAX_PARAM_LEN = 6000  # MLflow's limit on a param value

# Jobs run offline next to a local server; never phone home (the launcher sets this too).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def start_run(experiment: str, run_name: str, run_id: str | None = None, tags: dict | None = None) -> str:
    """Start (or, with ``run_id``, resume) the job's run in ``experiment``; return its id."""
    mlflow.set_experiment(experiment)
    system = system_metrics_enabled()
    if run_id:
        try:
            resumed = mlflow.start_run(run_id=run_id, log_system_metrics=system).info.run_id
        except mlflow.exceptions.MlflowException as exc:  # e.g. a checkpoint from another tracking server
            print(f"[tracking] cannot resume MLflow run {run_id} ({exc}); starting a new run", flush=True)
        else:
            # MLflow applies MLFLOW_RUN_CONTEXT to new runs only: bring the tags up to date
            # (a retry's airflow.try_number and task URL), so the run names the try that finished it.
            mlflow.set_tags({**(tags or {}), **_run_context_tags()})
            return resumed
    return mlflow.start_run(run_name=run_name, tags=tags or {}, log_system_metrics=system).info.run_id


def system_metrics_enabled() -> bool:
    """MLflow's system metrics (``system/*``: CPU, memory, disk, network, and GPUs when pynvml is
    installed), sampled by a background thread every 10 s (MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL).
    On by default for the job's run; ``C2M_SYSTEM_METRICS=0`` turns them off."""
    return os.environ.get("C2M_SYSTEM_METRICS", "1").strip().lower() not in ("0", "false", "no", "off")


def _run_context_tags() -> dict[str, str]:
    try:
        tags = json.loads(os.environ.get("MLFLOW_RUN_CONTEXT") or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {}


def tracking_uri() -> str:
    return mlflow.get_tracking_uri()


def end_run(status: str = "FINISHED") -> None:
    mlflow.end_run(status=status)


def set_run_tags(tags: dict[str, str]) -> None:
    """Tag the active run (one batched call)."""
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


NOTE_TAG = "mlflow.note.content"  # MLflow shows this tag as the run's description


def describe_run(what: str, data: str, result: str, run_id: str | None = None) -> str:
    """Set a run's description (the active run unless ``run_id``): one paragraph saying what ran,
    on which data version, and with which result. Called once, at the end of the run; returns it."""
    parts = (what, f"Data: {data}" if data else "", f"Result: {result}" if result else "")
    text = " ".join(p.strip().rstrip(".") + "." for p in parts if p.strip())
    if run_id:
        MlflowClient().set_tag(run_id, NOTE_TAG, text)
    else:
        mlflow.set_tag(NOTE_TAG, text)
    return text


def registration_words(name: str, version: Any, promoted: bool, reason: str) -> str:
    """A registered version and the gate's decision, in words (for run descriptions)."""
    verdict = "promoted to champion" if promoted else "not promoted"
    return f"registered as {name} v{version}, {verdict} ({reason})"


def log_config(config: dict[str, Any]) -> None:
    """Log a nested config once, flattened to ``section.key`` params (one batched call)."""
    params = {k: str(v)[:_MAX_PARAM_LEN] for k, v in flatten(config).items()}
    mlflow.log_params(params)


class MetricBuffer:
    """Collect metrics with their step and send them in batches via ``log_batch``."""

    def __init__(self, run_id: str, flush_at: int = 500):
        self.run_id, self.flush_at = run_id, flush_at
        self.client = MlflowClient()
        self.pending: list[Metric] = []

    def add(self, step: int, **metrics: float) -> None:
        now = int(time.time() * 1000)
        self.pending += [Metric(key, float(value), now, int(step)) for key, value in metrics.items()]
        if len(self.pending) >= self.flush_at:
            self.flush()

    def flush(self) -> None:
        for i in range(0, len(self.pending), 1000):  # log_batch takes at most 1000 metrics
            self.client.log_batch(self.run_id, metrics=self.pending[i : i + 1000])
        self.pending = []


def log_dataset(
    uri: str, name: str, digest: str, context: str = "training", tags: dict[str, str] | None = None
) -> None:
    """Record a dataset version as a run input (metadata only: where it is and its digest)."""
    from mlflow.data.sources import LocalArtifactDatasetSource, S3ArtifactDatasetSource

    source = S3ArtifactDatasetSource(uri) if uri.startswith("s3://") else LocalArtifactDatasetSource(uri)
    dataset = MetaDataset(source=source, name=name, digest=digest[:36])
    mlflow.log_input(dataset, context=context, tags=tags)


def digest_json(data: Any) -> str:
    """A stable sha256 of a JSON-able value (e.g. a shards manifest)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def digest_file(path: str | Path) -> str:
    """sha256 of a file, as the shard manifests record it."""
    from training.data.shard_cache import file_sha256

    return file_sha256(path)


def lm_signature(vocab_size: int) -> ModelSignature:
    """Token ids (B, T) int64 -> logits (B, T, V) float32 (next-token logits for a GPT, MLM for BERT)."""
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("int64"), (-1, -1))]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, -1, vocab_size))]),
    )


def log_and_register_model(
    model: torch.nn.Module,
    *,
    registered_name: str,
    tokenizer_path: str | Path,
    model_config: dict[str, Any],
    signature: ModelSignature,
    set_champion: bool = True,
) -> tuple[int, str]:
    """Log ``model`` to the active run, register it, point ``champion`` at it; return (version, uri).

    ``model_config`` must let :func:`load_model_bundle` rebuild the module: it is saved as
    ``model_config.json`` beside the tokenizer and a tensors-only state dict. With
    ``set_champion=False`` the alias is left to the caller (pretraining gates it on val loss).
    """
    with tempfile.TemporaryDirectory(prefix="c2m-model-") as tmp:
        extra = [Path(tmp) / TOKENIZER_FILE, Path(tmp) / CONFIG_FILE, Path(tmp) / WEIGHTS_FILE]
        extra[0].write_bytes(Path(tokenizer_path).read_bytes())
        extra[1].write_text(json.dumps(model_config, indent=2, sort_keys=True))
        torch.save(model.state_dict(), extra[2])
        info = mlflow.pytorch.log_model(
            model,
            name=MODEL_ARTIFACT,
            serialization_format="pickle",
            signature=signature,
            extra_files=[str(p) for p in extra],
            registered_model_name=registered_name,
            # Explicit requirements skip MLflow's slow (and pickle-loading) inference step.
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                "numpy",
                "tokenizers",
                f"mlflow=={mlflow.__version__}",
            ],
        )
    version = int(info.registered_model_version)
    if set_champion:
        MlflowClient().set_registered_model_alias(registered_name, CHAMPION, str(version))
    return version, f"models:/{registered_name}/{version}"


@dataclass
class ModelBundle:
    """A registered model's files, fetched locally: config, tokenizer and weights."""

    local_dir: Path
    config: dict[str, Any]
    version: int | None

    @property
    def files_dir(self) -> Path:
        return model_files_dir(self.local_dir)

    @property
    def tokenizer_path(self) -> Path:
        return self.files_dir / TOKENIZER_FILE

    def state_dict(self) -> dict[str, torch.Tensor]:
        return torch.load(self.files_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True)


def model_files_dir(model_dir: Path) -> Path:
    """Where a logged model keeps tokenizer, config and weights: extra files, else pyfunc artefacts."""
    extra = Path(model_dir) / EXTRA_DIR
    return extra if (extra / CONFIG_FILE).exists() else Path(model_dir) / ARTIFACTS_DIR


def resolve_version(model_uri: str) -> int | None:
    """``models:/name@alias`` or ``models:/name/3`` -> the version number (None for other URIs)."""
    if not model_uri.startswith("models:/"):
        return None
    rest = model_uri[len("models:/") :]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return int(MlflowClient().get_model_version_by_alias(name, alias).version)
    name, _, version = rest.partition("/")
    return int(version) if version.isdigit() else None


def load_model_bundle(model_uri: str) -> ModelBundle:
    """Fetch a model logged by :func:`log_and_register_model` (no unpickling)."""
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
    except mlflow.exceptions.MlflowException as exc:
        hint = (
            "Run pretraining first (it registers c2m-base with alias champion), or check MLFLOW_TRACKING_URI."
        )
        if "@" in model_uri and "alias" in str(exc) and not model_uri.startswith("models:/c2m-base@"):
            hint = (
                "No version holds that alias: the gate promotes a fine-tuned model only when it beats its "
                "baseline and the champion (see the versions' c2m.gate.reason tags); name a version "
                "(models:/<name>/<version>) or rerun with --promote always."
            )
        raise RuntimeError(
            f"could not fetch {model_uri} from MLflow at {mlflow.get_tracking_uri()}: {exc}. {hint}"
        ) from exc
    config_path = model_files_dir(local) / CONFIG_FILE
    if not config_path.exists():
        raise RuntimeError(
            f"{model_uri} has no {EXTRA_DIR}/{CONFIG_FILE} or {ARTIFACTS_DIR}/{CONFIG_FILE}; "
            "it was not logged by crawl2model training"
        )
    return ModelBundle(
        local_dir=local, config=json.loads(config_path.read_text()), version=resolve_version(model_uri)
    )


# --- registry metadata: descriptions and lineage tags ---------------------------------------------

# Every registered version names the data it came from in its version tags, so the registry UI
# answers "what was this trained on?" without opening the run.
TAG_CORPUS_URI = "c2m.corpus.uri"  # the corpus/v=N folder the shards were tokenized from
TAG_CORPUS_VERSION = "c2m.corpus.version"
TAG_CORPUS_DIGEST = "c2m.corpus.digest"  # sha256 of the shards manifest (the run input's digest)
TAG_SHARDS_URI = "c2m.shards.uri"
TAG_TOKENIZER = "c2m.tokenizer_sha256"
TAG_TASK_DATA = "c2m.task_data."  # uri, name, digest of a fine-tuning data set
LINEAGE_PREFIXES = ("c2m.corpus.", "c2m.shards.", TAG_TOKENIZER, TAG_TASK_DATA)


def corpus_tags(
    shards_uri: str, manifest: dict[str, Any], tokenizer_sha256: str | None = None
) -> dict[str, str]:
    """Lineage tags of a model trained on a shards version (its manifest says which corpus)."""
    return {
        TAG_CORPUS_URI: str(manifest.get("parent") or shards_uri),
        TAG_CORPUS_VERSION: str(manifest.get("version") or Path(shards_uri).name.removeprefix("v=")),
        TAG_CORPUS_DIGEST: digest_json(manifest),
        TAG_SHARDS_URI: str(shards_uri),
        TAG_TOKENIZER: str(tokenizer_sha256 or manifest.get("tokenizer_sha256") or ""),
    }


def task_data_tags(uri: str, name: str, digest: str) -> dict[str, str]:
    return {
        f"{TAG_TASK_DATA}uri": str(uri),
        f"{TAG_TASK_DATA}name": str(name),
        f"{TAG_TASK_DATA}digest": digest,
    }


def inherited_lineage(model_uri: str, bundle: "ModelBundle") -> dict[str, str]:
    """The lineage tags of the registered model a new one was made from (fine-tuned or compressed).

    Read from that version's tags; versions registered before these tags existed fall back
    to what their ``model_config.json`` recorded (the shards URI) and the tokenizer file's hash.
    """
    tags: dict[str, str] = {}
    name = model_uri.removeprefix("models:/").split("@")[0].split("/")[0]
    if model_uri.startswith("models:/") and bundle.version is not None:
        try:
            source = MlflowClient().get_model_version(name, str(bundle.version)).tags or {}
            tags = {k: v for k, v in source.items() if k.startswith(LINEAGE_PREFIXES)}
        except mlflow.exceptions.MlflowException:
            tags = {}
    shards = bundle.config.get("shards")
    if shards and TAG_CORPUS_URI not in tags:
        tags.update({TAG_SHARDS_URI: str(shards), TAG_CORPUS_URI: str(shards),
                     TAG_CORPUS_VERSION: Path(str(shards)).name.removeprefix("v=")})
    if not tags.get(TAG_TOKENIZER):
        tags[TAG_TOKENIZER] = str(bundle.config.get("tokenizer_sha256") or digest_file(bundle.tokenizer_path))
    return tags


def describe_registration(
    name: str,
    version: int,
    *,
    model_description: str,
    version_description: str,
    tags: dict[str, str],
    client: MlflowClient | None = None,
) -> None:
    """Describe a registered model (only while it has none: hand edits stay); describe and tag a version."""
    client = client or MlflowClient()
    if not (client.get_registered_model(name).description or "").strip():
        client.update_registered_model(name, description=model_description)
    client.update_model_version(name, str(version), description=version_description)
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))
