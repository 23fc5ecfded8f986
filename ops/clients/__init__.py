"""Standard-library REST clients of the stack's services: Airflow (:mod:`ops.clients.airflow_api`)
and MLflow's read-only lookups (:mod:`ops.clients.mlflow_helpers`). The CLI, the demo and the DAG
helpers share them; they run in the Airflow venv, which has no ``mlflow`` package."""
