"""Reading checkpoints safely and fitting their state dicts to a backbone.

Every file goes through :func:`safe_load`: ``torch.load(weights_only=True)`` with only
``argparse.Namespace`` allow-listed (the release stores its ``args`` that way), so a file that
needs arbitrary unpickling is refused before any of its code can run. The state-dict rules
(layouts, prefixes, 3-channel patch embeddings, position-embedding interpolation) follow
``../shared/spec/SARJEPA.md`` section 2; a loaded tensor that is not finite is refused. Nothing
here knows a model family: those are :mod:`sarfewshot.models.zoo`'s.
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
# keys of MAE-style pretraining files (mask token, decoder, final norm, head) no encoder uses
MAE_EXTRA_KEYS = ("norm.*", "mask_token", "decoder_*", "head.*")
PATCH_KEY = "patch_embed.proj.weight"


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

    A safetensors file (hub weights: the ``.safetensors`` suffix, or its header under another
    name, e.g. a Hugging Face cache blob) is read with ``safetensors`` instead.

    Raises:
        WeightsError: the file is missing, needs arbitrary unpickling (refused, nothing in it
            runs), is not a readable torch file, or does not hold a dict.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"weights file not found: {p}; {RELEASE_HINT}")
    if is_safetensors(p):
        return _load_safetensors(p)
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


def is_safetensors(path: Path) -> bool:
    """A ``.safetensors`` name, or the format's header: an 8-byte little-endian length, then a
    JSON object (``{``) of that length. A torch file starts with a zip or pickle header."""
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 2 <= int.from_bytes(head[:8], "little") <= path.stat().st_size - 8


def _load_safetensors(path: Path) -> dict:
    """A ``.safetensors`` file (hub weights): tensors only, so nothing to unpickle."""
    from safetensors.torch import load_file

    try:
        return dict(load_file(str(path), device="cpu"))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise WeightsError(
            f"cannot read {path} as safetensors: {type(exc).__name__}: {exc}"
        ) from exc


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


# (file, key, old grid, new grid) already reported: a grid builds one backbone many times
_INTERPOLATIONS_SAID: set[tuple[str, str, int, int]] = set()


def _say_interpolated(source: object, key: str, old: int, new: int) -> None:
    said = (str(source), key, old, new)
    if said in _INTERPOLATIONS_SAID:
        return
    _INTERPOLATIONS_SAID.add(said)
    logger.warning(
        "%s: position embedding %s interpolated (bicubic) from a %dx%d to a %dx%d token grid: "
        "the weights were trained at another image size than --img-size; features differ from "
        "those at the training size",
        source if source is not None else "checkpoint",
        key,
        old,
        old,
        new,
        new,
    )


def adapt_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    in_chans: int = 1,
    grids: Mapping[str, int] | None = None,
    num_prefix_tokens: int = 1,
    source: PathLike | None = None,
) -> dict[str, torch.Tensor]:
    """Fit a state dict to a one-channel model at a given grid (returns a new dict).

    - A 3-channel patch embedding is summed over its channels: on a gray image replicated to
      three channels that is exactly the same convolution.
    - Each absolute position embedding named in ``grids`` (key -> the model's grid side) is
      interpolated bicubically to that grid, keeping its ``num_prefix_tokens`` leading entries;
      each interpolation is logged once per file, key and grid sizes.
    """
    out = dict(state_dict)
    weight = out.get(PATCH_KEY)
    if weight is not None and weight.ndim == 4 and weight.shape[1] == 3 and in_chans == 1:
        out[PATCH_KEY] = weight.sum(dim=1, keepdim=True)
        logger.info("summed the 3-channel patch embedding to 1 channel")
    for key, grid in (grids or {}).items():
        if key not in out:
            continue
        before = out[key]
        out[key] = interpolate_pos_embed(before, grid, num_prefix_tokens)
        if out[key] is not before:
            old = int(round((before.shape[1] - num_prefix_tokens) ** 0.5))
            _say_interpolated(source, key, old, grid)
    return out


def first_non_finite(state_dict: Mapping[str, torch.Tensor], keys: Sequence[str]) -> str | None:
    """The first floating tensor among ``keys`` of ``state_dict`` with a NaN or an infinity."""
    for key in keys:
        value = state_dict[key]
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return key
    return None


def check_finite(
    state_dict: Mapping[str, torch.Tensor], path: PathLike, keys: Sequence[str] | None = None
) -> None:
    """Refuse weights holding a NaN or an infinity: they would make every feature NaN.

    Raises:
        WeightsError: naming the file, the first bad tensor (in file order) and its bad count.
    """
    bad = first_non_finite(state_dict, list(state_dict) if keys is None else keys)
    if bad is None:
        return
    value = state_dict[bad]
    count = int((~torch.isfinite(value)).sum())
    raise WeightsError(
        f"{path}: tensor {bad!r} holds {count} non-finite value(s) (NaN or inf) of "
        f"{value.numel()}; refusing weights that would make every feature NaN (a diverged or "
        "corrupted checkpoint: use an earlier one, or download the file again)"
    )


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
    check_finite(state_dict, path, loaded)
    model.load_state_dict({k: state_dict[k] for k in loaded}, strict=False)
    report = LoadReport(path, sha256 or sha256_file(path), loaded, missing, unexpected, ignored)
    logger.info(report.summary())
    return report
