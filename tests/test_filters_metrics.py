"""The course's Gaussian blur against scipy, and PSNR/SSIM against hand computations."""

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from harness.errors import BadImage
from harness.filters import gaussian_blur, gaussian_kernel1d
from harness.metrics import psnr, ssim

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("k, sigma", [(5, 1.0), (9, 2.0), (13, 5.0), (33, 2.0)])
def test_blur_equals_scipy_mirror(k, sigma):
    """torchvision's reflect padding = scipy's 'mirror' mode, over the same (k-1)/2 support."""
    x = RNG.random((3, 64, 64)).astype(np.float32)
    ref = np.stack([gaussian_filter(c.astype(np.float64), sigma, mode="mirror", radius=(k - 1) // 2) for c in x])
    assert np.abs(gaussian_blur(torch.from_numpy(x), k, sigma).numpy() - ref).max() < 1e-5


def test_kernel_and_filters():
    w = gaussian_kernel1d(5, 1.0)
    assert torch.isclose(w.sum(), torch.tensor(1.0)) and torch.equal(w, w.flip(0))
    const = torch.full((3, 64, 64), 0.3)
    torch.testing.assert_close(gaussian_blur(const, 33, 2.0), const)
    with pytest.raises(ValueError, match="odd kernel_size"):
        gaussian_kernel1d(4, 1.0)
    with pytest.raises(ValueError, match="reflect padding"):
        gaussian_blur(torch.zeros(3, 8, 8), 33, 2.0)


def test_psnr_matches_the_definition():
    a = torch.zeros(3, 8, 8)
    b = a.clone()
    b[0, 0, 0] = 0.5  # on [0, 1]: one pixel off by 0.25
    mse = 0.25**2 / a.numel()
    assert psnr(b, a) == pytest.approx(10 * math.log10(1 / mse), rel=1e-6)
    assert psnr(a, a) == math.inf


def test_ssim_and_batches():
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert ssim(x, x) == pytest.approx(1.0)
    noisy = (x + 0.3 * torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    assert -1 <= ssim(noisy, x) < 0.9
    assert psnr(noisy, x) == pytest.approx((psnr(noisy[:1], x[:1]) + psnr(noisy[1:], x[1:])) / 2)


def test_metrics_refuse_out_of_range_and_mismatched_inputs():
    with pytest.raises(BadImage, match="clamp the output first"):
        psnr(torch.full((3, 8, 8), 1.5), torch.zeros(3, 8, 8))
    with pytest.raises(BadImage, match="differ in shape"):
        ssim(torch.zeros(3, 8, 8), torch.zeros(3, 16, 16))
