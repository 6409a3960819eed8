"""Datasets larger than memory: the sharded layout and float16 mels read like the published layout,
the lookup index answers like the exact scan, and training streams shards under a memory cap."""

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asp.builder import Settings, generate, repeat_dataset
from asp.errors import ASPError
from data import lookup
from data.dataset import SPLITS, Split, data_fingerprint, load_split, read_manifest
from data.lookup import nearest_rows
from data.mels import MappedMels, ShardMels, npz_member, shard_file

ROOT = Path(__file__).resolve().parent.parent
CAP_MIB = 64  # what streaming a training epoch may add to a process's memory, in the memory-cap test


def tiny_settings(data_dir: Path, **changes) -> Settings:
    """The settings a dataset was generated with (from its manifest), with ``changes``."""
    s = read_manifest(data_dir)["settings"]
    base = dict(
        synths=tuple(s["synths"]),
        presets={k: tuple(v) for k, v in s["presets"].items()},
        n=s["n"],
        notes=tuple(s["notes"]),
        seed=s["seed"],
        hpss=s["hpss"],
        split_all=s["split_all"],
    )
    return Settings(**{**base, **changes})


@pytest.fixture(scope="module")
def sharded(tiny_data, tmp_path_factory):
    """conftest's tiny_data generated again in the sharded layout."""
    out = tmp_path_factory.mktemp("sharded") / "data"
    generate(tiny_settings(tiny_data), out, layout="sharded", workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def half(tiny_data, tmp_path_factory):
    """tiny_data again, sharded, its mels stored as float16."""
    out = tmp_path_factory.mktemp("half") / "data"
    generate(tiny_settings(tiny_data, mel_dtype="float16"), out, layout="sharded", workers=1, progress=False)
    return out


def shard_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in (folder / "shards").glob("shard_*.npz"))


def write_shards(folder: Path, arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Shard files holding ``arrays`` as their ``mels`` (as the builder writes them); returns
    (shard, offset) of every row, in order."""
    folder.mkdir()
    shard, offset = [], []
    for number, mels in enumerate(arrays):
        np.savez(folder / shard_file(number), kept=np.ones(len(mels), bool), mels=mels)
        start, dtype, shape = npz_member(folder / shard_file(number), "mels")
        assert (dtype, shape) == (mels.dtype, mels.shape)
        shard += [number] * len(mels)
        offset += [start + j * mels[0].nbytes for j in range(len(mels))]
    return np.array(shard), np.array(offset)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_shard_mels_read_rows_in_place_like_the_array(dtype, tmp_path):
    rng = np.random.default_rng(0)
    whole = rng.random((9, 4, 6), dtype=np.float32).astype(dtype)
    shard, offset = write_shards(tmp_path / "shards", [whole[:5], whole[5:]])
    mels = ShardMels(tmp_path / "shards", shard, offset, (4, 6), dtype, "test")
    mels.check()
    expected = whole.astype(np.float32)
    assert mels.shape == (9, 4, 6) and mels.dtype == np.float32 and len(mels) == 9
    for key in (0, 8, -1, np.int64(4), slice(2, 7), slice(None, None, -2), [8, 0, 5, 0], np.arange(9) % 3 == 0):
        np.testing.assert_array_equal(mels[key], expected[key])
    np.testing.assert_array_equal(mels[3, 1:3, ::2], expected[3, 1:3, ::2])
    np.testing.assert_array_equal(np.asarray(mels), expected)
    with pytest.raises(IndexError):
        mels[9]
    clone = pickle.loads(pickle.dumps(mels))  # a worker process opens its own files
    np.testing.assert_array_equal(clone[[1, 6]], expected[[1, 6]])
    path = tmp_path / "shards" / shard_file(1)
    with open(path, "r+b") as f:
        f.truncate(int(offset[-1]) + 4)  # the last row cut short
    with pytest.raises(ASPError, match=rf"{path} is truncated"):
        ShardMels(tmp_path / "shards", shard, offset, (4, 6), dtype, "test").check()
    with pytest.raises(ASPError, match=rf"{path} is truncated"):
        mels[[8]]
    path.unlink()
    with pytest.raises(ASPError, match=rf"{path} is missing \(test reads its mels from it\)"):
        mels.check()


def test_the_lookup_index_answers_like_the_exact_scan(tmp_path, monkeypatch):
    """An index fitted on all of a split spans its mels, so ranking by coordinates is ranking by the
    exact distance (the part of a query outside the span is the same for every candidate): even
    without re-ranking (RERANK 1) it finds the exact scan's rows."""
    rng = np.random.default_rng(1)
    mels = rng.random((30, 8, 10), dtype=np.float32)
    synth = np.array(["a", "b"] * 15)
    mean, components = lookup.fit_basis(mels.reshape(30, -1))
    for key, array in (("", lookup.project(mels, mean, components)), ("_mean", mean), ("_components", components)):
        np.save(tmp_path / f"train_lookup{key}.npy", array)
    index = lookup.LookupIndex.find(tmp_path, "train", 30)
    assert index is not None and lookup.LookupIndex.find(tmp_path, "train", 31) is None
    split = Split("train", mels, {}, {}, None, None, synth, synth, np.zeros(30), np.zeros(30), ["a", "b"], index)
    queries = rng.random((12, 8, 10), dtype=np.float32)
    monkeypatch.setattr(lookup, "EXACT_MAX", 0)
    for rerank in (1, 5):
        monkeypatch.setattr(lookup, "RERANK", rerank)
        for k in (1, 3):
            exact = nearest_rows(split, queries, "a", k=k, index=False)
            assert (synth[exact] == "a").all()
            np.testing.assert_array_equal(nearest_rows(split, queries, "a", k=k), exact)
    within = np.arange(1, 30, 3)  # b rows among them: 1, 7, 13, ...
    assert (synth[within] == "b").sum() == 5
    np.testing.assert_array_equal(
        nearest_rows(split, queries, "b", k=2, within=within),
        nearest_rows(split, queries, "b", k=2, within=within, index=False),
    )


@pytest.mark.slow
def test_the_sharded_layout_reads_as_the_assembled_one(tiny_data, sharded):
    assert read_manifest(sharded)["layout"] == "sharded" and read_manifest(tiny_data).get("layout") == "assembled"
    assert not list(sharded.glob("*_mels.npy")) and list((sharded / "shards").glob("shard_*.npz"))
    assert data_fingerprint(sharded) == data_fingerprint(tiny_data)  # the same data: a run trained on one fits both
    for split in SPLITS:
        a, b = load_split(tiny_data, split), load_split(sharded, split)
        assert isinstance(a.mels, np.memmap) and isinstance(b.mels, ShardMels)
        assert b.mels.shape == a.mels.shape and b.mels.dtype == np.float32 and len(b) == len(a)
        np.testing.assert_array_equal(np.asarray(b.mels), np.asarray(a.mels))
        for field in ("synth", "names", "hpss", "note", "params_single", "mask_single"):
            np.testing.assert_array_equal(getattr(b, field), getattr(a, field))
        for synth in a.synths:
            np.testing.assert_array_equal(b.params[synth], a.params[synth])
            np.testing.assert_array_equal(b.masks[synth], a.masks[synth])
        n = len(a)
        for key in (0, n - 1, -1, slice(1, 3), [2, 0, 2], np.arange(n) % 2 == 0, slice(None, None, -1)):
            np.testing.assert_array_equal(b.mels[key], a.mels[key])
        np.testing.assert_array_equal(b.mels[1, :, 5:9], a.mels[1, :, 5:9])
        with pytest.raises(IndexError):
            b.mels[n]


@pytest.mark.slow
def test_float16_mels_take_half_the_disk_and_read_back_within_their_rounding(sharded, half):
    manifest = read_manifest(half)
    assert manifest["mel_dtype"] == "float16" and read_manifest(sharded)["mel_dtype"] == "float32"
    assert data_fingerprint(half) != data_fingerprint(
        sharded
    )  # other values: a run trained on one is stale on the other
    assert shard_bytes(half) < 0.55 * shard_bytes(sharded)
    for split in SPLITS:
        exact, rounded = np.asarray(load_split(sharded, split).mels), load_split(half, split).mels
        assert rounded.dtype == np.float32 and rounded.stored_dtype == np.float16
        values = np.asarray(rounded)
        np.testing.assert_array_equal(values, exact.astype(np.float16).astype(np.float32))
        assert np.abs(values - exact).max() <= 2**-12  # half the float16 spacing in [0.5, 1]


def test_a_float16_mel_file_of_the_published_layout_reads_as_float32(tiny_data, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(tiny_data, copy)
    exact = np.load(copy / "train_mels.npy")
    np.save(copy / "train_mels.npy", exact.astype(np.float16))
    train = load_split(copy, "train")
    assert isinstance(train.mels, MappedMels) and train.mels.dtype == np.float32
    np.testing.assert_array_equal(train.mels[[3, 1]], exact[[3, 1]].astype(np.float16).astype(np.float32))


@pytest.mark.slow
def test_the_lookup_index_of_a_generated_dataset_answers_like_the_exact_scan(tiny_data, sharded, monkeypatch):
    """The index of a training split spans its mels (23 components for 24 sounds), so ranking by
    coordinates is ranking by the exact distance (the part of a query outside the span is the same
    for every candidate): even without re-ranking (RERANK 1) it finds the exact scan's rows."""
    train, assembled = load_split(sharded, "train"), load_split(tiny_data, "train")
    assert train.lookup_index is not None and assembled.lookup_index is None  # small assembled: no index
    queries = np.concatenate([np.asarray(load_split(sharded, s).mels) for s in ("valid", "test")])
    monkeypatch.setattr(lookup, "EXACT_MAX", 0)
    for rerank in (1, lookup.RERANK):
        monkeypatch.setattr(lookup, "RERANK", rerank)
        for synth in train.synths:
            for k in (1, 3):
                exact = nearest_rows(assembled, queries, synth, k=k)
                np.testing.assert_array_equal(nearest_rows(train, queries, synth, k=k), exact)
                np.testing.assert_array_equal(nearest_rows(train, queries, synth, k=k, index=False), exact)
    within = np.arange(0, len(train), 2)
    np.testing.assert_array_equal(
        nearest_rows(train, queries, "va", k=2, within=within),
        nearest_rows(assembled, queries, "va", k=2, within=within),
    )


def test_the_lookup_basis_is_orthonormal_and_its_distances_never_exceed_the_exact_ones():
    rng = np.random.default_rng(0)
    sample = rng.random((40, 300), dtype=np.float32) * rng.random(300, dtype=np.float32)
    mean, components = lookup.fit_basis(sample, dims=8)
    assert components.shape == (8, 300) and mean.shape == (300,)
    np.testing.assert_allclose(components @ components.T, np.eye(8), atol=1e-5)
    queries, others = rng.random((5, 300), dtype=np.float32), rng.random((30, 300), dtype=np.float32)
    exact = lookup.squared_distances(queries, others)
    projected = lookup.squared_distances(
        lookup.project(queries, mean, components), lookup.project(others, mean, components)
    )
    assert np.all(projected <= exact + 1e-3)
    full_mean, full = lookup.fit_basis(sample, dims=100)
    assert len(full) == 39  # 40 samples span 39 directions around their mean


@pytest.mark.slow
def test_a_dataset_in_another_layout_is_refused_then_replaced_with_force(tmp_path):
    s = Settings(synths=("va",), presets={"va": ("random",)}, n=3, notes=(60,), seed=1, hpss=False)
    out = tmp_path / "d"
    generate(s, out, layout="assembled", workers=1, progress=False)
    with pytest.raises(ASPError, match=r"holds this dataset in the assembled layout; pass --force .* sharded layout"):
        generate(s, out, layout="sharded", workers=1, progress=False)
    assert generate(s, out, layout="auto", workers=1, progress=False).already
    generate(s, out, layout="sharded", workers=1, progress=False, force=True)
    assert read_manifest(out)["layout"] == "sharded" and not list(out.glob("*_mels.npy"))
    first = sorted(p.name for p in (out / "shards").iterdir())
    other = Settings(synths=("va",), presets={"va": ("random",)}, n=40, notes=(60,), seed=2, hpss=False)
    generate(other, out, layout="sharded", workers=1, progress=False, force=True)
    now = sorted(p.name for p in (out / "shards").iterdir())
    assert now == sorted([*(shard_file(i) for i in range(2)), "plan.json"]) and first != now
    generate(s, out, layout="assembled", workers=1, progress=False, force=True)
    assert not (out / "shards").exists() and (out / "train_mels.npy").is_file()


@pytest.mark.slow
def test_a_sharded_assembly_stopped_before_its_manifest_finishes_without_rendering_again(sharded, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(sharded, copy)
    (copy / "manifest.json").unlink()  # as a run killed between moving shards/ into place and the manifest
    (copy / "train_synth.npy").unlink()
    summary = generate(tiny_settings(sharded), copy, layout="sharded", workers=1, progress=False)
    assert summary.complete and summary.rendered == 0
    for split in SPLITS:
        np.testing.assert_array_equal(
            np.asarray(load_split(copy, split).mels), np.asarray(load_split(sharded, split).mels)
        )


@pytest.mark.slow
def test_a_missing_or_truncated_shard_is_one_line_naming_it(sharded, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(sharded, copy)
    number = int(np.load(copy / "train_mel_shard.npy")[0])
    path = copy / "shards" / shard_file(number)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    with pytest.raises(ASPError, match=rf"{path} is truncated .*regenerate the dataset"):
        load_split(copy, "train")
    path.unlink()
    with pytest.raises(ASPError, match=rf"{path} is missing .*regenerate it"):
        load_split(copy, "train")


@pytest.mark.slow
def test_training_from_shards_equals_training_from_the_assembled_file(tiny_data, sharded, tmp_path):
    from asp.training import TrainConfig, train

    losses = []
    for data in (tiny_data, sharded):
        cfg = TrainConfig(approach="multi", data_dir=str(data), model_dir=str(tmp_path / data.name), latent_size=8)
        losses.append(train(cfg.__class__(**{**cfg.__dict__, "epochs": 1, "verbose": 0}))["last_losses"])
    assert losses[0].keys() == losses[1].keys()
    np.testing.assert_allclose([losses[1][k] for k in losses[0]], [losses[0][k] for k in losses[0]], rtol=1e-6)


@pytest.mark.slow
def test_training_streams_shards_larger_than_its_memory_cap(sharded, tmp_path):
    """One epoch on a sharded dataset whose training mels (~210 MB: tiny_data's repeated, as
    distinct shard files) are more than three times the cap: streaming them may add at most
    ``CAP_MIB`` to the training process's memory (measured after TensorFlow's warm-up batches; batches
    of 8 keep TensorFlow's own allocations, in steps of ~70 MB at batch 32, well below the cap)."""
    train_bytes = len(load_split(sharded, "train")) * 128 * 431 * 4
    times = -(-210 * 2**20 // train_bytes)
    big = tmp_path / "big"
    repeat_dataset(sharded, big, times)
    assert len(load_split(big, "train")) * 128 * 431 * 4 > 3 * CAP_MIB * 2**20
    res = subprocess.run(
        [sys.executable, "-m", "asp.training.memory", str(big), "--latent", "8", "--batch-size", "8"],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    figures = json.loads(res.stdout.strip().splitlines()[-1])
    assert figures["train"] == times * len(load_split(sharded, "train"))
    assert figures["streamed_mib"] - figures["warm_mib"] < CAP_MIB, figures


@pytest.mark.slow
def test_generate_py_writes_a_sharded_float16_dataset(tmp_path):
    out = tmp_path / "d"
    cmd = [sys.executable, str(ROOT / "data_generation" / "generate.py"), "--synths", "va", "--n", "3"]
    cmd += ["--presets", "random", "--no-hpss", "--layout", "sharded", "--mel-dtype", "float16", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "layout: sharded" in res.stdout
    manifest = read_manifest(out)
    assert (manifest["layout"], manifest["mel_dtype"], manifest["settings"]["mel_dtype"]) == (
        "sharded",
        "float16",
        "float16",
    )
    assert load_split(out, "train").mels.stored_dtype == np.float16
