"""What the DAG files in ``dags/`` call: Params (:mod:`ops.dagkit.dag_params`), task helpers
(:mod:`ops.dagkit.dag_support`), the Assets that link DAGs (:mod:`ops.dagkit.assets`). The REST
clients they use are in :mod:`ops.clients`."""
