"""crawl2model's data stages, run by spark-submit (entry points in ``spark_jobs/jobs/``).

    crawl    → raw/v=V        polite BFS crawl: WARC files + fetch log      (spark_jobs.crawl)
    extract  → extracted/v=V  trafilatura main text, title, py3langid       (spark_jobs.extract)
    clean    → clean/v=V      NFC/whitespace, Gopher + C4 + language rules  (spark_jobs.clean)
    dedup    → corpus/v=V     exact dedup on normalised text                (spark_jobs.dedup)
    tokenize → shards/v=V     byte-level BPE, packed uint16 sequences       (spark_jobs.tokenize)

Steps are plain Python (:mod:`spark_jobs.steps`); :mod:`spark_jobs.runner` is the one
place that turns them into Spark work, counts drops by reason and publishes versions.
"""
