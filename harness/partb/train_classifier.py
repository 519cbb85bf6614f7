"""Train the FID-lite classifier and write harness/data/mnist_classifier.safetensors.

    python -m harness.partb.train_classifier [--epochs 3]

Adam 1e-3 decayed by 0.7 per epoch, batch 128, random shifts of up to 2 pixels, explicit generator; fp16 weights with the recipe and the measured test
accuracy (all 10k test digits) and FID-lite floor (train vs test, same count) in the metadata.
"""

from __future__ import annotations

import argparse
import json
from importlib.resources import files
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm.auto import tqdm

from harness.atomic import atomic_path
from harness.partb.fid import WEIGHTS, MnistClassifier, classify, fid_lite
from harness.partb.mnist import load_mnist, to_float
from harness.partb.weights import init_weights_

FLOOR_COUNT = 200  # the sample count the sections use: FID is biased by the count


def shift(x: torch.Tensor, gen: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Translate each image by up to max_shift pixels (zero fill): pad, then crop at a random offset."""
    n = x.shape[0]
    padded = F.pad(x, (max_shift,) * 4)
    dx, dy = (torch.randint(0, 2 * max_shift + 1, (n,), generator=gen) for _ in range(2))
    rows = (dy[:, None] + torch.arange(28))[:, :, None]
    cols = (dx[:, None] + torch.arange(28))[:, None, :]
    return padded[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(files("harness.data").joinpath(WEIGHTS)))
    args = p.parse_args(argv)
    gen = torch.Generator().manual_seed(args.seed)
    x, y = load_mnist("train")
    x, y = to_float(x), torch.from_numpy(y)
    with torch.random.fork_rng(devices=[]):
        model = init_weights_(MnistClassifier(), gen)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, 0.7)
    for epoch in range(args.epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in tqdm(range(0, len(x), 128), desc=f"classifier epoch {epoch + 1}"):
            idx = perm[i:i + 128]
            loss = F.cross_entropy(model(shift(x[idx], gen)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    tx, ty = load_mnist("test")
    tx, ty = to_float(tx), torch.from_numpy(ty)
    acc = float((classify(tx, model) == ty).float().mean())
    floor = fid_lite(x[:FLOOR_COUNT], tx[:FLOOR_COUNT], model)
    meta = {"test_accuracy": acc, "fid_lite_floor": floor, "floor_count": FLOOR_COUNT,
            "recipe": {"epochs": args.epochs, "batch_size": 128, "lr": 1e-3, "lr_gamma": 0.7, "max_shift": 2, "seed": args.seed}}
    with atomic_path(Path(args.out)) as tmp:
        save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, str(tmp),
                  metadata={k: json.dumps(v) for k, v in meta.items()})
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
