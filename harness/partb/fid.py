"""FID-lite: the Frechet distance between feature distributions of a small MNIST classifier.

FID = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)) over the classifier's 64 penultimate
features, computed by torchmetrics' FrechetInceptionDistance with that classifier as its ``feature``
module (float64). The classifier's weights ship in harness/data/mnist_classifier.safetensors; its test
accuracy is in their metadata. The classifier also gives the second metric: how often samples are
classified as the digit they were conditioned on.
"""

from __future__ import annotations

import copy
import json
from importlib.resources import files
from pathlib import Path

import torch
from torch import nn

NUM_FEATURES = 64
WEIGHTS = "mnist_classifier.safetensors"


class MnistClassifier(nn.Module):
    """conv(1->32) BN pool conv(32->64) BN pool -> 3136 -> 64 (features) -> 10 logits; inputs in [0, 1]."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, NUM_FEATURES), nn.ReLU(),
        )
        self.head = nn.Linear(NUM_FEATURES, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class _Features(nn.Module):
    """The ``feature`` module torchmetrics calls: images (N, 1, 28, 28) in [0, 1] -> (N, 64) float64
    features (a float64 copy of the classifier, so the whole statistic is computed in float64)."""

    num_features = NUM_FEATURES

    def __init__(self, classifier: MnistClassifier):
        super().__init__()
        self.classifier = copy.deepcopy(classifier).double().eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x.double())


def load_classifier(path: str | Path | None = None) -> tuple[MnistClassifier, dict]:
    """The shipped classifier (eval mode) and its metadata (test accuracy, recipe)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path) if path else Path(str(files("harness.data").joinpath(WEIGHTS)))
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: train it with `python -m harness.partb.train_classifier`")
    model = MnistClassifier()
    model.load_state_dict({k: v.float() for k, v in load_file(path).items()})
    with safe_open(path, "pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    return model.eval(), meta


def fid_lite(real: torch.Tensor, fake: torch.Tensor, classifier: MnistClassifier | None = None,
             over_ranks: bool = False) -> float:
    """FID-lite between two image sets (N, 1, 28, 28) in [0, 1]. ``over_ranks``: each rank passes its
    share, and torchmetrics sums the feature statistics (sums, outer-product sums, counts) over ranks
    before the distance, so every rank returns the FID-lite of all ranks' images."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    from harness.partb.distributed import collective_device

    classifier = classifier or load_classifier()[0]
    metric = FrechetInceptionDistance(feature=_Features(classifier), normalize=True, sync_on_compute=over_ranks)
    metric.set_dtype(torch.float64)
    device = collective_device() if over_ranks else real.device  # nccl gathers CUDA tensors only
    metric.to(device)
    with torch.no_grad():
        metric.update(real.to(device).clamp(0, 1), real=True)
        metric.update(fake.to(device).clamp(0, 1), real=False)
        return float(metric.compute())


@torch.no_grad()
def classify(images: torch.Tensor, classifier: MnistClassifier | None = None) -> torch.Tensor:
    """Predicted digits (N,) for images (N, 1, 28, 28) in [0, 1]."""
    classifier = classifier or load_classifier()[0]
    return classifier(images.clamp(0, 1)).argmax(1)
