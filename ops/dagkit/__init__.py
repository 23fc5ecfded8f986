"""What the DAG files in ``dags/`` call, one module per concern: Params (``dag_params``), dataset
versions (``versions``), mapped-task plans (``fanout``), job flags (``flags``), a run's resolved
Params (``run_params``), result files (``results``), default_args and failure reports
(``callbacks``), what a task reads from Airflow (``airflow_context``), the launcher
(``launcher_choice``), MLflow links (``tracking``), the HPO study's storage and process plans
(``hpo``), a training task's launch (``training_task``, ``training_operator``) and the Assets
(``assets``).
Only ``assets`` and ``training_operator`` import Airflow at module level; the REST clients are
in :mod:`ops.clients`."""
