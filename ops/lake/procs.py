"""A process's identity on this host: its pid and its start time, so a reused pid is told apart."""
from __future__ import annotations

from pathlib import Path


def start_time(pid: int) -> str | None:
    """Start time (clock ticks since boot, from ``/proc``) of a live, non-zombie process, else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]
