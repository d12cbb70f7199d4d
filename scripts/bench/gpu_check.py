"""One GPU check: every device claim of docs/performance.md measured in one prepared run.

Stages, most important first, each run only if its estimated time fits what is left of the hard
budget (``--budget-s``, 480 s by default; a stage or part that would not fit is skipped and the
skip is recorded with its reason):

1. ``release_grid``: the release grid of one backbone (iRPE ViT-B/16 at 224 px, 3 datasets x
   K 10/20/40 x 5 fine-tune + 6 linear seeds, 40 epochs) run batched; then serial, in full when
   it fits, else a measured serial sample (seed 2 of every protocol and K, one dataset copy)
   extrapolated to the grid and labelled so. Batched and serial accuracies must agree within one
   test image.
2. ``pretrain``: SAR-JEPA ViT-B/16 training steps (batch 75, bf16 autocast on CUDA) for every
   attention path the iRPE ViT offers (``eager``: plain softmax, ``sdpa``:
   ``F.scaled_dot_product_attention`` with the iRPE bias as the mask; there is no FlexAttention
   path, which is recorded as a skip), with AdamW's default and fused implementations and with
   ``torch.compile``: ms/step, images/s, TFLOP/s, MFU, and the loss after the same steps vs eager
   (relative tolerance 5e-2 in bf16, 1e-3 in fp32).
3. ``bf16_eval``: a checkpoint in the release's format (``model`` with ``module.`` keys, epoch,
   Namespace args) loaded as ``sarjepa``; features and cached-feature accuracies in fp32 vs bf16
   on synthetic MSTAR-shaped chips.
4. ``ddp``: tiny SAR-JEPA pretraining, one process (batch 4) vs ``torchrun`` with two processes
   (batch 2 each) on the same device, fp32: the final weights must agree within the CPU test's
   1e-5. NCCL may refuse two ranks on one GPU; the stage then records the refusal.

Writes ``gpu_check.json`` (device, driver, software, every figure, every skip and why) and
``gpu_check.md`` (a summary docs/performance.md can include as is) into ``--out`` after every
stage, so a run cut short keeps what it measured. Never touches the network: synthetic data only.

Usage::

    python scripts/bench/gpu_check.py --device cuda                  # the full check, <= 480 s
    python scripts/bench/gpu_check.py --dry-run --device cpu --out /tmp/gc   # every stage, tiny
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_pretrain  # noqa: E402  (the existing benches, reused rather than copied)
import bench_release_grid  # noqa: E402

FORMAT = "sarfewshot-gpu-check"
STAGES = ("release_grid", "pretrain", "bf16_eval", "ddp")
GRID_TARGET_S = 120.0  # the promise: the release grid of one backbone in <= 2 min on one H200
LOSS_REL_TOL = {"bf16": 5e-2, "fp32": 1e-3}
DDP_ATOL = 1e-5  # tests/pretrain/test_pretrain_world_size.py

# What each scale runs. FULL is the release's grid and ViT-B/16 pretraining; DRY the same code on
# a micro model and a few images, for CI.
FULL = {
    "arch": "irpe_vit_base_patch16", "img_size": 224, "chip_size": 128,
    "train_per_class": 275, "test_per_class": 243, "shots": "10,20,40", "epochs": 40,
    "datasets": 3, "pretrain_arch": "base", "batch": 75, "steps": 10, "warmup": 3,
    "eval_shots": 10, "eval_seeds": (1, 2, 3), "eval_chips": 512, "ddp_steps": 3,
}  # fmt: skip
DRY = {
    "arch": "irpe_vit_micro_patch8", "img_size": 32, "chip_size": 32,
    "train_per_class": 4, "test_per_class": 2, "shots": "1,2", "epochs": 2,
    "datasets": 1, "pretrain_arch": "tiny", "batch": 4, "steps": 2, "warmup": 1,
    "eval_shots": 1, "eval_seeds": (1, 2), "eval_chips": 16, "ddp_steps": 2,
}  # fmt: skip
# Seconds each part takes. FULL: estimated for one H200 from the figures measured there
# (docs/performance.md sections 4 and 5); DRY: the CPU dry run on one thread.
ESTIMATE_S = {
    "full": {
        "data": 40, "grid_batched": 180, "grid_serial_full": 460, "grid_serial_sample": 45,
        "pretrain_build": 10, "pretrain_run": 4, "pretrain_compile": 90, "bf16_eval": 45,
        "ddp": 60,
    },
    "dry": {
        "data": 2, "grid_batched": 8, "grid_serial_full": 8, "grid_serial_sample": 4,
        "pretrain_build": 1, "pretrain_run": 1, "pretrain_compile": 5, "bf16_eval": 5, "ddp": 25,
    },
}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cuda, cpu")
    p.add_argument("--budget-s", type=float, default=480.0, help="hard time budget (seconds)")
    p.add_argument("--dry-run", action="store_true", help="every stage at a tiny scale")
    p.add_argument("--out", default="gpu_check", help="folder for gpu_check.json and .md")
    p.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--stages", default=",".join(STAGES), help="comma list, in this order")
    p.add_argument(
        "--serial",
        choices=("auto", "full", "sample"),
        default="auto",
        help="serial grid: in full when it fits the budget (auto), always full, or the sample",
    )
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- budget, report


@dataclass
class Budget:
    """Wall-clock budget; ``factor`` scales the estimates once a part ran slower than guessed."""

    total_s: float
    start: float = field(default_factory=time.perf_counter)
    factor: float = 1.0

    def elapsed(self) -> float:
        """Seconds since the check started."""
        return time.perf_counter() - self.start

    def left(self) -> float:
        """Seconds left of the budget."""
        return self.total_s - self.elapsed()

    def fits(self, estimate_s: float) -> bool:
        """Whether a part estimated at ``estimate_s`` (scaled by ``factor``) fits."""
        return estimate_s * self.factor <= self.left()

    def learn(self, estimate_s: float, actual_s: float) -> None:
        """A part that ran slower than estimated makes every later estimate that much longer."""
        if estimate_s >= 1.0:
            self.factor = max(self.factor, actual_s / estimate_s)


class Report:
    """The JSON record and its Markdown summary, rewritten after every stage."""

    def __init__(self, out: Path, meta: dict) -> None:
        self.out = out
        self.data: dict[str, Any] = {**meta, "stages": {}, "skips": []}

    def skip(self, stage: str, part: str, why: str) -> None:
        """Record a skipped stage or part of one, and why."""
        self.data["skips"].append({"stage": stage, "part": part, "why": why})
        print(f"[{stage}] skipped {part}: {why}", flush=True)

    def save(self, elapsed_s: float) -> None:
        """Write ``gpu_check.json`` and ``gpu_check.md`` atomically."""
        from sarfewshot.utils.io import atomic_write_json, atomic_write_text

        self.data["elapsed_s"] = round(elapsed_s, 1)
        atomic_write_json(self.out / "gpu_check.json", self.data)
        atomic_write_text(self.out / "gpu_check.md", markdown(self.data))


@dataclass
class Context:
    """What every stage reads."""

    args: argparse.Namespace
    scale: dict
    estimates: dict
    device: torch.device
    budget: Budget
    report: Report
    work: Path
    _data: Path | None = None

    def data_root(self) -> Path:
        """The synthetic MSTAR-shaped dataset (10 classes), written once and shared."""
        if self._data is None:
            from sarfewshot.datasets.synthetic import generate_synthetic

            s = self.scale
            self._data = generate_synthetic(
                self.work / "data", s["train_per_class"], s["test_per_class"],
                size=s["chip_size"], progress_bar=False,
            )  # fmt: skip
        return self._data

    def checkpoint(self, stage: str, figures: dict) -> None:
        """Save a stage's figures so far: a run cut off by the hard stop keeps them."""
        self.report.data["stages"][stage] = {"status": "running", "figures": dict(figures)}
        self.report.save(self.budget.elapsed())

    def fits(self, stage: str, part: str, key: str) -> bool:
        """Whether ``part`` (estimate ``key``) fits the budget; records a skip when not."""
        est = self.estimates[key] * self.budget.factor
        if self.budget.fits(self.estimates[key]):
            return True
        left = max(self.budget.left(), 0.0)
        self.report.skip(stage, part, f"estimated {est:.0f} s, {left:.0f} s of the budget left")
        return False


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``), else the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(device: torch.device) -> dict:
    """Device name, driver, CUDA version and memory (``n/a`` fields on a CPU)."""
    info = {"type": device.type, "name": cpu_name()}
    info.update(driver="n/a", cuda="n/a", capability="n/a", memory_gib="n/a")
    if device.type != "cuda":
        return info
    props = torch.cuda.get_device_properties(device)
    info.update(name=props.name, cuda=torch.version.cuda, memory_gib=props.total_memory / 2**30)
    info["capability"] = f"{props.major}.{props.minor}"
    try:
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        info["driver"] = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout
        info["driver"] = info["driver"].strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError) as exc:
        info["driver"] = f"unknown ({type(exc).__name__})"
    return info


def software_info() -> dict:
    """Versions of Python, torch and the toolkit."""
    import sarfewshot

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "sarfewshot": getattr(sarfewshot, "__version__", "unknown"),
        "platform": platform.platform(),
    }


# ----------------------------------------------------------------------------- stage 1: grid


def grid_namespace(ctx: Context) -> argparse.Namespace:
    """The options ``bench_release_grid``'s helpers read, at this check's scale."""
    s = ctx.scale
    return argparse.Namespace(
        arch=s["arch"], img_size=s["img_size"], shots=s["shots"], epochs=s["epochs"],
        datasets=s["datasets"], device=str(ctx.device),
    )  # fmt: skip


def serial_sample(ctx: Context, ns: argparse.Namespace, root: Path) -> tuple[float, list[dict]]:
    """Seed 2 of every protocol and K on one dataset copy, serial; extrapolated to the grid."""
    from sarfewshot.engine.grid import run_grid
    from sarfewshot.results.records import iter_records

    out = ctx.work / "grid_serial_sample"
    protocols = ("finetune", "linear")
    run_grid(bench_release_grid.grid_request(ns, root, out, protocols, (2,), True), print_nothing)
    records = list(iter_records([out]))
    seeds = bench_release_grid.RELEASE_SEEDS
    total = ns.datasets * sum(
        seeds[r["protocol"]] * r["timings"]["total_s"] for r in records if r["seed"] == 2
    )
    return total, records


def print_nothing(*_a, **_k) -> None:
    """The grid's printer, silenced (its tables are not the point here)."""
    return None


def batched_grid(ctx: Context, ns: argparse.Namespace, root: Path, fig: dict) -> list[dict]:
    """The batched grid one dataset copy at a time, while the next copy fits the budget; copies
    that do not fit are extrapolated from the measured ones (and labelled so)."""
    one = argparse.Namespace(**{**vars(ns), "datasets": 1})
    times: list[float] = []
    records: list[dict] = []
    for d in range(ns.datasets):
        if times and times[-1] > ctx.budget.left():
            ctx.report.skip("release_grid", f"batched copies {d + 1}-{ns.datasets}", "budget")
            break
        out = ctx.work / "grid_batched" / f"copy{d}"
        sec, recs = bench_release_grid.run_toolkit_grid(one, root, out, False)
        times.append(sec)
        records += recs
        fig.update(batched_s=sum(times) * ns.datasets / len(times), batched_copies_run=len(times))
        ctx.checkpoint("release_grid", fig)
    fig["batched_kind"] = "measured" if len(times) == ns.datasets else "extrapolated"
    return records


def stage_release_grid(ctx: Context) -> dict:
    """Batched grid, then serial in full or a measured sample; the accuracy agreement."""
    from sarfewshot.datasets.synthetic import SYNTH_CLASSES

    ns, name = grid_namespace(ctx), "release_grid"
    fig: dict[str, Any] = {"arch": ns.arch, "img_size": ns.img_size, "epochs": ns.epochs}
    fig.update(datasets=ns.datasets, shots=ns.shots, target_s=GRID_TARGET_S)
    t0 = time.perf_counter()
    root = ctx.data_root()
    ctx.budget.learn(ctx.estimates["data"], time.perf_counter() - t0)
    batched = batched_grid(ctx, ns, root, fig)
    fig["cells"] = len(batched)
    ctx.budget.learn(ctx.estimates["grid_batched"], fig["batched_s"])
    # the target is a full-scale promise: a dry run says nothing about it
    fig["within_target"] = None if ctx.args.dry_run else fig["batched_s"] <= GRID_TARGET_S
    serial: list[dict] = []
    mode = ctx.args.serial
    if mode != "sample" and ctx.fits(name, "serial grid (full)", "grid_serial_full"):
        fig["serial_s"], serial = bench_release_grid.run_toolkit_grid(
            ns, root, ctx.work / "s", True
        )
        fig["serial_kind"] = "measured"
    elif mode != "full" and ctx.fits(name, "serial sample", "grid_serial_sample"):
        fig["serial_s"], serial = serial_sample(ctx, ns, root)
        fig["serial_kind"] = "extrapolated from a measured sample (seed 2 per protocol and K)"
    if serial:
        one_image = 100.0 / (len(SYNTH_CLASSES) * ctx.scale["test_per_class"])
        gap = bench_release_grid.accuracy_gap(serial, batched)
        fig.update(accuracy_gap_points=gap, one_test_image_points=one_image)
        fig["batched_equals_serial"] = gap <= one_image + 1e-9
        fig["serial_over_batched"] = fig["serial_s"] / fig["batched_s"]
    return fig


# ------------------------------------------------------------------------- stage 2: pretrain


def attention_paths(model: torch.nn.Module) -> dict[str, bool]:
    """The attention paths the model offers: name -> ``set_fused_attention`` value."""
    if not hasattr(model, "set_fused_attention"):
        return {"default": True}
    return {"eager": False, "sdpa": True}


def pretrain_run(ctx: Context, cfg, x, fused: bool, fused_adamw: bool, compiled: bool) -> dict:
    """Time ``steps`` training steps after ``warmup`` (fresh seeded model); the last loss."""
    from sarfewshot.pretrain.methods import build_pretrain_model

    s, dev = ctx.scale, ctx.device
    model = build_pretrain_model(cfg).to(dev).train()  # seeded init: every run starts equal
    if hasattr(model, "set_fused_attention"):
        model.set_fused_attention(fused)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True if fused_adamw else None)
    # the CPU dry run exercises the dynamo path without inductor's C++ code generation
    backend = "inductor" if dev.type == "cuda" else "eager"
    forward = torch.compile(model, backend=backend) if compiled else model
    losses: list[torch.Tensor] = []
    step = bench_pretrain.step_fn(forward, opt, x, dev, dev.type == "cuda", losses)
    t0 = time.perf_counter()
    step(0)  # the first step pays compilation and kernel selection
    first = time.perf_counter() - t0
    sec = bench_pretrain.timed(lambda i: step(i + 1), s["steps"], s["warmup"] - 1, dev)
    row = {"attention": "sdpa" if fused else "eager", "fused_adamw": fused_adamw}
    row.update(compiled=compiled, compile_backend=backend if compiled else None)
    row.update(first_step_s=first, ms_per_step=1000 * sec, images_per_s=x.shape[0] / sec)
    row.update(steps=len(losses), final_loss=float(losses[-1]))
    return row


def release_memory(compiled: bool) -> None:
    """Drop compiled graphs and cached blocks between runs, so each run starts alike."""
    import gc

    if compiled:
        torch._dynamo.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def pretrain_plan(paths: dict[str, bool], device: torch.device) -> list[tuple]:
    """(label, fused attention, fused AdamW, compiled, estimate key), cheapest first."""
    backend = "inductor" if device.type == "cuda" else "eager"
    plan = []
    for path, fused in paths.items():
        plan.append((f"{path}", fused, False, False, "pretrain_run"))
        plan.append((f"{path}+fused_adamw", fused, True, False, "pretrain_run"))
    # compiled: the fastest path only, so that a compilation (about 90 s on the H200,
    # estimated) never pushes the evaluation stages out of the budget
    path = "sdpa" if "sdpa" in paths else next(iter(paths))
    plan.append(
        (f"{path}+fused_adamw+compile({backend})", paths[path], True, True, "pretrain_compile")
    )
    return plan


def stage_pretrain(ctx: Context) -> dict:
    """Throughput, MFU and loss agreement of every attention path and optimizer variant."""
    from sarfewshot.pretrain.flops import mfu, train_flops_per_image
    from sarfewshot.pretrain.methods import build_pretrain_model
    from sarfewshot.utils.seeding import torch_generator

    s, dev = ctx.scale, ctx.device
    cfg = bench_pretrain.build_cfg("sarjepa", s["pretrain_arch"])
    size = int(cfg.INPUT.SIZE)
    x = torch.rand(s["batch"], 1, size, size, generator=torch_generator(0, "gpu-check-x")).to(dev)
    probe = build_pretrain_model(cfg).to(dev)
    flops = train_flops_per_image(cfg, probe, dev)
    paths = attention_paths(probe)
    del probe
    ctx.report.skip("pretrain", "flex_irpe", "no FlexAttention path in sarfewshot.models.vit_irpe")
    precision = "bf16" if dev.type == "cuda" else "fp32"
    rows = {}
    for label, fused, fused_adamw, compiled, key in pretrain_plan(paths, dev):
        if not ctx.fits("pretrain", label, key):
            continue
        try:
            rows[label] = pretrain_run(ctx, cfg, x, fused, fused_adamw, compiled)
        except Exception as exc:  # noqa: BLE001 - one variant failing must not end the check
            rows[label] = {"error": f"{type(exc).__name__}: {exc}"[:400]}
        release_memory(compiled)
        ctx.checkpoint("pretrain", {"runs": rows})
    ref = rows.get("eager", {}).get("final_loss")
    for row in rows.values():
        if "final_loss" not in row:
            continue
        row["tflops"] = flops * row["images_per_s"] / 1e12
        share = mfu(flops, row["images_per_s"], dev)
        row["mfu"] = share
        if ref is not None:
            row["loss_rel_diff_vs_eager"] = abs(row["final_loss"] - ref) / max(abs(ref), 1e-12)
            row["loss_within_tol"] = row["loss_rel_diff_vs_eager"] <= LOSS_REL_TOL[precision]
    return {
        "method": "sarjepa", "arch": s["pretrain_arch"], "img_size": size, "batch": s["batch"],
        "precision": precision, "loss_rel_tol": LOSS_REL_TOL[precision],
        "flops_per_image": flops, "attention_paths": list(paths), "runs": rows,
    }  # fmt: skip


# ------------------------------------------------------------------------ stage 3: bf16 eval


def save_release_format(model: torch.nn.Module, path: Path) -> Path:
    """The release's checkpoint layout: ``model`` with ``module.`` keys, epoch, Namespace args."""
    import io

    from sarfewshot.utils.io import atomic_write_bytes

    state = {f"module.{k}": v.detach().cpu() for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save({"model": state, "epoch": 0, "args": argparse.Namespace(model="gpu_check")}, buf)
    atomic_write_bytes(path, buf.getvalue())
    return path


def chip_tensor(root: Path, count: int, size: int) -> torch.Tensor:
    """``count`` test chips of the synthetic set as (N, 1, size, size) in [0, 1]."""
    import torch.nn.functional as F

    from sarfewshot.data.io import find_images, read_sar_image

    files = sorted(find_images(root / "test"))[:count]
    arrays = [torch.from_numpy(read_sar_image(f)).float()[None] for f in files]
    x = torch.stack(arrays) / 255.0
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def feature_difference(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Largest absolute and relative differences and the smallest cosine of matching rows."""
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1)
    rel = (a - b).norm(dim=1) / a.norm(dim=1).clamp_min(1e-12)
    return {
        "max_abs": (a - b).abs().max().item(),
        "max_rel_l2": rel.max().item(),
        "min_cosine": cos.min().item(),
    }


def eval_accuracies(ctx: Context, weights: Path, precision: str) -> dict[str, float]:
    """Accuracy per (protocol, seed) of the cached-feature protocols at one precision."""
    from sarfewshot.engine.grid import BackboneRequest, GridRequest, run_grid
    from sarfewshot.results.records import iter_records

    s, out = ctx.scale, ctx.work / f"eval_{precision}"
    req = GridRequest(
        backbones=[BackboneRequest("sarjepa", weights=str(weights))], datasets=["synthetic"],
        shots=[s["eval_shots"]], protocols=["prototype", "knn", "linear"],
        seeds=list(s["eval_seeds"]), output=out, root=str(ctx.data_root()),
        device=str(ctx.device), img_size=s["img_size"], progress=False,
        opts=["MODEL.PRECISION", precision, "OPTIM.MAX_EPOCH", str(s["epochs"])],
    )  # fmt: skip
    run_grid(req, print_nothing)
    return {
        f"{r['protocol']}/seed{r['seed']}": r["metrics"]["accuracy"] for r in iter_records([out])
    }


def stage_bf16_eval(ctx: Context) -> dict:
    """fp32 vs bf16 features and accuracies of a release-format checkpoint."""
    from sarfewshot.datasets.synthetic import SYNTH_CLASSES
    from sarfewshot.models import build_backbone
    from sarfewshot.models.features import extract_features

    s = ctx.scale
    source = build_backbone("random", arch=s["arch"], img_size=s["img_size"])
    weights = save_release_format(source, ctx.work / "release_format.pth")
    net = build_backbone("sarjepa", weights=weights, img_size=s["img_size"])
    x = chip_tensor(ctx.data_root(), s["eval_chips"], s["img_size"])
    feats = {
        p: extract_features(net, x, 64, ctx.device, progress=False, precision=p)
        for p in ("fp32", "bf16")
    }
    acc = {p: eval_accuracies(ctx, weights, p) for p in ("fp32", "bf16")}
    gaps = {k: abs(acc["fp32"][k] - acc["bf16"].get(k, math.nan)) for k in acc["fp32"]}
    one_image = 100.0 / (len(SYNTH_CLASSES) * s["test_per_class"])
    return {
        "arch": net.backbone_info.get("arch"), "load": net.backbone_info.get("load"),
        "chips": x.shape[0], "features": feature_difference(feats["fp32"], feats["bf16"]),
        "accuracy_fp32": acc["fp32"], "accuracy_bf16": acc["bf16"],
        "max_accuracy_gap_points": max(gaps.values(), default=math.nan),
        "one_test_image_points": one_image,
    }  # fmt: skip


# ------------------------------------------------------------------------------ stage 4: DDP


def pretrain_command(ctx: Context, out: Path, batch: int) -> list[str]:
    """The tiny SAR-JEPA pretraining command (fp32, no TensorBoard) on the synthetic chips."""
    device = "cuda:0" if ctx.device.type == "cuda" else "cpu"  # both ranks on the one device
    return [
        "-m", "sarfewshot", "pretrain", "--config", "sarjepa_tiny", "--data",
        str(ctx.data_root() / "train"), "--output", str(out), "--batch-size", str(batch),
        "--max-steps", str(ctx.scale["ddp_steps"]), "--seed", "7", "--device", device,
        "--workers", "0", "OPTIM.EPOCHS", "2", "TRAIN.TENSORBOARD", "False", "TRAIN.AMP", "none",
    ]  # fmt: skip


def run_quietly(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``cmd`` with TF32 off (fp32 comparisons) and one thread per process."""
    env = {**os.environ, "NVIDIA_TF32_OVERRIDE": "0", "OMP_NUM_THREADS": "1"}
    env["SARFEWSHOT_NO_PROGRESS"] = "1"
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def stage_ddp(ctx: Context) -> dict:
    """One process vs two ``torchrun`` processes on one device: the same final weights."""
    from sarfewshot.models import safe_load

    one, two = ctx.work / "ddp_one", ctx.work / "ddp_two"
    timeout = max(ctx.budget.left(), 10.0)
    done = run_quietly([sys.executable, *pretrain_command(ctx, one, 4)], timeout)
    if done.returncode:
        raise RuntimeError(f"one-process pretraining failed: {done.stderr[-600:]}")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]
    done = run_quietly([*launcher, "2", *pretrain_command(ctx, two, 2)[1:]], timeout)
    if done.returncode:
        tail = done.stderr.strip().splitlines()[-5:]
        ctx.report.skip("ddp", "two processes", "the device refused: " + " | ".join(tail)[-600:])
        return {"allowed": False}
    ref = safe_load(one / "checkpoint-last.pth")["model"]
    got = safe_load(two / "checkpoint-last.pth")["model"]
    diff = max((got[k].float() - v.float()).abs().max().item() for k, v in ref.items())
    return {
        "allowed": True,
        "max_abs_weight_diff": diff,
        "atol": DDP_ATOL,
        "equal": diff <= DDP_ATOL,
    }


# ----------------------------------------------------------------------------- the summary


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def grid_lines(f: dict) -> list[str]:
    """Markdown lines of the release-grid stage."""
    lines = [
        f"Release grid ({f['arch']}, {f['img_size']} px, {f['datasets']} dataset(s) x K "
        f"{f['shots']}, {f['epochs']} epochs, {f['cells']} cells): batched "
        f"**{f['batched_s']:.1f} s** ({f['batched_kind']}; target at full scale "
        f"{f['target_s']:.0f} s: "
        f"{_fmt(f['within_target'])})",
    ]
    if "serial_s" in f:
        lines.append(
            f"serial {f['serial_s']:.1f} s ({f['serial_kind']}), serial/batched "
            f"{f['serial_over_batched']:.2f}x; largest accuracy gap {f['accuracy_gap_points']:.3f} "
            f"points, one test image = {f['one_test_image_points']:.3f}: within one image "
            f"{_fmt(f['batched_equals_serial'])}"
        )
    return ["- " + line for line in lines]


def pretrain_lines(f: dict) -> list[str]:
    """Markdown table of the pretraining stage."""
    head = (
        f"Pretraining, {f['method']} {f['arch']} at {f['img_size']} px, batch {f['batch']}, "
        f"{f['precision']}, {f['flops_per_image'] / 1e9:.1f} GFLOP per image; loss tolerance "
        f"{f['loss_rel_tol']:g} relative to eager:"
    )
    rows = [
        "",
        head,
        "",
        "| run | ms/step | images/s | TFLOP/s | MFU | first step s | loss rel. diff | within |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, r in f["runs"].items():
        if "error" in r:
            rows.append(f"| {label} | failed: {r['error'][:80]} | | | | | | |")
            continue
        share = None if r.get("mfu") is None else f"{100 * r['mfu']:.1f} %"
        rows.append(
            f"| {label} | {r['ms_per_step']:.1f} | {r['images_per_s']:.0f} | "
            f"{_fmt(r['tflops'])} | {share or 'n/a'} | {r['first_step_s']:.1f} | "
            f"{_fmt(r.get('loss_rel_diff_vs_eager'), 2)} | {_fmt(r.get('loss_within_tol'))} |"
        )
    return rows + [""]


def eval_lines(f: dict) -> list[str]:
    """Markdown lines of the bf16 evaluation stage."""
    d = f["features"]
    return [
        f"- bf16 vs fp32 evaluation ({f['arch']}, release checkpoint format, {f['chips']} "
        f"chips): features max abs diff {_fmt(d['max_abs'])}, max relative L2 "
        f"{_fmt(d['max_rel_l2'])}, min cosine {d['min_cosine']:.6f}; largest accuracy gap "
        f"{_fmt(f['max_accuracy_gap_points'])} points (one test image = "
        f"{f['one_test_image_points']:.3f})"
    ]


def ddp_lines(f: dict) -> list[str]:
    """Markdown lines of the DDP stage."""
    if not f.get("allowed"):
        return ["- DDP, two processes on one device: refused by the device (see skips)"]
    return [
        f"- DDP, two processes on one device vs one process: largest weight difference "
        f"{_fmt(f['max_abs_weight_diff'])} (tolerance {f['atol']:g}): equal {_fmt(f['equal'])}"
    ]


LINES: dict[str, Callable[[dict], list[str]]] = {
    "release_grid": grid_lines,
    "pretrain": pretrain_lines,
    "bf16_eval": eval_lines,
    "ddp": ddp_lines,
}


def markdown(data: dict) -> str:
    """The summary: device and software, each stage's figures, every skip."""
    dev, sw = data["device"], data["software"]
    kind = "dry run (tiny scale)" if data["dry_run"] else "full scale"
    out = [
        f"#### GPU check {data['date']}: {dev['name']} ({kind})",
        "",
        f"Driver {dev['driver']}, CUDA {dev['cuda']}, torch {sw['torch']}, Python {sw['python']}; "
        f"budget {data['budget_s']:.0f} s, used {data.get('elapsed_s', 0):.0f} s "
        f"(`{data['command']}`).",
        "",
    ]
    for name, stage in data["stages"].items():
        if stage["status"] == "done":
            out += LINES[name](stage["figures"])
        elif stage["status"] == "running":
            out.append(f"- {name}: cut off while running (its figures so far are in the JSON)")
        else:
            out.append(f"- {name}: {stage['status']}: {stage.get('why', '')}")
        if "wall_s" in stage and stage["status"] != "skipped":
            out.append(f"  ({name}: {stage['wall_s']:.1f} s of wall time)")
    if data["skips"]:
        out += ["", "Skipped:", ""]
        out += [f"- {s['stage']} / {s['part']}: {s['why']}" for s in data["skips"]]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- main


RUNNERS: dict[str, tuple[Callable[[Context], dict], str]] = {
    "release_grid": (stage_release_grid, "grid_batched"),
    "pretrain": (stage_pretrain, "pretrain_build"),
    "bf16_eval": (stage_bf16_eval, "bf16_eval"),
    "ddp": (stage_ddp, "ddp"),
}


def run_stage(ctx: Context, name: str) -> None:
    """Run one stage if its estimate fits; record its figures, failure or skip."""
    fn, key = RUNNERS[name]
    stages = ctx.report.data["stages"]
    if not ctx.fits(name, "whole stage", key):
        stages[name] = {"status": "skipped", "why": "did not fit the budget (see skips)"}
        return
    t0 = time.perf_counter()
    try:
        stages[name] = {"status": "done", "figures": fn(ctx)}
    except Exception as exc:  # noqa: BLE001 - a failed stage is reported, the next ones run
        tail = traceback.format_exc().strip().splitlines()[-3:]
        why = f"{type(exc).__name__}: {exc}"[:500]
        stages[name] = {"status": "failed", "why": why, "traceback_tail": tail}
    stages[name]["wall_s"] = time.perf_counter() - t0
    stages[name]["estimate_s"] = ctx.estimates[key]
    print(f"[{name}] {stages[name]['status']} in {stages[name]['wall_s']:.1f} s", flush=True)


def make_context(args: argparse.Namespace) -> Context:
    """Device, scale, budget, report and scratch folder of this run."""
    from sarfewshot.pretrain.distributed import resolve_device

    device = resolve_device(args.device)
    scale_name = "dry" if args.dry_run else "full"
    meta = {
        "format": FORMAT, "version": 1, "dry_run": bool(args.dry_run),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["gpu_check.py", *sys.argv[1:]]), "budget_s": args.budget_s,
        "device": device_info(device), "software": software_info(),
        "scale": {k: list(v) if isinstance(v, tuple) else v for k, v in
                  (DRY if args.dry_run else FULL).items()},
    }  # fmt: skip
    work = Path(args.work or tempfile.mkdtemp(prefix="sfs_gpu_check_"))
    return Context(
        args=args, scale=DRY if args.dry_run else FULL, estimates=ESTIMATE_S[scale_name],
        device=device, budget=Budget(args.budget_s), report=Report(Path(args.out), meta),
        work=work,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the stages in order within the budget; exit 0 when the check ran to its end."""
    args = parse_args(argv)
    os.environ.setdefault("SARFEWSHOT_NO_PROGRESS", "1")
    ctx = make_context(args)
    names = [n.strip() for n in args.stages.split(",") if n.strip()]
    unknown = sorted(set(names) - set(STAGES))
    if unknown:
        print(f"error: --stages: unknown stage(s) {unknown}; choose from {STAGES}", file=sys.stderr)
        return 2
    for name in names:
        run_stage(ctx, name)
        ctx.report.save(ctx.budget.elapsed())
    print(f"wrote {ctx.report.out / 'gpu_check.json'} and gpu_check.md; scratch {ctx.work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
