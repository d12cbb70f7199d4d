"""Training FLOPs per image and model FLOP utilisation (MFU).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` over one forward and backward
pass of a copy of the model on two images (matrix products, convolutions and attention; the
elementwise work is not counted, as in the usual MFU definition), once per model geometry and
process. Achieved TFLOP/s = FLOPs per image x images/s; MFU divides it by the device's dense
bf16 peak when the device is in :data:`BF16_PEAK_TFLOPS` (None otherwise, e.g. on a CPU).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

# dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s
BF16_PEAK_TFLOPS: dict[str, float] = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 80GB HBM3": 989.0,
    "H100 PCIe": 756.0,
    "H100": 756.0,
    "A100": 312.0,
    "L40S": 362.0,
    "B200": 2250.0,
}

_CACHE: dict[tuple, float] = {}


def geometry_key(cfg: Any) -> tuple:
    """What the FLOPs depend on: the method, the input and every model and mask size."""
    return (
        str(cfg.METHOD),
        int(cfg.INPUT.SIZE),
        tuple(sorted((k, str(v)) for k, v in cfg.MODEL.items())),
        tuple(sorted((k, str(v)) for k, v in cfg.MASK.items())),
    )


def count_train_flops(module: nn.Module, size: int, device: torch.device, images: int = 2) -> int:
    """FLOPs of one training forward + backward per image, counted on a copy of ``module``."""
    from torch.utils.flop_counter import FlopCounterMode

    from sarfewshot.utils.seeding import torch_generator

    model = copy.deepcopy(module).train()
    x = torch.rand(images, 1, size, size, generator=torch_generator(0, "flops")).to(device)
    if hasattr(model, "set_generator"):
        model.set_generator(torch_generator(0, "flops-droppath"))
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(x, torch_generator(0, "flops-mask"))
        out["loss"].backward()
    return int(counter.get_total_flops()) // images


def train_flops_per_image(cfg: Any, module: nn.Module, device: torch.device) -> float:
    """:func:`count_train_flops` for ``cfg``'s geometry, counted once per process."""
    key = geometry_key(cfg)
    if key not in _CACHE:
        _CACHE[key] = float(count_train_flops(module, int(cfg.INPUT.SIZE), device))
    return _CACHE[key]


def bf16_peak(device: torch.device) -> tuple[str, float] | None:
    """(device name, dense bf16 peak TFLOP/s) for a known GPU, else None."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peak in BF16_PEAK_TFLOPS.items():  # most specific names first
        if key.lower() in name.lower():
            return name, peak
    return None


def throughput_line(flops_per_image: float, images_per_s: float, device: torch.device) -> str:
    """``12.3 TFLOP/s (1.2 % MFU of NVIDIA H200's 989 bf16 TFLOP/s)`` or without the MFU."""
    tflops = flops_per_image * images_per_s / 1e12
    text = f"{tflops:.3g} TFLOP/s ({flops_per_image / 1e9:.3g} GFLOP per image)"
    peak = bf16_peak(device)
    if peak is None and device.type != "cuda":
        return text  # MFU is a GPU figure: on a CPU its absence is no news
    if peak is None:
        return f"{text}, MFU not computed (no known bf16 peak for {device})"
    return f"{text}, MFU {100 * tflops / peak[1]:.1f} % of {peak[0]}'s {peak[1]:g} bf16 TFLOP/s"


def mfu(flops_per_image: float, images_per_s: float, device: torch.device) -> float | None:
    """Achieved share of the bf16 peak (None when the device's peak is unknown)."""
    peak = bf16_peak(device)
    return None if peak is None else flops_per_image * images_per_s / 1e12 / peak[1]
