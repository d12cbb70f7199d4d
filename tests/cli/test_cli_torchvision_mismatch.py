"""A torchvision built for another platform than torch: one line naming the mismatch and the fix.

The failing import is simulated (an import hook raising torchvision's own error), not installed.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

import pytest

from sarfewshot.cli.main import main
from sarfewshot.utils import torch_builds
from tests.cli.conftest import TAIL

ERROR = "operator torchvision::nms does not exist"
HIDDEN = ("torchvision", "timm", "torchgeo")
HAS_TIMM = importlib.util.find_spec("timm") is not None


class _BrokenTorchvision(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            raise RuntimeError(ERROR)
        return None


@pytest.fixture
def broken_torchvision(monkeypatch):
    """``import torchvision`` (and so timm) fails as with a CPU torch and a CUDA torchvision."""
    before = set(sys.modules)
    for name in list(sys.modules):
        if name.split(".")[0] in HIDDEN:
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_BrokenTorchvision(), *sys.meta_path])
    yield
    for name in set(sys.modules) - before:  # half-imported modules of the failed imports
        if name.split(".")[0] in HIDDEN:
            del sys.modules[name]


def test_the_mismatch_is_recognised_through_a_chain():
    try:
        try:
            raise RuntimeError(ERROR)
        except RuntimeError as inner:
            raise ValueError("building timm:resnet18 failed") from inner
    except ValueError as outer:
        assert torch_builds.is_torchvision_mismatch(outer)
    assert not torch_builds.is_torchvision_mismatch(RuntimeError("CUDA out of memory"))


def test_problem_names_both_builds_and_the_fix(broken_torchvision):
    message = torch_builds.torchvision_problem()
    assert message is not None and "\n" not in message
    assert "torch " in message and "torchvision " in message and "matching pair" in message
    assert "pip install" in message and "torch torchvision --index-url" in message


def test_no_problem_with_a_working_install():
    pytest.importorskip("torchvision")
    assert torch_builds.torchvision_problem() is None


@pytest.mark.skipif(not HAS_TIMM, reason="timm is not installed")
def test_eval_with_a_timm_backbone_prints_one_line(root, tmp_path, capsys, broken_torchvision):
    args = ["eval", "--backbone", "timm:resnet18", "--dataset", "synthetic", "--root", str(root)]
    args += ["--shots", "1", "--protocol", "knn", "--seeds", "1", "--output", str(tmp_path)]
    code = main([*args, "--img-size", "32", *TAIL])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "Traceback" not in err
    assert err.startswith("error: torch ") and "pip install" in err


def test_test_collection_stops_with_one_clear_line(broken_torchvision):
    from tests import conftest

    with pytest.raises(pytest.UsageError, match="not a matching pair of builds"):
        conftest.check_torchvision_build()
