"""The lease that tells a live staging area from a crashed attempt's (spark_jobs/staging_lease.py)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from hypothesis import given, settings, strategies as st

from ops.lake.procs import start_time
from spark_jobs import staging_lease
from spark_jobs.staging_lease import STALE_ENV, Lease, holder_alive, stale_areas


def _write(path, **lease) -> str:
    path.write_text(json.dumps(lease))
    return str(path)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_lease_is_renewed_while_held_and_deleted_when_released(tmp_path, monkeypatch):
    monkeypatch.setenv(STALE_ENV, "5")  # renewed every 0.5 s
    lease = Lease.of(str(tmp_path / "area")).take()
    first = json.loads((tmp_path / "area.lease").read_text())["beat"]
    time.sleep(1.3)
    assert json.loads((tmp_path / "area.lease").read_text())["beat"] > first
    assert holder_alive(lease.uri)
    lease.release()
    assert not (tmp_path / "area.lease").exists()
    assert not holder_alive(lease.uri)


def test_a_holder_on_this_host_is_alive_only_while_its_process_is(tmp_path):
    host, now = socket.gethostname(), time.time()
    me = start_time(os.getpid())
    parent = os.getppid()
    parent_start = start_time(parent)
    assert holder_alive(_write(tmp_path / "p.lease", host=host, pid=parent, start=parent_start, beat=now))
    assert not holder_alive(_write(tmp_path / "d.lease", host=host, pid=_dead_pid(), start=me, beat=now))
    assert not holder_alive(_write(tmp_path / "r.lease", host=host, pid=parent, start="0", beat=now))  # pid reused
    assert not holder_alive(_write(tmp_path / "s.lease", host=host, pid=os.getpid(), start=me, beat=now))  # not held


def test_a_holder_elsewhere_is_alive_until_its_lease_goes_stale(tmp_path, monkeypatch):
    monkeypatch.setenv(STALE_ENV, "60")
    now = time.time()
    assert holder_alive(_write(tmp_path / "a.lease", host="elsewhere", pid=1, start="1", beat=now - 59))
    assert not holder_alive(_write(tmp_path / "b.lease", host="elsewhere", pid=1, start="1", beat=now - 61))
    assert not holder_alive(str(tmp_path / "missing.lease"))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_a_damaged_lease_means_no_holder(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("lease") / "x.lease"
    path.write_bytes(data)
    assert holder_alive(str(path)) in (False, True)  # never raises
    if not data.strip().startswith(b"{"):
        assert not holder_alive(str(path))


def test_stale_areas_are_those_without_a_live_holder_and_orphan_leases(tmp_path, monkeypatch):
    monkeypatch.setenv(STALE_ENV, "60")
    now = time.time()
    for name in ("live", "gone", "bare"):
        (tmp_path / name).mkdir()
    _write(tmp_path / "live.lease", host="elsewhere", pid=1, start="1", beat=now)
    _write(tmp_path / "gone.lease", host="elsewhere", pid=1, start="1", beat=now - 600)
    _write(tmp_path / "orphan.lease", host="elsewhere", pid=1, start="1", beat=now - 600)
    _write(tmp_path / "starting.lease", host="elsewhere", pid=1, start="1", beat=now)  # area not made yet
    names = sorted(os.listdir(tmp_path))
    assert stale_areas(names, str(tmp_path)) == ["bare", "gone", "orphan"]
    assert staging_lease.beat_seconds() == 6.0
