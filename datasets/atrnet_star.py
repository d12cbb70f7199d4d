"""ATRNet-STAR (Liu et al., TPAMI 2026): 40 civilian vehicle types, about 200 K chips, and the
ATRBench settings, read from the ground-range 8-bit amplitude release.

Layout (as published, one folder per ATRBench setting, each with pre-split train and test sets):
``<setting folder>/train|test/<type>/*.tif`` (an ``.xml`` annotation beside each chip is
ignored). ``root`` may be the folder holding the setting folders (``Ground_Range/Amplitude_8bit``
of the Hugging Face dataset, or the extracted archive), the dataset root above
``Ground_Range/Amplitude_8bit``, or the setting folder itself.

Settings (option ``setting``, ``DATASET.SAR.ATRNET_SETTING``), from the ATRBench README and its
scripts (:data:`SETTINGS`): ``soc40`` (random 7:3 split, ``SOC_40classes``), ``soc50``
(``SOC_50classes``: 40 types plus the ten MSTAR classes), ``eoc_scene`` (simple scenes ->
complex), ``eoc_depression`` (15 deg -> 30/45/60), ``eoc_azimuth`` (0-60 deg -> the rest),
``eoc_band`` (X -> Ku), ``eoc_band_inverse`` (Ku -> X: the same folder with train and test
swapped, the README's "inverse" row) and ``eoc_polarization`` (HH -> VV/HV/VH). The EOC folders
also hold per-condition test folders ``test_<subset>``; option ``test_subset``
(``DATASET.SAR.ATRNET_TEST_SUBSET``) evaluates on one of them instead of the whole ``test``.
Operating conditions (``sarfewshot eval --conditions``, :meth:`ATRNetSTAR.test_conditions`):
an EOC setting names ``id`` (the validation pool: chips of the training condition that no
support set holds), ``<condition>`` (its whole test folder: ``scene``, ``depression``,
``azimuth``, ``band``, ``band_inverse``, ``polarization``) and ``<condition>_<subset>`` per
``test_<subset>`` folder (``depression_45``, ``polarization_vv``, ...); SOC settings name
``id`` (their test set). Each (setting, subset) has its own split name
(``atrnet_star_<setting>[_test<subset>]``), so their split files never collide. Records of a
plain run carry the dataset name ``atrnet_star`` whatever the setting, so each setting needs its
own run folder (``eval`` refuses to mix them: the config differs); records of a ``--conditions``
run are named ``atrnet_star_<setting>:<condition>`` and carry ``setting`` and ``condition`` in
their key, so one folder holds every setting.

Class list: the 40 type folders (:data:`ATRNET_CLASSES`, spelled as in the release, sorted as
ATRBench's ``ImageFolder`` numbers them); ``soc50`` adds :data:`MSTAR_CLASSES`. Folder names match
in any case and punctuation; another folder is an error unless ``extra_classes``
(``DATASET.SAR.EXTRA_CLASSES``) keeps it.

Expected types: every train and test folder of every setting holds all of the setting's types
(ATRBench's Table 1: 40, or 50 for ``soc50``), except the per-condition test folders of
:data:`PARTIAL_TESTS` (EOC-Scene's woodland scene holds 11 of the 40 types). A folder set with
types missing would give a record whose class count and per-class accuracies disagree with the
benchmark's, so it is an error naming the missing type folders, unless ``allow_missing_classes``
(``DATASET.SAR.ALLOW_MISSING_CLASSES``) is set: then the listing's ``extra["missing_classes"]``
names them, the record carries them (``dataset.missing_classes``) and the table marks the cell.

Chips are 128 x 128 with the target off centre (random offsets), so the crop is the whole chip.
20 % of each train class is the validation pool.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sarfewshot.data.base import ID_CONDITION, Listing, TestCondition
from sarfewshot.data.listing import (
    FixedClassDataset,
    find_child_dir,
    option_flag,
    require_child_dir,
    require_root,
    to_datums,
)
from sarfewshot.data.registry import DATASET_REGISTRY
from sarfewshot.datasets.mstar_soc import MSTAR_CLASSES
from sarfewshot.errors import ConfigError, DatasetError

# The 40 type folders of the release (brand_type), in Python's sorted order.
ATRNET_CLASSES = (
    "Buick_Excelle_GT",
    "Buick_GL8",
    "CNHTC_HOWO",
    "Chang'an_CS75_Plus",
    "Chang'an_Starlight_4500",
    "Changfeng_Cheetah_CFA6473C",
    "Changlin_8228-5",
    "Chery_Arrizo 5",
    "Chery_qq3",
    "Chevrolet_Blazer_1998",
    "Dongfeng_Duolika",
    "Dongfeng_EQ6608LTV",
    "Dongfeng_Forthing_Lingzhi",
    "Dongfeng_Tianjin_DFH2200B",
    "Dongfeng_Tianjin_KR230",
    "FAW_J6P",
    "FAW_Jiabao_T51",
    "Foton_BJ1045V9JB5-54",
    "Great_Wall_Voleex_C50",
    "Great_Wall_poer",
    "Hawtai_EV160B",
    "Hongqi_CA7180A3E",
    "Hongqi_h5",
    "Huanghai_N1",
    "Hyundai_HLF25_II",
    "JAC_Junling",
    "JINBEI_SY5033XJH",
    "Jeep_Patriot",
    "Lincoln_MKC",
    "Lveco_Proud_2009",
    "MAXUS_V80",
    "Mitsubishi_Outlander_2003",
    "SDLG_ZL40F",
    "SHACMAN_DeLong_M3000",
    "SHACMAN_DeLong_X3000",
    "WAW_Aochi_1800",
    "WAW_Aochi_Hongrui",
    "Wuling_Rongguang_V",
    "Yangzi_YZK6590XCA",
    "Yutong_ZK6120HY1",
)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One ATRBench setting: its folder, which sub-folders are train and test, its test subsets."""

    folder: str
    what: str
    train: str = "train"
    test: str = "test"
    subsets: tuple[str, ...] = ()  # per-condition test folders test_<subset>
    mstar: bool = False  # the ten MSTAR classes join the 40 types
    condition: str = ""  # the test set's condition name; "" = in distribution (SOC)


SETTINGS = {
    "soc40": Setting("SOC_40classes", "40 types, random 7:3 split"),
    "soc50": Setting("SOC_50classes", "40 types + 10 MSTAR classes", mstar=True),
    "eoc_scene": Setting(
        "EOC_scene",
        "sandstone, bare soil -> city, factory, woodland",
        subsets=("urban", "factory", "woodland"),
        condition="scene",
    ),
    "eoc_depression": Setting(
        "EOC_depression",
        "15 deg -> 30, 45, 60 deg",
        subsets=("30", "45", "60"),
        condition="depression",
    ),
    "eoc_azimuth": Setting(
        "EOC_azimuth",
        "0-60 deg -> 60-360 deg",
        subsets=("60", "120", "180", "240", "300"),
        condition="azimuth",
    ),
    "eoc_band": Setting("EOC_band", "X band -> Ku band", condition="band"),
    "eoc_band_inverse": Setting(
        "EOC_band", "Ku band -> X band", train="test", test="train", condition="band_inverse"
    ),
    "eoc_polarization": Setting(
        "EOC_pol", "HH -> VV, HV, VH", subsets=("VV", "HV", "VH"), condition="polarization"
    ),
}
HF_PATH = ("Ground_Range", "Amplitude_8bit")
# Per-condition test folders that legitimately hold fewer types than their setting: (setting
# folder, subset) -> number of types. The woodland scene of EOC-Scene has 11 of the 40 types.
PARTIAL_TESTS = {("EOC_scene", "woodland"): 11}


def settings_text() -> str:
    """One line per setting for listings: name, folder, what changes between train and test."""
    lines = []
    for name, s in SETTINGS.items():
        subsets = f"; test_subset {', '.join(s.subsets)}" if s.subsets else ""
        names = [ID_CONDITION]
        if s.condition:
            names += [s.condition] + [f"{s.condition}_{sub.lower()}" for sub in s.subsets]
        subsets += f"; conditions {', '.join(names)}"
        swap = f" ({s.train} <-> {s.test} swapped)" if s.train != "train" else ""
        lines.append(f"{name}: {s.folder}{swap}, {s.what}{subsets}")
    return "\n".join(lines)


@DATASET_REGISTRY.register("atrnet_star", aliases=("atrnet", "ATRNet-STAR", "atrbench"))
class ATRNetSTAR(FixedClassDataset):
    """ATRNet-STAR ground-range amplitude chips under one ATRBench setting."""

    name = "atrnet_star"
    title = "ATRNet-STAR"
    classes = ATRNET_CLASSES
    layout = (
        "[Ground_Range/Amplitude_8bit/]<setting folder>/train|test/<type>/*.tif (root: the "
        "folder holding SOC_40classes/, EOC_scene/, ...)"
    )
    options_help = (
        "setting (DATASET.SAR.ATRNET_SETTING, default soc40), test_subset "
        "(DATASET.SAR.ATRNET_TEST_SUBSET), extra_classes (DATASET.SAR.EXTRA_CLASSES), "
        "allow_missing_classes (DATASET.SAR.ALLOW_MISSING_CLASSES)"
    )

    def __init__(self, root, setting: str = "soc40", test_subset: str = "", **options) -> None:
        super().__init__(root, setting=setting, test_subset=test_subset, **options)
        self.setting = str(setting).strip().lower().replace("-", "_")
        if self.setting not in SETTINGS:
            raise ConfigError(
                f"ATRNet-STAR setting {setting!r} (DATASET.SAR.ATRNET_SETTING / --option "
                f"setting=...) is not one of {sorted(SETTINGS)}"
            )
        self.test_subset = str(test_subset or "").strip()
        allowed = SETTINGS[self.setting].subsets
        if self.test_subset and self.test_subset.lower() not in [s.lower() for s in allowed]:
            raise ConfigError(
                f"ATRNet-STAR test_subset {test_subset!r} (DATASET.SAR.ATRNET_TEST_SUBSET) is "
                f"not one of setting {self.setting}'s {list(allowed) or 'none'}"
            )
        if self.spec.mstar:
            self.classes = ATRNET_CLASSES + MSTAR_CLASSES

    @staticmethod
    def settings_text() -> str:
        """The settings, one per line (shown by ``sarfewshot data list``)."""
        return settings_text()

    @classmethod
    def options_from_cfg(cls, cfg) -> dict:
        """Plug-in options from ``DATASET.SAR.ATRNET_SETTING``, ``ATRNET_TEST_SUBSET`` and
        ``EXTRA_CLASSES``."""
        sar = getattr(cfg.DATASET, "SAR", None)
        allow = {"allow_missing_classes": True} if getattr(sar, "ALLOW_MISSING_CLASSES", 0) else {}
        return {
            **super().options_from_cfg(cfg),
            "setting": getattr(sar, "ATRNET_SETTING", "soc40"),
            "test_subset": getattr(sar, "ATRNET_TEST_SUBSET", ""),
            **allow,
        }

    @property
    def spec(self) -> Setting:
        """The chosen ATRBench setting."""
        return SETTINGS[self.setting]

    @property
    def split_name(self) -> str:
        """Split folder and random-stream name of this setting (and test subset)."""
        subset = f"_test{self.test_subset.lower()}" if self.test_subset else ""
        return f"{self.name}_{self.setting}{subset}"

    def _setting_dir(self) -> Path:
        root = require_root(self.root, self.layout)
        if root.name.lower() == self.spec.folder.lower():
            return root
        for base in (root, _descend(root, HF_PATH)):
            found = find_child_dir(base, self.spec.folder) if base is not None else None
            if found is not None:
                return found
        raise DatasetError(
            f"dataset root {self.root} has no {self.spec.folder} folder (ATRNet-STAR setting "
            f"{self.setting}); expected {self.layout}"
        )

    def list(self) -> Listing:
        """Train and test chips of the setting, with the fixed class list checked."""
        base = self._setting_dir()
        test_name = f"test_{self.test_subset}" if self.test_subset else self.spec.test
        train_dir = require_child_dir(base, self.spec.train, self.root, self.layout)
        test_dir = require_child_dir(base, test_name, self.root, self.layout)
        listing = self.train_test_listing(base, train_dir, test_dir)
        missing = self._missing_types(listing, train_dir, test_dir)
        if missing:
            listing.extra["missing_classes"] = missing
        return listing

    def _missing_types(self, listing: Listing, train_dir: Path, test_dir: Path) -> dict:
        """``{folder name: [missing types]}`` of train and test; an error unless allowed."""
        have = {
            train_dir: {d.classname for d in listing.train},
            test_dir: {d.classname for d in listing.test},
        }
        partial = PARTIAL_TESTS.get((self.spec.folder, self.test_subset.lower()))
        missing, problems = {}, []
        for folder, types in have.items():
            absent = [c for c in self.classes if c not in types]
            expected = partial if folder == test_dir and partial else len(self.classes)
            present = sum(c in types for c in self.classes)
            if present == expected:
                continue
            missing[folder.name] = absent
            problems.append(_missing_text(folder, present, expected, absent))
        self._refuse_unless_allowed(problems)
        return missing

    def _refuse_unless_allowed(self, problems: list[str]) -> None:
        """The missing-types error, unless ``allow_missing_classes``."""
        if problems and not option_flag(
            self.options.get("allow_missing_classes", False), "allow_missing_classes"
        ):
            raise DatasetError(
                f"ATRNet-STAR setting {self.setting}: " + "; ".join(problems) + ". A record "
                "would then count fewer classes than the benchmark; restore the folders, or set "
                "DATASET.SAR.ALLOW_MISSING_CLASSES True to evaluate anyway (the record and the "
                "table are marked)"
            )

    def _check_subset(self, listing: Listing, folder: Path, types: set[str], subset: str) -> None:
        """A ``test_<subset>`` condition folder must hold its types, as the listing's do; when
        allowed, the listing's ``missing_classes`` names it, so the run's records are marked."""
        expected = PARTIAL_TESTS.get((self.spec.folder, subset.lower())) or len(self.classes)
        present = sum(c in types for c in self.classes)
        if present == expected:
            return
        absent = [c for c in self.classes if c not in types]
        self._refuse_unless_allowed([_missing_text(folder, present, expected, absent)])
        listing.extra.setdefault("missing_classes", {})[folder.name] = absent

    def plain_condition(self) -> str:
        """An EOC setting's plain run scores its test folder: ``<condition>`` (or
        ``<condition>_<subset>`` with ``test_subset``), the name ``--conditions`` gives it."""
        spec = self.spec
        if not spec.condition:
            return ID_CONDITION
        if self.test_subset:
            return f"{spec.condition}_{self.test_subset.lower()}"
        return spec.condition

    def test_conditions(self, listing: Listing) -> list[TestCondition]:
        """SOC settings: ``id``, the test set. EOC settings: ``id`` (the validation pool, chips of
        the training condition), ``<condition>`` (the whole test folder) and
        ``<condition>_<subset>`` per ``test_<subset>`` folder (e.g. ``depression_45``).

        With ``test_subset`` the listing's test set is that subset: ``id`` and its condition.
        """
        spec = self.spec
        if not spec.condition:
            return super().test_conditions(listing)
        train_what = f"validation pool of {spec.train} ({spec.what.split(' -> ')[0]})"
        out = [TestCondition(ID_CONDITION, train_what, part="val")]
        if self.test_subset:
            name = f"{spec.condition}_{self.test_subset.lower()}"
            return out + [TestCondition(name, f"test_{self.test_subset}", part="test")]
        out.append(TestCondition(spec.condition, f"{spec.test}: {spec.what}", part="test"))
        base = Path(listing.root)
        for subset in spec.subsets:
            folder = require_child_dir(base, f"test_{subset}", self.root, self.layout)
            found = self._split_items(base, folder)
            unknown = sorted({c for _, c in found} - set(listing.classnames))
            if unknown:
                raise DatasetError(f"{folder} has class folder(s) {unknown} the setting lacks")
            self._check_subset(listing, folder, {c for _, c in found}, subset)
            items = to_datums(found, list(listing.classnames))
            name = f"{spec.condition}_{subset.lower()}"
            out.append(TestCondition(name, f"test_{subset}", part="extra", items=tuple(items)))
        return out


def _missing_text(folder: Path, present: int, expected: int, absent: list[str]) -> str:
    if expected < len(absent) + present:  # a partial test folder: which types is not published
        return f"{folder} has {present} type folders, ATRBench's has {expected}"
    shown = ", ".join(absent[:10]) + (f" and {len(absent) - 10} more" if len(absent) > 10 else "")
    return f"{folder} has {present} of the {expected} type folders (missing: {shown})"


def _descend(root: Path, parts: tuple[str, ...]) -> Path | None:
    node: Path | None = root
    for part in parts:
        node = find_child_dir(node, part) if node is not None else None
    return node
