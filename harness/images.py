"""Test images, the project's own drawings, masks, user inputs, grids and PNG I/O.

Images are float32 tensors (3, H, W) or (N, 3, H, W) in [-1, 1]; masks are (1, H, W) with
1 = region to regenerate and 0 = region to keep.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from harness.atomic import atomic_write_bytes
from harness.errors import BadImage, UnknownName

# scikit-image's offline photos standing in for the course's Campanile (no download needed).
TEST_IMAGES = {
    "rocket": "public domain (NASA)",
    "astronaut": "public domain (NASA)",
    "chelsea": "CC0 (Stefan van der Walt)",
    "coffee": "CC0 (Rachel Michetti)",
}
DRAWINGS = ("house", "flower", "smiley")
STROKES = ("moon", "river")
DIGIT_STROKES = ("bar", "tail")
MASKS = ("center_top", "ellipse", "rectangle")


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HWC uint8 or [0, 1] float -> (C, H, W) float32 in [-1, 1]."""
    arr = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))) * 2 - 1


def _square(pil: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square, then resize to size x size (PIL bicubic with antialiasing)."""
    w, h = pil.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return pil.crop((left, top, left + s, top + s)).resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None)


def test_image(name: str, size: int = 64) -> tuple[torch.Tensor, dict]:
    """A scikit-image photo, centre-cropped and resized to size x size, and where it came from; or
    ``"mnist:<i>"``, MNIST test digit i (1, 28, 28)."""
    if name.startswith("mnist:"):
        return mnist_digit(name, size)
    if name not in TEST_IMAGES:
        raise UnknownName(f"unknown test image {name!r}; valid: {', '.join(TEST_IMAGES)} or mnist:<test index>")
    import skimage.data

    pil = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    meta = {"source": f"skimage.data.{name}", "license": TEST_IMAGES[name], "original_size": list(pil.size),
            "crop": "centre square", "size": size}
    return _to_tensor(np.asarray(_square(pil, size))), meta


def mnist_digit(name: str, size: int = 28) -> tuple[torch.Tensor, dict]:
    """MNIST test digit ``"mnist:<i>"`` as (1, 28, 28) in [-1, 1] (k / 255 mapped to [-1, 1]), with its label."""
    from harness.partb.mnist import load_mnist, to_float

    images, labels = load_mnist("test")
    index = name.removeprefix("mnist:")
    if not index.isdigit() or int(index) >= len(images):
        raise UnknownName(f"unknown test image {name!r}: use mnist:<i> with 0 <= i < {len(images)}")
    if size != 28:
        raise BadImage(f"MNIST digits are 28x28, but {size}x{size} was asked for")
    i = int(index)
    return to_float(images[i:i + 1])[0] * 2 - 1, {"source": f"MNIST test digit {i}", "label": int(labels[i])}


def drawn_digit(name: str, size: int = 28) -> tuple[torch.Tensor, dict]:
    """A digit drawn by our own code as white strokes on black (1, size, size): 1.7.1's hand-drawn
    inputs for the mnist backend. name: one of DIGIT_DRAWINGS."""
    from skimage import draw

    img = np.zeros((size, size), np.uint8)
    s = size / 28
    polylines = DIGIT_DRAWINGS.get(name)
    if polylines is None:
        raise UnknownName(f"unknown drawn digit {name!r}; valid: {', '.join(DIGIT_DRAWINGS)}")
    for line in polylines:
        for (y0, x0), (y1, x1) in zip(line, line[1:]):
            for u in np.linspace(0, 1, 4 * size):
                rr, cc = draw.disk(((y0 + u * (y1 - y0)) * s, (x0 + u * (x1 - x0)) * s), 1.3 * s, shape=img.shape)
                img[rr, cc] = 255
    return torch.from_numpy(img).float()[None] / 127.5 - 1, {"source": f"harness.images.drawn_digit({name!r})",
                                                              "size": size}


# Polylines (y, x) on a 28 grid: a child's digits, deliberately unlike MNIST's pen strokes.
DIGIT_DRAWINGS = {
    "seven": [[(7, 7), (7, 20), (22, 11)]],
    "four": [[(6, 16), (17, 7), (17, 21)], [(10, 16), (23, 16)]],
    "zero": [[(6, 14), (9, 8), (16, 7), (22, 10), (23, 16), (19, 21), (11, 21), (6, 14)]],
}


def _canvas(size: int, color=(255, 255, 255)) -> np.ndarray:
    return np.full((size, size, 3), color, np.uint8)


def hand_drawn(name: str, size: int = 64) -> tuple[torch.Tensor, dict]:
    """A crude, child-like drawing made by our own code (1.7.1's hand-drawn inputs), deterministic;
    the names of DIGIT_DRAWINGS give digits (`drawn_digit`)."""
    from skimage import draw

    if name in DIGIT_DRAWINGS:
        return drawn_digit(name, size)
    s = size / 64
    img = _canvas(size)
    P = lambda *v: [int(round(a * s)) for a in v]  # noqa: E731  (coordinates on a 64 grid)
    if name == "house":
        img[P(44)[0]:, :] = (90, 170, 70)  # grass
        rr, cc = draw.rectangle(P(26, 16), P(50, 46), shape=img.shape[:2])
        img[rr, cc] = (200, 60, 50)
        rr, cc = draw.polygon(P(26, 8, 26), P(12, 31, 50), shape=img.shape[:2])
        img[rr, cc] = (120, 70, 40)
        rr, cc = draw.rectangle(P(36, 27), P(50, 35), shape=img.shape[:2])
        img[rr, cc] = (60, 40, 20)
        rr, cc = draw.disk(P(10, 54), 6 * s, shape=img.shape[:2])
        img[rr, cc] = (250, 210, 40)
    elif name == "flower":
        rr, cc = draw.rectangle(P(30, 30), P(63, 33), shape=img.shape[:2])
        img[rr, cc] = (40, 140, 40)
        for dy, dx in ((-9, 0), (9, 0), (0, -9), (0, 9), (-6, -6), (6, 6), (-6, 6), (6, -6)):
            rr, cc = draw.disk(P(24 + dy, 32 + dx), 6 * s, shape=img.shape[:2])
            img[rr, cc] = (230, 80, 160)
        rr, cc = draw.disk(P(24, 32), 5 * s, shape=img.shape[:2])
        img[rr, cc] = (250, 220, 50)
    elif name == "smiley":
        rr, cc = draw.disk(P(32, 32), 26 * s, shape=img.shape[:2])
        img[rr, cc] = (250, 215, 60)
        for x in (23, 41):
            rr, cc = draw.disk(P(25, x), 3.5 * s, shape=img.shape[:2])
            img[rr, cc] = (30, 30, 30)
        for x in range(20, 45):
            y = 38 + 0.02 * (x - 32) ** 2 * -1 + 6
            rr, cc = draw.disk(P(y, x), 1.5 * s, shape=img.shape[:2])
            img[rr, cc] = (30, 30, 30)
    else:
        raise UnknownName(f"unknown drawing {name!r}; valid: {', '.join(DRAWINGS + tuple(DIGIT_DRAWINGS))}")
    return _to_tensor(img), {"source": f"harness.images.hand_drawn({name!r})", "size": size}


def web_image(name: str = "landscape", size: int = 64) -> tuple[torch.Tensor, dict]:
    """A "web" picture, deterministic: "landscape", flat-coloured and cartoon-like (sky, sun, hills, a
    tree); "typed<d>", digit d typed in PIL's built-in font, white on black, as found on the web."""
    from skimage import draw

    if name.startswith("typed") and name[5:].isdigit():
        return _typed_digit(name[5:], size)
    if name != "landscape":
        raise UnknownName(f"unknown web image {name!r}; valid: landscape, typed0 .. typed9")
    s = size / 64
    P = lambda *v: [int(round(a * s)) for a in v]  # noqa: E731
    img = _canvas(size, (110, 180, 240))
    rr, cc = draw.ellipse(*P(70, 16), 40 * s, 36 * s, shape=img.shape[:2])
    img[rr, cc] = (70, 160, 60)
    rr, cc = draw.ellipse(*P(74, 52), 38 * s, 34 * s, shape=img.shape[:2])
    img[rr, cc] = (50, 130, 50)
    rr, cc = draw.disk(P(12, 50), 7 * s, shape=img.shape[:2])
    img[rr, cc] = (255, 220, 30)
    rr, cc = draw.rectangle(P(30, 20), P(48, 23), shape=img.shape[:2])
    img[rr, cc] = (110, 70, 30)
    rr, cc = draw.disk(P(26, 21), 9 * s, shape=img.shape[:2])
    img[rr, cc] = (30, 110, 40)
    return _to_tensor(img), {"source": "harness.images.web_image('landscape')", "size": size}


def _typed_digit(text: str, size: int) -> tuple[torch.Tensor, dict]:
    from PIL import ImageDraw, ImageFont

    pil = Image.new("L", (size, size))
    ImageDraw.Draw(pil).text((size / 2, size / 2), text, fill=255, font=ImageFont.load_default(size * 0.8), anchor="mm")
    return torch.from_numpy(np.array(pil)).float()[None] / 127.5 - 1, {"source": f"typed {text!r}, PIL default font"}


def stroke_edit(base: str, name: str, size: int = 64) -> tuple[torch.Tensor, dict]:
    """A test image with a few crude painted strokes (writeup 1's stroke edits): on a photo a yellow
    "moon" disc or a blue wavy "river" band; on an MNIST digit a white "bar" across its top or a
    "tail" down its right side."""
    from skimage import draw

    photo, meta = test_image(base, size)
    size = photo.shape[-1]
    img = ((photo.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    if name == "bar":
        img[int(size * 0.2):int(size * 0.3), int(size * 0.25):int(size * 0.75)] = 255
    elif name == "tail":
        img[int(size * 0.3):int(size * 0.85), int(size * 0.62):int(size * 0.7)] = 255
    elif name == "moon":
        rr, cc = draw.disk((size * 0.2, size * 0.78), size * 0.11, shape=img.shape[:2])
        img[rr, cc] = (245, 235, 120)
    elif name == "river":
        for x in range(size):
            y = size * 0.8 + size * 0.06 * np.sin(x / size * 2 * np.pi * 1.5)
            rr, cc = draw.disk((y, x), size * 0.06, shape=img.shape[:2])
            img[rr, cc] = (40, 90, 220)
    else:
        raise UnknownName(f"unknown stroke edit {name!r}; valid: {', '.join(STROKES + DIGIT_STROKES)}")
    return _to_tensor(img), {**meta, "stroke": name}


def mask(name: str, size: int = 64) -> torch.Tensor:
    """Inpainting masks (1, H, W): 1 = regenerate. center_top is the course's Campanile-top rectangle."""
    from skimage import draw

    m = np.zeros((size, size), np.float32)
    if name == "center_top":
        m[int(size * 0.03):int(size * 0.45), int(size * 0.38):int(size * 0.62)] = 1
    elif name == "rectangle":
        m[int(size * 0.25):int(size * 0.75), int(size * 0.25):int(size * 0.75)] = 1
    elif name == "ellipse":
        rr, cc = draw.ellipse(size * 0.45, size * 0.5, size * 0.3, size * 0.22, shape=m.shape)
        m[rr, cc] = 1
    else:
        raise UnknownName(f"unknown mask {name!r}; valid: {', '.join(MASKS)}")
    return torch.from_numpy(m)[None]


def _open(path: str | Path, what: str) -> Image.Image:
    try:
        pil = Image.open(path)
        pil.load()
        return pil
    except FileNotFoundError:
        raise BadImage(f"{what} {path} does not exist: check the path") from None
    except (UnidentifiedImageError, OSError) as e:
        raise BadImage(f"{what} {path} is not a readable image ({type(e).__name__}): save it as PNG or JPEG") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file."""
    return _open(path, "image").size


def load_image(path: str | Path, size: int = 64, channels: int = 3) -> torch.Tensor:
    """A user's photo as (channels, size, size) in [-1, 1]: RGB for channels 3 (RGBA: alpha dropped; L:
    grey replicated), grey (ITU-R 601 luma) for channels 1; non-square images are centre-cropped, then
    resized with bicubic antialiasing."""
    pil = _open(path, "image")
    if pil.mode not in ("RGB", "RGBA", "L", "P"):
        raise BadImage(f"image {path} has mode {pil.mode}; save it as 8-bit RGB (PNG or JPEG)")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    square = np.asarray(_square(pil.convert("RGB" if channels == 3 else "L"), size))
    return _to_tensor(square if channels == 3 else square[..., None])


def load_mask(path: str | Path, size: int = 64, image_size: tuple[int, int] | None = None) -> torch.Tensor:
    """A user's inpainting mask as (1, size, size) in {0, 1}: black (0) = keep, white (255) = regenerate.
    It must be binary and, when image_size is given, the same size as the image it goes with."""
    pil = _open(path, "mask")
    if image_size is not None and pil.size != tuple(image_size):
        raise BadImage(f"mask {path} is {pil.size[0]}x{pil.size[1]} but the image is "
                       f"{image_size[0]}x{image_size[1]}: draw the mask on the image's canvas")
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
    m = np.asarray(_square(binary, size).convert("L")) >= 128  # nearest-ish: threshold after resizing
    return torch.from_numpy(m.astype(np.float32))[None]


def check_image(x: torch.Tensor, name: str = "image", size: int | None = None) -> None:
    """Raise BadImage unless x is a float (3, H, W) / (N, 3, H, W) tensor in [-1, 1] (of size x size)."""
    if not torch.is_floating_point(x) or x.dim() not in (3, 4) or x.shape[-3] != 3:
        raise BadImage(f"{name} must be a float tensor (3, H, W) or (N, 3, H, W), got {x.dtype} {tuple(x.shape)}")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1 - 1e-6 or hi > 1 + 1e-6:
        raise BadImage(f"{name} has values in [{lo:.3g}, {hi:.3g}]; expected [-1, 1]: map uint8 with x / 127.5 - 1")
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        raise BadImage(f"{name} is {x.shape[-1]}x{x.shape[-2]}, expected {size}x{size}: resize it")


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
    return _to_tensor(np.asarray(_open(path, "image").convert("RGB")))


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
