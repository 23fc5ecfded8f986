"""How every training entry point ends: one result JSON, then all ranks leave together.

The result file is what the Airflow task (ops.dagkit.training_task.TrainingTask) reads back, so
rank 0 writes it atomically through ops.lake.storage (local path or s3://) and prints the same
JSON to the job log.
"""
from __future__ import annotations

import json
from typing import Any

from ops.lake import storage


def finish(dist, job: str, result: dict[str, Any], result_file: str | None) -> dict[str, Any]:
    """Rank 0 writes ``result_file`` (when given) and prints the result; then every rank waits.

    The barrier matters: a rank that tears down its connections while rank 0 is still
    registering the model can abort the job (Gloo) or hang it.
    """
    if dist.is_main:
        if result_file:
            storage.write_text(result_file, json.dumps(result, indent=2, sort_keys=True))
        print(f"[{job}] done: {json.dumps(result, sort_keys=True)}", flush=True)
    dist.barrier()
    return result
