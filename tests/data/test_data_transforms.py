"""Evaluation transforms: the release preset bit for bit, padding, dB and 16-bit scaling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from yacs.config import CfgNode

from sarfewshot.data.io import SARImage
from sarfewshot.data.transforms import (
    PreprocessSpec,
    build_eval_transform,
    center_crop_pad,
    preprocess_uint8,
    spec_from_cfg,
)
from sarfewshot.errors import ConfigError
from tests import fakes


def _release_reference(arr: np.ndarray) -> torch.Tensor:
    """The release's transform: PIL 'L' -> CenterCrop(128) -> Resize(224, bicubic) -> ToTensor."""
    tv = pytest.importorskip("torchvision.transforms")
    ref = tv.Compose(
        [
            tv.CenterCrop(128),
            tv.Resize(224, interpolation=tv.InterpolationMode.BICUBIC),
            tv.ToTensor(),
        ]
    )
    return ref(Image.fromarray(arr))


@pytest.mark.parametrize("shape", [(128, 128), (128, 129), (193, 192), (100, 90), (60, 131)])
def test_release_preset_is_bit_exact_on_8bit(shape):
    arr = fakes.chip(np.random.default_rng(sum(shape)), *shape)
    got = build_eval_transform()(arr)
    assert got.shape == (1, 224, 224) and got.dtype == torch.float32
    assert torch.equal(got, _release_reference(arr))
    if min(shape) >= 128:  # a plain PIL reference too: crop box, then bicubic resize, then /255
        h, w = shape
        top, left = int(round((h - 128) / 2)), int(round((w - 128) / 2))
        pil = Image.fromarray(arr).crop((left, top, left + 128, top + 128))
        pil = pil.resize((224, 224), Image.Resampling.BICUBIC)
        assert torch.equal(got[0], torch.from_numpy(np.array(pil)).float() / 255)
    exact = preprocess_uint8(SARImage(arr.astype(np.float32), nominal_max=255.0), PreprocessSpec())
    assert exact.dtype == np.uint8
    assert torch.equal(torch.from_numpy(exact).float().div(255).unsqueeze(0), got)


def test_small_chips_are_zero_padded_not_upscaled():
    arr = np.full((21, 25), 200, dtype=np.uint8)
    out = center_crop_pad(arr, 32)
    assert out.shape == (32, 32)
    # torchvision's rule: the extra pixel of an odd padding goes right/bottom.
    rows, cols = np.nonzero(out)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (5, 25, 3, 27)
    t = build_eval_transform(PreprocessSpec(crop=32, size=32))(arr)
    assert torch.equal(t[0], torch.from_numpy(out).float() / 255)


def test_no_crop_resizes_whole_chip():
    arr = fakes.chip(np.random.default_rng(0), 40, 40)
    t = build_eval_transform(PreprocessSpec(crop=None, size=40))(arr)
    assert torch.equal(t[0], torch.from_numpy(arr).float() / 255)


def test_db_mode_maps_range_to_unit_interval():
    levels = 255.0 * 10 ** (np.array([0.0, -15.0, -30.0, -60.0]) / 20)
    img = SARImage(np.tile(levels.astype(np.float32), (4, 1)), nominal_max=255.0)
    spec = PreprocessSpec(crop=None, size=4, interpolation="nearest", amplitude="db")
    row = build_eval_transform(spec)(img)[0, 0].numpy()
    np.testing.assert_allclose(row, [1.0, 0.5, 0.0, 0.0], atol=1e-5)  # -60 dB clips to 0
    spec2 = PreprocessSpec(
        crop=None, size=4, interpolation="nearest", amplitude="db", db_range=(-60.0, 0.0)
    )
    row2 = build_eval_transform(spec2)(img)[0, 0].numpy()
    np.testing.assert_allclose(row2, [1.0, 0.75, 0.5, 0.0], atol=1e-5)


def test_16bit_linear_keeps_precision():
    arr = np.array([[1000, 1001], [65535, 0]], dtype=np.uint16)
    spec = PreprocessSpec(crop=None, size=2, interpolation="nearest")
    t = build_eval_transform(spec)(arr)[0].numpy()
    np.testing.assert_allclose(t, arr / 65535.0, rtol=1e-6)
    assert t[0, 0] != t[0, 1]  # one 16-bit step survives (8-bit would merge them)


def test_float_data_scaled_by_its_999th_percentile():
    flt = np.linspace(0, 2.0, 625, dtype=np.float32).reshape(25, 25)
    spec = PreprocessSpec(crop=None, size=25, interpolation="nearest")
    got = build_eval_transform(spec)(flt)[0].numpy()
    want = np.clip(flt / np.percentile(flt, 99.9), 0, 1)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got.max() == 1.0 and (got == 1.0).sum() == 1  # only the top 0.1 % saturates


def test_normalize_and_pickle():
    spec = PreprocessSpec(crop=None, size=8, normalize=True, mean=0.5, std=0.25)
    arr = np.full((8, 8), 255, dtype=np.uint8)
    tf = build_eval_transform(spec)
    assert torch.allclose(tf(arr), torch.full((1, 8, 8), 2.0))
    again = pickle.loads(pickle.dumps(tf))  # DataLoader workers pickle transforms
    assert torch.equal(again(arr), tf(arr))


def test_spec_from_cfg_and_key():
    cfg = CfgNode(
        {
            "INPUT": CfgNode(
                {
                    "SIZE": (64, 64),
                    "INTERPOLATION": "bilinear",
                    "PIXEL_MEAN": [0.2],
                    "PIXEL_STD": [0.5],
                    "SAR": CfgNode(
                        {"CROP": 0, "AMPLITUDE": "db", "DB_RANGE": (-40.0, 0.0), "NORMALIZE": True}
                    ),
                }
            )
        }
    )
    spec = spec_from_cfg(cfg)
    assert spec == PreprocessSpec(
        crop=None,
        size=64,
        interpolation="bilinear",
        amplitude="db",
        db_range=(-40.0, 0.0),
        normalize=True,
        mean=0.2,
        std=0.5,
    )
    assert spec.key() == "c0-s64-bilinear-db--40_0-n0.2_0.5"
    assert spec_from_cfg(CfgNode({})) == PreprocessSpec()  # release preset by default
    assert PreprocessSpec().key() == "c128-s224-bicubic-linear"
    with pytest.raises(ConfigError, match="INPUT.SAR.AMPLITUDE"):
        PreprocessSpec(amplitude="log")
    with pytest.raises(ConfigError, match="INPUT.SIZE"):
        spec_from_cfg(CfgNode({"INPUT": CfgNode({"SIZE": (64, 32)})}))
