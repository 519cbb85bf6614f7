"""Test images, drawings, masks, user inputs (and their one-line errors), PNG I/O and grids."""

import numpy as np
import pytest
import torch
from PIL import Image

from harness import image_io, user_inputs
from harness import images as im
from harness.errors import BadImage, UnknownName


@pytest.mark.parametrize("name", list(im.TEST_IMAGES))
def test_test_images(name):
    x, meta = im.test_image(name)
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
    assert meta["source"] == f"skimage.data.{name}" and meta["license"]
    assert torch.equal(x, im.test_image(name)[0])


def test_drawings_strokes_and_masks_are_distinct_and_in_range():
    pics = [im.hand_drawn(n)[0] for n in im.DRAWINGS] + [im.web_image()[0]]
    pics += [im.stroke_edit("astronaut", n)[0] for n in im.STROKES]
    for i, a in enumerate(pics):
        assert a.shape == (3, 64, 64) and a.dtype == torch.float32 and -1 <= a.min() and a.max() <= 1
        assert all(not torch.equal(a, b) for b in pics[i + 1:])
    assert not torch.equal(im.stroke_edit("astronaut", "moon")[0], im.test_image("astronaut")[0])
    for name in im.MASKS:
        m = im.mask(name)
        assert m.shape == (1, 64, 64) and set(m.unique().tolist()) == {0.0, 1.0}
    with pytest.raises(UnknownName, match="valid: rocket"):
        im.test_image("campanile")


def _one_line_naming(err, path):
    msg = str(err.value)
    assert "\n" not in msg and path.name in msg
    return msg


def test_load_image_accepts_rgb_grey_and_crops(tmp_path):
    rgb = np.zeros((40, 80, 3), np.uint8)
    rgb[:, 20:60] = 255  # the centre square is white
    Image.fromarray(rgb).save(tmp_path / "wide.png")
    x = user_inputs.load_image(tmp_path / "wide.png")
    assert x.shape == (3, 64, 64) and x.min() > 0.99
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    assert user_inputs.load_image(tmp_path / "grey.png").shape == (3, 64, 64)


def test_bad_user_images_get_one_line_errors(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(BadImage) as err:
        user_inputs.load_image(text)
    assert "not a readable image" in _one_line_naming(err, text)
    cmyk = tmp_path / "print.jpg"
    Image.new("CMYK", (64, 64)).save(cmyk)
    with pytest.raises(BadImage) as err:
        user_inputs.load_image(cmyk)
    assert "mode CMYK" in _one_line_naming(err, cmyk)
    with pytest.raises(BadImage, match="does not exist"):
        user_inputs.load_image(tmp_path / "missing.png")


def test_masks_must_be_binary_and_take_the_image_size(tmp_path):
    grey = np.zeros((64, 64), np.uint8)
    grey[10:20] = 128
    grey[30:40] = 255
    Image.fromarray(grey).save(tmp_path / "soft.png")
    with pytest.raises(BadImage) as err:
        user_inputs.load_mask(tmp_path / "soft.png")
    assert "not binary (found 3 distinct values)" in _one_line_naming(err, tmp_path / "soft.png")
    good = np.where(grey == 255, 255, 0).astype(np.uint8)
    Image.fromarray(good).save(tmp_path / "m.png")
    m = user_inputs.load_mask(tmp_path / "m.png", image_size=(64, 64))
    assert m.shape == (1, 64, 64) and m[0, 35, 5] == 1 and m[0, 5, 5] == 0
    # another size than the image's: resized to it (nearest: still binary), then cropped as the image is
    wide = user_inputs.load_mask(tmp_path / "m.png", image_size=(128, 64))
    assert wide.shape == (1, 64, 64) and set(wide.unique().tolist()) == {0.0, 1.0}
    assert wide[0, 35, 5] == 1 and wide[0, 5, 5] == 0


def test_png_round_trip_is_atomic(tmp_path):
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    image_io.save_png(tmp_path / "a.png", x)
    assert (image_io.read_png(tmp_path / "a.png") - x).abs().max() <= 1 / 127.5 + 1e-6
    image_io.save_png(tmp_path / "a.png", -x)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_grid_and_upscale():
    g = image_io.make_grid(torch.zeros(5, 3, 8, 8), nrow=3, pad=2)
    assert g.shape == (3, 2 * 10 + 2, 3 * 10 + 2) and g[0, 0, 0] == 1 and g[0, 2, 2] == 0
    assert image_io.upscale_nearest(torch.zeros(3, 8, 8), 4).shape == (3, 32, 32)


def test_load_image_in_grey_is_the_luma_of_the_photo(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "p.png")
    grey = user_inputs.load_image(tmp_path / "p.png", size=40, channels=1)
    want = np.asarray(Image.fromarray(rgb).convert("L"), np.float32) / 255 * 2 - 1
    assert grey.shape == (1, 40, 40) and np.allclose(grey[0].numpy(), want, atol=1e-6)
