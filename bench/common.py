"""What every benchmark shares: paths, timing, peak memory of a process tree, tables, JSON results.

Benchmarks compare OURS and a REFERENCE in one run, on the same input and cores, so the
ratios hold even on a loaded machine; the machine's load is recorded with every result
because absolute rates on a shared 2-core box are not comparable across runs.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
JOBS_PY = REPO / ".venv-jobs" / "bin" / "python"
DATATROVE_PY = BENCH / ".venv-datatrove" / "bin" / "python"


def start_spark(app: str):
    """A SparkSession whose JVM and Python workers are really up: what the benchmarks call
    Spark start-up and report apart from a stage's time.

    ``spark.range(1).count()`` starts the JVM's executor side; one Arrow task per core then
    starts PySpark's worker daemon and a Python worker on each core (about 0.5-1 s the first
    Python stage would otherwise pay). Nothing of a stage's own work is done here: no
    project module is imported by the workers and no JIT warm-up of the stage's code paths.
    """
    from spark_jobs.runner import get_spark

    spark = get_spark(app)
    spark.range(1).count()
    cores = spark.sparkContext.defaultParallelism
    spark.range(0, cores, 1, cores).mapInArrow(lambda batches: batches, "id long").collect()
    return spark


def require_datatrove() -> Path:
    if not DATATROVE_PY.exists():
        raise SystemExit(f"{DATATROVE_PY} is missing: run `make bench-venv` first (datatrove lives in a venv "
                         "of its own; it conflicts with the project's dependencies)")
    return DATATROVE_PY


def job_env(cores: int) -> dict[str, str]:
    """Environment for child processes: Spark on loopback, the jobs venv's python, and
    thread pools capped at ``cores`` so both sides get the same CPU."""
    env = dict(os.environ)
    env.update({
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": str(JOBS_PY), "PYSPARK_DRIVER_PYTHON": str(JOBS_PY),
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
        "RAYON_NUM_THREADS": str(cores), "TOKENIZERS_PARALLELISM": "true",
        "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        "C2M_SPARK_LOG_LEVEL": "ERROR", "MLFLOW_DISABLE_TELEMETRY": "true",
    })
    return env


# ---------------------------------------------------------------- memory

def _tree_rss(proc) -> int:
    import psutil

    total = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


class PeakRSS:
    """Samples the summed RSS of a process and all its descendants (every 0.1 s) and keeps the peak.

    ``with PeakRSS() as mem:`` watches this process's tree; ``PeakRSS(pid)`` another one.
    Short spikes between samples can be missed, so this is a lower bound on the true peak.
    """

    def __init__(self, pid: int | None = None, interval: float = 0.1):
        import psutil

        self.proc = psutil.Process(pid or os.getpid())
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss(self.proc))
            self._stop.wait(self.interval)

    def __enter__(self):
        self.baseline = _tree_rss(self.proc)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _tree_rss(self.proc))

    @property
    def peak_mb(self) -> float:
        return round(self.peak / 2**20, 1)


@contextmanager
def timed():
    """``with timed() as t: ...`` then ``t.seconds``."""
    class _T:
        seconds = 0.0
    t = _T()
    start = time.perf_counter()
    try:
        yield t
    finally:
        t.seconds = time.perf_counter() - start


def run_measured(cmd: Sequence[str], env: dict | None = None, cwd: str | Path | None = None,
                 timeout: float | None = None) -> dict[str, Any]:
    """Run a child process; return its wall time, peak tree RSS and output (raises on failure)."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(list(map(str, cmd)), env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    mem = PeakRSS(proc.pid)
    try:
        with mem:
            out, err = proc.communicate(timeout=timeout)
    except (subprocess.TimeoutExpired, psutil.Error):
        proc.kill()
        out, err = proc.communicate()
        raise RuntimeError(f"{cmd[0]} … timed out after {timeout} s; last output:\n{err[-2000:]}")
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
                           f"--- stderr tail ---\n{err[-4000:]}")
    return {"seconds": seconds, "peak_rss_mb": mem.peak_mb, "stdout": out, "stderr": err}


def last_json_line(text: str) -> dict:
    """The worker scripts print one JSON object as their last stdout line."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON result line in worker output:\n{text[-2000:]}")


# ---------------------------------------------------------------- reporting

def machine() -> dict[str, Any]:
    load = os.getloadavg()
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "loadavg_1_5_15": [round(x, 2) for x in load],
            "python": platform.python_version(), "platform": platform.platform()}


def git_sha() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def ratio(ours: float, reference: float) -> float | None:
    return round(ours / reference, 3) if reference else None


def table(rows: list[Sequence[Any]], headers: Sequence[str]) -> str:
    """A Markdown table (prints fine in a terminal, pastes into bench/README.md)."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
        return "" if v is None else str(v)
    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda vals: "| " + " | ".join(str(v).ljust(w) for v, w in zip(vals, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in cells])


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """bench/results/<name>.json, written atomically, with the machine, load and command."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "git_sha": git_sha(), "command": " ".join([Path(sys.executable).name] + sys.argv),
           "machine": machine(), **payload}
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(f".json.tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)
    print(f"[bench] wrote {path}", flush=True)
    return path


def work_dir(name: str) -> Path:
    """A scratch folder for one benchmark's inputs and outputs: bench/results/work/<name> (gitignored)."""
    path = RESULTS / "work" / name
    path.mkdir(parents=True, exist_ok=True)
    return path
