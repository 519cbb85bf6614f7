"""Part B on several processes: ``torchrun --nproc_per_node N -m harness {train,measure} ...``.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE; `World.from_env` reads them (without
them: rank 0 of 1, no process group). `init` makes the group: nccl on CUDA (rank r on cuda:LOCAL_RANK),
gloo on the CPU, with a timeout (HARNESS_DIST_TIMEOUT_S, default 300 s), so a rank that stalls ends the
run with an error instead of hanging it; torchrun stops the others when one rank fails.

Splitting: a global batch, or a list of sample seeds, is dealt out as DistributedSampler deals an epoch:
rank r of W takes items r, r + W, r + 2W, ... (`World.share`; no padding). Every rank keeps the run's
generator in the same state (it draws the whole global batch's noise and keeps its own rows), and
scales its mean loss by W n_r / n, because DDP averages gradients over ranks:
    mean_r (W n_r / n) L_r = sum_r (n_r / n) L_r = L of the global batch,
so W ranks take the single-process step. BatchNorm: `GlobalBatchNorm2d` normalises with the global
batch's statistics (nn.SyncBatchNorm does this too, but on GPUs only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

TIMEOUT_S = 300


@dataclass(frozen=True)
class World:
    """This process's place among the run's processes; ``distributed``: launched by torchrun (even N=1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    distributed: bool = False

    @classmethod
    def from_env(cls, env=os.environ) -> World:
        if "WORLD_SIZE" not in env:
            return cls()
        return cls(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)), True)

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the files (checkpoints, logs, results) and prints."""
        return self.rank == 0

    def share(self, n: int) -> slice:
        """This rank's items of n: r, r + W, ... (DistributedSampler's interleaving, without padding)."""
        return slice(self.rank, n, self.size)

    def loss_weight(self, n: int) -> float:
        """W n_r / n: scales this rank's mean loss so that DDP's gradient average is the global batch's."""
        return self.size * len(range(n)[self.share(n)]) / n

    def device(self, device: str) -> str:
        """``cuda`` means this rank's GPU (cuda:LOCAL_RANK) in a torchrun run; anything else stays."""
        return f"cuda:{self.local_rank}" if self.distributed and device == "cuda" else device


def init(device: str, timeout_s: float | None = None) -> World:
    """The World of this process; under torchrun, also the process group (nccl for CUDA, else gloo)."""
    world = World.from_env()
    if world.distributed and not dist.is_initialized():
        # DDP imports torch._dynamo; imported after init_process_group, it keeps the default group alive past
        # destroy_process_group, so gloo's threads lived on into interpreter exit, where one CI rank aborted
        # ("terminate called without an active exception"). Imported first, the group ends in `shutdown`.
        import torch._dynamo  # noqa: F401

        timeout_s = timeout_s or float(os.environ.get("HARNESS_DIST_TIMEOUT_S", TIMEOUT_S))
        cuda = torch.device(device).type == "cuda"
        if cuda:
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s),
                                device_id=torch.device("cuda", world.local_rank) if cuda else None)
    return world


def shutdown() -> None:
    """End the process group once every rank is here; the group must have no other holder (DDP's Reducer
    holds it: `train` drops its DDP first), so that its threads end here, not in interpreter exit.

    The final barrier's Work is held until the group is gone. Released by gloo's worker thread instead,
    it would free earlier works and their tensors, which takes the GIL, while the group's destructor joins
    that thread holding the GIL: a deadlock seen in CI (a rank hung in ~ProcessGroupGloo)."""
    if dist.is_initialized():
        final = dist.barrier(async_op=True)
        final.wait()
        dist.destroy_process_group()
        del final


def barrier() -> None:
    """Wait for every rank (rank 0's files are then on disk for all)."""
    if dist.is_initialized():
        dist.barrier()


def collective_device() -> torch.device:
    """Where the process group's tensors must be: this rank's GPU for nccl, else the CPU."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) that autograd can go through: the gradient of a sum over ranks, on each rank, is
    the sum of all ranks' gradients (torch.distributed.nn's all_reduce, deprecated since torch 2.13).
    A tensor on another device than the group's (a CPU count under nccl) goes there and back."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.to(collective_device(), copy=True)
        dist.all_reduce(y)
        return y.to(x.device)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _SumOverRanks.apply(grad.contiguous())


def sum_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """x summed over all ranks, differentiably (x itself when not distributed)."""
    return _SumOverRanks.apply(x) if dist.is_initialized() else x


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d over the global batch of all ranks (N = every rank's samples x H x W):
        mean = sum_ranks sum x / N,  var = sum_ranks sum (x - mean)^2 / N,  y = (x - mean) / sqrt(var + eps) w + b,
    with differentiable all_reduces, and running statistics kept as BatchNorm2d keeps them (unbiased
    var). With one process, or in eval, it is BatchNorm2d itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        xf, dims = x.float(), (0, 2, 3)
        count = torch.full((1,), x.numel() / x.shape[1], dtype=torch.float32, device=x.device)
        sums = sum_over_ranks(torch.cat([xf.sum(dims), count]))
        n, mean = sums[-1], sums[:-1] / sums[-1]
        centred = xf - mean[None, :, None, None]
        var = sum_over_ranks(centred.pow(2).sum(dims)) / n
        with torch.no_grad():
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * n / (n - 1), self.momentum)
            self.num_batches_tracked += 1
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        return (y * self.weight[None, :, None, None] + self.bias[None, :, None, None]).to(x.dtype)


def global_batchnorm(model: nn.Module) -> nn.Module:
    """``model`` with every BatchNorm2d replaced by a GlobalBatchNorm2d holding the same parameters
    and buffers (the state_dict keys stay)."""
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            new = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats, device=child.weight.device)
            new.load_state_dict(child.state_dict())
            setattr(model, name, new)
        else:
            global_batchnorm(child)
    return model


def data_parallel(model: nn.Module, world: World) -> nn.Module:
    """The module the training loop calls: DistributedDataParallel over ``model`` in a torchrun run."""
    if not world.distributed:
        return model
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
