"""The stage declarations, one module per stage: ``STAGE``, run by :func:`spark_jobs.stage.run_stage`
(``main(argv, spark)`` runs it in-process). spark-submit runs every stage through
``spark_jobs/__main__.py``."""

STAGES = ("crawl", "ingest", "extract", "clean", "dedup", "tokenize")
