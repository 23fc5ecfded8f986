"""Training runs carry MLflow's system metrics (CPU, memory...) unless switched off."""
from __future__ import annotations

import time

import pytest

mlflow = pytest.importorskip("mlflow")


def _run(tmp_path, monkeypatch, enabled: str) -> dict:
    from training import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    monkeypatch.setenv("C2M_SYSTEM_METRICS", enabled)
    client = mlflow.MlflowClient(uri)
    if client.get_experiment_by_name("sys") is None:
        client.create_experiment("sys", artifact_location=(tmp_path / "art").as_uri())
    mlflow.set_tracking_uri(uri)  # a global another test may have set would win over the env
    try:
        run_id = tracking.start_run("sys", f"system-metrics-{enabled}")
        try:
            time.sleep(3)  # a few sampling intervals
        finally:
            tracking.end_run()
    finally:
        mlflow.set_tracking_uri(None)
    return client.get_run(run_id).data.metrics


def test_a_training_run_logs_system_metrics(tmp_path, monkeypatch):
    metrics = _run(tmp_path, monkeypatch, "1")
    assert any(k.startswith("system/cpu_utilization") for k in metrics), sorted(metrics)
    assert any(k.startswith("system/system_memory_usage") for k in metrics), sorted(metrics)


def test_system_metrics_can_be_switched_off(tmp_path, monkeypatch):
    assert not [k for k in _run(tmp_path, monkeypatch, "0") if k.startswith("system/")]
