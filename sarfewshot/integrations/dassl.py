"""Bridge into a real Dassl installation (Dassl.pytorch 0.6.3, the engine under CoOp-style code).

Importing this module never imports Dassl. :func:`register` does, and then adds to Dassl's own
registries:

* every sarfewshot dataset as a ``dassl.data.datasets.DatasetBase`` subclass in
  ``DATASET_REGISTRY``, under its canonical name, its aliases and the release's names
  (``MSTAR_SOC``, ``New_FUSAR``, ``SAR_ACD``). It lists the images with the sarfewshot plug-in and
  draws the few-shot split with :mod:`sarfewshot.data.splits` (portable JSON, seeded by
  ``(SEED, dataset, K)``), never with Dassl's pickled few-shot cache;
* the trained protocols (``finetune``, ``linear``, ``lora``, ``partial``) as
  ``dassl.engine.TrainerX`` subclasses in ``TRAINER_REGISTRY`` (also ``MIM_finetune`` /
  ``MIM_linear``).

Dassl 0.6.3 breaks on current torch and numpy in five places (docs/dassl.md); the bridged
trainers avoid every one of them: the optimiser and the warm-up/cosine schedule are
sarfewshot's (closed form, no ``verbose`` argument, plain-number state), checkpoints are written
and read by sarfewshot's engine (state dicts only, ``torch.load(weights_only=True)``, a None
``val_result`` prints as ``None``), Dassl's augmentation code is never called, and the trainers
seed Python/numpy/torch from ``SEED`` themselves, so ``SEED 0`` is a real seed.

One-channel images: Dassl's ``DataManager`` reads every image as RGB with PIL and builds its
transforms from ``INPUT.TRANSFORMS``. The bridged trainers load data with sarfewshot's
``DataManager`` when ``DATASET.NAME`` is a sarfewshot dataset; for other datasets (and for
users' own Dassl trainers) :func:`build_data_manager` builds Dassl's ``DataManager`` with
:class:`SARDatasetWrapper`, which reads each ``Datum.impath`` with sarfewshot's reader and
applies the release's preprocessing from the config (centre crop with zero padding, resize to
``INPUT.SIZE``, amplitude in [0, 1], one channel).
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Sequence

from sarfewshot.data.datamanager import DatasetWrapper
from sarfewshot.errors import ConfigError, SarFewShotError

if TYPE_CHECKING:
    import torch

DASSL_REPO = "https://github.com/KaiyangZhou/Dassl.pytorch"

INSTALL_HINT = (
    "Dassl is not on PyPI; install it from its git repository: "
    f"`git clone {DASSL_REPO} && cd Dassl.pytorch && pip install -r requirements.txt && "
    "pip install -e .` (see docs/dassl.md). `sarfewshot dassl-train` needs no Dassl."
)

#: The release's dataset names (its ``configs/datasets/*.yaml``) -> sarfewshot dataset names.
RELEASE_DATASETS: dict[str, str] = {
    "MSTAR_SOC": "mstar_soc",
    "New_FUSAR": "fusar_ship",
    "SAR_ACD": "sar_acd",
}

#: The release's trainer names -> sarfewshot protocols bridged as Dassl ``TrainerX`` classes.
RELEASE_TRAINERS: dict[str, str] = {"MIM_finetune": "finetune", "MIM_linear": "linear"}

BRIDGED_PROTOCOLS: tuple[str, ...] = ("finetune", "linear", "lora", "partial")

#: Marks the classes this module put into Dassl's registries (so re-registering is a no-op).
BRIDGE_MARK = "_sarfewshot_bridge"

_CLASSES: dict[str, type] = {}


class DasslNotInstalledError(SarFewShotError, ImportError):
    """Dassl (or one of the packages it imports) cannot be imported."""


# ----------------------------------------------------------------------------- import


def require_dassl() -> ModuleType:
    """Import Dassl's data and engine packages, or explain how to install them.

    Returns:
        The ``dassl`` package.

    Raises:
        DasslNotInstalledError: Dassl, or a dependency it imports, is missing.
    """
    try:
        importlib.import_module("dassl.data")
        importlib.import_module("dassl.engine")
        return importlib.import_module("dassl")
    except ImportError as exc:
        missing = getattr(exc, "name", None) or ""
        if missing == "dassl" or missing.startswith("dassl."):
            message = f"Dassl is not installed ({exc}). {INSTALL_HINT}"
            raise DasslNotInstalledError(message) from None
        raise DasslNotInstalledError(
            f"Dassl is installed but cannot be imported: {exc}. Install the missing package "
            f"({missing or 'see the message'}) into the same environment; Dassl imports gdown, "
            "tensorboard, wilds and pandas at import time (docs/dassl.md lists the set)."
        ) from None


def dassl_available() -> bool:
    """Whether :func:`require_dassl` would succeed."""
    try:
        require_dassl()
    except DasslNotInstalledError:
        return False
    return True


# ----------------------------------------------------------------------------- config


def _add_missing(dst: Any, src: Any) -> None:
    """Copy the keys of ``src`` that ``dst`` lacks, recursing into nodes both have."""
    for key, value in src.items():
        if key not in dst:
            dst[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(dst[key], dict):
            _add_missing(dst[key], value)


def extend_cfg(cfg: Any) -> Any:
    """Add sarfewshot's keys to a Dassl config (CoOp's ``extend_cfg`` step, before merging).

    Adds every key of :func:`sarfewshot.engine.config.get_cfg_default` that the config lacks
    (``INPUT.CHANNELS``, ``INPUT.SAR.*``, ``DATASET.VAL_POOL``, ``DATASET.SPLIT_DIR``,
    ``DATASET.REPEAT``, ``DATASET.SAR.*``, ``MODEL.BACKBONE.ARCH``, ...) and each protocol's
    ``TRAINER.<NAME>.*`` keys; existing values are kept. An empty ``MODEL.BACKBONE.NAME``
    (Dassl's default) becomes sarfewshot's default, ``sarjepa``.

    Returns:
        ``cfg`` itself, extended in place.

    Raises:
        ConfigError: the config is frozen (call this before ``merge_from_file``/``freeze``).
    """
    from sarfewshot.engine.config import extend_cfg as extend_ours
    from sarfewshot.engine.config import get_cfg_default

    if getattr(cfg, "is_frozen", lambda: False)():
        raise ConfigError("extend_cfg needs an unfrozen config: call it before cfg.freeze()")
    ours = extend_ours(get_cfg_default())
    _add_missing(cfg, ours)
    if not cfg.MODEL.BACKBONE.NAME:
        cfg.MODEL.BACKBONE.NAME = ours.MODEL.BACKBONE.NAME
    return cfg


def with_sar_keys(cfg: Any) -> Any:
    """``cfg`` when it has sarfewshot's keys, else a frozen copy extended with their defaults.

    Lets the bridged classes accept a plain Dassl config (e.g. one cleaned by Dassl's
    ``clean_cfg``); to *set* those keys from YAML files, call :func:`extend_cfg` before merging.
    """
    probe = copy.deepcopy(cfg)
    if hasattr(probe, "defrost"):
        probe.defrost()
    extend_cfg(probe)
    if probe == cfg:
        return cfg
    if hasattr(probe, "freeze"):
        probe.freeze()
    return probe


# ----------------------------------------------------------------------------- images


def sar_transform(cfg: Any) -> Callable:
    """The release's evaluation preprocessing for ``cfg`` (path or image -> (1, S, S) tensor)."""
    from sarfewshot.data.transforms import build_eval_transform, spec_from_cfg

    return build_eval_transform(spec_from_cfg(cfg))


class SARDatasetWrapper(DatasetWrapper):
    """Dassl's ``dataset_wrapper`` hook: Datum lists -> one-channel SAR batches.

    Same signature as Dassl's ``DatasetWrapper``. Dassl's transforms assume three-channel PIL
    images from its RGB reader, so a transform other than sarfewshot's is replaced by the SAR
    preset of ``cfg`` (:func:`sar_transform`); each path is read with
    :func:`sarfewshot.data.io.read_sar` (16-bit and float data keep their range). Batches hold
    Dassl's keys ``img``, ``label``, ``domain``, ``impath``, ``index``.
    """

    def __init__(
        self, cfg: Any, data_source: Sequence[Any], transform: Any = None, is_train: bool = False
    ) -> None:
        from sarfewshot.data.transforms import EvalTransform

        if not isinstance(transform, EvalTransform):
            transform = sar_transform(cfg)
        super().__init__(cfg, data_source, transform=transform, is_train=is_train)


def build_data_manager(cfg: Any) -> Any:
    """Dassl's ``DataManager`` for ``cfg`` with one-channel SAR images (:class:`SARDatasetWrapper`).

    The dataset comes from Dassl's ``DATASET_REGISTRY`` (call :func:`register` first for the
    sarfewshot datasets). Use it in the ``build_data_loader`` of your own Dassl trainers.
    """
    require_dassl()
    from dassl.data import DataManager

    tfm = sar_transform(cfg)
    return DataManager(
        cfg, custom_tfm_train=tfm, custom_tfm_test=tfm, dataset_wrapper=SARDatasetWrapper
    )


# ----------------------------------------------------------------------------- datasets


def _dataset_base() -> type:
    """The Dassl ``DatasetBase`` subclass every bridged dataset derives from (built once)."""
    if "dataset" in _CLASSES:
        return _CLASSES["dataset"]
    from dassl.data.datasets import DatasetBase, Datum

    def to_dassl(items: Sequence[Any]) -> list:
        return [Datum(d.impath, d.label, d.domain, d.classname) for d in items or ()]

    class SARDasslDataset(DatasetBase):
        """A sarfewshot dataset as Dassl sees it: ``train_x`` (the K-shot support set), ``val``
        (the held-out validation pool) and ``test``, with absolute image paths."""

        sar_name = ""

        def __init__(self, cfg: Any) -> None:
            from sarfewshot.data.build import build_dataset
            from sarfewshot.data.registry import get_dataset

            cfg = with_sar_keys(cfg)
            if get_dataset(cfg.DATASET.NAME) is not get_dataset(self.sar_name):
                raise ConfigError(
                    f"DATASET.NAME {cfg.DATASET.NAME!r} is not the dataset {self.sar_name!r} "
                    f"that Dassl class {type(self).__name__} reads"
                )
            ours = build_dataset(cfg)
            self.sar_dataset = ours
            super().__init__(
                train_x=to_dassl(ours.train_x), val=to_dassl(ours.val), test=to_dassl(ours.test)
            )

    setattr(SARDasslDataset, BRIDGE_MARK, True)
    _CLASSES["dataset"] = SARDasslDataset
    return SARDasslDataset


def dassl_dataset_names() -> dict[str, str]:
    """Dassl name -> sarfewshot dataset: every canonical name, alias and release name."""
    from sarfewshot.data.registry import DATASET_REGISTRY, list_datasets

    names: dict[str, str] = {}
    for name in list_datasets():
        for key in (name, *DATASET_REGISTRY.aliases(name)):
            names.setdefault(key, name)
    for release, name in RELEASE_DATASETS.items():
        names[release] = DATASET_REGISTRY.canonical(name)
    return names


# ----------------------------------------------------------------------------- trainers


def check_init_weights(cfg: Any) -> None:
    """A missing ``MODEL.INIT_WEIGHTS`` file, named by that key (Dassl has no ``--weights``).

    Raises:
        WeightsError: the file does not exist.
    """
    from sarfewshot.errors import WeightsError

    weights = str(cfg.MODEL.INIT_WEIGHTS or "")
    if weights and not Path(weights).expanduser().is_file():
        raise WeightsError(f"MODEL.INIT_WEIGHTS {weights}: file not found")


class _DasslBridgeMixin:
    """The methods by which a Dassl ``TrainerX`` runs a sarfewshot protocol.

    The protocol's own trainer (built on the same data) supplies the model, optimiser,
    schedule and ``forward_backward``; checkpoint saving, resuming and loading are
    sarfewshot's (state dicts only, read with ``weights_only=True``). The schedule steps
    once per epoch, at its end, as in Dassl. It precedes ``TrainerX`` in the bases of
    :func:`_trainer_base`'s class, so its methods replace Dassl's.
    """

    protocol = ""

    def __init__(self, cfg: Any) -> None:
        # Seeding happens when the protocol's trainer is built (build_model), from
        # cfg.SEED, 0 included, before any batch is drawn.
        self.sar_trainer = None
        super().__init__(with_sar_keys(cfg))

    def log(self, message: str) -> None:
        """Print a message (Dassl's logger tees stdout into log.txt)."""
        print(message, flush=True)

    def check_cfg(self, cfg: Any) -> None:
        """The checks of sarfewshot's engine (FINAL_MODEL, MAX_EPOCH)."""
        from sarfewshot.engine import trainer as engine

        engine.SimpleTrainer.check_cfg(self, cfg)

    def build_data_loader(self) -> None:
        """sarfewshot's loaders for its datasets, else Dassl's with one-channel images."""
        from sarfewshot.data.datamanager import DataManager
        from sarfewshot.data.registry import DATASET_REGISTRY, list_datasets
        from sarfewshot.engine import trainer as engine

        list_datasets()  # loads the plug-ins
        if self.cfg.DATASET.NAME in DATASET_REGISTRY:
            dm = DataManager(self.cfg)
            if self.cfg.VERBOSE:
                dm.show_dataset_summary()
        else:
            dm = build_data_manager(self.cfg)
        engine.attach_loaders(self, dm)
        engine.SimpleTrainer._check_val_split(self)

    def build_model(self) -> None:
        """Build the protocol's trainer on the same data and adopt its models."""
        from sarfewshot.engine.registry import get_trainer

        check_init_weights(self.cfg)
        inner = get_trainer(self.protocol)(
            self.cfg, self.dm, save_checkpoints=False, write_log=False, verbose=False
        )
        self.sar_trainer = inner
        self.device = inner.device
        self.model = inner.model
        for name in inner.get_model_names():
            self.register_model(name, inner._models[name], inner._optims[name], inner._scheds[name])

    def forward_backward(self, batch: dict) -> dict[str, float]:
        """The protocol's optimisation step."""
        self.sar_trainer.epoch, self.sar_trainer.batch_idx = self.epoch, self.batch_idx
        return self.sar_trainer.forward_backward(batch)

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        """The protocol's logits, in float32 (computed in ``MODEL.PRECISION``)."""
        import torch

        with torch.no_grad():
            return self.sar_trainer.model_inference(input).float()

    def after_epoch(self) -> None:
        """Step the schedule (once per epoch), then Dassl's validation and checkpoints."""
        self.update_lr()
        super().after_epoch()

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        """Load ``model.pth.tar-<epoch>`` (or the best/latest) with ``weights_only``."""
        from sarfewshot.engine import trainer as engine

        if not directory:
            print("load_model() skipped: no model directory given")
            return
        engine.TrainerBase.load_model(self, directory, epoch)


def _trainer_base() -> type:
    """The Dassl ``TrainerX`` subclass every bridged protocol derives from (built once)."""
    if "trainer" in _CLASSES:
        return _CLASSES["trainer"]
    from dassl.engine import TrainerX

    from sarfewshot.engine import trainer as engine

    class SARDasslTrainer(_DasslBridgeMixin, TrainerX):
        """A sarfewshot protocol run by Dassl's loop (:class:`_DasslBridgeMixin`)."""

        # sarfewshot's checkpoint code replaces Dassl's (pickled scheduler, None val_result).
        save_model = engine.TrainerBase.save_model
        resume_model_if_exist = engine.TrainerBase.resume_model_if_exist

    setattr(SARDasslTrainer, BRIDGE_MARK, True)
    _CLASSES["trainer"] = SARDasslTrainer
    return SARDasslTrainer


def dassl_trainer_names() -> dict[str, str]:
    """Dassl name -> sarfewshot protocol for the bridged protocols (aliases, release names)."""
    from sarfewshot.engine.registry import TRAINER_REGISTRY, list_trainers

    list_trainers()  # loads the plug-ins
    names: dict[str, str] = {}
    for name in BRIDGED_PROTOCOLS:
        for key in (name, *TRAINER_REGISTRY.aliases(name)):
            names.setdefault(key, name)
    for release, name in RELEASE_TRAINERS.items():
        names[release] = TRAINER_REGISTRY.canonical(name)
    return names


# ----------------------------------------------------------------------------- register


def _named_subclass(base: type, name: str, attr: str, target: str) -> type:
    """A subclass of ``base`` whose ``__name__`` is ``name`` (Dassl registers by ``__name__``)."""
    cls = type(name, (base,), {attr: target, "__module__": __name__})
    cls.__qualname__ = name
    return cls


def _register_into(
    registry: Any, names: dict[str, str], base: type, attr: str, kind: str
) -> list[str]:
    """Register one named subclass of ``base`` per Dassl name; names already served by the
    bridge are kept, and a name held by anyone else stops the call before any change."""
    taken = set(registry.registered_names())
    foreign = [n for n in names if n in taken and not getattr(registry.get(n), BRIDGE_MARK, False)]
    if foreign:
        raise ConfigError(
            f"Dassl's {kind} registry already holds {foreign} from other code; the bridge does "
            "not replace them (rename or unregister those classes)"
        )
    for dassl_name, target in names.items():
        if dassl_name not in taken:
            registry.register(_named_subclass(base, dassl_name, attr, target))
    return list(names)


def register() -> dict[str, list[str]]:
    """Register sarfewshot's datasets and its trained protocols into Dassl.

    Idempotent: a second call changes nothing. Use it before ``dassl.engine.build_trainer``::

        from dassl.config import get_cfg_default
        from sarfewshot.integrations import dassl as bridge

        bridge.register()
        cfg = bridge.extend_cfg(get_cfg_default())
        cfg.merge_from_file("configs/datasets/MSTAR_SOC.yaml")  # ... then build_trainer(cfg)

    Returns:
        ``{"datasets": [...], "trainers": [...]}``, the Dassl names now served by sarfewshot.

    Raises:
        DasslNotInstalledError: Dassl cannot be imported (the message says how to install it).
        ConfigError: one of the names is taken by a class that is not the bridge's.
    """
    require_dassl()
    from dassl.data.datasets import DATASET_REGISTRY
    from dassl.engine import TRAINER_REGISTRY

    datasets = _register_into(
        DATASET_REGISTRY, dassl_dataset_names(), _dataset_base(), "sar_name", "dataset"
    )
    trainers = _register_into(
        TRAINER_REGISTRY, dassl_trainer_names(), _trainer_base(), "protocol", "trainer"
    )
    return {"datasets": datasets, "trainers": trainers}
