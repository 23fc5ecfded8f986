"""DAG tests run under .venv-airflow: give Airflow a throwaway home and an unusable database.

The database URL points into a folder that does not exist, so any DB access while a DAG file
is parsed fails loudly instead of quietly creating ~/airflow/airflow.db. ``dagbag`` parses
every DAG file once per session, with the network cut off.
"""
import os
import socket
import tempfile
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"

_home = tempfile.mkdtemp(prefix="c2m-airflow-home-")
os.environ["AIRFLOW_HOME"] = _home
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_home}/no-such-dir/airflow.db"


def _no_network(*args, **kwargs):
    raise AssertionError(f"network access while parsing DAGs: {args!r}")


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    mp = pytest.MonkeyPatch()
    mp.setattr(socket.socket, "connect", _no_network)
    mp.setattr(socket, "getaddrinfo", _no_network)
    mp.setattr(socket, "create_connection", _no_network)
    try:
        bag = DagBag(dag_folder=str(DAGS_DIR))
    finally:
        mp.undo()
    return bag
