"""Build-time check of the trainer image: Horovod built with PyTorch, Gloo and NCCL; code imports.

The cpu variant (C2M_TRAINER_VARIANT=cpu) checks for PyTorch and Gloo and a CPU torch instead.

No GPU is present while an image builds, so this checks what was built, not that a GPU works;
the MPIJob's first step (rank 0 logging torch.cuda.device_count()) is the runtime check.
"""
from __future__ import annotations

import os
import subprocess
import sys


def main() -> None:
    out = subprocess.run(["horovodrun", "--check-build"], capture_output=True, text=True, check=True).stdout
    print(out)
    cuda = os.environ.get("C2M_TRAINER_VARIANT", "cuda") == "cuda"
    missing = [f for f in ("PyTorch", "Gloo", "NCCL")[:3 if cuda else 2] if f"[X] {f}" not in out]
    if missing:
        sys.exit(f"horovodrun --check-build does not list {missing}; rebuild with "
                 "C2M_HOROVOD_GPU_OPERATIONS=NCCL (ops/install/build_horovod.sh)")
    import horovod.torch as hvd
    import torch

    if cuda and not hvd.nccl_built():
        sys.exit("horovod.torch.nccl_built() is False")
    if cuda != (torch.version.cuda or "").startswith("12."):
        sys.exit(f"torch {torch.__version__} (CUDA {torch.version.cuda}) does not fit variant "
                 f"{os.environ.get('C2M_TRAINER_VARIANT', 'cuda')}")
    import training.pretrain  # noqa: F401
    import training.finetune  # noqa: F401
    print(f"[selfcheck] torch {torch.__version__} (CUDA {torch.version.cuda}), "
          f"horovod with {'NCCL and ' if cuda else ''}Gloo, training code importable: OK")


if __name__ == "__main__":
    main()
