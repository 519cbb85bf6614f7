"""Stand-ins for the modules a course notebook imports that cannot be imported here (`loader` binds them).

- Display-only (`DISPLAY`: mediapy, matplotlib, IPython, google.colab, ipywidgets): a `StandIn`, whose
  attributes are stand-ins and whose calls do nothing.
- torchvision, where ``import torchvision`` fails (PyPI has only its CUDA build; with the CPU torch it
  raises "operator torchvision::nms does not exist"; where it imports it is used unchanged): the modules
  ``torchvision``, ``torchvision.transforms`` and ``torchvision.transforms.functional``, whose functions
  follow torchvision's v1 ``transforms.functional`` for what the course calls:

  - ``gaussian_blur(img, kernel_size, sigma=None)``: kernel_size an odd int or (kx, ky); sigma None
    (0.15 k + 0.35 per axis, OpenCV's rule), a number or (sx, sy), > 0; the 1-D kernels
    exp(-x^2 / (2 sigma^2)) over x = linspace(-(k-1)/2, (k-1)/2, k), normalised, their outer product (ky, kx)
    applied per channel after reflect padding of k // 2 (the edge pixel not repeated); an integer image is
    blurred in float32 and rounded back;
  - ``rotate(img, angle, ..., expand=False, center=None)`` by a multiple of 90 degrees, counter-clockwise for
    a positive angle (``torch.rot90``; on a square image, or with expand, or a half turn, torchvision's
    nearest-neighbour affine map gives exactly that);
  - ``hflip``, ``vflip`` (the last and second-last axes), ``to_tensor`` (HWC uint8 -> CHW float / 255; other
    dtypes unscaled), ``to_pil_image`` (CHW float * 255 truncated to uint8: L, RGB or RGBA);

  PIL images go through PIL as torchvision sends them. Any other attribute is a callable that raises one
  line naming it.
"""

from __future__ import annotations

import functools
import types
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

DISPLAY = ("mediapy", "matplotlib", "IPython", "google.colab", "ipywidgets")
TORCHVISION_FUNCTIONS = ("gaussian_blur", "rotate", "hflip", "vflip", "to_tensor", "to_pil_image")
NOTES = {"display": "not installed here and only used for display: a stand-in whose calls do nothing",
         "torchvision": "torchvision cannot be imported here: a stand-in faithful to torchvision for "
                        + ", ".join(TORCHVISION_FUNCTIONS) + " (rotate by multiples of 90); any other call raises"}


class StandIn:
    """A display-only module that is not installed here: its attributes are stand-ins, its calls do nothing."""

    def __init__(self, name: str):
        self.__name__ = name

    def __getattr__(self, attr: str) -> "StandIn":
        if attr.startswith("__"):
            raise AttributeError(attr)
        return type(self)(f"{self.__name__}.{attr}")

    def __call__(self, *_: Any, **__: Any) -> "StandIn":
        return self

    def __repr__(self) -> str:
        return f"<stand-in for {self.__name__}>"


class Missing(StandIn):
    """What the torchvision stand-in lacks: attributes are more of it, a call raises one line naming it."""

    def __call__(self, *_: Any, **__: Any) -> Any:
        raise NotImplementedError(f"{self.__name__} is not in the harness's torchvision stand-in (torchvision cannot "
                                  f"be imported here; it has {', '.join(TORCHVISION_FUNCTIONS)}): write it with torch")


def kind(name: str) -> str | None:
    """'display', 'torchvision' or None: which stand-in an import of ``name`` may get."""
    under = lambda top: name == top or name.startswith(top + ".")  # noqa: E731
    if any(under(m) for m in DISPLAY):
        return "display"
    return "torchvision" if under("torchvision") else None


@functools.lru_cache(maxsize=1)
def torchvision_importable() -> bool:
    """Whether ``import torchvision`` works here (any exception: it does not)."""
    try:
        import torchvision  # noqa: F401
    except Exception:
        return False
    return True


def stand_in(name: str, fromlist: Sequence[str] | None) -> Any:
    """What ``__import__(name, fromlist=fromlist)`` returns for a module that gets a stand-in: the named module
    itself with a fromlist, else the top-level one (Python then reads the rest as attributes)."""
    if kind(name) == "display":
        return StandIn(name if fromlist else name.split(".")[0])
    tv = _torchvision()
    if not fromlist:
        return tv
    module = tv
    for part in name.split(".")[1:]:
        module = getattr(module, part)
    return module


@functools.lru_cache(maxsize=1)
def _torchvision() -> types.ModuleType:
    tv, tr, fn = (types.ModuleType(n) for n in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"))
    tv.transforms, tr.functional = tr, fn
    for name in TORCHVISION_FUNCTIONS:
        setattr(fn, name, globals()[name])
    for module in (tv, tr, fn):
        module.__getattr__ = functools.partial(_missing, module.__name__)  # PEP 562: a module's missing attributes
    return tv


def _missing(module: str, attr: str) -> Missing:
    if attr.startswith("__"):
        raise AttributeError(attr)
    return Missing(f"{module}.{attr}")


def _pil(img: Any) -> bool:
    return type(img).__module__.startswith("PIL.")


def _pair(value: Any, what: str) -> list:
    if isinstance(value, (int, float)):
        return [value, value]
    if isinstance(value, (list, tuple)) and len(value) in (1, 2):
        return [value[0], value[-1]]
    raise ValueError(f"gaussian_blur: {what} should be a number or a sequence of one or two, got {value!r}")


def _kernel1d(k: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.linspace(-(k - 1) * 0.5, (k - 1) * 0.5, steps=k, dtype=dtype, device=device)
    pdf = torch.exp(-0.5 * (x / sigma).pow(2))
    return pdf / pdf.sum()


def gaussian_blur(img: Any, kernel_size: Any, sigma: Any = None) -> Any:
    """torchvision.transforms.functional.gaussian_blur (see the module docstring)."""
    ks = [int(k) for k in _pair(kernel_size, "kernel_size")]
    if any(k % 2 == 0 or k < 0 for k in ks):
        raise ValueError(f"kernel_size should have odd and positive integers. Got {kernel_size}")
    sig = [k * 0.15 + 0.35 for k in ks] if sigma is None else [float(s) for s in _pair(sigma, "sigma")]
    if any(s <= 0 for s in sig):
        raise ValueError(f"sigma should have positive values. Got {sigma}")
    if _pil(img):
        return to_pil_image(gaussian_blur(torch.from_numpy(np.array(img)).reshape(img.size[1], img.size[0], -1)
                                          .permute(2, 0, 1), ks, sig), mode=img.mode)
    dtype = img.dtype if img.is_floating_point() else torch.float32
    kx, ky = (_kernel1d(k, s, dtype, img.device) for k, s in zip(ks, sig))
    kernel = torch.mm(ky[:, None], kx[None, :])
    x = img if img.dim() >= 4 else img.unsqueeze(0)
    x = x.to(dtype)
    c = x.shape[-3]
    x = F.pad(x, [ks[0] // 2, ks[0] // 2, ks[1] // 2, ks[1] // 2], mode="reflect")
    x = F.conv2d(x, kernel.expand(c, 1, *kernel.shape), groups=c)
    x = x if img.dim() >= 4 else x.squeeze(0)
    return x if img.is_floating_point() else torch.round(x).to(img.dtype)


def rotate(img: Any, angle: float, interpolation: Any = None, expand: bool = False, center: Any = None,
           fill: Any = None) -> Any:
    """torchvision.transforms.functional.rotate by a multiple of 90 degrees (see the module docstring)."""
    if _pil(img):
        return img.rotate(angle, expand=expand, center=center)
    if float(angle) % 90 != 0:
        raise NotImplementedError(f"rotate by {angle} degrees is not in the harness's torchvision stand-in (it "
                                  f"turns by multiples of 90): use torch.rot90")
    k = int(float(angle) // 90) % 4
    h, w = img.shape[-2:]
    if k % 2 and h != w and not expand:
        raise NotImplementedError(f"rotate by {angle} degrees of a non-square {h}x{w} image without expand is not "
                                  f"in the harness's torchvision stand-in: pass expand=True or a square image")
    if center is not None and [float(c) for c in center] != [(w - 1) * 0.5, (h - 1) * 0.5] and k:
        raise NotImplementedError("rotate about a center other than the image's is not in the harness's "
                                  "torchvision stand-in: leave center out")
    return torch.rot90(img, k, dims=(-2, -1))


def hflip(img: Any) -> Any:
    """torchvision.transforms.functional.hflip: the last axis reversed."""
    return img.transpose(0) if _pil(img) else img.flip(-1)  # PIL's Image.FLIP_LEFT_RIGHT is 0


def vflip(img: Any) -> Any:
    """torchvision.transforms.functional.vflip: the second-last axis reversed."""
    return img.transpose(1) if _pil(img) else img.flip(-2)  # PIL's Image.FLIP_TOP_BOTTOM is 1


def to_tensor(pic: Any) -> torch.Tensor:
    """torchvision.transforms.functional.to_tensor: HWC (or HW) to CHW; uint8 scaled to [0, 1] as float32."""
    arr = np.array(pic) if _pil(pic) else pic
    if not isinstance(arr, np.ndarray) or arr.ndim not in (2, 3):
        raise TypeError(f"to_tensor: pic should be a PIL Image or a 2-D or 3-D ndarray, got {type(pic).__name__}")
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).contiguous()
    return x.to(torch.get_default_dtype()).div(255) if x.dtype == torch.uint8 else x


def to_pil_image(pic: Any, mode: str | None = None) -> Any:
    """torchvision.transforms.functional.to_pil_image: CHW (or HW) float times 255 truncated to uint8."""
    from PIL import Image

    if isinstance(pic, np.ndarray):  # HWC or HW
        pic = torch.from_numpy(pic[:, :, None] if pic.ndim == 2 else pic).permute(2, 0, 1)
    x = pic[None] if pic.dim() == 2 else pic
    if x.is_floating_point() and mode != "F":
        x = x.mul(255).byte()
    arr = x.permute(1, 2, 0).cpu().numpy()
    if arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"to_pil_image: {arr.shape[-1]} channels: expected 1, 3 or 4")
    image = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    return image if mode in (None, image.mode) else image.convert(mode)

