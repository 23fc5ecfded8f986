"""Rebuild a task model's torch module from its MLflow artefacts (logging is in serving.py).

A task model is logged as a pyfunc that takes raw text (:func:`training.tasks.serving.log_model`), so
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

import torch
import torch.nn as nn

from training.config import ModelConfig
from training.models import build_model

INT8 = "dynamic-int8"


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
            config.get("ngram_buckets", 0),
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
