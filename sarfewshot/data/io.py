"""One reader for SAR chips: 8/16-bit PNG and TIFF, JPEG, BMP, float32 TIFF and raw MSTAR files.

Every reader returns amplitude in the file's native units (8-bit: 0..255, 16-bit: 0..65535,
float TIFF and raw MSTAR: as stored) so that no precision is lost before the transforms decide how
to scale it. A raw MSTAR file ("Phoenix" format) is an ASCII header from ``[PhoenixHeaderVer..]``
to ``[EndofPhoenixHeader]``, then a big-endian float32 magnitude block and a phase block of
``NumberOfRows x NumberOfColumns`` values each.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np

from sarfewshot.errors import ImageReadError

PathLike = Union[str, "os.PathLike[str]"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
# Never images, so never opened to look for a Phoenix header.
NON_IMAGE_EXTENSIONS = frozenset(
    {
        ".txt",
        ".csv",
        ".db",
        ".json",
        ".xml",
        ".md",
        ".yaml",
        ".yml",
        ".npy",
        ".npz",
        ".pkl",
        ".pth",
        ".zip",
        ".gz",
        ".tar",
        ".ini",
        ".log",
        ".py",
        ".html",
        ".pdf",
        ".hdr",
        ".mat",
    }
)
IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini"})
PHOENIX_MAGIC = b"[PhoenixHeaderVer"
PHOENIX_END = b"[EndofPhoenixHeader]"
_NUMERIC_EXT = re.compile(r"^\.\d{3}$")
# A Phoenix header is about 2 kB; MSTAR clutter scenes carry longer ones.
_HEADER_PROBE_BYTES = 64
_HEADER_MAX_BYTES = 1 << 16


@dataclass
class SARImage:
    """A decoded SAR chip.

    Attributes:
        amplitude: float32 (H, W) magnitude in the file's native units.
        phase: float32 (H, W) phase in radians, as stored (raw MSTAR: [0, 2 pi)), else None.
        nominal_max: full-scale value of the storage format (255 for 8-bit, 65535 for 16-bit),
            None for float data that has no nominal scale.
        header: parsed metadata (the Phoenix header fields as stripped strings), else empty.
        path: the file it was read from.
    """

    amplitude: np.ndarray
    phase: np.ndarray | None = None
    nominal_max: float | None = None
    header: dict = field(default_factory=dict)
    path: str = ""

    @property
    def is_8bit(self) -> bool:
        """True when the values are exact 8-bit integers (0..255)."""
        return self.nominal_max == 255.0


def _is_hidden_or_ignored(path: Path) -> bool:
    return path.name.startswith(".") or path.name.lower() in IGNORED_NAMES


def has_phoenix_header(path: PathLike) -> bool:
    """True when the file starts with an MSTAR Phoenix header (checked on its first bytes)."""
    try:
        with open(path, "rb") as f:
            return PHOENIX_MAGIC in f.read(_HEADER_PROBE_BYTES)
    except OSError:
        return False


def is_raw_mstar_file(path: PathLike) -> bool:
    """True for a raw MSTAR file: a numeric extension (``.000``..``.999``) or a Phoenix header."""
    path = Path(path)
    if _is_hidden_or_ignored(path):
        return False
    suffix = path.suffix.lower()
    if _NUMERIC_EXT.match(suffix):
        return True
    if suffix in IMAGE_EXTENSIONS or suffix in NON_IMAGE_EXTENSIONS:
        return False
    return path.is_file() and has_phoenix_header(path)


def is_image_file(path: PathLike) -> bool:
    """True for a file the reader handles (case-insensitive extension or a raw MSTAR file).

    Hidden files, ``Thumbs.db``, ``.txt``/``.csv`` and other sidecar files are not images.
    """
    path = Path(path)
    if _is_hidden_or_ignored(path):
        return False
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return True
    return is_raw_mstar_file(path)


def find_images(folder: PathLike, recursive: bool = True) -> list[Path]:
    """Sorted image files under ``folder`` (sub-folders too when ``recursive``).

    Hidden files and folders are skipped; symbolic links to folders are followed once.
    """
    folder = Path(folder)
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    found: list[Path] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link loop: do not descend twice
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath, n) for n in filenames if is_image_file(Path(dirpath, n))]
    return sorted(found)


def _check_readable(path: Path) -> None:
    if not path.is_file():
        raise ImageReadError(f"image file not found: {path}")
    if path.stat().st_size == 0:
        raise ImageReadError(f"image file is empty: {path}")


def parse_phoenix_header(raw: bytes, path: PathLike = "") -> tuple[dict, int]:
    """Parse a Phoenix header from the start of a raw MSTAR file.

    Returns:
        ``(fields, data_offset)``: the ``Key= value`` fields as stripped strings, and the byte
        offset of the magnitude block (``PhoenixHeaderLength`` plus ``native_header_length``).
    """
    start = raw.find(PHOENIX_MAGIC)
    end = raw.find(PHOENIX_END)
    if start < 0 or start > _HEADER_PROBE_BYTES or end < 0:
        raise ImageReadError(f"not a raw MSTAR file (no complete Phoenix header): {path}")
    fields: dict = {}
    for line in raw[start:end].decode("latin-1").splitlines()[1:]:
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    stop = raw.find(b"\n", end)
    header_len = _header_int(fields, "PhoenixHeaderLength", path, default=stop + 1)
    native_len = _header_int(fields, "native_header_length", path, default=0)
    return fields, header_len + native_len


def _header_int(fields: dict, key: str, path: PathLike, default: int | None = None) -> int:
    value = fields.get(key)
    if value is None or value == "":
        if default is None:
            raise ImageReadError(f"raw MSTAR header of {path} lacks the field {key}")
        return default
    try:
        return int(value)
    except ValueError:
        raise ImageReadError(
            f"raw MSTAR header of {path}: {key}={value!r} is not an integer"
        ) from None


def read_phoenix_header(path: PathLike) -> dict:
    """Read only the Phoenix header fields of a raw MSTAR file (cheap: no pixel data)."""
    path = Path(path)
    _check_readable(path)
    with open(path, "rb") as f:
        raw = f.read(_HEADER_MAX_BYTES)
    return parse_phoenix_header(raw, path)[0]


def read_mstar_phoenix(path: PathLike) -> SARImage:
    """Read a raw MSTAR Phoenix file: header, magnitude and phase (big-endian float32 blocks).

    Raises:
        ImageReadError: naming the file when it is missing, empty, has no header, or is shorter
            than the two blocks the header announces.
    """
    path = Path(path)
    _check_readable(path)
    raw = path.read_bytes()
    fields, offset = parse_phoenix_header(raw, path)
    rows = _header_int(fields, "NumberOfRows", path)
    cols = _header_int(fields, "NumberOfColumns", path)
    if rows <= 0 or cols <= 0:
        raise ImageReadError(f"raw MSTAR file {path} announces a {rows}x{cols} image")
    block = rows * cols * 4
    if len(raw) < offset + 2 * block:
        raise ImageReadError(
            f"raw MSTAR file is truncated: {path} has {len(raw)} bytes, its header announces "
            f"{offset + 2 * block} ({rows}x{cols} magnitude and phase after {offset} header bytes)"
        )
    mag = np.frombuffer(raw, dtype=">f4", count=rows * cols, offset=offset)
    phase = np.frombuffer(raw, dtype=">f4", count=rows * cols, offset=offset + block)
    return SARImage(
        amplitude=mag.reshape(rows, cols).astype(np.float32),
        phase=phase.reshape(rows, cols).astype(np.float32),
        nominal_max=None,
        header=fields,
        path=str(path),
    )


def pil_to_array(img) -> tuple[np.ndarray, float | None]:
    """Amplitude array and nominal maximum of a decoded Pillow image (one channel)."""
    mode = img.mode
    if mode.startswith("I;16"):  # I;16, I;16B, I;16L, I;16N: unsigned 16-bit, kept exactly
        return np.asarray(img).astype(np.float32), 65535.0
    if mode == "F":
        return np.asarray(img, dtype=np.float32).copy(), None
    if mode in ("I", "I;32"):
        arr = np.asarray(img)
        # Older Pillow opens 16-bit PNGs as 32-bit 'I'; values inside 0..65535 keep that scale.
        if arr.size and arr.min() >= 0 and arr.max() <= 65535:
            return arr.astype(np.float32), 65535.0
        return arr.astype(np.float32), None
    if mode == "LA":
        img = img.getchannel("L")
    elif mode != "L":
        # Palette, bilevel and colour images: luminance (equal RGB channels stay exact).
        img = img.convert("L")
    return np.asarray(img).astype(np.float32), 255.0


def _read_pillow(path: Path) -> SARImage:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()  # decode now: truncated files fail here, not later
            amplitude, nominal = pil_to_array(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(f"cannot decode image {path}: {exc}") from None
    if amplitude.ndim != 2 or amplitude.size == 0:
        raise ImageReadError(f"image {path} decoded to shape {amplitude.shape}, not (H, W)")
    return SARImage(amplitude=amplitude, nominal_max=nominal, path=str(path))


def read_sar(path: PathLike) -> SARImage:
    """Read any supported SAR chip into a :class:`SARImage` (amplitude in native units).

    Raises:
        ImageReadError: naming the file when it is missing, empty, truncated or undecodable.
    """
    path = Path(path)
    _check_readable(path)
    if is_raw_mstar_file(path):
        return read_mstar_phoenix(path)
    return _read_pillow(path)


def read_sar_image(path: PathLike) -> np.ndarray:
    """Read a SAR chip as a float32 (H, W) amplitude array in the file's native units."""
    return read_sar(path).amplitude
