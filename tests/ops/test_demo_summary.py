"""The demo summary puts each model's number beside its cheap baseline's, from the jobs' result files."""

from types import SimpleNamespace

from ops.stack.demo import DemoResult, summary


def test_summary_prints_baselines_and_lifts_beside_the_models():
    pretrain = {"train_loss": 3.2, "val_loss": 3.4, "steps": 300, "model_uri": "models:/c2m-base/2",
                "val_bpb": 2.61, "baseline": "xz-9", "baseline_bpb": 2.35, "lift_bpb": 0.26,
                "mlflow_run_url": "http://127.0.0.1:5000/#/runs/p"}
    finetune = {"accuracy": 0.585, "f1": 0.58, "model_version": 3, "metric": "accuracy",
                "baseline": "TF-IDF+LR", "baseline_accuracy": 0.685, "lift_accuracy": -0.1,
                "promoted": False, "gate": "accuracy 0.5850 < TF-IDF+LR baseline 0.6850: ...",
                "mlflow_run_url": "http://127.0.0.1:5000/#/runs/f"}
    result = DemoResult(ok=True, outputs={"pretrain": pretrain, "finetune": finetune})
    s = SimpleNamespace(data_root="/tmp/d", s3_mode=False, airflow_url="http://a", mlflow_uri="http://m")
    lines = [line.strip() for line in summary(result, s).splitlines()]
    at = next(i for i, line in enumerate(lines) if line.startswith("pretrain "))
    assert lines[at + 1] == "val bits/byte 2.6100  xz-9 baseline 2.3500  lift 0.2600 (lower is better)"
    assert lines[at + 2].startswith("finetune        accuracy 0.5850")
    assert lines[at + 3].startswith("TF-IDF+LR baseline accuracy 0.6850  lift -0.1000  (not promoted: ")


def test_summary_links_the_finetune_report_in_the_mlflow_ui():
    finetune = {"accuracy": 0.7, "metric": "accuracy", "run_id": "f1", "report": "report/index.html",
                "mlflow_run_url": "http://127.0.0.1:5000/#/experiments/3/runs/f1"}
    result = DemoResult(ok=True, outputs={"finetune": finetune})
    s = SimpleNamespace(data_root="/tmp/d", s3_mode=False, airflow_url="http://a", mlflow_uri="http://m")
    lines = [line.strip() for line in summary(result, s).splitlines()]
    page = "http://127.0.0.1:5000/#/experiments/3/runs/f1/artifacts/report/index.html"
    assert f"report          {page}" in lines
    del finetune["report"]  # a run without a report (e.g. its drawing failed): no line
    assert not any(line.strip().startswith("report ") for line in summary(result, s).splitlines())
