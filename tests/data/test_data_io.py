"""The SAR image reader: every format, precision kept, bad files named, non-images ignored."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sarfewshot.data.io import (
    find_images,
    is_image_file,
    read_mstar_phoenix,
    read_phoenix_header,
    read_sar,
    read_sar_image,
)
from sarfewshot.errors import ImageReadError
from tests import fakes


def test_8bit_formats_read_exactly(tmp_path):
    arr = fakes.chip(np.random.default_rng(1), 20, 30)
    for ext in (".png", ".tif", ".bmp"):
        path = fakes.write_image(tmp_path / f"a{ext}", arr)
        img = read_sar(path)
        assert img.nominal_max == 255.0 and img.is_8bit
        assert img.amplitude.dtype == np.float32 and img.amplitude.shape == (20, 30)
        np.testing.assert_array_equal(img.amplitude, arr.astype(np.float32))


def test_jpeg_and_rgb_read_as_one_channel(tmp_path):
    arr = fakes.chip(np.random.default_rng(2))
    jpg = fakes.write_image(tmp_path / "a.JPEG", arr)
    got = read_sar_image(jpg)
    assert got.shape == arr.shape and np.abs(got - arr).mean() < 8  # lossy, but the same image
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.stack([arr] * 3, axis=-1)).save(rgb)
    np.testing.assert_array_equal(read_sar_image(rgb), arr.astype(np.float32))


@pytest.mark.parametrize("writer", [fakes.write_png16, fakes.write_tiff16])
def test_16bit_kept_at_full_precision(tmp_path, writer):
    arr = (np.arange(40 * 50, dtype=np.int64).reshape(40, 50) * 31 + 7) % 65536
    path = writer(tmp_path / ("a.png" if writer is fakes.write_png16 else "a.tif"), arr)
    img = read_sar(path)
    assert img.nominal_max == 65535.0 and not img.is_8bit
    # Odd values and values above 255 survive: nothing was quantised to 8 bits.
    np.testing.assert_array_equal(img.amplitude.astype(np.int64), arr)
    assert img.amplitude.max() > 60000 and (img.amplitude % 2 == 1).any()


def test_float_tiff_read_as_stored(tmp_path):
    arr = np.random.default_rng(3).random((17, 23)).astype(np.float32) * 1e-2
    img = read_sar(fakes.write_float_tiff(tmp_path / "f.tiff", arr))
    assert img.nominal_max is None
    np.testing.assert_array_equal(img.amplitude, arr)


def test_raw_phoenix_magnitude_phase_and_header(tmp_path):
    rng = np.random.default_rng(4)
    mag = rng.random((10, 14)).astype(np.float32)
    phase = rng.uniform(-3, 3, (10, 14)).astype(np.float32)
    path = fakes.write_phoenix(tmp_path / "HB00001.000", mag, phase, TargetType="t72_tank")
    img = read_mstar_phoenix(path)
    np.testing.assert_array_equal(img.amplitude, mag)
    np.testing.assert_array_equal(img.phase, phase)
    assert img.header["NumberOfRows"] == "10" and img.header["NumberOfColumns"] == "14"
    assert img.header["TargetType"] == "t72_tank"
    assert read_phoenix_header(path)["TargetType"] == "t72_tank"
    np.testing.assert_array_equal(read_sar_image(path), mag)  # dispatch by extension
    noext = tmp_path / "scene_without_extension"
    noext.write_bytes(path.read_bytes())
    assert is_image_file(noext)  # found by its header
    np.testing.assert_array_equal(read_sar_image(noext), mag)


def test_truncated_and_empty_files_name_the_file(tmp_path):
    raw = fakes.phoenix_bytes(np.ones((8, 8), np.float32))
    cut = tmp_path / "HB00002.001"
    cut.write_bytes(raw[:-5])
    with pytest.raises(ImageReadError, match="HB00002.001.*truncated|truncated.*HB00002.001"):
        read_sar(cut)
    png = fakes.write_image(tmp_path / "ok.png", fakes.chip(np.random.default_rng(0), 64, 64))
    bad = tmp_path / "cut.png"
    bad.write_bytes(png.read_bytes()[: len(png.read_bytes()) // 2])
    with pytest.raises(ImageReadError, match="cut.png"):
        read_sar(bad)
    for name in ("empty.jpeg", "empty.000"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(ImageReadError, match=f"empty.*{name}"):
            read_sar(tmp_path / name)
    (tmp_path / "text.png").write_text("not a png")
    with pytest.raises(ImageReadError, match="text.png"):
        read_sar(tmp_path / "text.png")
    with pytest.raises(ImageReadError, match="missing.tif"):
        read_sar(tmp_path / "missing.tif")


def test_find_images_ignores_non_images(tmp_path):
    arr = fakes.chip(np.random.default_rng(5))
    wanted = [
        fakes.write_image(tmp_path / "b" / "x.PNG", arr),
        fakes.write_image(tmp_path / "a" / "deep" / "y.Tif", arr),
        fakes.write_phoenix(tmp_path / "a" / "HB1.015", np.ones((4, 4), np.float32)),
    ]
    fakes.add_junk(tmp_path / "a")
    fakes.write_image(tmp_path / ".hiddendir" / "z.png", arr)
    assert find_images(tmp_path) == sorted(wanted)
    assert find_images(tmp_path / "b", recursive=False) == [wanted[0]]
    for junk in ("Thumbs.db", "notes.txt", "labels.csv", ".hidden.jpeg"):
        assert not is_image_file(tmp_path / "a" / junk)
