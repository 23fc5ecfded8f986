"""The mode a stack runs in (local or S3, with its bucket, data root and Spark master), recorded
in ``{stack_dir}/mode.json`` when it starts, so a stack is never half in one mode and half in the
other and a later ``up`` or ``demo`` keeps what the running one was started with."""
from __future__ import annotations

import json
import os

from ops.launch.settings import Settings
from ops.stack.layout import ALL_COMPONENTS, COMPONENTS, S3, StackError, mode_file
from ops.stack.processes import read_pid


def stack_components(s: Settings) -> tuple[str, ...]:
    """The components of this stack: S3 too in S3 mode (or while its server still runs)."""
    return ALL_COMPONENTS if s.s3_mode or read_pid(s, S3) is not None else COMPONENTS


def running_settings(s: Settings) -> dict[str, str]:
    """The C2M_* variables the running stack was started with ({} when nothing of it runs)."""
    if not any(read_pid(s, name) is not None for name in ALL_COMPONENTS):
        return {}
    try:
        return dict(json.loads(mode_file(s).read_text()))
    except (OSError, ValueError):
        return {"C2M_S3": "1" if read_pid(s, S3) is not None else "0"}


def running_mode(s: Settings) -> bool | None:
    """True/False: the S3 mode the running stack was started in; None when nothing of it runs."""
    recorded = running_settings(s)
    return recorded.get("C2M_S3") == "1" if recorded else None


def check_mode(s: Settings) -> None:
    running = running_mode(s)
    if running is not None and running != s.s3_mode:
        mode = "S3 mode" if running else "local mode"
        raise StackError(
            f"the stack in {s.stack_dir} is running in {mode}; run `crawl2model down` first, then "
            f"`crawl2model up{' --s3' if s.s3_mode else ''}` (or use another C2M_STACK_DIR)")


def record_mode(s: Settings) -> None:
    mode_file(s).parent.mkdir(parents=True, exist_ok=True)
    tmp = mode_file(s).with_suffix(".tmp")
    recorded = {"C2M_S3": "1" if s.s3_mode else "0", "C2M_DATA_ROOT": s.data_root}
    if s.s3_mode:
        recorded.update(C2M_S3_PORT=str(s.s3_port), C2M_S3_BUCKET=s.s3_bucket)
    if s.spark_master.startswith("spark://"):  # up --spark-workers: later `up`/`demo` keep the cluster
        recorded["C2M_SPARK_MASTER"] = s.spark_master
    tmp.write_text(json.dumps(recorded) + "\n")
    os.replace(tmp, mode_file(s))
