"""What the DAG files in ``dags/`` call: Params (:mod:`ops.dagkit.dag_params`), task helpers
(:mod:`ops.dagkit.dag_support`). The REST clients they use are in :mod:`ops.clients`."""
