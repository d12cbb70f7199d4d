"""A torchvision built for another platform than torch: one line naming the mismatch and the fix.

A CPU-only torch beside a CUDA torchvision (or two different versions) fails on
``import torchvision`` with ``RuntimeError: operator torchvision::nms does not exist``: the
compiled operators of one build do not register with the other. timm and torchgeo import
torchvision, so the error surfaces deep inside a model build; :func:`mismatch_message` turns it
into what to do.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

_OPERATOR_MISSING = re.compile(r"operator torchvision::\w+ does not exist")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def is_torchvision_mismatch(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is torchvision's missing-operator
    error."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, RuntimeError) and _OPERATOR_MISSING.search(str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _cpu_only_torch() -> bool:
    import torch

    return torch.version.cuda is None and getattr(torch.version, "hip", None) is None


def _torch_build() -> str:
    import torch

    kind = "CPU-only" if _cpu_only_torch() else f"CUDA {torch.version.cuda or torch.version.hip}"
    return f"{torch.__version__} ({kind})"


def _torchvision_build() -> str:
    """torchvision's version (with its ``+cpu``/``+cuXYZ`` build tag), read without importing it."""
    version = _version("torchvision")
    try:
        path = metadata.distribution("torchvision").locate_file("torchvision/version.py")
        text = Path(str(path)).read_text(encoding="utf-8")
    except (metadata.PackageNotFoundError, OSError):
        text = ""
    found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
    return found.group(1) if found else version


def mismatch_message() -> str:
    """One line naming the installed torch and torchvision builds and the command that fixes it."""
    torch_v, vision_v = _torch_build(), _torchvision_build()
    index = CPU_INDEX if _cpu_only_torch() else "<the PyTorch index torch came from>"
    return (
        f"torch {torch_v} and torchvision {vision_v} are not a matching pair of builds "
        "(operator torchvision::nms does not exist); reinstall both from one index, e.g. "
        f"pip install --force-reinstall torch torchvision --index-url {index}"
    )


def torchvision_problem() -> str | None:
    """The mismatch message when ``import torchvision`` fails that way, else None (also when
    torchvision is not installed)."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return None
    except RuntimeError as exc:
        if is_torchvision_mismatch(exc):
            return mismatch_message()
        raise
    return None
