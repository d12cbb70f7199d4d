"""Reading checkpoints safely and fitting their state dicts to a backbone.

Every file goes through :func:`safe_load`: ``torch.load(weights_only=True)`` with only
``argparse.Namespace`` allow-listed (the release stores its ``args`` that way), so a file that
needs arbitrary unpickling is refused before any of its code can run. The state-dict rules
(layouts, prefixes, 3-channel patch embeddings, position-embedding interpolation, geometry
inference) follow ``../shared/spec/SARJEPA.md`` section 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sarfewshot.errors import WeightsError
from sarfewshot.models.arch import ArchSpec
from sarfewshot.utils.io import PathLike, sha256_file

logger = logging.getLogger(__name__)

RELEASE_URL = "https://github.com/waterdisappear/SAR-JEPA"
KAGGLE_URL = "https://www.kaggle.com/models/liweijie19/sar-jepa"
HF_URL = "https://huggingface.co/kiki-orb/phi-JEPA"
# Not the GitHub release page: the README of RELEASE_URL links Kaggle and BaiduYun.
RELEASE_WHERE = (
    f"the SAR-JEPA authors host the weight files on Kaggle ({KAGGLE_URL}) and BaiduYun (linked "
    f"from {RELEASE_URL}, with every baseline's weights); a rehost is on Hugging Face ({HF_URL})"
)
RELEASE_HINT = (
    f"{RELEASE_WHERE}; download one and pass --weights PATH or put it in $SARFEWSHOT_WEIGHTS"
)
DEFAULT_PREFER = ("model", "state_dict", "encoder", "target_encoder")
STRIP_PREFIXES = ("module.", "backbone.", "encoder.")
# keys of the release's pretraining files that the evaluator never uses
RELEASE_EXTRA_KEYS = (
    "pos_embed",
    "mask_token",
    "encoder_pred.*",
    "decoder_*",
    "sarfeature*",
    "head.*",
)
RPE_TABLE_KEY = "blocks.0.attn.rpe_k.lookup_table_weight"
PATCH_KEY = "patch_embed.proj.weight"
# head counts of the standard ViT widths (plain-ViT weights do not reveal the head count)
STANDARD_HEADS = {192: 3, 384: 6, 512: 8, 768: 12, 1024: 16, 1280: 16, 1408: 16}
# SARMAE's pretraining file nests the MAE under this prefix beside optical / alignment modules
SARMAE_PREFIX = "sar_encoder."


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_GLOBAL = re.compile(r"GLOBAL\s+([A-Za-z_][\w.]*)")


def _unpickling_reason(exc: BaseException) -> tuple[str, str | None]:
    """torch's own reason for refusing a file, and the global it refused (None if none).

    torch's wording varies by version and case: an unknown global reads ``WeightsUnpickler
    error: Unsupported global: GLOBAL mod.Name was not an allowed global ...``, a global of a
    blocked module (``posix.system``: ``os.system`` pickled on Linux) reads ``Trying to load
    unsupported GLOBAL posix.system whose module posix is blocked``. The ``GLOBAL <name>``
    token is the stable part; without it the ``WeightsUnpickler error:`` detail is used, and
    without that the whole message.
    """
    text = _ANSI.sub("", str(exc))
    found = _GLOBAL.search(text)
    if found:
        start = text.rfind("\n", 0, found.start()) + 1
        end = text.find("\n", found.end())
        line = text[start : end if end >= 0 else len(text)]
        line = re.sub(r"^.*WeightsUnpickler error:\s*", "", line.strip())
        line = re.sub(r"^Unsupported global:\s*", "", line).split(" Please use")[0]
        return " ".join(line.split()).rstrip("."), found.group(1)
    detail = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\s*\n|$)", text, re.S)
    reason = detail.group(1) if detail else text
    return " ".join(reason.split()) or type(exc).__name__, None


def _refusal(path: Path, reason: str, name: str | None) -> str:
    accepted = (
        "only tensors, plain containers and argparse.Namespace are accepted, and nothing in the "
        "file was run. Re-save the weights as a plain state dict "
        "(torch.save(model.state_dict(), ...)) in an environment you trust"
    )
    if name:
        return (
            f"refusing to load {path}: it needs arbitrary unpickling of the disallowed global "
            f"{name} (torch: {reason}), which could run code hidden in the file; {accepted}"
        )
    return f"refusing to load {path}: not a weights-only torch checkpoint ({reason}); {accepted}"


def safe_load(path: PathLike) -> dict:
    """Load a checkpoint with ``torch.load(weights_only=True)`` (``argparse.Namespace`` allowed).

    Raises:
        WeightsError: the file is missing, needs arbitrary unpickling (refused, nothing in it
            runs), is not a readable torch file, or does not hold a dict.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"weights file not found: {p}; {RELEASE_HINT}")
    try:
        # a context, not add_safe_globals: the allow-list must not outlive this call
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(_refusal(p, *_unpickling_reason(exc))) from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a corrupt file
        raise WeightsError(
            f"cannot read {p} as a torch checkpoint: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{p} holds a {type(obj).__name__}, expected a dict (a state dict)")
    return dict(obj)


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def strip_prefixes(
    state_dict: Mapping[str, torch.Tensor], prefixes: Sequence[str] = STRIP_PREFIXES
) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes (``module.``, ``backbone.``, ``encoder.``) from every key.

    Prefixes are removed repeatedly (``module.encoder.blocks`` -> ``blocks``). Two keys that
    collapse onto one name are an error rather than a silent overwrite.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new = key
        while True:
            hit = next((p for p in prefixes if new.startswith(p)), None)
            if hit is None:
                break
            new = new[len(hit) :]
        if new in out:
            raise WeightsError(f"state dict keys collide after removing prefixes: {key!r} -> {new}")
        out[new] = value
    return out


def extract_state_dict(
    obj: Mapping[str, Any],
    prefer: Sequence[str] = DEFAULT_PREFER,
    source: PathLike | None = None,
) -> dict[str, torch.Tensor]:
    """Find the backbone state dict in a loaded checkpoint and strip wrapper prefixes.

    Accepted layouts: a bare state dict, or a dict holding one under the first of ``prefer``
    present (``model``, ``state_dict``, ``encoder``, ``target_encoder``).
    """
    where = f" in {source}" if source is not None else ""
    if _is_state_dict(obj):
        return strip_prefixes(obj)
    for key in prefer:
        if key in obj and _is_state_dict(obj[key]):
            return strip_prefixes(obj[key])
    raise WeightsError(
        f"no state dict found{where}: top-level keys are {sorted(map(str, obj))[:12]}; expected "
        f"a bare state dict or one under {list(prefer)}"
    )


def _block_indices(state_dict: Mapping[str, torch.Tensor]) -> list[int]:
    found = {int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k))}
    return sorted(found)


def _need(state_dict: Mapping[str, torch.Tensor], key: str, what: str) -> torch.Tensor:
    if key not in state_dict:
        raise WeightsError(f"cannot infer the {what}: the checkpoint has no {key!r}")
    return state_dict[key]


def _common_geometry(state_dict: Mapping[str, torch.Tensor]) -> dict:
    patch = _need(state_dict, PATCH_KEY, "patch embedding")
    if patch.ndim != 4 or patch.shape[-1] != patch.shape[-2]:
        raise WeightsError(f"{PATCH_KEY} has shape {tuple(patch.shape)}, expected (D, C, p, p)")
    depth = len(_block_indices(state_dict))
    if depth == 0 or _block_indices(state_dict) != list(range(depth)):
        raise WeightsError("cannot infer the depth: blocks.N.* keys are missing or not 0..N-1")
    dim = int(patch.shape[0])
    fc1 = _need(state_dict, "blocks.0.mlp.fc1.weight", "MLP ratio")
    return {
        "patch_size": int(patch.shape[-1]),
        "in_chans": int(patch.shape[1]),
        "embed_dim": dim,
        "depth": depth,
        "mlp_ratio": float(fc1.shape[0]) / dim,
        "qkv_bias": "blocks.0.attn.qkv.bias" in state_dict,
        "class_token": "cls_token" in state_dict,
    }


def infer_irpe_arch(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Geometry of an iRPE ViT from its (prefix-stripped) state dict.

    The head count is ``embed_dim / head_dim`` with ``head_dim`` read from the iRPE table shape
    ``(1, head_dim, 50)``. Returns keyword arguments of :class:`IRPEViT`, ``global_pool``
    included (``token`` with a class token, else ``avg``).
    """
    geo = _common_geometry(state_dict)
    table = _need(state_dict, RPE_TABLE_KEY, "head count")
    head_dim = int(table.shape[1])
    if table.ndim != 3 or head_dim == 0 or geo["embed_dim"] % head_dim:
        raise WeightsError(
            f"{RPE_TABLE_KEY} has shape {tuple(table.shape)}, which does not divide embed dim "
            f"{geo['embed_dim']} into heads"
        )
    geo["num_heads"] = geo["embed_dim"] // head_dim
    geo["global_pool"] = "token" if geo["class_token"] else "avg"
    return geo


def standard_heads(dim: int, what: str, full_spec: str, heads: int | None = None) -> int:
    """``heads`` if given, else the head count of a standard width (ViT-Ti/S/B/L/H, HiViT-B).

    Raises:
        WeightsError: for another width, asking for the partial ``--arch heads=H``.
    """
    if heads is not None:
        return heads
    if dim not in STANDARD_HEADS:
        raise WeightsError(
            f"{what}'s weights do not say its head count, and width {dim} is not a standard "
            f'one ({sorted(STANDARD_HEADS)}); pass --arch heads=H (Python: arch="heads=H"; '
            f"the rest is still inferred) or a full --arch {full_spec}"
        )
    return STANDARD_HEADS[dim]


def infer_vit_arch(state_dict: Mapping[str, torch.Tensor], heads: int | None = None) -> dict:
    """Geometry of a plain ViT (absolute ``pos_embed``).

    Its weights do not reveal the head count, so it comes from ``heads`` or the standard widths
    (ViT-Ti/S/B/L/H: 192/3, 384/6, 768/12, 1024/16, 1280/16); any other width needs it given.
    """
    geo = _common_geometry(state_dict)
    dim = geo["embed_dim"]
    full = (
        f"vit:patch={geo['patch_size']},dim={dim},depth={geo['depth']},heads=H"
        f"{'' if geo['class_token'] else ',cls=0'}"
    )
    geo["num_heads"] = standard_heads(dim, "a plain ViT", full, heads)
    geo["global_pool"] = "token" if geo["class_token"] else "avg"
    return geo


def _stage_layout(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Kind of each HiViT ``blocks.N``: ``stem`` (MLP only), ``merge`` or ``main`` (attention)."""
    kinds = []
    for i in _block_indices(state_dict):
        if f"blocks.{i}.reduction.weight" in state_dict:
            kinds.append("merge")
        else:
            kinds.append("main" if f"blocks.{i}.attn.qkv.weight" in state_dict else "stem")
    return kinds


def infer_hivit_arch(state_dict: Mapping[str, torch.Tensor], heads: int | None = None) -> dict:
    """Geometry of a HiViT (SARATR-X) from its keys: stages, widths, sub-patch grid, ratios."""
    kinds = _stage_layout(state_dict)
    if not kinds or kinds[-1] != "main" or "merge" not in kinds:
        raise WeightsError("cannot infer the HiViT stages: blocks.N.* keys are not stem/merge/main")
    cuts = [i for i, k in enumerate(kinds) if k == "merge"]
    bounds = [-1, *cuts]
    stems = [cuts[j] - bounds[j] - 1 for j in range(len(cuts))]
    if any(n % 2 for n in stems) or "merge" in kinds[cuts[-1] + 1 :]:
        raise WeightsError(f"HiViT stem stages of {stems} MLP blocks: expected an even count each")
    depths = (*(n // 2 for n in stems), len(kinds) - cuts[-1] - 1)
    conv = _need(state_dict, PATCH_KEY, "patch embedding")
    dim = int(_need(state_dict, f"blocks.{len(kinds) - 1}.attn.qkv.weight", "width").shape[1])
    main_fc1 = state_dict[f"blocks.{len(kinds) - 1}.mlp.fc1.weight"]
    stem_fc1 = state_dict.get("blocks.0.mlp.fc1.weight")
    patch = int(conv.shape[-1]) * 2 ** len(cuts)
    full = f"hivit:patch={patch},dim={dim},depths={'-'.join(map(str, depths))},heads=H"
    return {
        "patch_size": patch,
        "in_chans": int(conv.shape[1]),
        "embed_dim": dim,
        "depth": depths[-1],
        "depths": depths,
        "num_heads": standard_heads(dim, "a HiViT", full, heads),
        "mlp_ratio": float(main_fc1.shape[0]) / dim,
        "stem_mlp_ratio": float(stem_fc1.shape[0]) / conv.shape[0] if stem_fc1 is not None else 3.0,
        "qkv_bias": f"blocks.{len(kinds) - 1}.attn.qkv.bias" in state_dict,
        "class_token": False,
        "global_pool": "avg",
    }


#: What each detected checkpoint family is, for messages (see :func:`detect_family`).
FAMILY_LABELS = {
    "irpe": "the iRPE ViT of the SAR-JEPA release (blocks.N.attn.rpe_k tables)",
    "vit": "a plain timm ViT (absolute pos_embed, no iRPE tables)",
    "hivit": "a HiViT (SARATR-X: absolute_pos_embed, patch-merging blocks)",
    "sarmae": "a SARMAE pretraining file (the ViT nested under sar_encoder.)",
    None: "an unrecognised architecture (neither an iRPE table nor an absolute pos_embed)",
}


def detect_family(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The model family a (prefix-stripped) state dict belongs to, from its keys alone.

    ``"irpe"`` when it holds an iRPE table (``blocks.0.attn.rpe_k.lookup_table_weight``), whatever
    else it holds (the release's iRPE files carry an unused ``pos_embed``); ``"hivit"`` for an
    ``absolute_pos_embed`` with patch-merging blocks (SARATR-X); ``"sarmae"`` for a ViT nested
    under ``sar_encoder.`` (SARMAE); else ``"vit"`` when it has an absolute ``pos_embed`` (a timm /
    MAE / I-JEPA ViT); else None.
    """
    if RPE_TABLE_KEY in state_dict:
        return "irpe"
    merges = any(k.endswith(".reduction.weight") for k in state_dict)
    if "absolute_pos_embed" in state_dict and merges:
        return "hivit"
    if f"{SARMAE_PREFIX}pos_embed" in state_dict:
        return "sarmae"
    if "pos_embed" in state_dict:
        return "vit"
    return None


def unwrap_sarmae(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ViT of a SARMAE file: the ``sar_encoder.`` keys without the prefix (others dropped)."""
    n = len(SARMAE_PREFIX)
    return {k[n:]: v for k, v in state_dict.items() if k.startswith(SARMAE_PREFIX)}


def infer_arch(
    state_dict: Mapping[str, torch.Tensor], in_chans: int = 1, heads: int | None = None
) -> ArchSpec:
    """The :class:`ArchSpec` a state dict was trained with.

    The family comes from :func:`detect_family`, the geometry from the tensor shapes; ``heads``
    supplies the head count that plain-ViT and HiViT weights do not store. A 3-channel patch
    embedding becomes ``in_chans`` (1) since :func:`adapt_state_dict` sums it; pass
    ``in_chans=3`` to keep it (the model-specific input adaptation then replicates the chip).
    """
    family = detect_family(state_dict)
    if family == "sarmae":
        state_dict, family = unwrap_sarmae(state_dict), "vit"
    if family == "irpe":
        geo = infer_irpe_arch(state_dict)
        if heads is not None:
            geo["num_heads"] = heads
    elif family == "vit":
        geo = infer_vit_arch(state_dict, heads)
    elif family == "hivit":
        geo = infer_hivit_arch(state_dict, heads)
    else:
        raise WeightsError(
            "cannot tell the architecture: the checkpoint has neither an iRPE table "
            f"({RPE_TABLE_KEY}) nor an absolute pos_embed; pass --arch"
        )
    geo.pop("global_pool")
    if geo["in_chans"] == 3 and in_chans == 1:
        geo["in_chans"] = 1
    return ArchSpec(family=family, **geo)


def interpolate_pos_embed(
    pos_embed: torch.Tensor, grid: int, num_prefix_tokens: int
) -> torch.Tensor:
    """Resize an absolute position embedding ``(1, P + g*g, D)`` to ``grid x grid`` (bicubic)."""
    n = pos_embed.shape[1] - num_prefix_tokens
    old = int(round(n**0.5))
    if old * old != n:
        raise WeightsError(
            f"pos_embed of shape {tuple(pos_embed.shape)} is not {num_prefix_tokens} prefix "
            "token(s) plus a square grid"
        )
    if old == grid:
        return pos_embed
    prefix, spatial = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    dim = spatial.shape[-1]
    spatial = spatial.reshape(1, old, old, dim).permute(0, 3, 1, 2).float()
    spatial = F.interpolate(spatial, size=(grid, grid), mode="bicubic", align_corners=False)
    spatial = spatial.permute(0, 2, 3, 1).reshape(1, grid * grid, dim).to(pos_embed.dtype)
    return torch.cat([prefix, spatial], dim=1)


def adapt_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    in_chans: int = 1,
    grid: int | None = None,
    num_prefix_tokens: int = 1,
) -> dict[str, torch.Tensor]:
    """Fit a state dict to a one-channel model at a given grid (returns a new dict).

    - A 3-channel patch embedding is summed over its channels: on a gray image replicated to
      three channels that is exactly the same convolution.
    - An absolute ``pos_embed`` (plain ViTs; pass ``grid``) is interpolated bicubically to
      ``grid x grid``; the ``num_prefix_tokens`` leading entries are kept as they are.
    """
    out = dict(state_dict)
    weight = out.get(PATCH_KEY)
    if weight is not None and weight.ndim == 4 and weight.shape[1] == 3 and in_chans == 1:
        out[PATCH_KEY] = weight.sum(dim=1, keepdim=True)
        logger.info("summed the 3-channel patch embedding to 1 channel")
    if grid is not None and "pos_embed" in out:
        out["pos_embed"] = interpolate_pos_embed(out["pos_embed"], grid, num_prefix_tokens)
    if grid is not None and "absolute_pos_embed" in out:  # HiViT: no prefix tokens
        out["absolute_pos_embed"] = interpolate_pos_embed(out["absolute_pos_embed"], grid, 0)
    return out


@dataclasses.dataclass
class LoadReport:
    """What a checkpoint load did: which keys were loaded, missing and unexpected."""

    path: str
    sha256: str
    loaded: list[str]
    missing: list[str]
    unexpected: list[str]
    ignored: list[str]

    def counts(self) -> dict[str, int]:
        """Key counts for logs and records (``ignored`` is the part of ``unexpected`` allowed)."""
        return {
            "loaded": len(self.loaded),
            "missing": len(self.missing),
            "unexpected": len(self.unexpected),
            "ignored": len(self.ignored),
        }

    def summary(self) -> str:
        """One log line."""
        c = self.counts()
        return (
            f"loaded {c['loaded']} tensors from {self.path} (sha256 {self.sha256[:12]}): "
            f"missing {c['missing']}, unexpected {c['unexpected']} ({c['ignored']} ignored)"
        )


def _matches(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _check_shapes(model_sd: Mapping[str, torch.Tensor], state_dict: Mapping, path: str) -> None:
    bad = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(model_sd[k].shape)}"
        for k, v in state_dict.items()
        if k in model_sd and tuple(v.shape) != tuple(model_sd[k].shape)
    ]
    if bad:
        raise WeightsError(
            f"{path} does not fit the backbone ({len(bad)} shape mismatch(es)): "
            + "; ".join(bad[:4])
            + "; pass the matching --arch or leave it empty to infer it"
        )


def load_checked(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    path: PathLike,
    allowed_missing: Sequence[str] = (),
    ignore_unexpected: Sequence[str] = RELEASE_EXTRA_KEYS,
    sha256: str | None = None,
) -> LoadReport:
    """Copy ``state_dict`` into ``model`` and report; never a silent random init.

    Raises:
        WeightsError: a shape differs; a model key is missing that no ``allowed_missing``
            pattern covers; or an unexpected key looks like part of this backbone (same top-level
            module, e.g. ``blocks.12.*`` for a 12-block model), which means the wrong
            architecture. Other unexpected keys (pretraining heads, decoders) are logged.
    """
    path = str(path)
    model_sd = model.state_dict()
    _check_shapes(model_sd, state_dict, path)
    missing = [k for k in model_sd if k not in state_dict]
    forbidden = [k for k in missing if not _matches(k, allowed_missing)]
    if forbidden:
        raise WeightsError(
            f"{path} lacks {len(forbidden)} backbone key(s), e.g. {forbidden[:5]}; refusing to "
            "leave them randomly initialised (wrong file or wrong --arch?)"
        )
    unexpected = [k for k in state_dict if k not in model_sd]
    ignored = [k for k in unexpected if _matches(k, ignore_unexpected)]
    roots = {k.split(".")[0] for k in model_sd}
    clash = [k for k in unexpected if k not in ignored and k.split(".")[0] in roots]
    if clash:
        raise WeightsError(
            f"{path} has {len(clash)} key(s) this backbone lacks, e.g. {clash[:5]}; the "
            "architecture does not match the file (leave --arch empty to infer it)"
        )
    others = [k for k in unexpected if k not in ignored]
    if others:
        logger.warning("%s: %d unexpected key(s) not used: %s", path, len(others), others[:8])
    loaded = [k for k in state_dict if k in model_sd]
    model.load_state_dict({k: state_dict[k] for k in loaded}, strict=False)
    report = LoadReport(path, sha256 or sha256_file(path), loaded, missing, unexpected, ignored)
    logger.info(report.summary())
    return report
