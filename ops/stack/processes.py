"""The stack's processes: each component in its own process group, its PID (with the process's
start time, against PID reuse) in ``{stack_dir}/pids/<name>.pid`` and its output in
``{stack_dir}/logs/<name>.log``, so what ``up`` started is found again from any shell and
nothing is looked up by name; crashed components and what their group left behind.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

from ops.lake import secret_env
from ops.lake.procs import start_time
from ops.launch.settings import Settings, get_settings
from ops.stack.components import Component
from ops.stack.layout import ALL_COMPONENTS, STOP_GRACE_S, leftovers_file, log_file, pid_file


def read_pid(s: Settings, name: str) -> int | None:
    """PID of our running component, or None (stale PID files are removed)."""
    path = pid_file(s, name)
    try:
        pid_s, _, started = path.read_text().strip().partition(" ")
        pid = int(pid_s)
    except (OSError, ValueError):
        return None
    if start_time(pid) != (started or None) or started == "":
        path.unlink(missing_ok=True)
        return None
    return pid


def _write_pid(s: Settings, name: str, pid: int) -> None:
    path = pid_file(s, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid} {start_time(pid) or ''}\n")


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


_children: dict[str, subprocess.Popen] = {}


def spawn(s: Settings, comp: Component) -> int:
    log = log_file(s, comp.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        argv = secret_env.mask(" ".join(comp.argv), comp.env)  # e.g. a backend store URI's password
        out.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {argv}\n".encode())
        out.flush()
        proc = subprocess.Popen(comp.argv, env=comp.env, cwd=str(comp.cwd or s.repo_root), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    _children[comp.name] = proc  # kept so that a dead child is reaped, not left a zombie
    _write_pid(s, comp.name, proc.pid)
    return proc.pid


def reap() -> None:
    for proc in list(_children.values()):
        proc.poll()


def forget(s: Settings, name: str) -> None:
    """Drop a stopped component's PID file and its reaped child."""
    pid_file(s, name).unlink(missing_ok=True)
    _children.pop(name, None)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(0) succeeds while zombies remain; treat a group of zombies as gone.
    return any(start_time(p) for p in group_members(pgid))


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def note_crashed(s: Settings, names: tuple[str, ...], echo: Callable[[str], None] = print) -> list[str]:
    """Components whose process died without ``down()``; what their group left behind is noted.

    A scheduler killed with SIGKILL leaves its LocalExecutor workers in its process group. The
    busy ones supervise running tasks: they finish them and report to the API server on their
    own, so the restarted scheduler picks up where the old one was. They are left to finish,
    and their group goes into ``pids/leftovers`` for ``down()`` to stop, since the component's
    PID file (dropped here) no longer points at them.
    """
    reap()
    crashed, groups = [], []
    for name in names:
        try:
            leader = int(pid_file(s, name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if read_pid(s, name) is not None:
            continue
        crashed.append(name)
        left = [p for p in group_members(leader) if start_time(p)]
        if left and leader not in left:  # a live leader would be a reused PID: not ours
            echo(f"  {name} (PID {leader}) died; {len(left)} of its processes still run; "
                 "they finish their tasks and `crawl2model down` stops them")
            groups.append(f"{name} {leader}")
    if groups:
        path = leftovers_file(s)
        old = path.read_text().splitlines() if path.exists() else []
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{line}\n" for line in dict.fromkeys(old + groups)))
        os.replace(tmp, path)
    return crashed


def stop_leftovers(s: Settings, echo: Callable[[str], None] = print) -> list[int]:
    """SIGKILL what is left of crashed components' process groups (see :func:`note_crashed`)."""
    path = leftovers_file(s)
    try:
        lines = path.read_text().split("\n")
    except OSError:
        return []
    stopped = []
    for line in filter(None, lines):
        leader = int(line.split()[1])
        left = [p for p in group_members(leader) if start_time(p)]
        if left and leader not in left:
            echo(f"  stopping what {line.split()[0]} (PID {leader}) left behind: {left}")
            with contextlib.suppress(ProcessLookupError):  # the group ended meanwhile
                os.killpg(leader, signal.SIGKILL)  # their parent is gone: no one to shut down for
            stopped.append(leader)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline and any(group_alive(g) for g in stopped):
        time.sleep(0.1)
    path.unlink(missing_ok=True)
    return stopped


def memory_mib(s: Settings | None = None) -> dict[str, float]:
    """Resident memory per component (its whole process group), in MiB."""
    s = s or get_settings()
    out = {}
    for name in ALL_COMPONENTS:
        pid = read_pid(s, name)
        if pid is None:
            continue
        total = 0
        for member in group_members(os.getpgid(pid)):
            with contextlib.suppress(OSError):  # the process ended meanwhile: it holds no memory
                for line in Path(f"/proc/{member}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        out[name] = round(total / 1024, 1)
    return out
