"""A shard's work, run on worker processes: render its notes, drop the silent ones, compute mels
and HPSS labels, and write it atomically with a digest of its content (``read_shard`` refuses a
torn, corrupt or stale one)."""

from __future__ import annotations

import hashlib
import time
import zipfile
from pathlib import Path

import numpy as np

from asp.builder.plan import Shard
from asp.files import atomic_write
from data.features import HOP, N_MELS, harmonic_percentage, hpss_bin, mel_from_stft, stft
from data_generation.render import Renderer, rms
from data_generation.spec import load_spec

SILENCE_RMS = 0.01


_RENDERER: Renderer | None = None


def _renderer() -> Renderer:
    global _RENDERER
    if _RENDERER is None:
        _RENDERER = Renderer()
    return _RENDERER


def _warm_up() -> None:
    """Runs what a shard runs on a short sound: librosa's lazy setup (~1.5 s) and numba compiles
    happen here, not inside the timed work (and, in the parent, once for all; see ``run_tasks``)."""
    noise = np.random.default_rng(0).normal(0, 0.1, HOP * 64).astype(np.float32)
    spectrum = stft(noise)
    mel_from_stft(spectrum)
    harmonic_percentage(spectrum)


def _content_digest(arrays: dict[str, np.ndarray]) -> np.ndarray:
    h = hashlib.sha256()
    for key in sorted(arrays):
        h.update(key.encode() + np.ascontiguousarray(arrays[key]).tobytes())
    return np.frombuffer(h.digest(), dtype=np.uint8).copy()


def render_shard(shard: Shard, spec_path: str, hpss: bool, work: str) -> dict:
    """Renders one shard and writes it atomically; returns its timing and counts (a worker task).
    A shard already written whole is kept as it is (a task run again because its worker died
    after writing it: nothing is written twice)."""
    t = {"render": 0.0, "mel": 0.0, "hpss": 0.0, "write": 0.0}
    written = read_shard(Path(work) / shard.file, shard)
    if written is not None:
        kept = int(written["kept"].sum())
        return {"index": shard.index, "synth": shard.synth, "samples": len(shard.notes), "kept": kept, "times": t}
    spec = load_spec(spec_path)
    renderer = _renderer()
    mels, kept, labels, levels = [], [], [], []
    for preset, note in zip(shard.presets, shard.notes):
        t0 = time.perf_counter()
        audio = renderer.render(spec, preset, note=int(note))
        t1 = time.perf_counter()
        level = float(rms(audio))
        levels.append(level)
        t["render"] += t1 - t0
        if level <= SILENCE_RMS:
            kept.append(False)
            continue
        kept.append(True)
        spectrum = stft(audio)
        mels.append(mel_from_stft(spectrum, spec.render.sample_rate))
        t2 = time.perf_counter()
        t["mel"] += t2 - t1
        labels.append(hpss_bin(harmonic_percentage(spectrum)) if hpss else 0)
        t["hpss"] += time.perf_counter() - t2
    t0 = time.perf_counter()
    frames = 1 + spec.render.num_samples // HOP
    stacked = np.stack(mels) if mels else np.zeros((0, N_MELS, frames), np.float32)
    arrays = {
        "mels": stacked.astype(shard.mel_dtype, copy=False),
        "kept": np.array(kept, dtype=bool),
        "hpss": np.array(labels, dtype=np.int16),
        "rms": np.array(levels, dtype=np.float32),
        "task": np.frombuffer(shard.digest.encode(), dtype=np.uint8).copy(),
    }
    arrays["digest"] = _content_digest(arrays)
    with atomic_write(Path(work) / shard.file, "wb") as f:
        np.savez(f, **arrays)
    t["write"] = time.perf_counter() - t0
    return {"index": shard.index, "synth": shard.synth, "samples": len(kept), "kept": int(sum(kept)), "times": t}


def read_shard(path: Path, shard: Shard) -> dict[str, np.ndarray] | None:
    """A finished shard's arrays, or None when it is missing, torn, corrupt or from other settings."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("mels", "kept", "hpss", "rms", "task", "digest")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    digest = arrays.pop("digest")
    if not np.array_equal(digest, _content_digest(arrays)):
        return None
    if bytes(arrays["task"]).decode(errors="replace") != shard.digest or arrays["mels"].dtype != shard.mel_dtype:
        return None
    kept = arrays["kept"]
    if len(kept) != len(shard.notes) or arrays["mels"].shape[0] != kept.sum() or len(arrays["hpss"]) != kept.sum():
        return None
    return arrays
