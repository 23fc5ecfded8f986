"""One training task's launch from a DAG: the launcher chosen at run time, the MLflow run's
name and tags, the result file, and the links back to Airflow."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ops.dagkit.airflow_context import airflow_base_url, ti_facts
from ops.dagkit.launcher_choice import task_launcher
from ops.dagkit.results import read_result_uri, result_location
from ops.dagkit.tracking import mlflow_run_name, mlflow_url, set_run_note, tracking_env
from ops.lake import storage
from ops.launch.settings import Settings


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
        f = ti_facts(ctx)
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
            from ops.launch.kubernetes.mpijob import job_name

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
