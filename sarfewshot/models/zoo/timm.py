"""timm networks: plain ViTs read from files (MAE, LoMaR, FG-MAE, SARMAE, I-JEPA encoders) and
any named timm model (``timm:<model_name>``).

Two families: ``vit`` (a timm ``VisionTransformer`` built from an :class:`ArchSpec`; files with an
absolute ``pos_embed`` and no iRPE table) and ``timm`` (a named timm model, geometry fixed by its
name). Both are wrapped in :class:`TimmBackbone` for the ``forward_features(x) -> (B, D)``
contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Callable

import torch
from torch import nn

from sarfewshot.errors import ConfigError, UnknownNameError
from sarfewshot.models.arch import ArchSpec
from sarfewshot.models.family import Constructor, family, name_prefix
from sarfewshot.models.geometry import common_geometry, standard_heads
from sarfewshot.models.hub import WeightSource
from sarfewshot.models.registry import BackboneSpec

TIMM_PREFIX = "timm:"
# timm's ViT blocks: attn.qkv (fused query/key/value) and attn.proj (attention output)
VIT_LORA_TARGETS = ("qkv", "proj")
# the same layers named by their parent too (peft matches name suffixes): "proj" alone would
# also catch patch_embed.proj (a conv) and an attention-pooling head's proj
BLOCK_ATTN_LORA_TARGETS = ("attn.qkv", "attn.proj")


class TimmBackbone(nn.Module):
    """A timm model (no head) with the toolkit's ``forward_features(x) -> (B, D)`` contract.

    Features are timm's pre-logits: the class token after the final norm for ``global_pool=
    "token"``, the mean of the normed patch tokens for ``"avg"`` (I-JEPA encoders).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.num_features = int(model.num_features)

    @property
    def load_target(self) -> nn.Module:
        """The module whose state dict a checkpoint fills (timm's own key names)."""
        return self.model

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, S, S)`` -> features ``(B, D)``."""
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


class ClassAndPatchMean(TimmBackbone):
    """The DINO linear-evaluation readout: class token and mean patch token, concatenated.

    Both come from the last block after the final norm; the mean skips every prefix token
    (class and register tokens), so the feature is ``2 x width`` wide.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.num_features = 2 * int(model.num_features)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, S, S)`` -> ``[class token, mean patch token]`` ``(B, 2D)``."""
        tokens = self.model.forward_features(x)
        patches = tokens[:, int(self.model.num_prefix_tokens) :]
        return torch.cat([tokens[:, 0], patches.mean(dim=1)], dim=1)


def check_patch_multiple(img_size: int, patch: int, name: str) -> None:
    """Refuse an input side that is not a multiple of the patch size (ConfigError)."""
    if img_size >= patch and img_size % patch == 0:
        return
    lower = max(patch, img_size // patch * patch)
    raise ConfigError(
        f"--img-size {img_size}: backbone {name!r} takes a multiple of its patch size {patch} "
        f"(e.g. --img-size {lower} or {lower + patch}); another side would leave pixels outside "
        "every patch"
    )


def create_hub_model(
    models: Mapping[tuple[int, int, int], str], arch: ArchSpec, img_size: int, name: str, **kw
) -> nn.Module:
    """The timm model of ``arch`` at its own pretraining grid, run at ``img_size`` inputs.

    Args:
        models: ``(patch, width, depth) -> timm model name`` of one family.
        arch: the geometry asked for (``chans`` sets the input channels).
        img_size: the input side, a multiple of the patch size (else ConfigError).
        name: the backbone name, for messages.
        kw: further ``timm.create_model`` arguments (``num_classes``...).

    Built with ``dynamic_img_size``: a hub file loads at the grid it was trained on, and timm
    resamples the position embedding (or RoPE grid) to each input's grid as its own
    pretrained models do, so the features equal timm's forward of the same input.
    """
    import timm

    timm_name = models.get((arch.patch_size, arch.embed_dim, arch.depth))
    if timm_name is None:
        known = ", ".join(f"patch={p},dim={d},depth={n}" for p, d, n in models)
        raise ConfigError(
            f"arch {arch.to_string()!r}: timm has no {arch.family} model of that geometry "
            f"(known: {known})"
        )
    check_patch_multiple(img_size, arch.patch_size, name)
    kw.setdefault("num_classes", 0)
    return timm.create_model(
        timm_name, pretrained=False, in_chans=arch.in_chans, dynamic_img_size=True, **kw
    )


def hub_constructor(
    models: Mapping[tuple[int, int, int], str], readout: Callable[[nn.Module], nn.Module], **kw
) -> Constructor:
    """A family's ``construct`` hook: :func:`create_hub_model` of ``models`` behind ``readout``
    (a :class:`TimmBackbone` subclass saying which tensor is the feature)."""

    def construct(
        arch: ArchSpec, img_size: int, seed: int, key: str, drop_path_rate: float = 0.0
    ) -> nn.Module:
        return readout(
            create_hub_model(models, arch, img_size, key, drop_path_rate=drop_path_rate, **kw)
        )

    return construct


def hub_spec(name: str, family: str, tag: str, arch: str, **fields) -> BackboneSpec:
    """The spec of a named model read from timm's Hugging Face file ``timm/<tag>``.

    Its weights default to that hub file (``hub_default``), a copy named ``<name>.safetensors``
    in the weights folder wins; the geometry is the name's (``fixed_arch``).
    """
    fields.setdefault("sources", (WeightSource("hf", f"timm/{tag}", "model.safetensors"),))
    return BackboneSpec(
        name=name,
        family=family,
        default_arch=arch,
        checkpoint_format=f"timm's state dict of {tag} as .safetensors (read with safetensors)",
        expected_file=f"{name}.safetensors",
        ignore_unexpected=(),
        accepts=(family,),
        fixed_arch=True,
        hub_default=True,
        **fields,
    )


def infer_vit_arch(state_dict: Mapping[str, torch.Tensor], heads: int | None = None) -> dict:
    """Geometry of a plain ViT (absolute ``pos_embed``).

    Its weights do not reveal the head count, so it comes from ``heads`` or the standard widths
    (ViT-Ti/S/B/L/H: 192/3, 384/6, 768/12, 1024/16, 1280/16); any other width needs it given.
    """
    geo = common_geometry(state_dict)
    dim = geo["embed_dim"]
    full = (
        f"vit:patch={geo['patch_size']},dim={dim},depth={geo['depth']},heads=H"
        f"{'' if geo['class_token'] else ',cls=0'}"
    )
    geo["num_heads"] = standard_heads(dim, "a plain ViT", full, heads)
    geo["global_pool"] = "token" if geo["class_token"] else "avg"
    return geo


@family(
    "vit",
    label="a plain timm ViT (absolute pos_embed, no iRPE tables)",
    detect=lambda sd: "pos_embed" in sd,
    order=90,  # last: the most general rule
    infer=infer_vit_arch,
    fc_norm_option=True,
    record_family="timm",
    lora_targets=VIT_LORA_TARGETS,
)
def construct_vit(
    arch: ArchSpec, img_size: int, seed: int, key: str, drop_path_rate: float = 0.0
) -> nn.Module:
    """A timm ``VisionTransformer`` of ``arch`` (its own init under the caller's forked RNG)."""
    from timm.models.vision_transformer import VisionTransformer

    # fc_norm=False keeps the final norm on every token, then pools (I-JEPA); fc_norm=True pools
    # the un-normed tokens into a fresh LayerNorm (the MAE fine-tuning readout: SARMAE)
    return TimmBackbone(
        VisionTransformer(
            img_size=img_size,
            patch_size=arch.patch_size,
            in_chans=arch.in_chans,
            num_classes=0,
            embed_dim=arch.embed_dim,
            depth=arch.depth,
            num_heads=arch.num_heads,
            mlp_ratio=arch.mlp_ratio,
            qkv_bias=arch.qkv_bias,
            class_token=arch.class_token,
            global_pool=arch.global_pool,
            fc_norm=arch.fc_norm,
        )
    )


@family(
    "timm",
    label="a named timm model",
    own_readout=True,
    record_family="timm",
    lora_targets=VIT_LORA_TARGETS,
)
def construct_named(
    arch: ArchSpec, img_size: int, seed: int, key: str, drop_path_rate: float = 0.0
) -> nn.Module:
    """The timm model ``arch.timm_name`` (no head), at ``img_size`` when it takes one."""
    import timm

    name = arch.timm_name or ""
    if not timm.list_models(name):
        raise UnknownNameError(
            f"unknown timm model {name!r}; see timm.list_models() (e.g. timm:vit_small_patch16_224)"
        )
    kwargs = {"pretrained": False, "in_chans": arch.in_chans, "num_classes": 0}
    try:
        return TimmBackbone(timm.create_model(name, img_size=img_size, **kwargs))
    except TypeError:  # models without an img_size argument (CNNs) take any size
        return TimmBackbone(timm.create_model(name, **kwargs))


@name_prefix(TIMM_PREFIX)
def timm_spec(name: str) -> BackboneSpec:
    """The spec of ``timm:<model_name>``: random init unless ``--weights``."""
    model = name[len(TIMM_PREFIX) :].strip()
    if not model:
        raise ConfigError(
            f"backbone {name!r}: give a timm model name, e.g. timm:vit_small_patch16_224"
        )
    return BackboneSpec(
        name=f"{TIMM_PREFIX}{model}",
        description=f"timm {model} (in_chans=1, no head); random init unless --weights",
        family="timm",
        default_arch=f"timm:{model}",
        checkpoint_format="'model' / 'state_dict' / bare timm state dict; pos_embed interpolated",
        expected_file=None,
        needs_weights=False,
        accepts=("vit",),
        fixed_arch=True,
    )
