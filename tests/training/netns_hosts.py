"""Two "hosts" on one machine for multi-host Horovod tests: network namespaces joined by a veth
pair, each with its own sshd that accepts one throwaway key.

    host1 = 10.231.0.1 (namespace ``<prefix>-1``)  --veth c2m0/c2m0--  host2 = 10.231.0.2 (``<prefix>-2``)

Only addresses inside the namespaces this module creates are used; nothing is routed to the
machine's own network. Each sshd listens on its namespace's address only, allows root with
the generated key and nothing else (no passwords, no PAM). ``ssh`` reaches them through a
wrapper on PATH that adds a private client config (identity, known-hosts file in the temp
folder), so the machine's ~/.ssh is never read or written.

:func:`two_hosts` raises :class:`Unavailable` with the reason when namespaces or sshd cannot
be set up here; the tests turn that into a visible skip.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

SUBNET = "10.231.0"
IFACE = "c2m0"  # the same name in both namespaces, so one --network-interfaces names both ends
SSHD = "/usr/sbin/sshd"


class Unavailable(RuntimeError):
    """Namespaces or sshd cannot be set up on this machine (the reason is the message)."""


@dataclass
class Hosts:
    namespaces: list[str]
    addresses: list[str]
    ssh_bin: Path  # a folder to put first on PATH: its ``ssh`` uses the private config
    identity: Path
    sshd_pids: list[int] = field(default_factory=list)

    def netns_exec(self, index: int) -> list[str]:
        """Command prefix that runs a program on host ``index`` (0 or 1)."""
        return ["ip", "netns", "exec", self.namespaces[index]]

    def inode(self, index: int) -> int:
        return os.stat(f"/run/netns/{self.namespaces[index]}").st_ino


def _sh(*cmd: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise Unavailable(f"`{' '.join(cmd)}` failed: {proc.stderr.strip() or proc.stdout.strip()}")


def _check_tools() -> None:
    if os.geteuid() != 0:
        raise Unavailable("network namespaces need root")
    for tool in ("ip", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise Unavailable(f"`{tool}` is not installed (apt-get install iproute2 openssh-client)")
    if not os.path.exists(SSHD):
        raise Unavailable(f"{SSHD} is not installed (apt-get install openssh-server; `make system-deps`)")


def _hosts_file(name: str, address: str) -> None:
    """``ip netns exec`` binds /etc/netns/<name>/hosts over /etc/hosts: there, this machine's host
    name resolves to the namespace's address, as a host's own name does on a real network (and
    in a pod). Needed: the Horovod build here publishes the address its host name resolves to as
    each rank's Gloo address, whatever HOROVOD_GLOO_IFACE says (127.0.0.1 otherwise)."""
    folder = Path("/etc/netns", name)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hosts").write_text(f"127.0.0.1 localhost\n{address} {socket.gethostname()}\n")


def _sshd_config(folder: Path, address: str, index: int) -> Path:
    config = folder / f"sshd-{index}.conf"
    config.write_text("\n".join([
        f"ListenAddress {address}", "Port 22", f"HostKey {folder / 'host_key'}",
        f"PidFile {folder / f'sshd-{index}.pid'}", f"AuthorizedKeysFile {folder / 'authorized_keys'}",
        "PermitRootLogin prohibit-password", "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", "PermitUserEnvironment no",
        "X11Forwarding no", "AllowTcpForwarding no", "PrintMotd no", "LogLevel ERROR", ""]))
    return config


def _client(folder: Path) -> Path:
    (folder / "ssh_config").write_text("\n".join([
        "Host *", "  User root", f"  IdentityFile {folder / 'client_key'}", "  IdentitiesOnly yes",
        f"  UserKnownHostsFile {folder / 'known_hosts'}", "  StrictHostKeyChecking no", "  BatchMode yes",
        "  LogLevel ERROR", ""]))
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec {shutil.which("ssh")} -F {folder / "ssh_config"} "$@"\n')
    wrapper.chmod(0o755)
    return bin_dir


def _wait_listening(hosts: Hosts, index: int, timeout: float = 30.0) -> None:
    probe = ("import socket,sys\ns=socket.socket()\ns.settimeout(1)\n"
             f"sys.exit(s.connect_ex(('{hosts.addresses[index]}', 22)))")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run([*hosts.netns_exec(index), "python3", "-c", probe]).returncode == 0:
            return
        time.sleep(0.3)
    raise Unavailable(f"sshd in {hosts.namespaces[index]} did not listen within {timeout:.0f} s")


@contextlib.contextmanager
def two_hosts(folder: Path) -> Iterator[Hosts]:
    """Create the namespaces, the link, the keys and both sshds; remove all of it afterwards."""
    _check_tools()
    prefix = f"c2m-hvd-{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-1", f"{prefix}-2"]
    created: list[str] = []
    hosts = None
    try:
        for name in names:
            _sh("ip", "netns", "add", name)
            created.append(name)
        a, b = f"{prefix[-6:]}a", f"{prefix[-6:]}b"
        _sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        addresses = [f"{SUBNET}.1", f"{SUBNET}.2"]
        for end, name, address in ((a, names[0], addresses[0]), (b, names[1], addresses[1])):
            _sh("ip", "link", "set", end, "netns", name)
            _sh("ip", "-n", name, "link", "set", end, "name", IFACE)
            _sh("ip", "-n", name, "addr", "add", f"{address}/24", "dev", IFACE)
            _sh("ip", "-n", name, "link", "set", IFACE, "up")
            _sh("ip", "-n", name, "link", "set", "lo", "up")
        for name, address in zip(names, addresses):
            _hosts_file(name, address)
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "host_key"))
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "client_key"))
        shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
        hosts = Hosts(names, addresses, _client(folder), folder / "client_key")
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
        for i, address in enumerate(addresses):
            log = open(folder / f"sshd-{i}.log", "ab")
            proc = subprocess.Popen([*hosts.netns_exec(i), SSHD, "-D", "-e", "-f",
                                     str(_sshd_config(folder, address, i))],
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
            hosts.sshd_pids.append(proc.pid)
        for i in range(2):
            _wait_listening(hosts, i)
        yield hosts
    finally:
        for pid in (hosts.sshd_pids if hosts else []):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        for name in created:
            kill_namespace_processes(name)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)  # removes the veth too
            shutil.rmtree(Path("/etc/netns", name), ignore_errors=True)


def namespace_pids(name: str) -> list[int]:
    """Processes whose network namespace is ``name``."""
    try:
        inode = os.stat(f"/run/netns/{name}").st_ino
    except FileNotFoundError:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.stat(entry / "ns" / "net").st_ino == inode:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def kill_namespace_processes(name: str) -> None:
    for pid in namespace_pids(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def cmdlines(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        with contextlib.suppress(OSError):
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            out.append(raw.replace(b"\0", b" ").decode(errors="replace"))
    return out


def horovod_ranks(pids: list[int]) -> list[int]:
    """The Horovod rank of each rank process among ``pids``, one entry per process, from the
    ``HOROVOD_RANK`` that horovodrun starts each rank with (``env HOROVOD_RANK=… python …``).
    Read from the environment, not the command line: horovodrun's own command line also names
    the training module and, where the venv's paths match, the same python, yet it is no rank.
    A child of a rank process (a fork has its parent's environment) counts as that process."""
    rank, parent = {}, {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            parent[pid] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                if entry.startswith(b"HOROVOD_RANK="):
                    rank[pid] = int(entry.split(b"=", 1)[1])
    return sorted(r for pid, r in rank.items() if rank.get(parent.get(pid)) != r)
