"""Assembly: the finished shards joined into the npy_data layout (every file written under a temp
name and renamed at the end), then the manifest, last: a folder with a manifest is complete."""

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
from asp.files import atomic_path, write_json
from data.dataset import GENERATOR_VERSION, MANIFEST, SPLITS, encode_split, split_files
from data.features import HOP, N_MELS


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

    def lines(self) -> list[str]:
        out = []
        for synth in self.kept:
            out.append(f"  {synth:<16} kept {self.kept[synth]:>7}   dropped as silent {self.dropped[synth]:>6}")
        out.append("  splits: " + ", ".join(f"{k} {v}" for k, v in self.counts.items()))
        rate = self.rendered / self.seconds if self.seconds > 0 else 0.0
        out.append(f"  rendered {self.rendered} samples this run in {self.seconds:.1f} s ({rate:.1f} samples/s)")
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


def assemble(plan: Plan, out: Path) -> Summary:
    """Joins the finished shards into the npy_data layout, then writes the manifest."""
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
    with ExitStack() as commit:  # every file is written to a temp first; all are renamed at the end
        for split_id, split in enumerate(SPLITS):
            recs = [r for r in records if r[6] == split_id]
            order = _rng(plan.settings.seed, "order", split).permutation(len(recs))
            recs = [recs[i] for i in order]
            counts[split] = len(recs)
            written += _write_split(plan, out, split, recs, commit)
        expected = {f for split in SPLITS for f in split_files(split, synth_names)}
        assert expected == {final.name for final in written}
    write_json(out / MANIFEST, _manifest(plan, counts, kept, dropped))  # last: the dataset is finished
    shutil.rmtree(work, ignore_errors=True)
    return Summary(out, kept, dropped, counts, 0.0, True)


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


def _write_split(plan: Plan, out: Path, split: str, recs: list[tuple], commit: ExitStack) -> list[Path]:
    """Writes one split's files to temp files that ``commit`` renames into place; returns their
    final paths. ``recs``: the split's samples in order (see ``assemble``)."""
    work = out / WORK_DIR
    written = []
    synth_names = [s.name for s in plan.specs]
    n = len(recs)
    frames = 1 + plan.specs[0].render.num_samples // HOP
    written.append(out / f"{split}_mels.npy")
    mel_tmp = commit.enter_context(atomic_path(written[-1]))
    mels = np.lib.format.open_memmap(mel_tmp, mode="w+", dtype=np.float32, shape=(n, N_MELS, frames))
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
    synth = np.array([r[2] for r in recs], dtype=f"<U{max(len(s) for s in synth_names)}")
    presets = [plan.presets[r[2]][r[3]] for r in recs]
    arrays = encode_split(plan.specs, synth, presets)
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


def _manifest(plan: Plan, counts: dict, kept: dict, dropped: dict) -> dict:
    """What manifest.json holds: the settings, the synths' specs, the mel settings and the counts."""
    return {
        "generator_version": GENERATOR_VERSION,
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
