"""A registered task model as an MLflow pyfunc: raw text in, labels, tags or generations out.

    mlflow.pyfunc.load_model("models:/c2m-sentiment@champion").predict(pd.DataFrame({"text": [...]}))
    mlflow models serve -m models:/c2m-sentiment@champion --env-manager local -h 127.0.0.1 -p 5001

The model carries everything a client would otherwise rebuild: the tokenizer
(``tokenizer.json``), the label names and how the text is cut (``model_config.json``) and
the tensors-only weights (``weights.pt``), as pyfunc artefacts. The same three files are
what :func:`training.tracking.load_model_bundle` reads, so evaluation, compression and
re-scoring keep working from a registry URI, and no pickled code is loaded anywhere: the
pyfunc is logged as code (``serving_model.py``, which imports this module from the
installed crawl2model package).

Input: a ``text`` column. Output rows, by the model's kind:

- classifier: ``label`` and ``probabilities`` ({label: p}, summing to 1);
- tagger: ``tokens`` (the text split on whitespace) and one of the model's ``tags`` per token;
- generator: ``generated``, the continuation of ``text`` decoded as at evaluation
  (greedy unless the model was trained with sampling settings).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import pandas as pd
import torch
import torch.nn as nn

from training import tracking

TEXT = "text"
SPLIT = "serve"
CODE_FILE = Path(__file__).with_name("serving_model.py")


def artifacts(folder: Path) -> dict[str, str]:
    """The pyfunc artefacts, keyed by file (tracking's file names), from a folder that holds them."""
    return {name: str(folder / name) for name in (tracking.TOKENIZER_FILE, tracking.CONFIG_FILE,
                                                  tracking.WEIGHTS_FILE)}


def signature(config: dict):
    """``text`` (string) -> the kind's outputs (see the module doc)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, DataType, Object, Property, Schema

    kind = config["kind"]
    if kind == "gpt-classifier":
        probs = Object([Property(label, DataType.double) for label in config["labels"]])
        outputs = [ColSpec(DataType.string, "label"), ColSpec(probs, "probabilities")]
    elif kind == "gpt-tagger":
        outputs = [ColSpec(Array(DataType.string), "tokens"), ColSpec(Array(DataType.string), "tags")]
    elif kind == "gpt-generator":
        outputs = [ColSpec(DataType.string, "generated")]
    else:
        raise ValueError(f"no text signature for model kind {kind!r} (a task model: classifier, tagger, "
                         "generator)")
    return ModelSignature(inputs=Schema([ColSpec(DataType.string, TEXT)]), outputs=Schema(outputs))


def serving_data(config: dict, texts: list[str]):
    """The texts as a one-split data set of the model's task (targets are placeholders, never read)."""
    kind = config["kind"]
    labels = tuple(config.get("labels", ()))
    if kind == "gpt-classifier":
        from training.tasks.classification import ClassificationData

        return ClassificationData(SPLIT, labels, {SPLIT: texts}, {SPLIT: [0] * len(texts)}, Path(SPLIT))
    if kind == "gpt-tagger":
        from training.data.tagged import TaggedSentence
        from training.tasks.tagging import TaggingData

        sents = [TaggedSentence(tuple(t.split()), (labels[0],) * len(t.split())) for t in texts]
        return TaggingData(SPLIT, labels, {SPLIT: sents}, Path(SPLIT))
    from training.data.pydoc_pairs import Pair, PairData

    return PairData(SPLIT, {SPLIT: [Pair(t, "") for t in texts]}, Path(SPLIT))


def log_model(
    model: nn.Module,
    model_config: dict[str, Any],
    tokenizer_path: str | Path,
    registered_name: str = "",
    name: str = tracking.MODEL_ARTIFACT,
    tags: dict[str, str] | None = None,
    example_texts: list[str] | None = None,
) -> dict:
    """Log to the active run as this module's text-in pyfunc; register when named.

    ``example_texts`` become the logged input example (a ``text`` column).

    Returns ``{"model_uri", "model_version"}`` (version None when not registered); the
    model URI is ``models:/name/version`` or, unregistered, the logged model's URI.
    """
    with tempfile.TemporaryDirectory(prefix="c2m-task-model-") as tmp:
        folder = Path(tmp)
        (folder / tracking.TOKENIZER_FILE).write_bytes(Path(tokenizer_path).read_bytes())
        (folder / tracking.CONFIG_FILE).write_text(json.dumps(model_config, indent=2, sort_keys=True))
        torch.save(model.state_dict(), folder / tracking.WEIGHTS_FILE)
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(CODE_FILE),
            artifacts=artifacts(folder),
            signature=signature(model_config),
            input_example=input_example(list(example_texts or ())),
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


class TextModel(mlflow.pyfunc.PythonModel):
    """Loads the artefacts once; each ``predict`` tokenises the texts as training did."""

    def load_context(self, context) -> None:
        from training.tasks import export

        config_path = Path(context.artifacts[tracking.CONFIG_FILE])
        self.bundle = tracking.ModelBundle(
            local_dir=config_path.parent.parent, config=json.loads(config_path.read_text()), version=None
        )
        self.module = export.load_module(self.bundle)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from training.tasks import task_for_model

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if TEXT not in frame.columns:
            raise ValueError(f"the input needs a {TEXT!r} column of raw texts; got {list(frame.columns)}")
        texts = ["" if t is None else str(t) for t in frame[TEXT].tolist()]
        config = self.bundle.config
        if not texts:
            return pd.DataFrame(columns=[c.name for c in signature(config).outputs.inputs])
        task = task_for_model(self.bundle, data=serving_data(config, texts))
        if config["kind"] == "gpt-classifier":
            probs = task.probabilities(self.module, SPLIT)
            return pd.DataFrame({
                "label": [task.labels[int(i)] for i in probs.argmax(-1)],
                "probabilities": [
                    {label: float(p) for label, p in zip(task.labels, row)} for row in probs.tolist()
                ],
            })
        if config["kind"] == "gpt-tagger":
            tokens = [list(s.tokens) for s in task.data.splits[SPLIT]]
            return pd.DataFrame({"tokens": tokens, "tags": task.predict(self.module, SPLIT)})
        return pd.DataFrame({"generated": task.predict(self.module, SPLIT)})


def example_texts(task, split: str = "test", n: int = 2) -> list[str]:
    """A few raw inputs of the task's kind, for the logged input example."""
    data = task.data
    if task.kind == "classification":
        return list(data.texts.get(split, []))[:n]
    if task.kind == "tagging":
        return [" ".join(s.tokens) for s in data.splits.get(split, [])[:n]]
    return [p.prompt for p in data.splits.get(split, [])[:n]]


def input_example(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame({TEXT: [str(t) for t in texts] or ["an example text"]})
