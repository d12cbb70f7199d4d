"""Packed shards: reproducible bytes, the WebDataset layout, 16-bit chips, the index, errors."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sarfewshot.cli.main import main
from sarfewshot.data.io import read_sar
from sarfewshot.data.shards import (
    ShardReader,
    pack_shards,
    parse_size,
    read_index,
    verify_shards,
)
from sarfewshot.errors import ConfigError, DatasetError


@pytest.fixture()
def chips(tmp_path) -> Path:
    """Six 8-bit and two 16-bit PNG chips of varied sizes, one in a nested folder."""
    rng = np.random.default_rng(0)
    root = tmp_path / "chips"
    (root / "a" / "deep").mkdir(parents=True)
    (root / "b").mkdir()
    for i in range(6):
        arr = rng.integers(0, 256, (40 + i, 48), dtype=np.uint8)
        Image.fromarray(arr).save(root / ("a/deep" if i == 0 else "a") / f"c{i}.png")
    for i in range(2):
        arr = rng.integers(0, 65536, (32, 36), dtype=np.uint16)
        Image.fromarray(arr).save(root / "b" / f"w{i}.png")
    return root


def _pack(chips: Path, out: Path, size: str = "12KB") -> int:
    return main(["data", "pack", "--data", str(chips), "--out", str(out), "--shard-size", size])


def test_packing_twice_gives_byte_identical_files(chips, tmp_path):
    assert _pack(chips, tmp_path / "s1") == 0
    assert _pack(chips, tmp_path / "s2") == 0
    names = sorted(p.name for p in (tmp_path / "s1").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "s2").iterdir())
    assert len([n for n in names if n.endswith(".tar")]) > 1  # 12 KB splits the 8 chips
    for name in names:
        assert (tmp_path / "s1" / name).read_bytes() == (tmp_path / "s2" / name).read_bytes()


def test_shards_hold_every_chip_in_listing_order_with_16_bit_kept(chips, tmp_path):
    _pack(chips, tmp_path / "s")
    index = read_index(tmp_path / "s")
    assert index.count == 8 and sum(s.count for s in index.shards) == 8
    members = []
    for shard in index.shards:
        with tarfile.open(tmp_path / "s" / shard.tar) as tar:
            for m in tar:
                assert (m.mtime, m.uid, m.gid, m.uname, m.mode) == (0, 0, 0, "", 0o644)
                members.append((m.name, tar.extractfile(m).read()))
    keys = [name for name, _ in members]
    assert keys[:4] == ["000000000.npy", "000000000.json", "000000001.npy", "000000001.json"]
    sources = [json.loads(b)["source"] for n, b in members if n.endswith(".json")]
    assert sources[0] == "chips/a/c1.png" and sources[-1] == "chips/b/w1.png"
    arrays = [np.load(io.BytesIO(b)) for n, b in members if n.endswith(".npy")]
    assert arrays[0].dtype == np.uint8 and arrays[-1].dtype == np.uint16
    want = np.asarray(Image.open(chips / "b" / "w1.png"))
    assert np.array_equal(arrays[-1], want)  # 16-bit values unquantised
    reader = ShardReader(tmp_path / "s")
    amp, nominal = reader.read(7)
    assert nominal == 65535.0 and np.array_equal(amp, read_sar(chips / "b" / "w1.png").amplitude)
    assert verify_shards(tmp_path / "s") == []


def test_webdataset_reads_the_shards(chips, tmp_path):
    wds = pytest.importorskip("webdataset")
    _pack(chips, tmp_path / "s")
    index = read_index(tmp_path / "s")
    urls = [str(tmp_path / "s" / s.tar) for s in index.shards]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert [s["__key__"] for s in samples] == [f"{k:09d}" for k in range(8)]
    assert np.load(io.BytesIO(samples[7]["npy"])).dtype == np.uint16


def test_checksums_catch_a_changed_shard(chips, tmp_path, capsys):
    _pack(chips, tmp_path / "s")
    shard = tmp_path / "s" / read_index(tmp_path / "s").shards[0].tar
    data = bytearray(shard.read_bytes())
    data[600] ^= 0xFF
    shard.write_bytes(bytes(data))
    problems = verify_shards(tmp_path / "s")
    assert problems[0] == f"{shard}: sha256 differs from index.json"
    assert problems[1:] == [
        f"shard {shard}, sample 000000000.npy: the bytes fail their CRC-32 checksum"
    ]
    capsys.readouterr()
    assert main(["data", "verify", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: 2 problem(s):", *(f"  {line}" for line in problems)]


def test_verify_checks_the_source_hashes_that_pretraining_reads(chips, tmp_path, capsys):
    """``pretrain`` refuses a damaged ``sources.sha256``; ``data verify`` must not pass it."""
    _pack(chips, tmp_path / "s")
    sources = tmp_path / "s" / "sources.sha256"
    data = bytearray(sources.read_bytes())
    data[5] ^= 0x01
    sources.write_bytes(bytes(data))
    assert verify_shards(tmp_path / "s") == [
        f"{sources}: missing or does not match its sha256 in index.json"
    ]
    assert main(["data", "verify", str(tmp_path / "s")]) == 1
    assert "sources.sha256" in capsys.readouterr().err


def test_verify_lists_every_problem_of_a_damaged_folder(chips, tmp_path):
    """A missing offset table and a truncated shard are both listed; verify goes on."""
    _pack(chips, tmp_path / "s")
    index = read_index(tmp_path / "s")
    assert len(index.shards) >= 2
    idx, tar = (tmp_path / "s" / index.shards[0].idx), (tmp_path / "s" / index.shards[1].tar)
    idx.unlink()
    tar.write_bytes(tar.read_bytes()[:700])
    problems = verify_shards(tmp_path / "s")
    assert f"{idx}: missing" in problems
    assert f"{tar}: sha256 differs from index.json" in problems
    assert any(str(tar) in p and p != f"{tar}: sha256 differs from index.json" for p in problems)


def test_bad_inputs_are_one_line_errors(chips, tmp_path, capsys):
    for bad in ("1 parsec", "0", "GB"):
        with pytest.raises(ConfigError, match="--shard-size"):
            parse_size(bad)
    assert parse_size("1GB") == 10**9 and parse_size("2MiB") == 2 * 2**20
    _pack(chips, tmp_path / "s")
    assert _pack(chips, tmp_path / "s") == 2
    assert "is not empty" in capsys.readouterr().err
    (tmp_path / "s" / "index.json").write_text("{}")
    with pytest.raises(DatasetError, match="index.json is not a readable"):
        read_index(tmp_path / "s")
    with pytest.raises(DatasetError, match="nothing to pack"):
        pack_shards([], tmp_path / "empty")


def _as_version_1(folder: Path) -> None:
    """Rewrite a packed folder as an index version 1 pack: 3-column tables, no CRC-32."""
    from sarfewshot.utils.io import sha256_file

    doc = json.loads((folder / "index.json").read_text())
    for s in doc["shards"]:
        idx = folder / s["idx"]
        table = np.fromfile(idx, dtype="<f8").reshape(-1, 4)
        idx.write_bytes(np.ascontiguousarray(table[:, :3]).tobytes())
        s["idx_sha256"] = sha256_file(idx)
    doc["version"] = 1
    (folder / "index.json").write_text(json.dumps(doc))


def test_shards_without_sample_checksums_say_so(chips, tmp_path, capsys):
    from sarfewshot.data.shards import ShardWarning

    _pack(chips, tmp_path / "s")
    _as_version_1(tmp_path / "s")
    with pytest.warns(ShardWarning, match="before per-sample checksums"):
        reader = ShardReader(tmp_path / "s")
    amp, nominal = reader.read(7)
    assert nominal == 65535.0 and np.array_equal(amp, read_sar(chips / "b" / "w1.png").amplitude)
    capsys.readouterr()
    assert main(["data", "verify", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "index version 1" in out and "re-pack" in out and "match the sha256" in out


def test_a_failed_pack_leaves_nothing_behind(chips, tmp_path, capsys):
    bad = chips / "b" / "w0.png"
    good = bad.read_bytes()
    bad.write_bytes(b"not a png at all")  # the 7th of 8 chips: shards already written
    out = tmp_path / "new" / "s"
    assert _pack(chips, out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "run the same command again" in err
    assert not out.exists()
    given = tmp_path / "given"
    given.mkdir()
    assert _pack(chips, given) == 2 and list(given.iterdir()) == []  # an empty --out stays
    bad.write_bytes(good)
    capsys.readouterr()
    assert _pack(chips, out) == 0 and read_index(out).count == 8  # the same command reruns


def test_data_verify_needs_a_dataset_or_a_shard_folder(chips, tmp_path, capsys):
    assert main(["data", "verify"]) == 2
    assert "--dataset" in capsys.readouterr().err
    assert main(["data", "verify", str(chips)]) == 2
    assert "index.json" in capsys.readouterr().err
