"""DAG tests run under .venv-airflow: give Airflow a throwaway home and an unusable database.

The database URL points into a folder that does not exist, so any DB access while a DAG file
is parsed fails loudly instead of quietly creating ~/airflow/airflow.db.
"""
import os
import tempfile

_home = tempfile.mkdtemp(prefix="c2m-airflow-home-")
os.environ["AIRFLOW_HOME"] = _home
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_home}/no-such-dir/airflow.db"
