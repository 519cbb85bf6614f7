"""The layout primitives: a section's layout (the ``show_*`` next to its run function) writes `Rows` of
captioned `Picture`s of one saved case, as the writeups lay them out; `Assets` puts the pictures in the
report folder, so it is self-contained (case images copied, tiles cut from one-row strips, images derived
for display: an inpainting `hole`, a `shrink`-ed hybrid), at integer nearest-neighbour display sizes
(CSS ``image-rendering: pixelated`` keeps small images sharp). `harness.report.layouts` runs the layouts."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image, ImageChops

PAD = 2  # harness.image_io.make_grid's padding between tiles


class SavedCase(Protocol):
    """What layouts read of a saved case (`harness.report.cases.Case`): the folder of its images, its
    anchor in the report, its metrics and its meta (parameters, prompts, images)."""

    folder: Path
    metrics: dict[str, float]
    meta: dict

    @property
    def anchor(self) -> str: ...

    def has(self, name: str) -> bool: ...


@dataclass(frozen=True)
class Picture:
    """An image of the report: src relative to index.html; width/height the display size."""

    src: str
    width: int
    height: int
    caption: str = ""


def display_size(width: int, height: int, target: int) -> tuple[int, int]:
    """Scale by the largest integer that keeps the height within ``target`` (at least 1, at most 960 wide)."""
    k = max(1, min(target // height, 960 // width))
    return width * k, height * k


class Assets:
    """Writes pictures under ``dest/img/<case anchor>/`` and describes them for the templates."""

    def __init__(self, dest: Path):
        self.dest = Path(dest)

    def picture(self, case: SavedCase, file: str, caption: str = "", target: int = 192) -> Picture | None:
        """A case's PNG or GIF, copied; None when the case did not write it."""
        return self.copy(case, case.folder / file, file, caption, target)

    def copy(self, case: SavedCase, src: Path, file: str, caption: str = "", target: int = 192) -> Picture | None:
        """Copy ``src`` to the case's folder of the report as ``file``; None when ``src`` does not exist."""
        if not src.exists():
            return None
        rel = Path("img") / case.anchor / file
        (self.dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, self.dest / rel)
        with Image.open(src) as im:
            return Picture(rel.as_posix(), *display_size(*im.size, target), caption)

    def tiles(self, case: SavedCase, name: str) -> list[Image.Image]:
        """The images of a one-row strip ``name.png`` (square tiles, make_grid layout); [] when absent."""
        path = case.folder / f"{name}.png"
        if not path.exists():
            return []
        with Image.open(path) as im:
            strip = im.convert("RGB")
        side = strip.height - 2 * PAD
        n, extra = divmod(strip.width - PAD, side + PAD)
        if side <= 0 or extra:
            return [strip]  # not a one-row strip of squares: show it whole
        return [strip.crop((PAD + j * (side + PAD), PAD, PAD + j * (side + PAD) + side, PAD + side)) for j in range(n)]

    def derived(self, case: SavedCase, file: str, image: Image.Image, caption: str = "", target: int = 192) -> Picture:
        """An image made for display (a tile, a hole, a shrunk copy), saved as PNG."""
        rel = Path("img") / case.anchor / file
        (self.dest / rel).parent.mkdir(parents=True, exist_ok=True)
        image.save(self.dest / rel)
        return Picture(rel.as_posix(), *display_size(*image.size, target), caption)


def hole(image: Image.Image, mask: Image.Image) -> Image.Image:
    """The inpainting "hole to fill": the image where it is kept, black where the mask (white) regenerates."""
    return ImageChops.multiply(image.convert("RGB"), ImageChops.invert(mask.convert("RGB")))


def shrink(image: Image.Image, factor: int = 4) -> Image.Image:
    """A hybrid seen from far away: the image downsampled by ``factor`` (area average)."""
    return image.resize((max(1, image.width // factor), max(1, image.height // factor)), Image.Resampling.BOX)


@dataclass
class Row:
    label: str
    pictures: list[Picture]


class Rows:
    """What a section's layout writes to: rows of pictures of one case (``case``, its parameters ``p``),
    remembering which of its files were placed."""

    def __init__(self, case: SavedCase, assets: Assets):
        self.case, self.assets, self.used, self.rows = case, assets, set(), []
        self.p = case.meta.get("params", {})

    def pic(self, name: str, caption: str = "", target: int = 192, ext: str = "png") -> Picture | None:
        self.used.add(f"{name}.{ext}")
        return self.assets.picture(self.case, f"{name}.{ext}", caption, target)

    def tile(self, name: str, j: int, caption: str = "", target: int = 128) -> Picture | None:
        """The j-th image of the one-row strip ``name`` (cut out so rows can follow one photo)."""
        self.used.add(f"{name}.png")
        tiles = self.assets.tiles(self.case, name)
        if j >= len(tiles):
            return None
        return self.assets.derived(self.case, f"{name}__{j}.png", tiles[j], caption, target)

    def count(self, name: str) -> int:
        return len(self.assets.tiles(self.case, name))

    def derived(self, file: str, image, caption: str = "", target: int = 192) -> Picture:
        """A picture made for display from the case's images (a PIL image), e.g. an inpainting hole."""
        return self.assets.derived(self.case, file, image, caption, target)

    def row(self, label: str, pictures: list[Picture | None]) -> None:
        pictures = [p for p in pictures if p is not None]
        if pictures:
            self.rows.append(Row(label, pictures))
