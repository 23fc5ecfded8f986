"""Horovod + PyTorch + Gloo smoke test.

Run:
    <venv>/bin/horovodrun -np 2 -H localhost:2 --gloo <venv>/bin/python ops/install/hvd_smoke.py

Trains a tiny linear model for a few steps with hvd.DistributedOptimizer (AdamW),
after broadcasting parameters and optimizer state, using zero_grad(set_to_none=True),
then checks that every rank ends with identical parameters. Exits non-zero otherwise.
"""
import sys

import torch
import horovod.torch as hvd

STEPS = 5


def main() -> int:
    torch.set_num_threads(1)
    hvd.init()
    rank, size = hvd.rank(), hvd.size()

    # Different init per rank, so the broadcast is actually exercised.
    torch.manual_seed(1234 + rank)
    model = torch.nn.Linear(16, 4)
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.01)
    opt = hvd.DistributedOptimizer(opt, named_parameters=model.named_parameters())

    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    hvd.broadcast_optimizer_state(opt, root_rank=0)

    # Different data per rank: gradients must be averaged for params to agree.
    gen = torch.Generator().manual_seed(99 + rank)
    x = torch.randn(32, 16, generator=gen)
    y = torch.randn(32, 4, generator=gen)

    loss = None
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    if any(p.grad is not None for p in model.parameters()):
        print(f"[rank {rank}] FAIL: zero_grad(set_to_none=True) left gradients", flush=True)
        return 1

    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])
    checksum = flat.sum().reshape(1)
    lo = hvd.allreduce(checksum, op=hvd.Min, name="checksum_min")
    hi = hvd.allreduce(checksum, op=hvd.Max, name="checksum_max")
    # Also compare the full vector, not only its sum.
    mean = hvd.allreduce(flat, op=hvd.Average, name="params_mean")
    ok = bool(lo.item() == hi.item()) and torch.equal(mean, flat)

    print(f"[rank {rank}/{size}] loss={loss.item():.6f} checksum={checksum.item():.12f} "
          f"{'OK' if ok else 'MISMATCH'}", flush=True)
    hvd.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
