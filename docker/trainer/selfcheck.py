"""Build-time check of the trainer image: Horovod built with PyTorch, Gloo and NCCL; code imports.

No GPU is present while an image builds, so this checks what was built, not that a GPU works;
the MPIJob's first step (rank 0 logging torch.cuda.device_count()) is the runtime check.
"""
from __future__ import annotations

import subprocess
import sys


def main() -> None:
    out = subprocess.run(["horovodrun", "--check-build"], capture_output=True, text=True, check=True).stdout
    print(out)
    missing = [f for f in ("PyTorch", "Gloo", "NCCL") if f"[X] {f}" not in out]
    if missing:
        sys.exit(f"horovodrun --check-build does not list {missing}; rebuild with "
                 "C2M_HOROVOD_GPU_OPERATIONS=NCCL (ops/install/build_horovod.sh)")
    import horovod.torch as hvd
    import torch

    if not hvd.nccl_built():
        sys.exit("horovod.torch.nccl_built() is False")
    if not (torch.version.cuda or "").startswith("12."):
        sys.exit(f"torch {torch.__version__} is not a CUDA 12 build")
    import training.pretrain  # noqa: F401
    import training.finetune  # noqa: F401
    print(f"[selfcheck] torch {torch.__version__} (CUDA {torch.version.cuda}), "
          f"horovod with NCCL, training code importable: OK")


if __name__ == "__main__":
    main()
