"""Optimisers, parameter groups and Dassl's per-epoch learning-rate schedule."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from sarfewshot.engine.config import get_cfg_default
from sarfewshot.engine.optim import (
    OPTIMIZERS,
    build_lr_scheduler,
    build_optimizer,
    param_groups_weight_decay,
)
from sarfewshot.errors import ConfigError


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.body = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 2)


def _optim_cfg(**kw):
    cfg = get_cfg_default().OPTIM
    for key, value in kw.items():
        cfg[key] = value
    return cfg


def _lr_trace(cfg, epochs=None, groups=None):
    params = groups or [nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD(params, lr=cfg.LR)
    sched = build_lr_scheduler(opt, cfg)
    trace = []
    for _ in range(epochs or cfg.MAX_EPOCH):
        trace.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return trace


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_builds_and_steps(name):
    model = Tiny()
    opt = build_optimizer(model, _optim_cfg(NAME=name, LR=0.01))
    model.head(model.body(torch.ones(2, 4))).sum().backward()
    opt.step()
    assert opt.param_groups[0]["lr"] == 0.01
    assert opt.param_groups[0]["weight_decay"] == 5e-4
    if name == "amsgrad":
        assert opt.param_groups[0]["amsgrad"] is True
    if name in ("adam", "adamw", "radam"):
        assert opt.param_groups[0]["betas"] == (0.9, 0.999)


def test_unknown_optimizer_lists_choices():
    with pytest.raises(ConfigError, match=r"OPTIM\.NAME 'lion'.*adamw"):
        build_optimizer(Tiny(), _optim_cfg(NAME="lion"))


def test_weight_decay_groups_and_frozen_params():
    model = Tiny()
    model.norm.weight.requires_grad_(False)
    groups = param_groups_weight_decay(model, 0.05, skip_list=("cls_token",))
    decay, no_decay = groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model.body.weight), id(model.head.weight)}
    expected = {model.cls_token, model.body.bias, model.norm.bias, model.head.bias}
    assert {id(p) for p in no_decay["params"]} == {id(p) for p in expected}
    opt = build_optimizer(model, _optim_cfg(NAME="adamw", LR=1e-3), param_groups=groups)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    # Without explicit groups, frozen parameters are left out.
    opt = build_optimizer(model, _optim_cfg())
    assert all(p is not model.norm.weight for p in opt.param_groups[0]["params"])


def test_staged_lr():
    model = Tiny()
    opt = build_optimizer(model, _optim_cfg(LR=0.1, STAGED_LR=True, NEW_LAYERS=("head",)))
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.1])
    assert {id(p) for p in opt.param_groups[1]["params"]} == {
        id(p) for p in model.head.parameters()
    }
    with pytest.raises(ConfigError, match="NEW_LAYERS"):
        build_optimizer(model, _optim_cfg(STAGED_LR=True, NEW_LAYERS=("nope",)))


def test_cosine_constant_warmup_matches_dassl():
    cfg = _optim_cfg(
        LR=0.01, MAX_EPOCH=3, LR_SCHEDULER="cosine", WARMUP_EPOCH=1, WARMUP_TYPE="constant"
    )
    trace = _lr_trace(cfg)
    for got, want in zip(trace, [1e-5, 0.01, 0.0075]):
        assert abs(got - want) < 1e-12


def test_release_schedule_shape():
    # The release: 40 epochs, 2 constant warm-up epochs at 1e-5, then cosine from 1e-3.
    cfg = _optim_cfg(
        LR=1e-3, MAX_EPOCH=40, LR_SCHEDULER="cosine", WARMUP_EPOCH=2, WARMUP_TYPE="constant"
    )
    trace = _lr_trace(cfg)
    assert trace[:3] == [1e-5, 1e-5, 1e-3]
    assert trace[39] == pytest.approx(1e-3 * (1 + math.cos(math.pi * 37 / 40)) / 2, abs=1e-15)
    assert min(trace[2:]) > 0  # recount: the cosine does not reach its minimum in training


def test_linear_warmup_and_no_recount():
    cfg = _optim_cfg(LR=0.1, MAX_EPOCH=6, LR_SCHEDULER="cosine", WARMUP_EPOCH=3, WARMUP_MIN_LR=1e-4)
    trace = _lr_trace(cfg)
    cos = [(1 + math.cos(math.pi * t / 6)) / 2 for t in range(6)]
    want = [1e-4, 0.1 / 3, 0.2 / 3, 0.1 * cos[0], 0.1 * cos[1], 0.1 * cos[2]]
    assert trace == pytest.approx(want, abs=1e-12)
    cfg.WARMUP_RECOUNT = False
    # Dassl's chained cosine continues from epoch W, rescaled to start at the base rate.
    want_nr = [1e-4, 0.1 / 3, 0.2 / 3, 0.1, 0.1 * cos[4] / cos[3], 0.1 * cos[5] / cos[3]]
    assert _lr_trace(cfg) == pytest.approx(want_nr, abs=1e-12)


def test_single_and_multi_step():
    single = _optim_cfg(LR=1.0, MAX_EPOCH=7, LR_SCHEDULER="single_step", STEPSIZE=(3,), GAMMA=0.5)
    assert _lr_trace(single) == pytest.approx([1, 1, 1, 0.5, 0.5, 0.5, 0.25])
    single.STEPSIZE = (-1,)  # non-positive: one step at MAX_EPOCH
    assert _lr_trace(single, epochs=8)[-2:] == pytest.approx([1.0, 0.5])
    multi = _optim_cfg(LR=1.0, MAX_EPOCH=6, LR_SCHEDULER="multi_step", STEPSIZE=(4, 2), GAMMA=0.1)
    assert _lr_trace(multi) == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    with pytest.raises(ConfigError, match="LR_SCHEDULER"):
        _lr_trace(_optim_cfg(LR_SCHEDULER="poly"))
    with pytest.raises(ConfigError, match="WARMUP_TYPE"):
        _lr_trace(_optim_cfg(WARMUP_EPOCH=1, WARMUP_TYPE="exp"))


def test_scheduler_state_round_trip_weights_only():
    cfg = _optim_cfg(LR=0.01, MAX_EPOCH=5, LR_SCHEDULER="cosine", WARMUP_EPOCH=1)
    params = [nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD(params, lr=cfg.LR)
    sched = build_lr_scheduler(opt, cfg)
    sched.step()
    sched.step()
    buffer = io.BytesIO()
    torch.save({"scheduler": sched.state_dict(), "optimizer": opt.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    opt2 = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=cfg.LR)
    sched2 = build_lr_scheduler(opt2, cfg)
    sched2.load_state_dict(state["scheduler"])
    assert sched2.last_epoch == 2 and opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    sched.step()
    sched2.step()
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_groups_keep_their_own_base_rate():
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    groups = [{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}]
    cfg = _optim_cfg(LR=0.1, MAX_EPOCH=4, LR_SCHEDULER="cosine")
    opt = torch.optim.SGD(groups, lr=0.1)
    sched = build_lr_scheduler(opt, cfg)
    sched.step()
    ratio = opt.param_groups[0]["lr"] / opt.param_groups[1]["lr"]
    assert ratio == pytest.approx(10.0)
