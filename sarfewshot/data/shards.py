"""Packed shards of one-channel SAR chips: WebDataset tar files plus an index.

A million loose files make a million-entry listing and a million ``open`` calls per epoch. Packed
shards replace them with a few large files:

- ``shard-000000.tar``, ``shard-000001.tar``, ...: POSIX (ustar) tar files in the WebDataset
  layout. Sample ``k`` (0-based, in the order of the source listing) is two members named by
  its 9-digit key: ``<key>.npy`` (the chip's amplitude as a NumPy array: ``uint8`` for 8-bit
  chips, ``uint16`` for 16-bit chips, which stay 16-bit, ``float32`` for float data) and
  ``<key>.json`` (``{"source": "<root>/<relative path>", "nominal_max": 255.0 | 65535.0 |
  null}``). ``webdataset.WebDataset`` or plain ``tarfile`` read them sequentially.
- ``shard-000000.idx``: a little-endian float64 table, four columns per sample (byte offset
  of the ``.npy`` data in the tar, its size, the nominal maximum or 0 for none, and the CRC-32
  of the ``.npy`` bytes), so a reader seeks straight to any sample: random access in
  ``(seed, epoch)`` permutation order without scanning tar headers. Every read checks the
  sample's CRC-32, so a flipped byte stops the run naming the shard and the sample's key
  instead of being trained on. Shards of index version 1 have three columns and no CRC: they
  are read unchecked, with a warning (re-pack them, or ``sarfewshot data verify SHARDS/``
  checks whole files against the index's sha256).
- ``index.json``: format, version, the total count, the source roots' names, and per shard its
  file names, sample count, byte sizes and sha256 checksums. Opening a shard folder reads only
  this file: O(number of shards), no per-file listing.
- ``sources.sha256``: the sha256 of each source file's bytes, 32 raw bytes per sample in sample
  order (named with its own sha256 under ``index.json``'s ``source_sha256``), so a pretraining
  run on shards knows the content hashes of its images as a run on the folder does.

Packing is reproducible: members are written in listing order with fixed metadata (mtime 0,
uid/gid 0, no user names, mode 0644), so packing the same folder twice gives byte-identical
shards and index. This module imports nothing from the model side.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import io
import json
import os
import re
import tarfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from sarfewshot.errors import ConfigError, DatasetError
from sarfewshot.utils.io import atomic_write_bytes, sha256_file

FORMAT = "sarfewshot-shards"
VERSION = 2  # 2: a CRC-32 column per sample in the offset tables; 1: none
READABLE_VERSIONS = (1, 2)
INDEX_NAME = "index.json"
SOURCES_NAME = "sources.sha256"
KEY_DIGITS = 9
# two member headers, the end-of-archive blocks and the padding to a whole tar record
_MARGIN = 2 * 512 + 1024 + tarfile.RECORDSIZE
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}  # fmt: skip


def parse_size(text: str) -> int:
    """``1GB`` -> 10**9, ``512MiB`` -> 2**29, ``4096`` -> 4096.

    Raises:
        ConfigError: naming ``--shard-size`` for anything else or a size below 1 byte.
    """
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).upper() if match else ""
    if not match or unit not in _UNITS or float(match.group(1)) * _UNITS[unit] < 1:
        raise ConfigError(f"--shard-size {text!r}: use a size such as 1GB, 256MB or 512MiB")
    return int(float(match.group(1)) * _UNITS[unit])


@dataclass(frozen=True)
class ShardInfo:
    """One shard of the index."""

    tar: str
    idx: str
    count: int
    tar_bytes: int
    tar_sha256: str
    idx_sha256: str


@dataclass(frozen=True)
class ShardIndex:
    """The parsed ``index.json`` of a shard folder."""

    folder: Path
    count: int
    shards: tuple[ShardInfo, ...]
    roots: tuple[str, ...]
    version: int = VERSION

    @property
    def columns(self) -> int:
        """Columns of the offset tables: 4 with a per-sample CRC-32 (version 2), else 3."""
        return 4 if self.version >= 2 else 3

    @property
    def checked(self) -> bool:
        """Whether every sample carries a CRC-32 that reads check."""
        return self.version >= 2


def encode_chip(amplitude: np.ndarray, nominal_max: float | None) -> bytes:
    """The ``.npy`` bytes of a chip in its storage dtype (8- and 16-bit stay integers)."""
    arr = np.asarray(amplitude)
    if nominal_max == 255.0 and np.array_equal(arr, np.round(arr)):
        arr = arr.astype(np.uint8)
    elif nominal_max == 65535.0 and np.array_equal(arr, np.round(arr)):
        arr = arr.astype(np.uint16)
    else:
        arr = arr.astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def decode_chip(data: bytes) -> np.ndarray:
    """Inverse of :func:`encode_chip`: a float32 (H, W) amplitude array."""
    return np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32)


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    # fixed metadata: identical bytes whoever packs, whenever
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _ShardWriter:
    """Appends samples to ``shard-NNNNNN.tar`` and its offset table."""

    def __init__(self, folder: Path, number: int) -> None:
        self.name = f"shard-{number:06d}"
        self.path = folder / f"{self.name}.tar"
        # open across many add() calls; close() ends both
        self.file = open(self.path, "wb")  # noqa: SIM115
        self.tar = tarfile.open(fileobj=self.file, mode="w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115
        self.rows: list[tuple[float, float, float, float]] = []

    def add(self, key: str, npy: bytes, meta: bytes, nominal: float | None) -> None:
        info = _tarinfo(f"{key}.npy", len(npy))
        header = len(info.tobuf(tarfile.USTAR_FORMAT, self.tar.encoding, self.tar.errors))
        offset = float(self.tar.offset + header)
        self.rows.append((offset, float(len(npy)), float(nominal or 0), float(zlib.crc32(npy))))
        self.tar.addfile(info, io.BytesIO(npy))
        self.tar.addfile(_tarinfo(f"{key}.json", len(meta)), io.BytesIO(meta))

    @property
    def size(self) -> int:
        return self.tar.offset

    def close(self) -> ShardInfo:
        self.tar.close()
        self.file.close()
        idx = self.path.with_suffix(".idx")
        idx.write_bytes(np.asarray(self.rows, dtype="<f8").tobytes())
        return ShardInfo(
            tar=self.path.name,
            idx=idx.name,
            count=len(self.rows),
            tar_bytes=self.path.stat().st_size,
            tar_sha256=sha256_file(self.path),
            idx_sha256=sha256_file(idx),
        )


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"--out {out} is not empty; packing writes into a new or empty folder")


def pack_shards(
    files: Sequence[tuple[Path, str]],
    out: str | Path,
    shard_size: int = 10**9,
    reader: Callable[[Path], tuple[np.ndarray, float | None]] | None = None,
    on_sample: Callable[[int], None] | None = None,
) -> ShardIndex:
    """Pack ``files`` (path, name to record as its source) into shards under ``out``.

    Args:
        files: the chips in sample order.
        out: a new or empty folder.
        shard_size: a shard is closed before it would grow past this many bytes.
        reader: path -> (amplitude, nominal maximum); default :func:`sarfewshot.data.io.read_sar`.
        on_sample: called with the number of samples packed so far (progress).

    Raises:
        ConfigError: ``out`` is not empty. DatasetError: no files, or an unreadable one (named).
    """
    out = Path(out)
    if not files:
        raise DatasetError("nothing to pack: no image files under --data")
    _check_out(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _pack_into(files, out, shard_size, reader or _read_chip, on_sample)
    except DatasetError as exc:
        _remove_partial(out, created)
        raise type(exc)(
            f"{exc} (no shard was kept: fix or remove the file, then run the same command again)"
        ) from None
    except BaseException:
        # a failed pack (an undecodable chip, Ctrl-C) leaves nothing behind, so the same
        # command runs again once the chip is fixed instead of refusing a non-empty --out
        _remove_partial(out, created)
        raise


def _remove_partial(out: Path, created: bool) -> None:
    """Delete what a failed pack wrote into ``out`` (an empty folder it was given stays)."""
    for path in out.iterdir():
        if re.fullmatch(r"shard-\d{6}\.(tar|idx)|index\.json|\..*\.tmp.*", path.name):
            with contextlib.suppress(OSError):
                path.unlink()
    if created:
        with contextlib.suppress(OSError):
            out.rmdir()


def _pack_into(
    files: Sequence[tuple[Path, str]],
    out: Path,
    shard_size: int,
    read: Callable[[Path], tuple[np.ndarray, float | None]],
    on_sample: Callable[[int], None] | None,
) -> ShardIndex:
    """The packing loop of :func:`pack_shards` (which cleans up when this raises)."""
    shards: list[ShardInfo] = []
    writer: _ShardWriter | None = None
    digests = bytearray()
    try:
        for k, (path, source) in enumerate(files):
            amplitude, nominal = read(Path(path))
            digests += bytes.fromhex(sha256_file(path))
            npy = encode_chip(amplitude, nominal)
            meta = json.dumps({"nominal_max": nominal, "source": source}, sort_keys=True)
            if writer is not None and writer.size + len(npy) + len(meta) + _MARGIN > shard_size:
                shards.append(writer.close())
                writer = None
            writer = writer or _ShardWriter(out, len(shards))
            writer.add(f"{k:0{KEY_DIGITS}d}", npy, meta.encode(), nominal)
            if on_sample is not None:
                on_sample(k + 1)
    except BaseException:
        if writer is not None:
            writer.file.close()  # the open shard is deleted by the caller
        raise
    shards.append(writer.close())  # type: ignore[union-attr]
    roots = sorted({source.split("/", 1)[0] for _, source in files})
    atomic_write_bytes(out / SOURCES_NAME, bytes(digests))
    sources = {"file": SOURCES_NAME, "sha256": sha256_file(out / SOURCES_NAME)}
    return _write_index(out, shards, roots, sources)


def _read_chip(path: Path) -> tuple[np.ndarray, float | None]:
    from sarfewshot.data.io import read_sar

    img = read_sar(path)
    return img.amplitude, img.nominal_max


def _write_index(
    out: Path, shards: list[ShardInfo], roots: Sequence[str], sources: dict[str, str]
) -> ShardIndex:
    from sarfewshot.utils.io import atomic_write_json

    count = sum(s.count for s in shards)
    atomic_write_json(
        out / INDEX_NAME,
        {
            "format": FORMAT,
            "version": VERSION,
            "count": count,
            "roots": list(roots),
            "shards": [s.__dict__ for s in shards],
            "source_sha256": sources,
        },
    )
    return ShardIndex(folder=out, count=count, shards=tuple(shards), roots=tuple(roots))


def is_shard_folder(path: str | Path) -> bool:
    """True when ``path`` is a folder holding a shard ``index.json``."""
    return (Path(path) / INDEX_NAME).is_file()


def read_index(folder: str | Path) -> ShardIndex:
    """Parse ``folder/index.json``.

    Raises:
        DatasetError: naming the file when it is missing, not JSON, or not a shard index.
    """
    path = Path(folder) / INDEX_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        version = data.get("version")
        if data.get("format") != FORMAT or version not in READABLE_VERSIONS:
            raise ValueError(f"format {data.get('format')!r} version {version!r}")
        shards = tuple(ShardInfo(**s) for s in data["shards"])
        count = int(data["count"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DatasetError(f"{path} is not a readable {FORMAT} index: {exc}") from None
    if count != sum(s.count for s in shards) or count < 1:
        raise DatasetError(f"{path}: count {count} does not match its shards' counts")
    return ShardIndex(Path(folder), count, shards, tuple(data.get("roots", ())), int(version))


class ShardWarning(UserWarning):
    """Shards whose samples carry no checksum (packed before index version 2)."""


def unchecked_message(folder: str | Path) -> str:
    """What a reader of version 1 shards says: their samples are not checked."""
    return (
        f"{folder}: shards packed before per-sample checksums (index version 1): a corrupted "
        "sample would be read without notice; re-pack with `sarfewshot data pack`, or check "
        "whole files with `sarfewshot data verify SHARDS/`"
    )


def source_hashes(folder: str | Path) -> list[str] | None:
    """The sha256 (hex) of each sample's source file, or None for shards packed without them.

    Raises:
        DatasetError: the hash file does not match its checksum or the sample count.
    """
    folder = Path(folder)
    data = json.loads((folder / INDEX_NAME).read_text(encoding="utf-8"))
    entry = data.get("source_sha256")
    if not entry:
        return None
    path = folder / entry["file"]
    raw = path.read_bytes() if path.is_file() else b""
    if hashlib.sha256(raw).hexdigest() != entry["sha256"] or len(raw) != 32 * int(data["count"]):
        raise DatasetError(f"{path}: missing or does not match its sha256 in {INDEX_NAME}")
    return [raw[i : i + 32].hex() for i in range(0, len(raw), 32)]


def verify_shards(folder: str | Path) -> list[str]:
    """Check every shard: its files against the index's sizes and sha256, then, for shards
    with per-sample checksums, every sample's CRC-32 (so a damaged shard names its samples),
    and the source hashes (``sources.sha256``) against their sha256 in the index.

    Returns:
        One ``path: problem`` line per problem (empty when every check passed).
    """
    index = read_index(folder)
    problems = []
    for number, s in enumerate(index.shards):
        for name, digest in ((s.tar, s.tar_sha256), (s.idx, s.idx_sha256)):
            path = index.folder / name
            if not path.is_file():
                problems.append(f"{path}: missing")
            elif sha256_file(path) != digest:
                problems.append(f"{path}: sha256 differs from {INDEX_NAME}")
        # the samples' checksums need both files; a missing one is already listed
        if index.checked and all((index.folder / f).is_file() for f in (s.tar, s.idx)):
            problems += _bad_samples(index, number)
    try:  # pretraining reads them for its data record and refuses a damaged file
        source_hashes(folder)
    except DatasetError as exc:
        problems.append(str(exc))
    return problems


def _bad_samples(index: ShardIndex, number: int) -> list[str]:
    """``path: sample KEY: problem`` for each sample of shard ``number`` failing its CRC-32."""
    reader = ShardReader(index.folder)
    bad = []
    try:
        start = reader.starts[number]
        for k in range(start, start + index.shards[number].count):
            problem = reader.checked_bytes(k)[2]
            if problem:
                bad.append(problem)
    except DatasetError as exc:  # an unreadable offset table
        bad.append(str(exc))
    except OSError as exc:  # a shard cut short or unreadable: list it, go on with the others
        bad.append(f"{index.folder / index.shards[number].tar}: {exc}")
    finally:
        reader.close()
    return bad


class ShardReader:
    """Random access to the samples of a shard folder (sample ``k`` in packing order).

    Opening reads ``index.json`` only; a shard's offset table is read the first time one of its
    samples is asked for, by the process (or DataLoader worker) that asks. Reads use
    ``os.pread``, so forked workers never share a file position.
    """

    def __init__(self, folder: str | Path) -> None:
        self.index = read_index(folder)
        if not self.index.checked:
            warnings.warn(unchecked_message(folder), ShardWarning, stacklevel=2)
        counts = [s.count for s in self.index.shards]
        self.starts = np.cumsum([0, *counts]).tolist()
        self._tables: dict[int, np.ndarray] = {}
        self._fds: dict[int, int] = {}

    def __len__(self) -> int:
        return self.index.count

    def __getstate__(self) -> dict:
        # open descriptors do not travel to spawned workers; each reopens what it reads
        return {**self.__dict__, "_tables": {}, "_fds": {}}

    def locate(self, k: int) -> tuple[int, int]:
        """(shard number, position in that shard) of sample ``k``."""
        if not 0 <= k < self.index.count:
            raise IndexError(f"sample {k} outside 0..{self.index.count - 1}")
        shard = bisect.bisect_right(self.starts, k) - 1
        return shard, k - self.starts[shard]

    def _table(self, shard: int) -> np.ndarray:
        if shard not in self._tables:
            info = self.index.shards[shard]
            path = self.index.folder / info.idx
            table = np.fromfile(path, dtype="<f8")
            cols = self.index.columns
            if table.size != cols * info.count:
                raise DatasetError(
                    f"{path}: {table.size / cols:g} rows, the index says {info.count}"
                )
            self._tables[shard] = table.reshape(info.count, cols)
        return self._tables[shard]

    def _fd(self, shard: int) -> int:
        if shard not in self._fds:
            path = self.index.folder / self.index.shards[shard].tar
            try:
                self._fds[shard] = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            except OSError as exc:
                raise DatasetError(f"cannot open shard {path}: {exc.strerror}") from None
        return self._fds[shard]

    def read_bytes(self, k: int) -> tuple[bytes, float | None]:
        """Sample ``k``'s ``.npy`` bytes, checked against its CRC-32, and its nominal maximum.

        Raises:
            DatasetError: naming the shard and the sample's key when the bytes are short or
                fail their checksum.
        """
        data, nominal, problem = self.checked_bytes(k)
        if problem:
            raise DatasetError(
                f"{problem} (corrupted shard: re-pack or re-copy it; `sarfewshot data verify "
                f"{self.index.folder}` lists every damaged sample)"
            )
        return data, nominal

    def checked_bytes(self, k: int) -> tuple[bytes, float | None, str]:
        """Sample ``k``'s bytes, nominal maximum and ``shard, sample: problem`` ("" if none)."""
        shard, pos = self.locate(k)
        row = self._table(shard)[pos]
        offset, size = int(row[0]), int(row[1])
        data = os.pread(self._fd(shard), size, offset)
        problem = ""
        if len(data) != size:
            problem = f"{self._where(shard, k)}: truncated"
        elif len(row) > 3 and zlib.crc32(data) != int(row[3]):
            problem = f"{self._where(shard, k)}: the bytes fail their CRC-32 checksum"
        return data, (float(row[2]) or None), problem

    def _where(self, shard: int, k: int) -> str:
        path = self.index.folder / self.index.shards[shard].tar
        return f"shard {path}, sample {k:0{KEY_DIGITS}d}.npy"

    def read(self, k: int) -> tuple[np.ndarray, float | None]:
        """Sample ``k``: (float32 amplitude (H, W), nominal maximum or None), checked."""
        data, nominal = self.read_bytes(k)
        return decode_chip(data), nominal

    def close(self) -> None:
        """Close the open shard files."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()


def iter_members(folder: str | Path) -> Iterable[tuple[str, bytes]]:
    """Every (member name, bytes) of every shard in order, read with plain ``tarfile``."""
    index = read_index(folder)
    for s in index.shards:
        with tarfile.open(index.folder / s.tar, mode="r") as tar:
            for member in tar:
                f = tar.extractfile(member)
                if f is not None:
                    yield member.name, f.read()
