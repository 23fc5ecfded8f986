"""``crawl2model``: one command for the local stack and every stage.

    crawl2model up [--s3] [--spark-workers N] | down | status | demo [--s3] [--profile tiny]
    crawl2model crawl|ingest|extract|clean|dedup|tokenize  <job flags ...>  (spark-submit)
    crawl2model pretrain|finetune [--np N]  <job flags ...>               (horovodrun)
    crawl2model evaluate|hpo|compress  <job flags ...>                    (one python process)

Stage flags are passed verbatim to the job; Airflow tasks call the same launchers.
``crawl2model <stage> --help`` prints the job's own usage once, from the job's parser run by the
jobs venv's python: no spark-submit, no horovodrun. This module imports nothing heavy, so it runs
from either venv.

``--s3`` (or ``C2M_S3=1``) runs the stack in S3 mode: a local S3 server, data under
``s3://$C2M_S3_BUCKET/data``, MLflow artefacts in the bucket. ``up``, ``status`` and ``demo``
against a stack that is already up in S3 mode pick the mode up by themselves; stage commands
(``crawl2model crawl`` ...) need ``C2M_S3=1`` in their shell.
"""
from __future__ import annotations

import argparse
import sys

# ingest: existing WARC/WET/ARC files (e.g. Common Crawl), ``--warc-glob``, into raw/ like a crawl.
DATA_STAGES = ("crawl", "ingest", "extract", "clean", "dedup", "tokenize")
TRAIN_STAGES = ("pretrain", "finetune")
# One process each, run by the jobs venv's python: evaluation and compression are single-process,
# and an HPO study runs its trials one after another (more processes may share its --storage).
PY_STAGES = ("evaluate", "hpo", "compress")


def _split_np(args: list[str]) -> tuple[int | None, list[str]]:
    """Take a leading ``--np N`` / ``--np=N``; everything else goes to the job untouched."""
    if args and args[0] == "--np":
        if len(args) < 2 or not args[1].isdigit():
            raise SystemExit("crawl2model: --np needs a number of processes, e.g. --np 2")
        return int(args[1]), args[2:]
    if args and args[0].startswith("--np="):
        value = args[0].split("=", 1)[1]
        if not value.isdigit():
            raise SystemExit("crawl2model: --np needs a number of processes, e.g. --np=2")
        return int(value), args[1:]
    return None, args


HELP_FLAGS = ("-h", "--help")


def wants_help(args: list[str]) -> bool:
    """-h/--help among the job's flags (before a ``--``, after which argparse takes words as values)."""
    head = args[:args.index("--")] if "--" in args else args
    return any(a in HELP_FLAGS for a in head)


def help_command(command: str, jobs_python: str, repo_root) -> list[str]:
    """The job's parser alone: the Spark stage or training module with ``--help`` under plain python
    (each parses its flags before it starts a SparkSession or Horovod)."""
    if command in DATA_STAGES:
        return [jobs_python, "-m", "spark_jobs", command, "--help"]
    return [jobs_python, "-m", f"training.{command}", "--help"]


def _job_help(command: str) -> int:
    import subprocess

    from ops.launch.local import job_env
    from ops.launch.settings import get_settings

    s = get_settings()
    if not s.jobs_python.exists():
        print(f"crawl2model {command}: the jobs venv's python ({s.jobs_python}) is missing; "
              "run `make venvs` first", file=sys.stderr)
        return 1
    done = subprocess.run(help_command(command, str(s.jobs_python), s.repo_root), env=job_env(s),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    sys.stdout.write(done.stdout)  # through sys.stdout, so a caller's capture sees it
    sys.stdout.flush()
    return done.returncode


def _run_stage(command: str, rest: list[str]) -> int:
    from ops.launch.local import LaunchError, horovodrun, spark_submit

    try:
        if command in DATA_STAGES:
            spark_submit(command, rest)
        else:
            np, job_args = _split_np(rest)
            horovodrun(f"training.{command}", job_args, np)
    except LaunchError as exc:
        print(f"crawl2model {command}: {exc}", file=sys.stderr)
        return 1
    return 0


def _run_python(command: str, rest: list[str]) -> int:
    from ops.launch.local import LaunchError, job_env, run
    from ops.launch.settings import get_settings

    s = get_settings()
    try:
        run([str(s.jobs_python), "-m", f"training.{command}", *rest], env=job_env(s),
            what=f"training.{command}")
    except LaunchError as exc:
        print(f"crawl2model {command}: {exc}", file=sys.stderr)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crawl2model", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    up = sub.add_parser("up", help="start Airflow, MLflow and the demo site on 127.0.0.1")
    up.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for health checks")
    up.add_argument("--s3", action="store_true",
                    help="S3 mode: start a local S3 server (SeaweedFS) and keep data and artefacts in it")
    up.add_argument("--spark-workers", type=int, default=0, metavar="N",
                    help="also start a Spark standalone master and N one-core workers on 127.0.0.1 "
                         "and run the DAGs' Spark stages on it")
    sub.add_parser("down", help="stop the local stack (by PID)")
    sub.add_parser("status", help="show which components run and are healthy")
    demo = sub.add_parser("demo", help="up, then run data_refresh → pretrain → finetune through Airflow")
    demo.add_argument("--profile", choices=("demo", "tiny"), default="demo",
                      help="'tiny' crawls a few pages and trains a few steps (tests)")
    demo.add_argument("--s3", action="store_true", help="run the demo on the stack in S3 mode (see `up --s3`)")
    for name in DATA_STAGES:
        sub.add_parser(name, add_help=False,
                       help=f"spark-submit spark_jobs/__main__.py {name} (flags passed through)")
    for name in TRAIN_STAGES:
        sub.add_parser(name, add_help=False,
                       help=f"horovodrun training.{name} [--np N] (flags passed through)")
    for name in PY_STAGES:
        sub.add_parser(name, add_help=False,
                       help=f"python -m training.{name} in the jobs venv (flags passed through)")
    return p


def _select_mode(requested: bool) -> None:
    """--s3 sets C2M_S3=1. Without it (and without C2M_S3), a stack that is already up keeps its
    mode, bucket and data root: its recorded C2M_* values fill in what this shell does not set."""
    import os

    from ops.launch.settings import get_settings
    from ops.stack.mode import running_settings

    if requested:
        os.environ["C2M_S3"] = "1"
    elif "C2M_S3" not in os.environ:
        for name, value in running_settings(get_settings()).items():
            os.environ.setdefault(name, value)


def _status() -> int:
    from ops.launch.settings import get_settings
    from ops.stack import monitor

    st = monitor.status()
    s = get_settings()
    print(f"stack dir {s.stack_dir}   data root {s.data_root}")
    for name, info in st.items():
        state = "healthy" if info["healthy"] else ("running" if info["pid"] else "stopped")
        print(f"  {name:22} {state:8} pid={info['pid'] or '-':<8} log={info['log']}")
    for name, url in monitor.urls(s).items():
        print(f"  {name:22} {url}")
    return 0 if all(i["healthy"] for i in st.values()) else 3


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DATA_STAGES + TRAIN_STAGES + PY_STAGES and wants_help(argv[1:]):
        return _job_help(argv[0])
    if argv and argv[0] in DATA_STAGES + TRAIN_STAGES:
        return _run_stage(argv[0], argv[1:])
    if argv and argv[0] in PY_STAGES:
        return _run_python(argv[0], argv[1:])
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    from ops.clients.airflow_api import AirflowAPIError
    from ops.launch.s3_client import S3ServerError
    from ops.stack import services
    from ops.stack.layout import StackError

    try:
        _select_mode(getattr(args, "s3", False))
        if args.command == "up":
            services.up(timeout=args.timeout, spark_workers=args.spark_workers)
            return 0
        if args.command == "down":
            services.down()
            return 0
        if args.command == "status":
            return _status()
        if args.command == "demo":
            from ops.stack.demo import run_demo

            return 0 if run_demo(profile=args.profile).ok else 1
    except (StackError, AirflowAPIError, S3ServerError, ValueError) as exc:
        print(f"crawl2model {args.command}: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
