"""Fake dataset trees for tests (torchgeo style): tiny files in every layout the toolkit reads.

Each ``make_*`` function writes a tree under a folder (a pytest ``tmp_path``) and returns what a
correct reader must find, so tests compare against generated truth, never against real data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from sarfewshot.datasets.atrnet_star import ATRNET_CLASSES

MSTAR_TRAIN_FOLDERS = {  # folder name -> canonical class (release spellings)
    "2S1": "2S1",
    "BMP2": "BMP2",
    "BRDM_2": "BRDM2",
    "BTR60": "BTR60",
    "BTR70": "BTR70",
    "D7": "D7",
    "T62": "T62",
    "T72": "T72",
    "ZIL131": "ZIL131",
    "ZSU_23_4": "ZSU234",
}
MSTAR_TEST_FOLDERS = {  # the other spellings, and lower case
    "2s1": "2S1",
    "BMP2": "BMP2",
    "BRDM2": "BRDM2",
    "BTR60": "BTR60",
    "btr70": "BTR70",
    "D7": "D7",
    "T62": "T62",
    "T72": "T72",
    "ZIL131": "ZIL131",
    "ZSU234": "ZSU234",
}
NESTED = {"BMP2": ("SN_9563", "SN_C21"), "T72": ("SN_132", "SN_S7")}  # serial sub-folders
FUSAR_CLASSES = ("Bridges", "Cargo", "Fishing", "Tanker")
SAR_ACD_CLASSES = ("A220", "A330", "ARJ21", "Boeing737", "Boeing787")
SAMPLE_CLASSES = ("2s1", "bmp2", "m1", "t72")


def chip(rng: np.random.Generator, h: int = 24, w: int = 24) -> np.ndarray:
    """A random dark 8-bit chip with one bright blob (SAR-like enough for readers)."""
    img = rng.gamma(1.0, 20.0, (h, w)).clip(0, 255)
    img[h // 3 : h // 2, w // 3 : w // 2] += 150
    return img.clip(0, 255).astype(np.uint8)


def write_image(path: Path, arr: np.ndarray) -> Path:
    """Write an array with Pillow (format from the extension; uint8, uint16 or float32)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {
        ".jpg": "JPEG",
        ".jpeg": "JPEG",
        ".png": "PNG",
        ".tif": "TIFF",
        ".tiff": "TIFF",
        ".bmp": "BMP",
    }[path.suffix.lower()]
    Image.fromarray(arr).save(path, format=fmt)
    return path


def write_png16(path: Path, arr: np.ndarray) -> Path:
    """A 16-bit grayscale PNG holding ``arr`` (uint16) exactly."""
    return write_image(path, arr.astype(np.uint16))


def write_tiff16(path: Path, arr: np.ndarray) -> Path:
    """A 16-bit grayscale TIFF holding ``arr`` (uint16) exactly."""
    return write_image(path, arr.astype(np.uint16))


def write_float_tiff(path: Path, arr: np.ndarray) -> Path:
    """A float32 TIFF (Pillow mode 'F')."""
    return write_image(path, arr.astype(np.float32))


def phoenix_bytes(
    magnitude: np.ndarray, phase: np.ndarray | None = None, **fields: object
) -> bytes:
    """A raw MSTAR file: Phoenix header, big-endian float32 magnitude then phase blocks."""
    rows, cols = magnitude.shape
    phase = np.zeros_like(magnitude) if phase is None else phase
    head = {
        "PhoenixHeaderLength": "00000",
        "native_header_length": "0",
        "NumberOfColumns": cols,
        "NumberOfRows": rows,
        "TargetType": "bmp2_tank",
        "TargetSerNum": "9563",
        "DesiredDepression": 17,
        **fields,
    }

    def text(length: str) -> bytes:
        head["PhoenixHeaderLength"] = length
        lines = [
            "",
            "[PhoenixHeaderVer01.04]",
            *(f"{k}= {v}" for k, v in head.items()),
            "[EndofPhoenixHeader]",
            "",
        ]
        return "\n".join(lines).encode("latin-1")

    length = f"{len(text('00000')):05d}"  # fixed width, so the length does not change it
    data = magnitude.astype(">f4").tobytes() + phase.astype(">f4").tobytes()
    return text(length) + data


def write_phoenix(path: Path, magnitude: np.ndarray, phase=None, **fields: object) -> Path:
    """Write :func:`phoenix_bytes` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(phoenix_bytes(magnitude, phase, **fields))
    return path


def add_junk(folder: Path) -> None:
    """Files a dataset folder may hold that are not images."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Thumbs.db").write_bytes(b"\x00junk")
    (folder / "notes.txt").write_text("not an image")
    (folder / "labels.csv").write_text("a,b\n")
    (folder / ".hidden.jpeg").write_bytes(b"")


def add_class_folder(
    split_dir: Path, name: str, n: int = 2, ext: str = ".jpg", seed: int = 0
) -> int:
    """Write ``n`` chips into ``split_dir/<name>/`` (a class folder a dataset may not expect)."""
    rng = np.random.default_rng(seed)
    for j in range(n):
        write_image(split_dir / name / f"{name}_{j}{ext}", chip(rng))
    return n


def _count(expected: dict, split: str, cname: str) -> None:
    expected[split][cname] = expected[split].get(cname, 0) + 1


def make_mstar_soc_tree(root: Path, n_train: int = 3, n_test: int = 2, seed: int = 0) -> dict:
    """``root/MSTAR_SOC/TRAIN|TEST/<class>/...``: both spellings, nested serials, mixed cases.

    Returns:
        ``{"train": {class: n}, "test": {class: n}}``.
    """
    rng = np.random.default_rng(seed)
    expected: dict = {"train": {}, "test": {}}
    exts = (".jpeg", ".JPG", ".png")
    for split, folders, n in (
        ("TRAIN", MSTAR_TRAIN_FOLDERS, n_train),
        ("TEST", MSTAR_TEST_FOLDERS, n_test),
    ):
        for i_cls, (folder, cname) in enumerate(folders.items()):
            subs = NESTED.get(cname, ("",))
            for j in range(n):
                sub = subs[j % len(subs)]
                size = 20 + (i_cls % 4) * 3
                path = root / "MSTAR_SOC" / split / folder / sub / f"hb{j:05d}{exts[j % 3]}"
                write_image(path, chip(rng, size, size + (i_cls % 2)))
                _count(expected, split.lower(), cname)
        add_junk(root / "MSTAR_SOC" / split / "BMP2")
    return expected


def make_fusar_tree(root: Path, n_train: int = 4, n_test: int = 3, seed: int = 0) -> dict:
    """``root/New_FUSAR/Train|Val/<class>/`` with png and jpg files."""
    rng = np.random.default_rng(seed)
    expected: dict = {"train": {}, "test": {}}
    for split, key, n in (("Train", "train", n_train), ("Val", "test", n_test)):
        for cname in FUSAR_CLASSES:
            for j in range(n):
                ext = ".png" if j % 2 else ".jpg"
                write_image(root / "New_FUSAR" / split / cname / f"{cname}_{j}{ext}", chip(rng))
                _count(expected, key, cname)
    add_junk(root / "New_FUSAR" / "Train" / "Cargo")
    return expected


def make_sar_acd_tree(root: Path, n_per_class: int = 20, seed: int = 0) -> dict:
    """``root/SAR_ACD/images/<class>/*.jpg``; returns ``{class: n}``."""
    rng = np.random.default_rng(seed)
    for cname in SAR_ACD_CLASSES:
        for j in range(n_per_class):
            write_image(root / "SAR_ACD" / "images" / cname / f"{j:04d}.jpg", chip(rng))
    return {c: n_per_class for c in SAR_ACD_CLASSES}


def make_sample_tree(
    root: Path, per_elevation: int = 2, seed: int = 0, elevations: tuple = (14, 15, 16, 17)
) -> dict:
    """``root/png_images/<decibel|qpm>/<real|synth>/<class>/`` with SAMPLE-style file names.

    Returns:
        ``{(kind, elevation): count}`` summed over classes (per format).
    """
    rng = np.random.default_rng(seed)
    counts: dict = {}
    for fmt in ("decibel", "qpm"):
        for kind in ("real", "synth"):
            for cname in SAMPLE_CLASSES:
                for elev in elevations:
                    for j in range(per_elevation):
                        name = (
                            f"{cname}_{kind}_A_elevDeg_{elev:03d}_azCenter_{10 + j:03d}_22"
                            f"_serial_b01.png"
                        )
                        write_image(root / "png_images" / fmt / kind / cname / name, chip(rng))
                        if fmt == "decibel":
                            counts[(kind, elev)] = counts.get((kind, elev), 0) + 1
    return counts


def make_folder_tree(
    root: Path,
    split: bool,
    n_train: int = 5,
    n_test: int = 2,
    classes: tuple = ("cat_a", "cat_b", "cat_c"),
    seed: int = 0,
) -> dict:
    """``root/<class>/`` (``split=False``) or ``root/train|test/<class>/``; returns counts."""
    rng = np.random.default_rng(seed)
    expected: dict = {"train": {}, "test": {}}
    for cname in classes:
        for j in range(n_train):
            folder = root / "train" / cname if split else root / cname
            write_image(folder / f"{j}.png", chip(rng))
            _count(expected, "train", cname)
        for j in range(n_test if split else 0):
            write_image(root / "test" / cname / f"{j}.tif", chip(rng))
            _count(expected, "test", cname)
    add_junk(root)
    return expected


def make_mstar_raw_tree(root: Path, seed: int = 0) -> dict:
    """Raw Phoenix files: 17 deg BMP2/T72 (train), 15 deg BMP2 (test), one 30 deg file.

    Returns:
        ``{"train": {class: n}, "test": {class: n}}`` (the 30 deg file is left out).
    """
    rng = np.random.default_rng(seed)
    plan = [
        ("17_DEG", "BMP2", "bmp2_tank", 17, 2),
        ("17_DEG", "T72", "t72_tank", 17, 1),
        ("15_DEG", "BMP2", "bmp2_tank", 15, 2),
        ("30_DEG", "T72", "t72_tank", 30, 1),
    ]
    expected: dict = {"train": {}, "test": {}}
    for i, (deg, folder, target, dep, n) in enumerate(plan):
        for j in range(n):
            mag = rng.random((16, 12)).astype(np.float32)
            write_phoenix(
                root / deg / folder / f"HB{i:03d}{j:02d}.{j:03d}",
                mag,
                TargetType=target,
                DesiredDepression=dep,
            )
            if dep in (15, 17):
                _count(expected, "train" if dep == 17 else "test", folder)
    (root / "17_DEG" / "BMP2" / "readme.txt").write_text("not a raw file")
    return expected


# The 40 ATRNet-STAR type folders as the release spells them (apostrophe, space, lower case):
# every setting expects all of them (the plug-in refuses a folder with types missing).
ATRNET_FAKE_CLASSES = ATRNET_CLASSES
# SOC-50 adds the ten MSTAR classes (in MSTAR's folder spellings, e.g. BRDM_2)
ATRNET_MSTAR_FOLDERS = ("2S1", "BMP2", "BRDM_2", "BTR60", "BTR70", "D7", "T62", "T72", "ZIL131",
                        "ZSU234")  # fmt: skip
# Per-condition test folders holding fewer types: EOC-Scene's woodland scene has 11 of the 40.
ATRNET_PARTIAL_TESTS = {("EOC_scene", "woodland"): 11}
ATRNET_FOLDERS = {  # setting folder -> its per-condition test folders test_<subset>
    "SOC_40classes": (),
    "SOC_50classes": (),
    "EOC_scene": ("urban", "factory", "woodland"),
    "EOC_depression": ("30", "45", "60"),
    "EOC_azimuth": ("60", "120", "180", "240", "300"),
    "EOC_band": (),
    "EOC_pol": ("VV", "HV", "VH"),
}


def _atrnet_chip(path: Path, rng: np.random.Generator, serial: int) -> None:
    write_image(path, chip(rng))
    # the release puts an annotation beside every chip; readers must skip it
    xml = f"<annotation><filename>{path.name}</filename><id>{serial}</id></annotation>"
    path.with_suffix(".xml").write_text(xml)


def make_atrnet_star_tree(
    root: Path,
    layout: str = "bench",
    folders: tuple = tuple(ATRNET_FOLDERS),
    n_train: int = 3,
    n_test: int = 1,
    seed: int = 0,
) -> dict:
    """ATRNet-STAR setting folders ``<folder>/train|test[_<subset>]/<type>/*.tif`` (+ ``.xml``).

    ``layout``: ``"bench"`` writes the setting folders in ``root`` (the extracted archive, as
    ATRBench reads it), ``"hf"`` under ``root/Ground_Range/Amplitude_8bit`` (the Hugging Face
    dataset). In an EOC folder with per-condition test folders, ``test`` holds the union of them.

    Returns:
        ``{folder: {"train": {class folder: n}, "test": {...}, "test_<subset>": {...}}}``.
    """
    rng = np.random.default_rng(seed)
    base = root / "Ground_Range" / "Amplitude_8bit" if layout == "hf" else root
    if layout not in ("bench", "hf"):
        raise ValueError(f"layout {layout!r}: bench or hf")
    expected: dict = {}
    for folder in folders:
        subsets = ATRNET_FOLDERS[folder]
        mstar = ATRNET_MSTAR_FOLDERS if folder == "SOC_50classes" else ()
        counts: dict = {"train": {}, "test": {}}
        for c, cname in enumerate(ATRNET_FAKE_CLASSES + mstar):
            for j in range(n_train):
                _atrnet_chip(base / folder / "train" / cname / f"X_HH_15_{j}_{j:06d}.tif", rng, j)
                _count(counts, "train", cname)
            for sub in subsets or ("",):
                if c >= ATRNET_PARTIAL_TESTS.get((folder, sub), len(ATRNET_FAKE_CLASSES) + 10):
                    continue  # a type this condition's test folder does not have
                for j in range(n_test):
                    name = f"KU_VV_30_{sub or 0}_{j:06d}.tif"
                    targets = ["test"] + ([f"test_{sub}"] if sub else [])
                    for split in targets:
                        counts.setdefault(split, {})
                        _atrnet_chip(base / folder / split / cname / name, rng, j)
                        _count(counts, split, cname)
        expected[folder] = counts
    return expected
