"""The foundation every layer builds on: storage, dataset versions and manifests, the shards'
vocabulary contract, secret handling and progress lines. It imports nothing else of crawl2model,
so the jobs (``spark_jobs``, ``training``) and everything above them can use it."""
