"""crawl2model's data stages, each run as ``python -m spark_jobs <stage> [flags]``.

    crawl    → raw/v=V        polite BFS crawl: WARC files + fetch log       (spark_jobs.crawl)
    ingest   → raw/v=V        existing WARC/ARC/WET files, damage counted    (spark_jobs.jobs.ingest)
    extract  → extracted/v=V  WHATWG charset decode, trafilatura, py3langid  (spark_jobs.extract)
    clean    → clean/v=V      NFC/whitespace, Gopher + C4 + FineWeb + language rules, PII redaction
                                                                             (spark_jobs.clean)
    dedup    → corpus/v=V     exact and MinHash-LSH near dedup, also against earlier versions
                                                                             (spark_jobs.dedup)
    tokenize → shards/v=V     byte-level BPE, packed token sequences         (spark_jobs.tokens)

Each stage is a declaration (``STAGE`` in ``spark_jobs/jobs/<stage>.py``) run by the one runner,
:func:`spark_jobs.stage.run_stage`. Steps are plain Python (:mod:`spark_jobs.steps`);
:mod:`spark_jobs.runner` turns them into Spark work, counts drops by reason and publishes versions.
"""
