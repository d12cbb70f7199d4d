"""Dassl-shaped trainers: ``TrainerBase``, ``SimpleTrainer`` and ``TrainerX``.

The loop is Dassl's: ``before_train -> (before_epoch -> run_epoch -> after_epoch) x E ->
after_train``, then a test on ``TEST.SPLIT`` unless ``TEST.NO_TEST``. A subclass defines
``build_model`` (registering its model, optimiser and scheduler with ``register_model``) and
``forward_backward(batch) -> dict of floats``. The engine steps the schedulers once per epoch,
after the epoch's last batch (first thing in ``after_epoch``), so neither ``forward_backward``
nor an overridden ``run_epoch`` calls ``update_lr``.

Fixed relative to Dassl 0.6.3: checkpoints hold only state dicts (the scheduler's is plain
numbers) and are read with ``torch.load(weights_only=True)``; loading a checkpoint whose
``val_result`` is None works; seed 0 seeds; a non-finite loss raises
:class:`NonFiniteLossError`; ``best_val`` keeps the best weights in memory and needs a
validation split (Dassl silently selected on the test set when there was none).

Run options (keyword arguments or attributes set before ``train()``): ``save_checkpoints``
(write ``<OUTPUT_DIR>/<model>/model.pth.tar-<epoch>``; off for grid cells, which also turns
off auto-resume from ``OUTPUT_DIR``), ``write_log`` (append messages to
``<OUTPUT_DIR>/log.txt``), ``verbose`` (print messages; default ``cfg.VERBOSE``),
``show_progress`` (tqdm bars; default :func:`sarfewshot.utils.progress.progress_enabled`: on
unless ``SARFEWSHOT_NO_PROGRESS`` is set or stderr is not a terminal), ``log_iterations`` (a
line every ``TRAIN.PRINT_FREQ`` batches) and ``callbacks``
(called with each epoch's summary dict).

Numeric precision comes from the config, ``MODEL.PRECISION``: ``fp32`` (the default, as the
release ran) or ``bf16`` (forward passes under bfloat16 autocast on the trainer's device).
"""

from __future__ import annotations

import datetime
import io
import math
import os
import time
from collections import OrderedDict
from contextlib import AbstractContextManager
from typing import Any, Callable, Iterable

import torch
from torch import nn

from sarfewshot.errors import ConfigError, NonFiniteLossError, WeightsError
from sarfewshot.models.features import check_precision, precision_context
from sarfewshot.utils.io import atomic_write_bytes, atomic_write_text
from sarfewshot.utils.progress import progress_enabled
from sarfewshot.utils.seeding import seed_everything

CHECKPOINT_PREFIX = "model.pth.tar-"
BEST_CHECKPOINT = "model-best.pth.tar"
LATEST_POINTER = "checkpoint"
LOG_FILE = "log.txt"

EpochCallback = Callable[[dict], None]


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(state: dict[str, Any], directory: str, name: str, latest: bool = True) -> str:
    """Write ``state`` to ``directory/name`` atomically; with ``latest`` record it as the file
    to resume from (Dassl's ``checkpoint`` pointer file). Returns the path."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path = os.path.join(directory, name)
    atomic_write_bytes(path, buffer.getvalue())
    if latest:
        atomic_write_text(os.path.join(directory, LATEST_POINTER), name + "\n")
    return path


def load_checkpoint(path: str) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` on the CPU.

    Raises:
        WeightsError: the file is missing or holds anything but tensors and plain values.
    """
    if not os.path.isfile(path):
        raise WeightsError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refusals and corrupt files alike
        raise WeightsError(f"cannot load checkpoint {path} safely: {exc}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise WeightsError(f"{path} is not a trainer checkpoint (no 'state_dict' key)")
    return ckpt


def latest_checkpoint(directory: str) -> str | None:
    """The file named by ``directory/checkpoint``, or None when there is none."""
    pointer = os.path.join(directory, LATEST_POINTER)
    if not os.path.isfile(pointer):
        return None
    with open(pointer, encoding="utf-8") as f:
        name = f.readline().strip()
    return os.path.join(directory, name) if name else None


def _fmt_result(value: Any) -> str:
    return "None" if value is None else f"{float(value):.1f}"


# ----------------------------------------------------------------------------- TrainerBase


class TrainerBase:
    """Model/optimiser/scheduler bookkeeping and the epoch loop."""

    def __init__(self) -> None:
        self._models: OrderedDict[str, nn.Module] = OrderedDict()
        self._optims: OrderedDict[str, Any] = OrderedDict()
        self._scheds: OrderedDict[str, Any] = OrderedDict()
        self.epoch = 0
        self.batch_idx = 0

    def log(self, message: str) -> None:
        """Report a message (subclasses add the log file)."""
        print(message, flush=True)

    def register_model(
        self,
        name: str = "model",
        model: nn.Module | None = None,
        optim: Any = None,
        sched: Any = None,
    ) -> None:
        """Register a model with its optimiser and scheduler (either may be None)."""
        if self.__dict__.get("_models") is None:
            raise AttributeError("call super().__init__() before register_model()")
        if name in self._models:
            raise KeyError(f"model {name!r} is already registered")
        if model is None:
            raise ValueError(f"register_model({name!r}) needs a model")
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names: str | Iterable[str] | None = None) -> list[str]:
        """Registered model names, or the given ones after checking they exist."""
        known = list(self._models)
        if names is None:
            return known
        names = [names] if isinstance(names, str) else list(names)
        for name in names:
            if name not in known:
                raise KeyError(f"no model named {name!r}; registered: {known}")
        return names

    def save_model(
        self,
        epoch: int,
        directory: str,
        is_best: bool = False,
        val_result: float | None = None,
        model_name: str = "",
    ) -> None:
        """Save every model as ``directory/<name>/model.pth.tar-<epoch + 1>`` (or
        ``model_name``); ``is_best`` also writes ``model-best.pth.tar``."""
        for name in self.get_model_names():
            optim, sched = self._optims[name], self._scheds[name]
            state = {
                "state_dict": self._models[name].state_dict(),
                "epoch": epoch + 1,
                "optimizer": optim.state_dict() if optim is not None else None,
                "scheduler": sched.state_dict() if sched is not None else None,
                "val_result": None if val_result is None else float(val_result),
            }
            folder = os.path.join(directory, name)
            filename = model_name or f"{CHECKPOINT_PREFIX}{epoch + 1}"
            save_checkpoint(state, folder, filename, latest=filename != BEST_CHECKPOINT)
            if is_best and filename != BEST_CHECKPOINT:
                save_checkpoint(state, folder, BEST_CHECKPOINT, latest=False)

    def resume_model_if_exist(self, directory: str) -> int:
        """Load the latest checkpoint of every model from ``directory``; return the epoch to
        start from (0 when some model has no checkpoint there)."""
        names = self.get_model_names()
        paths = [latest_checkpoint(os.path.join(directory, n)) for n in names]
        if not names or any(p is None for p in paths):
            return 0
        start = 0
        for name, path in zip(names, paths):
            ckpt = load_checkpoint(path)
            self._models[name].load_state_dict(ckpt["state_dict"])
            if self._optims[name] is not None and ckpt.get("optimizer") is not None:
                self._optims[name].load_state_dict(ckpt["optimizer"])
            if self._scheds[name] is not None and ckpt.get("scheduler") is not None:
                self._scheds[name].load_state_dict(ckpt["scheduler"])
            start = int(ckpt["epoch"])
            self.log(f"Resume {path} (epoch={start})")
        return start

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        """Load weights from ``directory/<name>/model.pth.tar-<epoch>``, or the best model
        when ``epoch`` is None (the latest checkpoint when no best model was saved)."""
        for name in self.get_model_names():
            folder = os.path.join(directory, name)
            if epoch is not None:
                path = os.path.join(folder, f"{CHECKPOINT_PREFIX}{epoch}")
            else:
                path = os.path.join(folder, BEST_CHECKPOINT)
                if not os.path.isfile(path):
                    path = latest_checkpoint(folder) or path
            ckpt = load_checkpoint(path)
            self.log(
                f"Load {path} to {name} (epoch={ckpt.get('epoch')}, "
                f"val_result={_fmt_result(ckpt.get('val_result'))})"
            )
            self._models[name].load_state_dict(ckpt["state_dict"])

    def set_model_mode(self, mode: str = "train", names: str | Iterable[str] | None = None) -> None:
        """Put models in ``train`` or ``eval`` mode (``test`` is an alias of ``eval``)."""
        if mode not in ("train", "eval", "test"):
            raise ValueError(f"mode must be train or eval, got {mode!r}")
        for name in self.get_model_names(names):
            self._models[name].train(mode == "train")

    def update_lr(self, names: str | Iterable[str] | None = None) -> None:
        """Step every scheduler once (called by the engine at the end of each epoch)."""
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def get_current_lr(self, names: str | Iterable[str] | None = None) -> float:
        """Learning rate of the first parameter group of the first model's optimiser."""
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                return float(self._optims[name].param_groups[0]["lr"])
        return 0.0

    def detect_anomaly(self, loss: torch.Tensor) -> None:
        """Raise :class:`NonFiniteLossError` when ``loss`` holds a NaN or infinity."""
        if not bool(torch.isfinite(loss.detach()).all()):
            raise NonFiniteLossError(
                f"loss is infinite or NaN ({loss.detach().float().flatten()[:4].tolist()}) at "
                f"epoch {self.epoch + 1}, batch {self.batch_idx + 1}; training stopped"
            )

    def model_zero_grad(self, names: str | Iterable[str] | None = None) -> None:
        """Clear the gradients of the named models' optimisers."""
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad(set_to_none=True)

    def model_backward(self, loss: torch.Tensor) -> None:
        """Check the loss, then back-propagate it."""
        self.detect_anomaly(loss)
        loss.backward()

    def model_update(self, names: str | Iterable[str] | None = None) -> None:
        """Step the named models' optimisers."""
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].step()

    def model_backward_and_update(
        self, loss: torch.Tensor, names: str | Iterable[str] | None = None
    ) -> None:
        """Zero gradients, check and back-propagate ``loss``, step the optimisers."""
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)

    def train(self, start_epoch: int, max_epoch: int) -> float | None:
        """Run the hooks over epochs ``start_epoch .. max_epoch - 1``."""
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        self.before_train()
        for epoch in range(self.start_epoch, self.max_epoch):
            self.epoch = epoch
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        return self.after_train()

    def before_train(self) -> None:
        """Hook: before the first epoch."""

    def after_train(self) -> float | None:
        """Hook: after the last epoch."""
        return None

    def before_epoch(self) -> None:
        """Hook: before each epoch."""

    def after_epoch(self) -> None:
        """Hook: after each epoch."""

    def run_epoch(self) -> None:
        """One pass over the training data."""
        raise NotImplementedError

    def test(self, split: str | None = None) -> float:
        """Evaluate and return the accuracy."""
        raise NotImplementedError

    def parse_batch_train(self, batch: dict) -> Any:
        """Split a training batch into model inputs and targets."""
        raise NotImplementedError

    def parse_batch_test(self, batch: dict) -> Any:
        """Split a test batch into model inputs and targets."""
        raise NotImplementedError

    def forward_backward(self, batch: dict) -> dict[str, float]:
        """One optimisation step on ``batch``; return the losses/metrics as floats."""
        raise NotImplementedError

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        """Logits of ``input``."""
        raise NotImplementedError


# ----------------------------------------------------------------------------- SimpleTrainer


class SimpleTrainer(TrainerBase):
    """A trainer with one data manager, one evaluator and the run options of the module."""

    save_checkpoints: bool = True
    write_log: bool = True
    verbose: bool | None = None
    show_progress: bool | None = None
    log_iterations: bool = False

    def __init__(self, cfg: Any, dm: Any = None, **options: Any) -> None:
        super().__init__()
        self.cfg = cfg
        self.callbacks: list[EpochCallback] = list(options.pop("callbacks", ()))
        self._set_options(options)
        self.check_cfg(cfg)
        seed_everything(int(cfg.SEED))  # a no-op for negative seeds; seed 0 seeds
        use_cuda = bool(cfg.USE_CUDA) and torch.cuda.is_available()
        self.device = torch.device("cuda" if use_cuda else "cpu")
        self.start_epoch = self.epoch = 0
        self.max_epoch = int(cfg.OPTIM.MAX_EPOCH)
        self.output_dir = str(cfg.OUTPUT_DIR)
        self.history: list[dict[str, Any]] = []
        self.last_result: dict[str, Any] | None = None
        self.best_result = -math.inf
        self.timings: dict[str, float] = {}
        self._best_state: dict[str, dict] | None = None
        self.dm = dm
        self.build_data_loader()
        self._check_val_split()
        self.build_model()
        self.evaluator = self.build_evaluator()

    def _set_options(self, options: dict[str, Any]) -> None:
        allowed = ("save_checkpoints", "write_log", "verbose", "show_progress", "log_iterations")
        for key, value in options.items():
            if key not in allowed:
                raise TypeError(f"unknown trainer option {key!r}; known: {allowed}")
            setattr(self, key, value)
        if self.verbose is None:
            self.verbose = bool(self.cfg.VERBOSE)
        if self.show_progress is None:
            self.show_progress = progress_enabled()

    def check_cfg(self, cfg: Any) -> None:
        """Check config values the loop relies on (subclasses may add checks)."""
        if cfg.TEST.FINAL_MODEL not in ("last_step", "best_val"):
            raise ConfigError(
                f"TEST.FINAL_MODEL must be last_step or best_val, got {cfg.TEST.FINAL_MODEL!r}"
            )
        if int(cfg.OPTIM.MAX_EPOCH) < 0:
            raise ConfigError(f"OPTIM.MAX_EPOCH must be >= 0, got {cfg.OPTIM.MAX_EPOCH}")
        check_precision(str(cfg.MODEL.get("PRECISION", "fp32")))

    def _check_val_split(self) -> None:
        best_val = self.cfg.TEST.FINAL_MODEL == "best_val" and not self.cfg.TEST.NO_TEST
        if best_val and self.val_loader is None:
            raise ConfigError(
                "TEST.FINAL_MODEL best_val needs a validation split, and this dataset has none "
                "(Dassl would select on the test set); use last_step or provide val data"
            )

    def log(self, message: str) -> None:
        """Print (when verbose) and append to ``<OUTPUT_DIR>/log.txt`` (when ``write_log``)."""
        if self.verbose:
            print(message, flush=True)
        if self.write_log:
            os.makedirs(self.output_dir, exist_ok=True)
            with open(os.path.join(self.output_dir, LOG_FILE), "a", encoding="utf-8") as f:
                f.write(message + "\n")

    @property
    def precision(self) -> str:
        """``MODEL.PRECISION`` (``fp32`` when a foreign config lacks the key)."""
        return str(self.cfg.MODEL.get("PRECISION", "fp32"))

    def autocast(self) -> AbstractContextManager:
        """The forward passes' context: none for fp32, bf16 autocast on the device for bf16."""
        return precision_context(self.device, self.precision)

    def build_data_loader(self) -> None:
        """Take the loaders from the given data manager, or build ``DataManager(cfg)``."""
        if self.dm is None:
            from sarfewshot.data.datamanager import DataManager

            self.dm = DataManager(self.cfg)
        attach_loaders(self, self.dm)

    def build_model(self) -> None:
        """Build ``self.model`` and call ``register_model`` (subclasses implement it)."""
        raise NotImplementedError

    def build_evaluator(self) -> Any:
        """The evaluator named by ``TEST.EVALUATOR``, printing through :meth:`log`."""
        from sarfewshot.engine.evaluator import build_evaluator

        return build_evaluator(self.cfg, lab2cname=self.lab2cname, printer=self.log)

    def train(self) -> float | None:  # type: ignore[override]
        """Train from ``start_epoch`` (after resuming) to ``OPTIM.MAX_EPOCH``; return the test
        accuracy (None with ``TEST.NO_TEST``)."""
        return super().train(self.start_epoch, self.max_epoch)

    def before_train(self) -> None:
        """Resume when a checkpoint exists, and start the clock."""
        directory = self.cfg.RESUME or (self.output_dir if self.save_checkpoints else "")
        if directory:
            self.start_epoch = self.resume_model_if_exist(directory)
        self.best_result = -math.inf
        self._best_state = None
        self.time_start = time.time()

    def before_epoch(self) -> None:
        """Note the epoch's start time and learning rate; clear :attr:`epoch_stats`."""
        self._epoch_start = time.time()
        self._epoch_lr = self.get_current_lr()
        self.epoch_stats: dict[str, float] = {}

    def after_epoch(self) -> None:
        """Step the schedulers, validate (``best_val``), save checkpoints, report the epoch.

        The report (:meth:`on_epoch_end`) holds ``epoch`` (1-based), ``max_epoch``, the
        epoch's ``lr``, the means in :attr:`epoch_stats` (set by ``run_epoch``),
        ``val_accuracy`` (``best_val``) and ``time``.
        """
        self.update_lr()
        summary = {"epoch": self.epoch + 1, "max_epoch": self.max_epoch, "lr": self._epoch_lr}
        summary.update(getattr(self, "epoch_stats", {}))
        last = self.epoch + 1 == self.max_epoch
        if self.cfg.TEST.FINAL_MODEL == "best_val" and not self.cfg.TEST.NO_TEST:
            summary["val_accuracy"] = self._validate()
        freq = int(self.cfg.TRAIN.CHECKPOINT_FREQ)
        if self.save_checkpoints and (last or (freq > 0 and (self.epoch + 1) % freq == 0)):
            self.save_model(self.epoch, self.output_dir)
        summary["time"] = time.time() - self._epoch_start
        self.history.append(summary)
        self.on_epoch_end(summary)

    def _validate(self) -> float:
        result = self.test(split="val")
        if result > self.best_result:
            self.best_result = result
            self._best_state = {
                name: {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                for name, model in self._models.items()
            }
            if self.save_checkpoints:
                self.save_model(
                    self.epoch, self.output_dir, val_result=result, model_name=BEST_CHECKPOINT
                )
        return result

    def on_epoch_end(self, summary: dict[str, Any]) -> None:
        """Report an epoch: one log line, then every callback (e.g. a progress bar)."""
        parts = [f"epoch [{summary.get('epoch')}/{summary.get('max_epoch')}]"]
        for key, value in summary.items():
            if key not in ("epoch", "max_epoch") and isinstance(value, float):
                parts.append(f"{key} {value:.4e}" if key == "lr" else f"{key} {value:.4f}")
        self.log(" ".join(parts))
        for callback in self.callbacks:
            callback(summary)

    def after_train(self) -> float | None:
        """Deploy the final model and test it (Dassl's messages, then the result block)."""
        self.log("Finish training")
        result = None
        self.timings["train_s"] = time.time() - self.time_start
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                self.log("Deploy the model with the best val performance")
                self._restore_best()
            else:
                self.log("Deploy the last-epoch model")
            start = time.time()
            result = self.test()
            self.timings["test_s"] = time.time() - start
        elapsed = round(time.time() - self.time_start)
        self.log(f"Elapsed: {datetime.timedelta(seconds=elapsed)}")
        return result

    def _restore_best(self) -> None:
        if self._best_state is None:
            # No epoch ran in this process (resumed at the end): use the saved best model.
            self.load_model(self.output_dir)
            return
        for name, state in self._best_state.items():
            self._models[name].load_state_dict(state)

    @torch.no_grad()
    def test(self, split: str | None = None) -> float:
        """Evaluate on ``split`` (default ``TEST.SPLIT``); return the accuracy in percent.

        The full metrics (:func:`~sarfewshot.engine.evaluator.compute_metrics` plus
        ``split``) are kept in :attr:`last_result`.
        """
        split = split or self.cfg.TEST.SPLIT
        loader = self.val_loader if split == "val" else self.test_loader
        split = "val" if split == "val" else "test"
        if loader is None:
            raise ConfigError(f"cannot evaluate on the {split} split: the dataset has none")
        self.set_model_mode("eval")
        self.evaluator.reset()
        self.log(f"Evaluate on the *{split}* set")
        for batch in self._progress(loader, f"test ({split})"):
            inputs, labels = self.parse_batch_test(batch)
            self.evaluator.process(self.model_inference(inputs), labels)
        results = self.evaluator.evaluate()
        metrics = dict(getattr(self.evaluator, "metrics", None) or results)
        metrics["split"] = split
        self.last_result = metrics
        return float(next(iter(results.values())))

    def _progress(self, iterable: Any, desc: str) -> Any:
        if not self.show_progress:
            return iterable
        from tqdm import tqdm

        return tqdm(iterable, desc=desc, leave=False)

    def parse_batch_train(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``(img, label)`` on the trainer's device."""
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def parse_batch_test(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``(img, label)`` on the trainer's device."""
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        """``self.model(input)`` under :meth:`autocast`."""
        with self.autocast():
            return self.model(input)


# ----------------------------------------------------------------------------- TrainerX


def attach_loaders(trainer: Any, dm: Any) -> None:
    """Give ``trainer`` Dassl's loader attributes from a data manager (ours or Dassl's)."""
    trainer.dm = dm
    trainer.train_loader_x = dm.train_loader_x
    trainer.train_loader_u = getattr(dm, "train_loader_u", None)
    trainer.val_loader = dm.val_loader
    trainer.test_loader = dm.test_loader
    trainer.num_classes = dm.num_classes
    trainer.num_source_domains = getattr(dm, "num_source_domains", 1)
    trainer.lab2cname = dm.lab2cname


class TrainerX(SimpleTrainer):
    """A trainer on labelled data only (Dassl's ``TrainerX``)."""

    def run_epoch(self) -> None:
        """One pass over ``train_loader_x``; per-batch results are averaged into
        :attr:`epoch_stats` (the schedulers step in :meth:`after_epoch`)."""
        self.set_model_mode("train")
        self.num_batches = len(self.train_loader_x)
        totals: dict[str, float] = {}
        count = 0
        for batch_idx, batch in enumerate(self._progress(self.train_loader_x, "train")):
            self.batch_idx = batch_idx
            summary = self.forward_backward(batch) or {}
            for key, value in summary.items():
                totals[key] = totals.get(key, 0.0) + float(value)
            count += 1
            self._log_iteration(summary)
        self.epoch_stats = {k: v / max(count, 1) for k, v in totals.items()}

    def _log_iteration(self, summary: dict[str, Any]) -> None:
        freq = max(int(self.cfg.TRAIN.PRINT_FREQ), 1)
        if not self.log_iterations:
            return
        if (self.batch_idx + 1) % freq == 0 or self.num_batches < freq:
            values = " ".join(f"{k} {float(v):.4f}" for k, v in summary.items())
            self.log(
                f"epoch [{self.epoch + 1}/{self.max_epoch}] "
                f"batch [{self.batch_idx + 1}/{self.num_batches}] {values} "
                f"lr {self.get_current_lr():.4e}"
            )


def build_trainer(cfg: Any, dm: Any = None, **options: Any) -> SimpleTrainer:
    """The trainer registered as ``cfg.TRAINER.NAME`` (Dassl's ``build_trainer``)."""
    from sarfewshot.engine.registry import get_trainer

    if not cfg.TRAINER.NAME:
        raise ConfigError("TRAINER.NAME is empty; pass --trainer NAME or set it in a YAML file")
    return get_trainer(cfg.TRAINER.NAME)(cfg, dm, **options)
