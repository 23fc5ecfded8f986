"""Who owns a staging area: a lease beside it that the owning run renews while it works.

Two runs of one dataset version can overlap: a retry while a lost attempt still runs, or a
user triggering the same version twice. A new run must delete what a crashed attempt left,
but never the staging area of a run that is still writing. So each staging area has a lease,
``{area}.lease`` (a file, or an object in the bucket), holding the owner's host, pid, process
start time and the time of its last renewal; a background thread renews it every
:func:`beat_seconds`. An area is stale, and a new run deletes it, when its lease is missing
or unreadable, when its owner ran on this host and that process is gone, or when the lease
was not renewed for :func:`stale_seconds` (``$C2M_STAGING_STALE_S``, default 300 s: an owner
on another host that was killed). Hosts' clocks are assumed to agree within that window.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field

from ops.lake import storage
from ops.lake.procs import start_time

LEASE_SUFFIX = ".lease"
STALE_ENV = "C2M_STAGING_STALE_S"
DEFAULT_STALE_S = 300.0
_HELD: set[str] = set()  # the leases this process holds now (a released one may outlive a failed delete)


def stale_seconds() -> float:
    return float(os.environ.get(STALE_ENV, DEFAULT_STALE_S))


def beat_seconds() -> float:
    """How often a lease is renewed: ten renewals per stale window, between 0.5 s and 30 s."""
    return min(30.0, max(0.5, stale_seconds() / 10))


def _me() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": start_time(os.getpid())}


def _key(uri: str) -> str:
    return str(uri) if storage.is_s3(uri) else os.path.abspath(uri)


def _read(uri: str) -> dict | None:
    try:
        lease = json.loads(storage.read_text(uri))
    except (OSError, ValueError, storage.StorageError):
        return None
    return lease if isinstance(lease, dict) else None


def holder_alive(lease_uri: str, now: float | None = None) -> bool:
    """Whether the run that holds this lease may still be writing its staging area."""
    lease = _read(lease_uri)
    if lease is None:
        return False
    now = time.time() if now is None else now
    try:
        age = now - float(lease.get("beat", 0))
    except (TypeError, ValueError):
        return False
    if not age <= stale_seconds():  # NaN too
        return False
    if lease.get("host") == socket.gethostname():
        pid = lease.get("pid")
        if pid == os.getpid():
            return _key(lease_uri) in _HELD
        if not isinstance(pid, int):
            return False
        started = start_time(pid)
        return started is not None and started == lease.get("start")
    return True


@dataclass
class Lease:
    """The lease of one staging area; :meth:`take` writes it and starts renewing it."""

    uri: str
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @classmethod
    def of(cls, area_uri: str) -> "Lease":
        return cls(str(area_uri).rstrip("/") + LEASE_SUFFIX)

    def take(self) -> "Lease":
        self._write()  # before anything is staged, so a new run never sees the area without it
        _HELD.add(_key(self.uri))
        self._thread = threading.Thread(target=self._renew, name=f"lease {self.uri}", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        """Stop renewing and delete the lease: the area is now free for the next run to delete."""
        self._stop.set()
        _HELD.discard(_key(self.uri))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        try:
            storage.remove_files([self.uri])
        except (OSError, storage.StorageError):
            pass  # a leftover lease of a dead owner is stale for the next run anyway

    def _write(self) -> None:
        text = json.dumps({**_me(), "beat": time.time()})
        if storage.is_s3(self.uri):
            storage.write_text(self.uri, text)
            return
        tmp = f"{self.uri}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:  # no makedirs: a removed stage folder stays removed
            fh.write(text)
        os.replace(tmp, self.uri)

    def _renew(self) -> None:
        while not self._stop.wait(beat_seconds()):
            try:
                self._write()
            except (OSError, storage.StorageError) as err:
                print(f"[crawl2model] could not renew the staging lease {self.uri}: {err}", flush=True)


def stale_areas(names: list[str], parent: str, now: float | None = None) -> list[str]:
    """Of the staging areas and leases named ``names`` (entries of ``parent``), the areas whose
    lease says no run holds them, and leases left without an area whose holder is gone."""
    leases = {n[:-len(LEASE_SUFFIX)] for n in names if n.endswith(LEASE_SUFFIX)}
    areas = {n for n in names if not n.endswith(LEASE_SUFFIX) and not n.endswith(".tmp")}
    stale = []
    for area in sorted(areas | leases):
        if not holder_alive(storage.join(parent, area + LEASE_SUFFIX), now):
            stale.append(area)
    return stale
