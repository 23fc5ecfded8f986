"""Build-time check of the Airflow images: the DAGs import and the launchers find their tools.

Parsing uses a throwaway AIRFLOW_HOME and an unreachable database, as tests/dags does, so a DAG
that touches the DB or network at import time fails the build. ``--jobs`` (worker target) also
checks that ops.launch.local builds its spark-submit and horovodrun commands from C2M_JOBS_VENV.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

EXPECTED_DAGS = {"data_refresh", "pretrain", "finetune"}


def check_dags() -> None:
    home = tempfile.mkdtemp(prefix="c2m-selfcheck-")
    os.environ.update(AIRFLOW_HOME=home, AIRFLOW__CORE__LOAD_EXAMPLES="False",
                      AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/no-such-dir/airflow.db")
    from airflow.dag_processing.dagbag import DagBag

    # Examples stay out through AIRFLOW__CORE__LOAD_EXAMPLES (Airflow 3's DagBag has no flag for it).
    bag = DagBag(dag_folder=os.environ.get("AIRFLOW__CORE__DAGS_FOLDER", "/opt/airflow/dags"))
    if bag.import_errors:
        sys.exit(f"DAG import errors: {bag.import_errors}")
    missing = EXPECTED_DAGS - set(bag.dag_ids)
    if missing:
        sys.exit(f"DAGs missing from the image: {sorted(missing)} (found {sorted(bag.dag_ids)})")
    print(f"[selfcheck] DAGs {sorted(bag.dag_ids)} import cleanly")


def check_jobs() -> None:
    from ops.launch.local import horovodrun_command, spark_submit_command

    spark = spark_submit_command("crawl", ["--help"])
    hvd = horovodrun_command("training.pretrain", ["--help"], np=1)
    venv = os.environ["C2M_JOBS_VENV"]
    assert spark[0] == f"{venv}/bin/spark-submit" and hvd[0] == f"{venv}/bin/horovodrun", (spark, hvd)
    out = subprocess.run([hvd[0], "--check-build"], capture_output=True, text=True, check=True).stdout
    if "[X] PyTorch" not in out or "[X] Gloo" not in out:
        sys.exit(f"horovodrun --check-build lacks PyTorch or Gloo:\n{out}")
    subprocess.run([f"{venv}/bin/python", "-c", "import pyspark, torch, horovod.torch, spark_jobs, training"],
                   check=True)
    print(f"[selfcheck] jobs venv {venv}: spark-submit, horovodrun (PyTorch, Gloo): OK")


if __name__ == "__main__":
    check_dags()
    if "--jobs" in sys.argv[1:]:
        check_jobs()
