"""Laying a case out in the report: each section's ``layout`` (written next to its run function, in
harness/sections/part_a.py and part_b.py, from the image names that function writes) fills `Rows` of
captioned pictures, as the writeups lay them out. Any image a layout does not place is shown under
"other outputs", so nothing a case wrote is hidden (and the reproductions fail on such an image)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from harness.report.assets import Assets, Picture
from harness.report.cases import Case


@dataclass
class Row:
    label: str
    pictures: list[Picture]


class Rows:
    """What a section's layout writes to: rows of pictures of one case (``case``, its parameters ``p``),
    remembering which of its files were placed."""

    def __init__(self, case: Case, assets: Assets):
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


def layout(case: Case, assets: Assets) -> list[Row]:
    """The case's rows, in its section's layout, then whatever images it wrote that the layout did not place."""
    r, rest = _laid_out(case, assets)
    r.row("other outputs", [assets.picture(case, name, name.rsplit(".", 1)[0]) for name in rest])
    return r.rows


def unplaced_images(case: Case) -> list[str]:
    """The images (PNG, GIF) a saved case wrote that its section's layout does not place: a renamed image
    the layout still looks for under its old name (the reproductions assert there are none)."""
    with tempfile.TemporaryDirectory() as tmp:
        return _laid_out(case, Assets(Path(tmp)))[1]


def _laid_out(case: Case, assets: Assets) -> tuple[Rows, list[str]]:
    r = Rows(case, assets)
    if case.section.layout is not None:
        case.section.layout(r)
    return r, sorted(p.name for p in case.folder.iterdir() if p.suffix in (".png", ".gif") and p.name not in r.used)
