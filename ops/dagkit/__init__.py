"""What the DAG files in ``dags/`` call: Params (:mod:`ops.dagkit.dag_params`), task helpers
(:mod:`ops.dagkit.dag_support`) and MLflow links (:mod:`ops.dagkit.mlflow_helpers`)."""
