"""The local stack: Airflow, MLflow, the S3 server, the demo website and a Spark standalone
cluster, started and supervised on this machine (:mod:`ops.stack.services`), and the demo
that drives the whole life cycle through Airflow's REST API (:mod:`ops.stack.demo`)."""
