-- First start of the compose Postgres: Airflow uses the default database (POSTGRES_DB=airflow);
-- MLflow gets its own, owned by the same role.
CREATE DATABASE mlflow;
