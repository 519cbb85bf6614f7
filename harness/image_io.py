"""Image files and grids: tensors in [-1, 1] <-> 8-bit PNG and GIF, centre-cropped squares, and
torchvision's make_grid layout. Images are float32 (C, H, W) or (N, C, H, W) in [-1, 1], C = 1 or 3."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from harness.atomic import atomic_write_bytes
from harness.errors import BadImage


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HWC uint8 or [0, 1] float -> (C, H, W) float32 in [-1, 1]."""
    arr = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))) * 2 - 1


def square_crop(pil: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square, then resize to size x size (PIL bicubic with antialiasing)."""
    w, h = pil.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return pil.crop((left, top, left + s, top + s)).resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None)


def open_image(path: str | Path, what: str) -> Image.Image:
    try:
        pil = Image.open(path)
        pil.load()
        return pil
    except FileNotFoundError:
        raise BadImage(f"{what} {path} does not exist: check the path") from None
    except (UnidentifiedImageError, OSError) as e:
        raise BadImage(f"{what} {path} is not a readable image ({type(e).__name__}): save it as PNG or JPEG") from None


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> HWC uint8, round((x + 1) * 127.5) after clamping."""
    arr = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
    return arr.transpose(1, 2, 0)


def save_png(path: str | Path, x: torch.Tensor) -> None:
    """Write (C, H, W) in [-1, 1] (C = 1 or 3) as an 8-bit PNG, atomically."""
    buf = io.BytesIO()
    Image.fromarray(_squeeze_grey(to_uint8(x))).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def read_png(path: str | Path) -> torch.Tensor:
    """An 8-bit PNG as (3, H, W) in [-1, 1]."""
    return to_tensor(np.asarray(open_image(path, "image").convert("RGB")))


def make_grid(images: torch.Tensor, nrow: int = 8, pad: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile (N, C, H, W) into one (C, H', W') image, nrow images per row, pad pixels between
    (torchvision's make_grid layout)."""
    n, c, h, w = images.shape
    ncol = min(nrow, n)
    nrows = -(-n // ncol)
    grid = torch.full((c, nrows * (h + pad) + pad, ncol * (w + pad) + pad), pad_value, dtype=images.dtype)
    for i in range(n):
        r, k = divmod(i, ncol)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = images[i]
    return grid


def upscale_nearest(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour upscaling for viewing small images."""
    return x.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def save_gif(path: str | Path, frames: torch.Tensor, nrow: int = 10, scale: int = 3, ms: int = 80) -> None:
    """Frames (F, N, C, H, W) in [-1, 1] as an animated GIF, each frame a grid (nearest-upscaled), atomically."""
    pics = [Image.fromarray(_squeeze_grey(to_uint8(upscale_nearest(make_grid(f, nrow=nrow), scale)))) for f in frames]
    buf = io.BytesIO()
    pics[0].save(buf, format="GIF", save_all=True, append_images=pics[1:], duration=ms, loop=0)
    atomic_write_bytes(path, buf.getvalue())


def _squeeze_grey(arr: np.ndarray) -> np.ndarray:
    return arr[..., 0] if arr.shape[-1] == 1 else arr
