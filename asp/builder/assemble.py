"""Assembly: the finished shards joined into the npy_data layout (every file written under a temp
name and renamed at the end), then the manifest, last: a folder with a manifest is complete.

In the sharded layout the mels are not copied: the work folder, whole, becomes ``shards/`` (one
rename) and each split records where its mels are in those files; a split of more than
``data.lookup.EXACT_MAX`` training sounds, and every sharded one, gets the lookup index."""

from __future__ import annotations

import errno
import os
import shutil
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asp.builder.plan import WORK_DIR, Plan
from asp.builder.sampling import _rng
from asp.builder.shards import SILENCE_RMS, read_shard, render_shard
from asp.errors import ASPError
from asp.files import atomic_path, remove_stale_temps, write_json
from data import lookup
from data.dataset import GENERATOR_VERSION, MANIFEST, SPLITS, encode_split, split_files
from data.features import HOP, N_MELS
from data.mels import SHARD_FOLDER, ShardMels, npz_member


@dataclass
class Summary:
    out: Path
    kept: dict[str, int]
    dropped: dict[str, int]
    counts: dict[str, int]
    seconds: float
    complete: bool
    times: dict[str, float] = field(default_factory=dict)
    rendered: int = 0
    already: bool = False
    loop_seconds: float = 0.0  # time spent rendering shards (workers included), without setup and assembly
    layout: str = "assembled"

    def lines(self) -> list[str]:
        out = []
        for synth in self.kept:
            out.append(f"  {synth:<16} kept {self.kept[synth]:>7}   dropped as silent {self.dropped[synth]:>6}")
        out.append("  splits: " + ", ".join(f"{k} {v}" for k, v in self.counts.items()))
        rate = self.rendered / self.seconds if self.seconds > 0 else 0.0
        out.append(f"  rendered {self.rendered} samples this run in {self.seconds:.1f} s ({rate:.1f} samples/s)")
        if self.layout == "sharded":
            out.append("  layout: sharded (the mels stay in shards/, read in place; docs/datasets.md)")
        return out


def _reserve(path: Path) -> None:
    """Allocates a memory-mapped file's blocks now: on a full disk, writing into a sparse map
    kills the process with SIGBUS; this raises ENOSPC instead, before anything is written."""
    with open(path, "r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        except OSError as err:
            if err.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # the file system cannot; write as before
                return
            raise


def assemble(plan: Plan, out: Path, layout: str = "assembled") -> Summary:
    """Joins the finished shards into the npy_data layout (``layout``: assembled or sharded, see
    ``data.dataset``), then writes the manifest."""
    work = out / WORK_DIR
    meta = _shard_meta(plan, work)
    # every kept sample: (shard, row within shard's mels, synth, preset row, note, hpss, split)
    records = []
    for shard, (kept, hpss) in zip(plan.shards, meta):
        for j, pos in enumerate(np.flatnonzero(kept)):
            row = int(shard.rows[pos])
            split = int(plan.splits[shard.synth][row])
            records.append((shard.index, j, shard.synth, row, int(shard.notes[pos]), int(hpss[j]), split))
    kept = {s.name: 0 for s in plan.specs}
    dropped = {s.name: 0 for s in plan.specs}
    for shard, (k, _) in zip(plan.shards, meta):
        kept[shard.synth] += int(k.sum())
        dropped[shard.synth] += int((~k).sum())

    synth_names = [s.name for s in plan.specs]
    counts = {}
    written: list[Path] = []
    offsets = _mel_offsets(plan, work)
    with ExitStack() as commit:  # every file is written to a temp first; all are renamed at the end
        for split_id, split in enumerate(SPLITS):
            recs = [r for r in records if r[6] == split_id]
            order = _rng(plan.settings.seed, "order", split).permutation(len(recs))
            recs = [recs[i] for i in order]
            counts[split] = len(recs)
            written += _write_split(plan, out, split, recs, commit, offsets if layout == "sharded" else None)
            if split == "train" and recs and (layout == "sharded" or len(recs) > lookup.EXACT_MAX):
                written += _write_lookup(plan, out, recs, commit, offsets)
        expected = {f for split in SPLITS for f in split_files(split, synth_names, layout)}
        assert expected <= {final.name for final in written}
        if layout == "sharded":  # the shards stay: the work folder becomes shards/, whole
            remove_stale_temps(work)
            os.replace(work, out / SHARD_FOLDER)
    write_json(out / MANIFEST, _manifest(plan, counts, kept, dropped, layout))  # last: the dataset is finished
    shutil.rmtree(work, ignore_errors=True)
    return Summary(out, kept, dropped, counts, 0.0, True, layout=layout)


def _mel_offsets(plan: Plan, work: Path) -> np.ndarray:
    """(shards,) the byte offset of the first mel in each shard file (``data.mels.npz_member``)."""
    out = np.zeros(len(plan.shards), np.int64)
    for shard in plan.shards:
        try:
            out[shard.index], dtype, _ = npz_member(work / shard.file, "mels")
        except (OSError, ValueError, KeyError) as err:
            raise ASPError(f"shard {work / shard.file} cannot be read in place ({err}); regenerate it") from None
        if dtype != np.dtype(plan.settings.mel_dtype):
            raise ASPError(f"shard {work / shard.file} holds {dtype} mels, not {plan.settings.mel_dtype}")
    return out


def _work_mels(plan: Plan, work: Path, recs: list[tuple], base: np.ndarray) -> ShardMels:
    """The mels of ``recs`` read in place from the work folder's shards (``base``: ``_mel_offsets``)."""
    shard = np.array([r[0] for r in recs], np.int64)
    row_bytes = int(np.prod(plan.mel_shape)) * np.dtype(plan.settings.mel_dtype).itemsize
    offset = base[shard] + np.array([r[1] for r in recs], np.int64) * row_bytes
    return ShardMels(work, shard, offset, plan.mel_shape, plan.settings.mel_dtype, str(work))


def _write_lookup(
    plan: Plan, out: Path, recs: list[tuple], commit: ExitStack, offsets: np.ndarray, chunk: int = 256
) -> list[Path]:
    """The training split's lookup index (``data.lookup``): a PCA basis fitted on a seeded sample
    of its mels, and every mel's coordinates; returns the final paths of its three files."""
    mels = _work_mels(plan, out / WORK_DIR, recs, offsets)
    fit = np.sort(_rng(plan.settings.seed, "lookup").permutation(len(recs))[: lookup.FIT_SAMPLES])
    mean, components = lookup.fit_basis(mels.read(fit).reshape(len(fit), -1))
    paths = [out / f"train_lookup{key}.npy" for key in ("", "_mean", "_components")]
    coords = np.lib.format.open_memmap(
        commit.enter_context(atomic_path(paths[0])), mode="w+", dtype=np.float32, shape=(len(recs), len(components))
    )
    for start in range(0, len(recs), chunk):
        rows = np.arange(start, min(start + chunk, len(recs)))
        coords[rows] = lookup.project(mels.read(rows), mean, components)
    coords.flush()
    del coords
    mels.close()
    for path, array in zip(paths[1:], (mean, components)):
        with open(commit.enter_context(atomic_path(path)), "wb") as f:
            np.save(f, array, allow_pickle=False)
    return paths


def _shard_meta(plan: Plan, work: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kept mask, hpss labels) of every shard, rendering again one corrupted since it was written."""
    meta = []
    for shard in plan.shards:
        arrays = read_shard(work / shard.file, shard)
        if arrays is None:  # corrupted since it was written: render it again
            render_shard(
                shard, str(plan.specs[plan.settings.synths.index(shard.synth)].path), plan.settings.hpss, str(work)
            )
            arrays = read_shard(work / shard.file, shard)
            if arrays is None:
                raise ASPError(f"shard {work / shard.file} cannot be written correctly; check the disk")
        meta.append((arrays["kept"], arrays["hpss"]))
    return meta


def _write_split(
    plan: Plan, out: Path, split: str, recs: list[tuple], commit: ExitStack, offsets: np.ndarray | None
) -> list[Path]:
    """Writes one split's files to temp files that ``commit`` renames into place; returns their
    final paths. ``recs``: the split's samples in order (see ``assemble``); ``offsets``: per shard,
    where its mels start (the sharded layout), or None (the mels are copied into one file)."""
    written = []
    synth_names = [s.name for s in plan.specs]
    arrays = {}
    if offsets is None:
        written.append(_copy_mels(plan, out, split, recs, commit))
    else:
        row_bytes = int(np.prod(plan.mel_shape)) * np.dtype(plan.settings.mel_dtype).itemsize
        shard = np.array([r[0] for r in recs], np.int64)
        arrays["mel_shard"] = shard.astype(np.int32)
        arrays["mel_offset"] = offsets[shard] + np.array([r[1] for r in recs], np.int64) * row_bytes
    synth = np.array([r[2] for r in recs], dtype=f"<U{max(len(s) for s in synth_names)}")
    presets = [plan.presets[r[2]][r[3]] for r in recs]
    arrays.update(encode_split(plan.specs, synth, presets))
    names = [plan.names[r[2]][r[3]] for r in recs]
    arrays["synth"] = synth
    arrays["name"] = np.array(names, dtype=f"<U{max([len(x) for x in names] + [1])}")
    arrays["hpss"] = np.array([r[5] for r in recs], dtype=np.int16)
    arrays["note"] = np.array([r[4] for r in recs], dtype=np.int16)
    for key, array in arrays.items():
        written.append(out / f"{split}_{key}.npy")
        with open(commit.enter_context(atomic_path(written[-1])), "wb") as f:
            np.save(f, array, allow_pickle=False)
    return written


def _copy_mels(plan: Plan, out: Path, split: str, recs: list[tuple], commit: ExitStack) -> Path:
    """Writes ``{split}_mels.npy`` (the assembled layout): every sample's mel copied from its
    shard, in the split's order; returns its final path."""
    work = out / WORK_DIR
    path = out / f"{split}_mels.npy"
    mel_tmp = commit.enter_context(atomic_path(path))
    shape = (len(recs), *plan.mel_shape)
    mels = np.lib.format.open_memmap(mel_tmp, mode="w+", dtype=plan.settings.mel_dtype, shape=shape)
    _reserve(mel_tmp)
    by_shard: dict[int, list[tuple[int, int]]] = {}
    for pos, r in enumerate(recs):
        by_shard.setdefault(r[0], []).append((pos, r[1]))
    for shard_index, pairs in by_shard.items():
        shard = plan.shards[shard_index]
        with np.load(work / shard.file, allow_pickle=False) as z:
            shard_mels = z["mels"]
        for pos, j in pairs:
            mels[pos] = shard_mels[j]
    mels.flush()
    del mels
    return path


def _shard_tasks(plan: Plan) -> list[str]:
    """Each shard file's task id (its ``task`` member), by shard number: what reading a sharded
    dataset checks, so that shard files swapped or copied from another dataset are refused."""
    tasks = [""] * (max((s.index for s in plan.shards), default=-1) + 1)
    for shard in plan.shards:
        tasks[shard.index] = shard.digest
    return tasks


def _manifest(plan: Plan, counts: dict, kept: dict, dropped: dict, layout: str) -> dict:
    """What manifest.json holds: the settings, the synths' specs, the mel settings and storage, the
    counts."""
    return {
        "generator_version": GENERATOR_VERSION,
        "layout": layout,
        "mel_dtype": plan.settings.mel_dtype,
        **({"shard_tasks": _shard_tasks(plan)} if layout == "sharded" else {}),
        "fingerprint": plan.fingerprint,
        "settings": plan.settings.to_json(),
        "synths": [
            {
                "name": s.name,
                "hash": s.hash,
                "encoded_size": s.encoded_size,
                "n_params": s.n_params,
                "backend": s.backend,
            }
            for s in plan.specs
        ],
        "single_size": max(s.encoded_size for s in plan.specs),
        "mel": {
            "sample_rate": plan.specs[0].render.sample_rate,
            "n_fft": 2048,
            "hop": HOP,
            "n_mels": N_MELS,
            "frames": 1 + plan.specs[0].render.num_samples // HOP,
            "scale": "power_to_db(ref=max), min-max",
        },
        "silence_rms": SILENCE_RMS,
        "counts": counts,
        "kept": kept,
        "dropped": dropped,
    }
