"""The torchvision stand-in (`harness.impl.standins`) against torchvision's definitions, written out here
independently in numpy (float64, loops, no torch): torchvision 0.2x `transforms/_functional_tensor.py`'s
gaussian_blur (`_get_gaussian_kernel1d`: exp(-0.5 (x / sigma)^2) over linspace(-(k-1)/2, (k-1)/2, k),
normalised; the 2-D kernel ky^T kx; reflect padding of k // 2; conv2d per channel; integer images rounded
back) with `functional.gaussian_blur`'s argument rules (sigma None -> 0.15 k + 0.35), and rotate as
torchvision computes it: `_get_inverse_affine_matrix(center=0, -angle)` sampled by grid_sample's nearest
neighbour (align_corners=False, zeros outside). And a notebook that imports it runs its sections."""

import json
import math

import numpy as np
import pytest
import torch

from harness.impl import standins
from harness.impl.run import check_file

TF = standins.stand_in("torchvision.transforms.functional", ("gaussian_blur",))


def blur_by_definition(img: np.ndarray, kernel_size, sigma=None) -> np.ndarray:
    """torchvision's gaussian_blur on a (C, H, W) array, by its definition (see the module docstring)."""
    kx, ky = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    if sigma is None:
        sx, sy = 0.15 * kx + 0.35, 0.15 * ky + 0.35
    else:
        sx, sy = (sigma, sigma) if isinstance(sigma, (int, float)) else sigma

    def kernel1d(k, s):
        half = (k - 1) * 0.5
        x = np.array([-half + i for i in range(k)], dtype=np.float64)
        pdf = np.exp(-0.5 * (x / s) ** 2)
        return pdf / pdf.sum()

    k2 = np.outer(kernel1d(ky, sy), kernel1d(kx, sx))
    padded = np.pad(img.astype(np.float64), ((0, 0), (ky // 2, ky // 2), (kx // 2, kx // 2)), mode="reflect")
    c, h, w = img.shape
    out = np.zeros((c, h, w))
    for i in range(h):
        for j in range(w):
            out[:, i, j] = (padded[:, i:i + ky, j:j + kx] * k2).sum(axis=(1, 2))
    return np.round(out) if img.dtype == np.uint8 else out


def rotate_by_definition(img: np.ndarray, angle: float) -> np.ndarray:
    """torchvision's tensor rotate (nearest, expand=False, center None) of a (C, H, W) array."""
    c, h, w = img.shape
    r = math.radians(-angle)
    m = [[math.cos(r), math.sin(r)], [-math.sin(r), math.cos(r)]]  # the inverse affine matrix, no shear/scale
    out = np.zeros_like(img)
    for i in range(h):
        for j in range(w):
            x, y = j - w * 0.5 + 0.5, i - h * 0.5 + 0.5  # the base grid at pixel centres
            xn, yn = (m[0][0] * x + m[0][1] * y) / (0.5 * w), (m[1][0] * x + m[1][1] * y) / (0.5 * h)
            ix, iy = ((xn + 1) * w - 1) / 2, ((yn + 1) * h - 1) / 2  # grid_sample, align_corners=False
            ix, iy = int(np.rint(ix)), int(np.rint(iy))
            if 0 <= ix < w and 0 <= iy < h:
                out[:, i, j] = img[:, iy, ix]
    return out


@pytest.mark.parametrize("kernel_size, sigma", [(9, 2.0), (5, None), ((5, 3), (1.5, 0.7)), (3, [1.0]), ((7,), 3)])
def test_gaussian_blur_follows_torchvisions_definition(kernel_size, sigma):
    img = torch.rand(3, 12, 10, generator=torch.Generator().manual_seed(0))
    got = TF.gaussian_blur(img, kernel_size, sigma)
    ks = kernel_size[0] if isinstance(kernel_size, tuple) and len(kernel_size) == 1 else kernel_size
    sg = sigma[0] if isinstance(sigma, list) else sigma
    want = blur_by_definition(img.numpy(), ks, sg)
    assert got.shape == img.shape and np.abs(got.numpy() - want).max() < 1e-6
    batch = TF.gaussian_blur(torch.stack([img, img.flip(-1)]), kernel_size, sigma)
    assert torch.equal(batch[0], got)


def test_gaussian_blur_of_an_integer_image_rounds_and_keeps_its_dtype():
    img = torch.randint(0, 256, (1, 9, 9), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    got = TF.gaussian_blur(img, 3, 1.0)
    assert got.dtype == torch.uint8
    assert np.array_equal(got.numpy(), blur_by_definition(img.numpy(), 3, 1.0).astype(np.uint8))


@pytest.mark.parametrize("bad", [4, (3, 4), -1])
def test_gaussian_blur_rejects_an_even_or_negative_kernel_as_torchvision_does(bad):
    with pytest.raises(ValueError, match="kernel_size should have odd and positive integers"):
        TF.gaussian_blur(torch.zeros(1, 8, 8), bad, 1.0)
    with pytest.raises(ValueError, match="sigma should have positive values"):
        TF.gaussian_blur(torch.zeros(1, 8, 8), 3, 0.0)


@pytest.mark.parametrize("size", [5, 6])
@pytest.mark.parametrize("angle", [0, 90, 180, 270, -90, 450.0])
def test_rotate_by_quarter_turns_follows_torchvisions_affine_map(size, angle):
    img = torch.arange(2 * size * size, dtype=torch.float32).reshape(2, size, size)
    assert np.array_equal(TF.rotate(img, angle).numpy(), rotate_by_definition(img.numpy(), angle))


def test_flips_and_conversions():
    img = torch.arange(24, dtype=torch.float32).reshape(1, 2, 3, 4)
    assert np.array_equal(TF.hflip(img).numpy(), img.numpy()[..., ::-1])
    assert np.array_equal(TF.vflip(img).numpy(), img.numpy()[..., ::-1, :])
    hwc = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 7
    x = TF.to_tensor(hwc)
    assert x.shape == (3, 2, 3) and x.dtype == torch.float32 and torch.equal(x, torch.from_numpy(hwc).permute(2, 0, 1) / 255)
    pil = TF.to_pil_image(x)
    assert pil.mode == "RGB" and np.array_equal(np.array(pil), (x * 255).byte().permute(1, 2, 0).numpy())  # truncated
    assert np.array_equal(np.array(TF.hflip(pil)), np.array(pil)[:, ::-1])
    assert np.array_equal(np.array(TF.gaussian_blur(pil, 3, 1.0)),
                          blur_by_definition(np.array(pil).transpose(2, 0, 1), 3, 1.0).astype(np.uint8).transpose(1, 2, 0))


def test_anything_else_raises_one_line_naming_it():
    with pytest.raises(NotImplementedError, match=r"^torchvision.transforms.functional.adjust_gamma is not in the "
                                                  r"harness's torchvision stand-in"):
        TF.adjust_gamma(torch.zeros(1), 2.0)
    with pytest.raises(NotImplementedError, match=r"^torchvision.transforms.Compose is not"):
        standins.stand_in("torchvision", ("transforms",)).transforms.Compose([])
    with pytest.raises(NotImplementedError, match="multiples of 90"):
        TF.rotate(torch.zeros(1, 4, 4), 45)


def test_a_notebook_that_imports_torchvision_runs_with_the_stand_in(tmp_path):
    if standins.torchvision_importable():
        pytest.skip("torchvision imports here: it is used unchanged")
    cells = ["import torch\nimport torchvision\nfrom torchvision import transforms\n"
             "import torchvision.transforms.functional as TF",
             "def forward(im, t):\n    noise = torch.randn_like(im)\n    abar = alphas_cumprod[t]\n"
             "    im = TF.vflip(transforms.functional.hflip(torchvision.transforms.functional.rotate(im, 180)))\n"
             "    return abar.sqrt() * im + (1 - abar).sqrt() * noise",
             "def make_hybrids(prompt1_embeds, prompt2_embeds):\n    return TF.adjust_gamma(torch.zeros(1), 2.0)"]
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": c}
                    for c in cells], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "tv.ipynb"
    path.write_text(json.dumps(nb))
    rows = {r.section: r for r in check_file(str(path), "tiny-if", ["A1.1", "A1.9"], stride=330, time_limit=60)}
    assert rows["setup"].verdict == "stand-in" and "torchvision cannot be imported here" in rows["setup"].figures
    assert "torchvision" in rows["setup"].function
    assert rows["A1.1"].verdict == "matches the reference", rows["A1.1"].figures
    assert rows["A1.9"].verdict == "error" and "adjust_gamma is not in the harness's torchvision stand-in" in rows["A1.9"].figures
