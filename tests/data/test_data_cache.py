"""Preprocessed-tensor cache: compact storage, exact values, stale caches rebuilt."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import sarfewshot.data.cache as cache_mod
from sarfewshot.data.cache import as_float, load_image_tensor, manifest_path
from sarfewshot.data.transforms import PreprocessSpec, build_eval_transform
from sarfewshot.errors import ImageReadError
from tests import fakes

SPEC = PreprocessSpec(crop=24, size=32)


def _chips(folder, n=4):
    rng = np.random.default_rng(0)
    return [
        str(fakes.write_image(folder / f"{i}.png", fakes.chip(rng, 20 + i, 26))) for i in range(n)
    ]


def test_8bit_images_stored_as_uint8_and_exact(tmp_path):
    paths = _chips(tmp_path)
    t = load_image_tensor(paths, SPEC, progress=False)
    assert t.dtype == torch.uint8 and t.shape == (4, 1, 32, 32)
    tf = build_eval_transform(SPEC)
    for i, p in enumerate(paths):
        assert torch.equal(as_float(t[i]), tf(p))


def test_16bit_images_switch_to_float32(tmp_path):
    paths = _chips(tmp_path, 2)
    arr16 = (np.arange(30 * 30).reshape(30, 30) * 70) % 65536
    paths.insert(1, str(fakes.write_png16(tmp_path / "deep.png", arr16)))
    t = load_image_tensor(paths, SPEC, progress=False)
    assert t.dtype == torch.float32
    tf = build_eval_transform(SPEC)
    for i, p in enumerate(paths):
        assert torch.equal(as_float(t[i]), tf(p))
    assert len(torch.unique(t[1])) > 256  # more levels than 8 bits could hold


def test_disk_cache_reused_and_stale_cache_rebuilt(tmp_path, monkeypatch):
    paths = _chips(tmp_path / "img")
    cache_file = tmp_path / "cache" / "x.npy"
    first = load_image_tensor(paths, SPEC, cache_file=cache_file, progress=False)
    assert cache_file.is_file() and manifest_path(cache_file).is_file()
    assert np.load(cache_file, allow_pickle=False).dtype == np.uint8

    calls = []
    real = cache_mod.read_sar
    monkeypatch.setattr(cache_mod, "read_sar", lambda p: calls.append(p) or real(p))
    again = load_image_tensor(paths, SPEC, cache_file=cache_file, progress=False)
    assert torch.equal(first, again) and calls == []  # read from disk, nothing decoded

    other = PreprocessSpec(crop=24, size=16)
    assert load_image_tensor(paths, other, cache_file=cache_file, progress=False).shape[-1] == 16
    assert len(calls) == 4  # another preprocessing: rebuilt
    load_image_tensor(paths[:3], other, cache_file=cache_file, progress=False)
    assert len(calls) == 7  # other images: rebuilt
    fakes.write_image(tmp_path / "img" / "0.png", np.zeros((20, 26), np.uint8))
    os.utime(paths[0], ns=(1, 1))
    rebuilt = load_image_tensor(paths[:3], other, cache_file=cache_file, progress=False)
    assert len(calls) == 10 and rebuilt[0].max() == 0  # an edited file: rebuilt


def test_unreadable_image_named(tmp_path):
    paths = _chips(tmp_path, 2)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageReadError, match="broken.png"):
        load_image_tensor([*paths, str(bad)], SPEC, progress=False)
