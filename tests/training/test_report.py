"""The evaluation report: pictures of the expected size, a page that states the numbers, on the run."""

import json
import struct

import pytest

from test_finetune_tasks import base_in_mlflow, finetune_args, write_classification_jsonl
from training import report
from training.run_report import Recorder, report_data

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def classification_data() -> report.ReportData:
    recorder = Recorder()
    for step in range(1, 21):
        recorder.add(step, **{"train/loss": 1.0 / step})
        if step % 10 == 0:
            val = {"val/loss": 0.8 - step / 100, "val/accuracy": 0.6 + step / 200}
            recorder.add(step, epoch=step // 10, **val)
    result = {"accuracy": 0.7125, "f1": 0.7042, "metric": "accuracy", "baseline": "TF-IDF+LR",
              "baseline_accuracy": 0.6875, "baseline_f1": 0.6811, "lift_accuracy": 0.025, "steps": 20,
              "stopped_early": False}
    extras = {"labels": ["negative", "positive"], "confusion": [[31, 9], [14, 26]]}
    return report_data("sentiment run", result, recorder, extras)


def test_recorder_forwards_and_keeps_the_curves():
    seen = []
    rec = Recorder(lambda step, **m: seen.append((step, m)))
    rec.add(3, **{"train/loss": 0.5})
    rec.add(3, epoch=1, **{"val/loss": 0.4, "val/accuracy": 0.8})
    assert seen == [(3, {"train/loss": 0.5}), (3, {"epoch": 1, "val/loss": 0.4, "val/accuracy": 0.8})]
    assert rec.train_curve == [(3, 0.5)]
    assert rec.history == [{"epoch": 1, "step": 3, "loss": 0.4, "accuracy": 0.8}]


def test_classification_report_files_sizes_and_numbers(tmp_path):
    data = classification_data()
    assert data.test == {"accuracy": 0.7125, "f1": 0.7042}  # lift_/steps/bools are not scores
    files = {p.name: p for p in report.write_report(tmp_path, data)}
    assert set(files) == {"learning_curves.png", "baseline_vs_model.png", "confusion_matrix.png",
                          "index.html", "report.json"}
    assert png_size(files["confusion_matrix.png"]) == report.confusion_size(2) == (320, 260)
    assert png_size(files["learning_curves.png"]) == report.FIGURE_PX["learning_curves"]
    assert png_size(files["baseline_vs_model.png"]) == report.FIGURE_PX["baseline_vs_model"]
    page = files["index.html"].read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for text in ("0.7125", "0.6875", "0.0250", "TF-IDF+LR", "negative", "positive",
                 "<td>31</td>", "<td>14</td>"):
        assert text in page, text
    assert page.count('src="data:image/png;base64,') == 3 and "http" not in page  # self-contained
    assert json.loads(files["report.json"].read_text())["confusion"] == [[31, 9], [14, 26]]


def test_tagging_report_has_per_tag_scores(tmp_path):
    true = [["DT", "NN", "VB"], ["NN", "NN"]]
    pred = [["DT", "NN", "NN"], ["NN", "VB"]]
    per_tag = report.per_tag_scores(true, pred)
    assert per_tag["NN"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert per_tag["VB"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    data = report.ReportData(title="pos", metric="token_accuracy", test={"token_accuracy": 0.6},
                             baseline_name="most-frequent-tag", baseline={"token_accuracy": 0.8},
                             per_tag=per_tag)
    files = {p.name: p for p in report.write_report(tmp_path, data)}
    assert png_size(files["per_tag_f1.png"]) == report.per_tag_size(3)
    page = files["index.html"].read_text()
    assert "<td>NN</td><td>0.6667</td><td>0.6667</td><td>0.6667</td><td>3</td>" in page
    assert "most-frequent-tag" in page and "-0.2000" in page
    with pytest.raises(ValueError, match="2 true tags but 1 predicted"):
        report.per_tag_scores([["A", "B"]], [["A"]])


@pytest.fixture(scope="module")
def base(mlflow_uri, shards_uri, tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    with base_in_mlflow(mlflow_uri, shards_uri, root, "c2m-base-report", "finetune-test") as uri:
        yield uri


def test_finetune_logs_the_report_on_its_run(base, mlflow_uri, tmp_path):
    from mlflow import MlflowClient

    from training import distributed, finetune

    data = write_classification_jsonl(tmp_path / "cls", n=64)
    args = finetune.parse_args(finetune_args(base, "c2m-report-test", "--task", "classification",
                                             "--data", str(data), "--epochs", "2"))
    dist = distributed.init(num_threads=1)
    try:  # not registered: the report belongs to the run, and registering costs seconds
        result, _, _ = finetune.train(finetune.build_config(args), dist, register=False)
    finally:
        dist.shutdown()
    assert result["report"] == "report/index.html"
    client = MlflowClient(tracking_uri=mlflow_uri)
    listed = {f.path for f in client.list_artifacts(result["run_id"], "report")}
    assert listed == {f"report/{name}" for name in ("learning_curves.png", "baseline_vs_model.png",
                                                    "confusion_matrix.png", "index.html", "report.json")}
    assert client.get_run(result["run_id"]).data.tags["c2m.report"] == "report/index.html"
    local = client.download_artifacts(result["run_id"], "report", str(tmp_path))
    saved = json.loads(open(f"{local}/report.json").read())
    assert [h["epoch"] for h in saved["history"]] == [1, 2] and len(saved["train_curve"]) == result["steps"]
    assert sum(map(sum, saved["confusion"])) == result["examples"]["test"]
    assert f"{result['accuracy']:.4f}" in open(f"{local}/index.html").read()


def test_a_report_that_cannot_be_drawn_is_tagged_and_the_run_goes_on(mlflow_uri, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    from training import finetune, run_report
    from training.tasks.config import TaskConfig

    def broken(data):  # fault injection: drawing fails (e.g. matplotlib missing)
        raise RuntimeError("no matplotlib here")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setattr(run_report, "log_report", broken)
    mlflow.set_experiment("finetune-test")
    with mlflow.start_run() as run:
        result = {"metric": "bleu", "bleu": 1.0, "run_id": run.info.run_id}
        task = type("Task", (), {"kind": "generation"})()
        assert finetune.log_report(TaskConfig(run_name="r"), task, None, result, None) == {}
    tags = MlflowClient(tracking_uri=mlflow_uri).get_run(run.info.run_id).data.tags
    assert tags["c2m.report"] == "failed: RuntimeError: no matplotlib here"
