"""`torchrun ... tests/scripts/crash_rank1.py train ...`: `python -m harness train ...` whose rank 1 fails at the
start of the second epoch, once every rank (rank 0 with its epoch-1 files written) has reached it."""

import sys

import torch.distributed as dist

from harness.cli import main
from harness.partb.train import Trainer

train_epoch = Trainer.train_epoch


def failing_train_epoch(self, *args, **kwargs):
    if self.epoch == 1:
        dist.barrier()
        if dist.get_rank() == 1:
            raise RuntimeError("injected failure on rank 1")
    return train_epoch(self, *args, **kwargs)


Trainer.train_epoch = failing_train_epoch
sys.exit(main())
