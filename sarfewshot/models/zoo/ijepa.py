"""I-JEPA-format files (the I-JEPA release's layout, phi-JEPA's rehost, this toolkit's
``pretrain --method ijepa``) and the ``ijepa`` backbone name that reads them.

An I-JEPA file holds three networks: the context ``encoder``, the ``predictor`` and the EMA
``target_encoder``, either as three top-level state dicts (the release's ``src/train.py``) or as
one flat state dict with those three key prefixes (this toolkit). The layout is unambiguous, and
so is its reading: the paper evaluates the target encoder, mean-pooled, and a 3-channel file
expects ImageNet-normalised RGB. A file of this layout given under another backbone name (``mae``,
``fgmae``, ``lomar``...) would load the context encoder without that input adaptation and record
the wrong name, so it is refused unless ``--arch`` says what to build; ``ijepa`` in turn refuses a
file without the layout. The ViT itself is the plain-ViT family of
:mod:`~sarfewshot.models.zoo.timm`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sarfewshot.models.checkpoint import RELEASE_EXTRA_KEYS
from sarfewshot.models.family import FileFormat, register_file_format
from sarfewshot.models.hub import WeightSource
from sarfewshot.models.registry import BackboneSpec, zoo_backbone
from sarfewshot.models.zoo.release import RELEASE_SOURCES

IJEPA_PARTS = ("encoder", "predictor", "target_encoder")
IJEPA_RULE = (
    "I-JEPA file {'encoder', 'predictor', 'target_encoder', ...}: 'target_encoder' with 'module.'"
    " stripped; or one flat dict with encoder.* keys (target_encoder.* and predictor.* ignored);"
    " plain ViT without class token, pos_embed interpolated; features = mean of the normed"
    " patch tokens; a 3-channel file gets the chip copied to 3 channels + ImageNet normalisation"
)


def _flat_roots(obj: Mapping[str, Any]) -> set[str]:
    inner = next((obj[k] for k in ("model", "state_dict") if isinstance(obj.get(k), Mapping)), obj)
    keys = (k for k in inner if isinstance(k, str))
    return {k.removeprefix("module.").split(".", 1)[0] for k in keys}


def is_ijepa_layout(obj: Mapping[str, Any]) -> bool:
    """Whether a loaded file holds I-JEPA's encoder, predictor and target encoder."""
    if all(isinstance(obj.get(part), Mapping) for part in IJEPA_PARTS):
        return True
    return set(IJEPA_PARTS) <= _flat_roots(obj)


register_file_format(
    FileFormat(
        name="ijepa",
        label="top-level or key-prefix 'encoder', 'predictor' and 'target_encoder' networks",
        detect=is_ijepa_layout,
        readers=("ijepa",),
    )
)


@zoo_backbone("ijepa")
def ijepa_spec() -> BackboneSpec:
    """The target encoder of an I-JEPA file, mean-pooled (the paper's linear-probe feature)."""
    return BackboneSpec(
        name="ijepa",
        description="I-JEPA: latent targets from an EMA encoder (no class token, mean-pooled)",
        family="timm",
        default_arch="vit_base_patch16_nocls",
        checkpoint_format=IJEPA_RULE,
        expected_file="ijepa.pth",
        pooling="avg",
        accepts=("vit",),
        # an I-JEPA file's target_encoder is the encoder the paper evaluates
        prefer=("target_encoder", "model", "state_dict", "encoder"),
        # one flat state dict (this toolkit's pretraining) also holds the EMA copy and the predictor
        ignore_unexpected=(*RELEASE_EXTRA_KEYS, "target_encoder.*", "predictor.*"),
        input_adapter="grey3_imagenet",
        feature="mean of the target encoder's normed output tokens (I-JEPA paper, linear probe)",
        sources=(
            WeightSource(
                "hf",
                "kiki-orb/phi-JEPA",
                "weights/ijepa_vitb16_e100.pth.tar",
                note="phi-JEPA, 3 ch",
            ),
            *RELEASE_SOURCES[:2],
        ),
    )
