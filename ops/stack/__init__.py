"""The local stack: Airflow, MLflow, the S3 server, the demo website and a Spark standalone
cluster, started and supervised on this machine, and the demo that drives the whole life cycle
through Airflow's REST API (:mod:`ops.stack.demo`, with its profiles, run calls and summary in
``demo_profiles``, ``demo_runs`` and ``demo_summary``). ``services`` starts and stops it; ``layout``
(names, files, exposure), ``components`` (command lines, environment), ``processes`` (PIDs,
process groups, crashes), ``mode`` (local or S3), ``monitor`` (health, status, URLs) and
``spark_cluster`` hold what ``up`` and ``down`` are made of."""
