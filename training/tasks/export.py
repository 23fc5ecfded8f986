"""Task models in and out of MLflow: log (registering is optional, promotion is the gate's), rebuild.

A task model is logged as a pyfunc that takes raw text (training/tasks/serving.py), so
``mlflow models serve`` and ``mlflow.pyfunc.load_model`` answer with labels, tags or
generations. Its artefacts are the files base models carry as extra files
(``tokenizer.json``, ``model_config.json`` and a tensors-only ``weights.pt``), so
:func:`training.tracking.load_model_bundle` reads either layout and further training,
evaluation and compression rebuild the torch module from them. Logging never moves the
``champion`` alias; that is :mod:`training.registry_gate`'s decision, made on the test metric.

``model_config.json`` says how to rebuild the module (``kind``: gpt-lm, gpt-classifier,
gpt-tagger, gpt-generator; the head's kind keeps its ``gpt-`` name on a BERT backbone, whose
``model.arch`` says ``bert``; ``compression``: dynamic-int8 for quantised models), so evaluation and
compression work from a registry URI alone, without unpickling code.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import torch
import torch.nn as nn

from training import tracking
from training.config import ModelConfig
from training.models import build_model

INT8 = "dynamic-int8"


def log_model(
    model: nn.Module,
    model_config: dict[str, Any],
    tokenizer_path: str | Path,
    registered_name: str = "",
    name: str = tracking.MODEL_ARTIFACT,
    tags: dict[str, str] | None = None,
    example_texts: list[str] | None = None,
) -> dict:
    """Log to the active run as a text-in pyfunc (training/tasks/serving.py); register when named.

    ``example_texts`` become the logged input example (a ``text`` column).

    Returns ``{"model_uri", "model_version"}`` (version None when not registered); the
    model URI is ``models:/name/version`` or, unregistered, the logged model's URI.
    """
    from training.tasks import serving

    with tempfile.TemporaryDirectory(prefix="c2m-task-model-") as tmp:
        folder = Path(tmp)
        (folder / tracking.TOKENIZER_FILE).write_bytes(Path(tokenizer_path).read_bytes())
        (folder / tracking.CONFIG_FILE).write_text(json.dumps(model_config, indent=2, sort_keys=True))
        torch.save(model.state_dict(), folder / tracking.WEIGHTS_FILE)
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(serving.CODE_FILE),
            artifacts=serving.artifacts(folder),
            signature=serving.signature(model_config),
            input_example=serving.input_example(list(example_texts or ())),
            registered_model_name=registered_name or None,
            # Explicit requirements skip MLflow's slow inference step; serving also needs
            # the crawl2model package itself (its training.tasks.serving module).
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                "numpy",
                "pandas",
                "tokenizers",
                f"mlflow=={mlflow.__version__}",
            ],
        )
    if not registered_name:
        return {"model_uri": info.model_uri, "model_version": None}
    version = int(info.registered_model_version)
    if tags:
        client = mlflow.MlflowClient()
        for key, value in tags.items():
            client.set_model_version_tag(registered_name, str(version), key, str(value))
    return {"model_uri": f"models:/{registered_name}/{version}", "model_version": version}


def build_module(config: dict) -> nn.Module:
    """An untrained module of the registered shape (weights come from the bundle)."""
    from training.models.heads import SequenceClassifier
    from training.tasks.tagging import TokenTagger

    backbone = build_model(ModelConfig(**config["model"]))  # model.arch: gpt or bert
    kind = config.get("kind")
    if kind == "gpt-lm":
        model = backbone
    elif kind == "gpt-classifier":
        model = SequenceClassifier(
            backbone,
            len(config["labels"]),
            config["pad_id"],
            config.get("dropout", 0.1),
            config.get("pooling", "last"),
        )
    elif kind == "gpt-tagger":
        model = TokenTagger(
            backbone, config["labels"], config.get("dropout", 0.1), config.get("crf", False), config["pad_id"]
        )
    elif kind == "gpt-generator":
        from training.tasks.generation import GenerationLM

        model = GenerationLM(backbone)
    else:
        raise ValueError(
            f"model kind {kind!r} is not one crawl2model builds "
            "(gpt-lm, gpt-classifier, gpt-tagger, gpt-generator)"
        )
    if config.get("compression") == INT8:
        model = quantize_int8(model)
    return model


def quantize_int8(model: nn.Module) -> nn.Module:
    """Post-training dynamic quantisation: int8 Linear weights, activations quantised on the fly.

    The tied LM head stays float: it shares its matrix with the input embedding (which
    dynamic quantisation leaves alone), and a classifier never runs it anyway. Torch
    marks ``torch.ao.quantization`` deprecated in favour of torchao; it still works in
    the pinned torch, so its warning is silenced here rather than in every caller.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.ao\.quantization")
        warnings.filterwarnings("ignore", category=UserWarning, message=r".*quantize_per_tensor")
        from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

        spec = {
            name: default_dynamic_qconfig
            for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and not name.endswith("lm_head")
        }
        return quantize_dynamic(model.eval(), spec, dtype=torch.qint8)


def load_module(bundle) -> nn.Module:
    """Rebuild a registered model from its bundle, in eval mode."""
    model = build_module(bundle.config)
    model.load_state_dict(bundle.state_dict())
    return model.eval()
