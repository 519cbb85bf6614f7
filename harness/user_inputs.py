"""A user's own inputs (CLI ``--image``, ``--mask``): checked with one-line BadImage errors that say
what to fix, and loaded in the backend's image shape, centre-cropped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from harness.errors import BadImage
from harness.image_io import open_image, square_crop, to_tensor


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file."""
    return open_image(path, "image").size


def load_image(path: str | Path, size: int = 64, channels: int = 3) -> torch.Tensor:
    """A user's photo as (channels, size, size) in [-1, 1]: RGB for channels 3 (RGBA: alpha dropped; L:
    grey replicated), grey (ITU-R 601 luma) for channels 1; non-square images are centre-cropped, then
    resized with bicubic antialiasing."""
    pil = open_image(path, "image")
    if pil.mode not in ("RGB", "RGBA", "L", "P"):
        raise BadImage(f"image {path} has mode {pil.mode}; save it as 8-bit RGB (PNG or JPEG)")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    square = np.asarray(square_crop(pil.convert("RGB" if channels == 3 else "L"), size))
    return to_tensor(square if channels == 3 else square[..., None])


def load_mask(path: str | Path, size: int = 64, image_size: tuple[int, int] | None = None) -> torch.Tensor:
    """A user's inpainting mask as (1, size, size) in {0, 1}: black (0) = keep, white (255) = regenerate.
    It must be binary; when image_size is given and the mask's differs, it is first resized to the image's
    with nearest-neighbour (so it stays binary and lines up with the image's crop)."""
    pil = open_image(path, "mask")
    if image_size is not None and pil.size != tuple(image_size):
        pil = pil.resize(tuple(image_size), Image.NEAREST)
    arr = np.asarray(pil.convert("RGB") if pil.mode in ("RGB", "RGBA", "P") else pil)
    if arr.ndim == 3:
        if not (arr == arr[..., :1]).all():
            raise BadImage(f"mask {path} is coloured: save it as black/white PNG with 0 = keep, 255 = regenerate")
        arr = arr[..., 0]
    values = np.unique(arr)
    if not set(values.tolist()) <= {0, 255} and not set(values.tolist()) <= {0, 1}:
        raise BadImage(f"mask {path} is not binary (found {len(values)} distinct values): save it as black/white "
                       "PNG with 0 = keep, 255 = regenerate")
    binary = Image.fromarray(((arr > 0) * 255).astype(np.uint8))
    m = np.asarray(square_crop(binary, size).convert("L")) >= 128  # nearest-ish: threshold after resizing
    return torch.from_numpy(m.astype(np.float32))[None]
