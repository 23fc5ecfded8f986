"""A registered task model serves raw text: pyfunc in-process, and ``mlflow models serve`` for real.

Tiny models are fine-tuned here (one epoch on the synthetic JSONL tasks) and registered as
the pyfunc training/tasks/serving.py defines. The served test starts the jobs venv's
``mlflow models serve`` on 127.0.0.1, posts raw texts to ``/invocations`` and stops the
server by its process group id.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from test_finetune_tasks import base_in_mlflow, finetune_args, write_classification_jsonl, write_tagging_jsonl
from test_generation_task import write_generation_jsonl

REPO = Path(__file__).resolve().parents[2]
TEXTS = ["the cat sees the red ball", "a dog likes a quiet river", "my friend finds the long road"]


@pytest.fixture(scope="module")
def models(mlflow_uri, shards_uri, tmp_path_factory):
    from training import finetune

    root = tmp_path_factory.mktemp("serve")
    with base_in_mlflow(mlflow_uri, shards_uri, root, "c2m-base-serve", "finetune-test") as base_uri:
        common = ("--epochs", "1", "--max-examples", "120", "--promote", "always")
        cls = finetune.main(finetune_args(base_uri, "c2m-serve-cls", "--task", "classification", "--data",
                                          str(write_classification_jsonl(root / "cls")), *common))
        tag = finetune.main(finetune_args(base_uri, "c2m-serve-tag", "--task", "tagging", "--data",
                                          str(write_tagging_jsonl(root / "tag")), *common))
        gen = finetune.main(finetune_args(base_uri, "c2m-serve-gen", "--task", "generation", "--data",
                                          str(write_generation_jsonl(root / "gen", n=60)),
                                          "--max-new-tokens", "6", *common))
        yield {"classification": cls, "tagging": tag, "generation": gen}


def test_pyfunc_predicts_labels_and_probabilities_from_text_as_the_torch_model_does(models):
    import mlflow

    from training import tracking
    from training.tasks import export, task_for_model
    from training.tasks.serving import serving_data

    model = mlflow.pyfunc.load_model("models:/c2m-serve-cls@champion")
    inputs = model.metadata.get_input_schema().inputs
    assert [(c.name, c.type.name) for c in inputs] == [("text", "string")]
    out = model.predict(pd.DataFrame({"text": TEXTS}))
    assert list(out.columns) == ["label", "probabilities"] and len(out) == 3
    assert set(out["label"]) <= {"no", "yes"}
    for label, probs in zip(out["label"], out["probabilities"]):
        assert set(probs) == {"no", "yes"} and sum(probs.values()) == pytest.approx(1.0, abs=1e-6)
        assert label == max(probs, key=probs.get)
    # The same numbers as the torch module rebuilt from the same registry version's files.
    bundle = tracking.load_model_bundle("models:/c2m-serve-cls@champion")
    task = task_for_model(bundle, data=serving_data(bundle.config, TEXTS))
    expected = task.probabilities(export.load_module(bundle), "serve")
    assert [p["yes"] for p in out["probabilities"]] == pytest.approx(expected[:, 1].tolist(), abs=1e-6)
    assert model.metadata.saved_input_example_info is not None


def test_pyfunc_tagger_returns_one_known_tag_per_whitespace_token(models):
    import mlflow

    version = models["tagging"]["model_version"]
    out = mlflow.pyfunc.load_model(f"models:/c2m-serve-tag/{version}").predict(
        pd.DataFrame({"text": ["the cat sees the red ball", "", "a dog"]})
    )
    assert out["tokens"].tolist() == [["the", "cat", "sees", "the", "red", "ball"], [], ["a", "dog"]]
    assert [len(t) for t in out["tags"]] == [6, 0, 2]
    assert {t for tags in out["tags"] for t in tags} <= {"O", "B-THING", "I-THING"}


def test_pyfunc_generator_continues_prompts_as_evaluation_decodes_them(models):
    import mlflow

    from training import tracking
    from training.tasks import export, task_for_model
    from training.tasks.serving import serving_data

    uri = f"models:/c2m-serve-gen/{models['generation']['model_version']}"
    prompts = ["the cat sees", "a dog likes"]
    out = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"text": prompts}))
    assert list(out.columns) == ["generated"] and all(isinstance(g, str) for g in out["generated"])
    bundle = tracking.load_model_bundle(uri)
    task = task_for_model(bundle, data=serving_data(bundle.config, prompts))
    assert out["generated"].tolist() == task.predict(export.load_module(bundle), "serve")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def test_mlflow_models_serve_answers_raw_texts(models, mlflow_uri, tmp_path):
    port = _free_port()
    venv_bin = Path(sys.executable).parent  # mlflow runs `uvicorn` from PATH: the jobs venv's
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri, "PYTHONPATH": str(REPO),
           "MLFLOW_DISABLE_TELEMETRY": "true", "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    mlflow_bin = venv_bin / "mlflow"
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen(
        [str(mlflow_bin), "models", "serve", "-m", "models:/c2m-serve-cls@champion", "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(1)
        records = _post(f"{base}/invocations", {"dataframe_records": [{"text": t} for t in TEXTS]})
        preds = records["predictions"]
        assert len(preds) == 3
        for row in preds:
            assert row["label"] in {"no", "yes"}
            assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        columnar = _post(f"{base}/invocations", {"inputs": {"text": TEXTS}})
        assert [r["label"] for r in columnar["predictions"]] == [r["label"] for r in preds]
        with pytest.raises(urllib.error.HTTPError) as bad:  # no text column: a client error, said so
            _post(f"{base}/invocations", {"dataframe_records": [{"body": "x"}]})
        assert bad.value.code == 400
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()
