"""iRPE buckets and the iRPE ViT against the release's reference vectors; SDPA vs plain softmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sarfewshot.models import build_backbone
from sarfewshot.models.irpe import IRPEKeys, irpe_bucket_ids
from sarfewshot.models.vit_irpe import IRPEViT
from sarfewshot.utils.io import sha256_file
from tests.models.modelkit import ref_bucket_table

CKPT = "irpe_vit_tiny_pretrain_ckpt.pth"


@pytest.fixture(scope="module")
def vectors(vectors_dir):
    return dict(np.load(vectors_dir / "irpe_vit_tiny_features.npz"))


@pytest.mark.parametrize("grid", [14, 8, 7])
def test_bucket_ids_match_vectors(vectors, grid):
    got = irpe_bucket_ids(grid).numpy()
    ref = vectors[f"bucket_ids_{grid}x{grid}"]
    assert got.shape == ref.shape == (grid * grid + 1,) * 2
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("grid,skip", [(5, 1), (9, 0), (20, 1)])
def test_bucket_ids_match_spec_formula(grid, skip):
    assert torch.equal(irpe_bucket_ids(grid, skip), ref_bucket_table(grid, skip))


def test_bucket_ids_are_cached_and_bounded():
    assert irpe_bucket_ids(8) is irpe_bucket_ids(8)
    ids = irpe_bucket_ids(16)
    assert ids.min() == 0 and ids.max() == 49 and ids.dtype == torch.long


def test_irpe_keys_is_the_gathered_dot_product():
    gen = torch.Generator().manual_seed(3)
    rpe = IRPEKeys(head_dim=4)
    with torch.no_grad():
        rpe.lookup_table_weight.copy_(torch.randn(1, 4, 50, generator=gen))
    q = torch.randn(2, 3, 10, 4, generator=gen)  # 1 class token + 3x3 grid
    ids = irpe_bucket_ids(3)
    want = torch.einsum("bhid,ijd->bhij", q, rpe.lookup_table_weight[0].T[ids])
    assert torch.allclose(rpe(q), want, atol=1e-6)
    with pytest.raises(ValueError, match="square grid"):
        rpe(torch.randn(1, 1, 11, 4))


@pytest.mark.parametrize("size", [224, 128])
def test_features_reproduce_vectors(vectors_dir, vectors, size):
    ckpt = vectors_dir / CKPT
    net = build_backbone("sarjepa", weights=ckpt, img_size=size).eval()
    with torch.inference_mode():
        got = net.forward_features(torch.from_numpy(vectors[f"input_{size}"])).numpy()
    diff = float(np.abs(got - vectors[f"cls_features_{size}"]).max())
    assert diff <= 1e-4, f"max abs diff {diff:.2e} at {size}"
    info = net.backbone_info
    assert info["arch"] == "irpe:patch=16,dim=192,depth=2,heads=3"
    assert info["weights_sha256"] == sha256_file(ckpt)
    # 31 encoder tensors; pos_embed, mask_token, encoder_pred, decoder_*, sarfeature* ignored
    assert info["load"]["loaded"] == 31 and info["load"]["missing"] == 0
    assert info["load"]["unexpected"] == info["load"]["ignored"] > 0


def _micro(seed: int) -> IRPEViT:
    net = build_backbone("random", arch="irpe_vit_micro_patch8", seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "lookup_table" in name or name == "cls_token":
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return net


def _features_and_grads(net: IRPEViT, x: torch.Tensor, fused: bool):
    net.set_fused_attention(fused)
    net.zero_grad()
    out = net.forward_features(x)
    (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in net.named_parameters()}


def test_sdpa_equals_plain_softmax_with_gradients():
    net = _micro(0)
    with torch.inference_mode():  # bucket ids first cached under inference mode must not leak
        net.forward_features(torch.rand(1, 1, 40, 40))
    x = torch.rand(3, 1, 40, 40, generator=torch.Generator().manual_seed(1))
    f_sdpa, g_sdpa = _features_and_grads(net, x, fused=True)
    f_plain, g_plain = _features_and_grads(net, x, fused=False)
    assert torch.allclose(f_sdpa, f_plain, atol=1e-5)
    assert g_sdpa.keys() == g_plain.keys()
    for name in g_sdpa:
        assert torch.allclose(g_sdpa[name], g_plain[name], atol=1e-5), name
    table_grad = g_sdpa["blocks.0.attn.rpe_k.lookup_table_weight"]
    assert table_grad.abs().max() > 0  # the bias really flows through the SDPA attn_mask


def test_any_square_grid_and_bad_shapes():
    net = _micro(0).eval()
    with torch.inference_mode():
        for size in (16, 40, 64):
            assert net.forward_features(torch.rand(1, 1, size, size)).shape == (1, 64)
    with pytest.raises(ValueError, match="square"):
        net.forward_features(torch.rand(1, 1, 32, 40))
    tokens = net.with_class_token(net.embed(torch.rand(2, 1, 32, 32)))
    assert net.forward_sequence(tokens).shape == (2, 17, 64)
