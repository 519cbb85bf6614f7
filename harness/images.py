"""The pictures sections start from: test photos standing in for the course's, MNIST test digits, the
project's own drawings and stroke edits, and inpainting masks, all deterministic.

Images are float32 tensors (3, H, W) or (N, 3, H, W) in [-1, 1]; masks are (1, H, W) with
1 = region to regenerate and 0 = region to keep. (User files: `harness.user_inputs`; files and grids:
`harness.image_io`.)
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from harness.errors import BadImage, UnknownName
from harness.image_io import square_crop, to_tensor

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
    return to_tensor(np.asarray(square_crop(pil, size))), meta


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
    return to_tensor(img), {"source": f"harness.images.hand_drawn({name!r})", "size": size}


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
    return to_tensor(img), {"source": "harness.images.web_image('landscape')", "size": size}


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
    return to_tensor(img), {**meta, "stroke": name}


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
