"""Data parallelism behind one small interface; the only file that imports horovod or torch.distributed.

Model and loop code never ask which backend runs them. ``init()`` picks:

- Horovod when the process was started by ``horovodrun`` (``HOROVOD_RANK`` is set);
- torch.distributed over Gloo when started by ``torchrun`` (``RANK``/``WORLD_SIZE`` set),
  a cross-check that gives the same results on the same seed;
- otherwise a single process, so every script and test also runs with plain ``python``.

Gradients are averaged across ranks inside :meth:`Distributed.step`, after the
backward passes and before clipping, so a clipped update is identical on every rank.

A rank that dies must fail the job, not hang it. A rank that exits is noticed at once
(its sockets close; horovodrun and torchrun then stop the others). A rank that hangs
(a lost host, a stopped process) is caught by explicit timeouts, set here so that every
launcher gets them (the environment overrides each):

- Horovod: Gloo operations time out after ``HOROVOD_GLOO_TIMEOUT_SECONDS`` (30 s; the
  background thread talks every cycle, so a slow rank 0 in MLflow is not a timeout),
  and a collective that only some ranks joined shuts Horovod down after
  ``HOROVOD_STALL_SHUTDOWN_TIME_SECONDS`` (1800 s: longer than any rank-0-only work).
- torch.distributed: collectives time out after ``C2M_DIST_TIMEOUT_S`` (1800 s, as long,
  because its barrier blocks while rank 0 registers the model).

``init()`` also keeps glibc from handing the large per-step buffers (logits, their
gradients) back to the kernel after every step (:func:`tune_malloc`): on 2 CPU cores that
page-fault churn cost a third of the step time (bench/README.md, train_throughput).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from datetime import timedelta
from typing import Iterable

import torch

HOROVOD_TIMEOUTS = {
    "HOROVOD_GLOO_TIMEOUT_SECONDS": "30",
    "HOROVOD_STALL_CHECK_TIME_SECONDS": "60",
    "HOROVOD_STALL_SHUTDOWN_TIME_SECONDS": "1800",
}
# CPU ranks only (GPU steps are short and want Horovod's low-latency default). Horovod's
# background thread wakes every cycle to negotiate: at its default 1 ms its threads took
# 0.7-0.8 s of CPU per 10 s per rank (tiny GPT, np=2, 2 cores), with 20 ms 0.2-0.3 s, and
# whole np=2 runs spent 8-9 s instead of 13-15 s in the kernel (bench/README.md); a 20 ms
# wait is a few % of a CPU step. An explicit setting in the environment wins.
HOROVOD_CPU_DEFAULTS = {"HOROVOD_CYCLE_TIME": "20"}  # milliseconds


class Distributed:
    """Single-process behaviour; the multi-process backends override the collective parts."""

    backend = "single"

    def __init__(self):
        self.rank = 0
        self.size = 1
        self.local_rank = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, checkpoints, registers models and prints."""
        return self.rank == 0

    def wrap_optimizer(
        self, optimizer: torch.optim.Optimizer, model: torch.nn.Module, backward_passes_per_step: int = 1
    ) -> torch.optim.Optimizer:
        return optimizer

    def broadcast_state(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Make every rank start from rank 0's weights (and optimiser state)."""

    def allreduce_mean(self, value):
        """Mean of a float or tensor over ranks (for metrics); returns the same type."""
        return value

    def allreduce_sum(self, value):
        """Sum of a float or tensor over ranks (for counts such as a confusion matrix)."""
        return value

    def barrier(self) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def zero_grad(self, optimizer: torch.optim.Optimizer) -> None:
        # set_to_none frees gradient memory; an unpatched Horovod optimizer rejects the keyword.
        try:
            optimizer.zero_grad(set_to_none=True)
        except TypeError:
            optimizer.zero_grad()

    def step(
        self,
        optimizer: torch.optim.Optimizer,
        params: Iterable[torch.Tensor],
        max_grad_norm: float,
        scaler: "torch.amp.GradScaler | None" = None,
    ) -> torch.Tensor:
        """Average gradients over ranks, clip to ``max_grad_norm`` (0 = no clip), step; return the norm.

        The norm is a 0-dim tensor on the gradients' device, so the caller chooses when to
        read it: ``float(norm)`` every step would make a GPU wait for each step to finish.

        With an fp16 ``scaler`` the averaged gradients are unscaled before clipping, and the
        step is skipped (and the scale lowered) when they hold an inf or NaN; every rank sees
        the same averaged gradients, so every rank skips together.
        """
        with self._synchronized(optimizer):
            if scaler is not None:
                scaler.unscale_(optimizer)
            norm = _clip(params, max_grad_norm)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
        return norm

    @contextlib.contextmanager
    def _synchronized(self, optimizer):
        yield


def _clip(params: Iterable[torch.Tensor], max_grad_norm: float) -> torch.Tensor:
    params = [p for p in params if p.grad is not None]
    if max_grad_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_grad_norm).detach()
    if not params:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))


def _as_tensor(value) -> tuple[torch.Tensor, bool]:
    """A float64 copy (collectives may work in place; the caller's tensor must not change)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float64, copy=True), True
    return torch.tensor(float(value), dtype=torch.float64), False


class HorovodDistributed(Distributed):
    """Horovod (Gloo on CPU locally, NCCL on GPU pods): allreduce overlapped with backward."""

    backend = "horovod"

    def __init__(self):
        super().__init__()
        try:
            import horovod.torch as hvd
        except ImportError as exc:
            raise RuntimeError(
                "this process was started by horovodrun but horovod.torch cannot be imported; "
                "build it with ops/install/build_horovod.sh (into .venv-jobs)"
            ) from exc
        self.hvd = hvd
        defaults = HOROVOD_TIMEOUTS | ({} if torch.cuda.is_available() else HOROVOD_CPU_DEFAULTS)
        for key, value in defaults.items():  # read by hvd.init(); an explicit setting wins
            os.environ.setdefault(key, value)
        hvd.init()
        self.rank, self.size, self.local_rank = hvd.rank(), hvd.size(), hvd.local_rank()

    def wrap_optimizer(self, optimizer, model, backward_passes_per_step=1):
        return self.hvd.DistributedOptimizer(
            optimizer,
            named_parameters=model.named_parameters(),
            backward_passes_per_step=backward_passes_per_step,
        )

    def broadcast_state(self, model, optimizer=None):
        self.hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        # Horovod initialises an empty optimiser state by taking a step with zero
        # gradients, which AdamW turns into a weight-decay update and a bias-correction
        # count. An empty state is the same on every rank, so only a loaded one travels.
        if optimizer is not None and optimizer.state_dict()["state"]:
            self.hvd.broadcast_optimizer_state(optimizer, root_rank=0)

    def allreduce_mean(self, value):
        tensor, was_tensor = _as_tensor(value)
        out = self.hvd.allreduce(tensor, op=self.hvd.Average)
        return out if was_tensor else float(out)

    def allreduce_sum(self, value):
        tensor, was_tensor = _as_tensor(value)
        out = self.hvd.allreduce(tensor, op=self.hvd.Sum)
        return out if was_tensor else float(out)

    def barrier(self):
        self.hvd.barrier()

    def shutdown(self):
        self.hvd.shutdown()

    @contextlib.contextmanager
    def _synchronized(self, optimizer):
        # Wait for the in-flight allreduces, clip the averaged gradients, then step
        # without a second synchronisation.
        optimizer.synchronize()
        with optimizer.skip_synchronize():
            yield


class TorchDistributed(Distributed):
    """torch.distributed over Gloo, used when launched by torchrun (a cross-check for Horovod)."""

    backend = "torch"

    def __init__(self):
        super().__init__()
        import torch.distributed as dist

        self.dist = dist
        if not dist.is_initialized():
            timeout = timedelta(seconds=float(os.environ.get("C2M_DIST_TIMEOUT_S", "1800")))
            dist.init_process_group(backend="gloo", timeout=timeout)
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))

    def broadcast_state(self, model, optimizer=None):
        for tensor in model.state_dict().values():
            self.dist.broadcast(tensor, src=0)
        # Optimiser state is empty before the first step and identical afterwards when
        # every rank resumed from the same checkpoint, so only the weights travel.

    def allreduce_mean(self, value):
        tensor, was_tensor = _as_tensor(value)
        self.dist.all_reduce(tensor)
        tensor /= self.size
        return tensor if was_tensor else float(tensor)

    def allreduce_sum(self, value):
        tensor, was_tensor = _as_tensor(value)
        self.dist.all_reduce(tensor)
        return tensor if was_tensor else float(tensor)

    def barrier(self):
        self.dist.barrier()

    def shutdown(self):
        self.dist.destroy_process_group()

    @contextlib.contextmanager
    def _synchronized(self, optimizer):
        # One flat buffer per step: simple and as fast as bucketing for small models.
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads:
            flat = torch.cat([g.reshape(-1) for g in grads])
            self.dist.all_reduce(flat)
            flat /= self.size
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()
        yield


MALLOC_KEEP_BYTES = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)


def tune_malloc(keep_bytes: int = MALLOC_KEEP_BYTES) -> bool:
    """Let glibc keep up to ``keep_bytes`` of freed heap instead of unmapping it; True if applied.

    glibc serves blocks above 32 MiB with mmap and returns them with munmap (and trims
    the heap top above 128 KiB), so every step faults the logits and their gradients back
    in page by page, zero-filled: kernel time measured at 35-50% of a tiny GPT's step on
    2 cores, gone with both thresholds raised (bench/README.md). The cost: the process
    keeps its peak heap instead of returning it (the bench's peak RSS rose by about 300 MB).
    Skipped when the environment sets a threshold (``MALLOC_MMAP_THRESHOLD_``,
    ``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``), so an explicit setting wins, when
    ``C2M_TUNE_MALLOC=0``, and off Linux/glibc.
    """
    if sys.platform != "linux" or os.environ.get("C2M_TUNE_MALLOC", "1") == "0":
        return False
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl or no glibc: nothing to tune
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, keep_bytes)) and bool(mallopt(_M_TRIM_THRESHOLD, keep_bytes))


def init(num_threads: int | None = 1) -> Distributed:
    """Start the backend that launched us; pin ``num_threads`` intra-op threads per rank.

    On a small machine, K ranks each using every core oversubscribe it badly, so one
    thread per rank is the default; pass ``None`` to keep torch's choice.
    """
    tune_malloc()
    if num_threads:
        torch.set_num_threads(num_threads)
    if "HOROVOD_RANK" in os.environ:
        return HorovodDistributed()
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return TorchDistributed()
    return Distributed()
