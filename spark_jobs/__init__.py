"""crawl2model's data stages, run by spark-submit (entry points in ``spark_jobs/jobs/``).

    crawl    → raw/v=V        polite BFS crawl: WARC files + fetch log       (spark_jobs.crawl)
    ingest   → raw/v=V        existing WARC/ARC/WET files, damage counted    (spark_jobs.jobs.ingest)
    extract  → extracted/v=V  WHATWG charset decode, trafilatura, py3langid  (spark_jobs.extract)
    clean    → clean/v=V      NFC/whitespace, Gopher + C4 + FineWeb + language rules, PII redaction
                                                                             (spark_jobs.clean)
    dedup    → corpus/v=V     exact and MinHash-LSH near dedup, also against earlier versions
                                                                             (spark_jobs.dedup)
    tokenize → shards/v=V     byte-level BPE, packed token sequences         (spark_jobs.tokenize)

Steps are plain Python (:mod:`spark_jobs.steps`); :mod:`spark_jobs.runner` is the one
place that turns them into Spark work, counts drops by reason and publishes versions.
"""
