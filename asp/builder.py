"""Dataset generation: presets -> rendered notes -> mels, HPSS labels and encodings in npy_data.

The whole run is planned up front from the arguments and the seed (which presets, which notes,
which split), then cut into shards of consecutive samples of one synth. Workers render their
shards and write each one atomically (a temp file, then a rename) with a digest of its content,
so a run killed at any moment (even ``kill -9``) and started again with the same arguments skips
the shards already done, regenerates torn or corrupt ones, and ends with the same arrays as an
uninterrupted run. The final layout files are written under temp names and renamed, and the
manifest comes last: a folder with a manifest is complete. A run holds its folder
(``asp.locks.folder_lock``): a second one on the same folder fails at once, naming the first.

Every render is deterministic (see ``data_generation.render``), so the arrays do not depend on
the number of workers.

Splits are made by group, not by preset, so that no test preset is a near-copy of a training one:
a human preset and all its mutations form one group, each random preset is its own, and the
presets of amsynth bank files are grouped by bank file (when a synth has at least
``MIN_BANK_GROUPS`` of them), so held-out human presets come from banks never seen in training.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import shutil
import time
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asp.errors import ASPError
from asp.files import atomic_path, atomic_write, remove_stale_temps, write_json
from asp.locks import folder_lock
from asp.parallel import run_tasks
from data.dataset import GENERATOR_VERSION, MANIFEST, SPLITS, encode_split, split_files
from data.features import HOP, N_MELS, harmonic_percentage, hpss_bin, mel_from_stft, stft
from data_generation.presets import _resolve, human_presets, mutate_presets, random_presets
from data_generation.render import Renderer, rms
from data_generation.spec import SynthSpec, load_spec

SILENCE_RMS = 0.01
SHARD_SIZE = 32
WORK_DIR = ".work"
SOURCES = ("human", "mutate", "random")
SPLIT_SHARES = (0.8, 0.1, 0.1)
MIN_BANK_GROUPS = 3  # fewer amsynth bank files than this: their presets are grouped one by one


@dataclass(frozen=True)
class Settings:
    """What defines a dataset: two runs with equal settings produce identical arrays."""

    synths: tuple[str, ...]
    presets: dict[str, tuple[str, ...]]
    n: int
    notes: tuple[int, ...]
    seed: int
    hpss: bool = True
    split_all: str | None = None  # one of SPLITS: every preset goes there (a held-out folder)

    def to_json(self) -> dict:
        return {
            "synths": list(self.synths),
            "presets": {k: list(v) for k, v in self.presets.items()},
            "n": self.n,
            "notes": list(self.notes),
            "seed": self.seed,
            "hpss": self.hpss,
            "split_all": self.split_all,
        }


@dataclass
class Shard:
    """Consecutive samples of one synth: its presets (k, n_params) and notes (k,)."""

    index: int
    synth: str
    rows: np.ndarray  # preset indexes within the synth's plan
    presets: np.ndarray
    notes: np.ndarray
    digest: str = ""

    @property
    def file(self) -> str:
        return f"shard_{self.index:06d}.npz"


@dataclass
class Plan:
    settings: Settings
    specs: list[SynthSpec]
    presets: dict[str, np.ndarray]
    names: dict[str, list[str]]
    splits: dict[str, np.ndarray]  # per synth: (n,) 0/1/2 = train/valid/test
    groups: dict[str, np.ndarray] = field(default_factory=dict)  # per synth: (n,) split group of each preset
    shards: list[Shard] = field(default_factory=list)
    fingerprint: str = ""

    @property
    def total(self) -> int:
        return sum(len(s.notes) for s in self.shards)


# ---------------------------------------------------------------------------------------
# planning


def parse_notes(text: str) -> tuple[int, ...]:
    """``"60"`` -> (60,); ``"60-71"`` -> (60, ..., 71); ``"48,60,72"`` -> (48, 60, 72)."""
    notes: list[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            notes += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    except ValueError:
        raise ASPError(f"--notes {text!r} is not a note list; use e.g. 60, 60-71 or 48,60,72") from None
    if not notes or any(not 0 <= n <= 127 for n in notes):
        raise ASPError(f"--notes {text!r} must name MIDI notes 0-127")
    return tuple(dict.fromkeys(notes))


def parse_sources(items: list[str] | None, synths: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """``--presets`` values -> {synth: sources}. ``human,mutate`` sets all; ``amsynth=human`` one."""
    default: tuple[str, ...] = SOURCES
    per: dict[str, tuple[str, ...]] = {}
    for item in items or []:
        name, sep, value = item.rpartition("=")
        sources = tuple(s.strip() for s in value.split(",") if s.strip())
        bad = [s for s in sources if s not in SOURCES]
        if bad or not sources:
            raise ASPError(f"--presets {item!r}: sources must be among {', '.join(SOURCES)}")
        if sep:
            if name not in synths:
                raise ASPError(f"--presets {item!r} names synth {name!r}, which is not in --synths")
            per[name] = sources
        else:
            default = sources
    return {s: per.get(s, default) for s in synths}


def _rng(seed: int, *keys: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def _human_groups(spec: SynthSpec) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The spec's human presets and the split group of each.

    Presets of amsynth bank files are grouped by bank file when the synth has at least
    ``MIN_BANK_GROUPS`` bank files; every other human preset is a group of its own.

    Returns:
        names: h preset names, in ``human_presets`` order.
        presets: (h, n_params) normalized presets, equal to ``human_presets(spec)``.
        groups: (h,) int64 group ids, numbered from 0 in order of first appearance.
    """
    names: list[str] = []
    rows: list[np.ndarray] = [np.zeros((0, spec.n_params))]
    banks: list[str | None] = []  # the bank file of each preset, None outside banks
    for source in spec.presets:
        files: list[str] = []
        if source.get("kind") == "amsynth_bank" and source.get("path"):
            files = sorted(glob.glob(str(_resolve(spec, source["path"]))))
        # one bank file at a time (read_banks reads them in this sorted order); a pattern that
        # matches nothing goes through whole, so that human_presets reports it
        parts = [{**source, "path": glob.escape(f)} for f in files] or [source]
        for part, bank in zip(parts, files or [None]):
            part_names, part_rows = human_presets(replace(spec, presets=(part,)))
            names += part_names
            rows.append(part_rows)
            banks += [bank] * len(part_names)
    by_bank = len({b for b in banks if b is not None}) >= MIN_BANK_GROUPS
    keys = [(b,) if by_bank and b is not None else i for i, b in enumerate(banks)]
    ids = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    return names, np.concatenate(rows), np.array([ids[k] for k in keys], dtype=np.int64)


def _synth_presets(
    spec: SynthSpec, sources: tuple[str, ...], n: int, seed: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The presets of one synth and their split groups.

    Returns:
        names: k preset names (k <= n: all human presets when fewer than n are asked for).
        presets: (k, n_params) normalized presets.
        groups: (k,) int64 split group of each preset: a mutation has its parent's group (even
            when the parent itself is not taken), a random preset a group of its own.
    """
    rng = _rng(seed, spec.name, "presets")
    names: list[str] = []
    rows: list[np.ndarray] = []
    groups: list[np.ndarray] = []
    if "human" in sources or "mutate" in sources:
        human_names, human, human_group = _human_groups(spec)
    else:
        human_names, human, human_group = [], None, np.zeros(0, np.int64)
    next_group = int(human_group.max()) + 1 if len(human_group) else 0

    def own_groups(count: int) -> np.ndarray:
        nonlocal next_group
        next_group += count
        return np.arange(next_group - count, next_group, dtype=np.int64)

    if "human" in sources and len(human_names):
        take = np.arange(len(human_names))
        if len(take) > n:
            take = np.sort(rng.choice(len(human_names), n, replace=False))
        names += [human_names[i] for i in take]
        rows.append(human[take])
        groups.append(human_group[take])
    others = [s for s in sources if s != "human"]
    remaining = n - len(names)
    for k, source in enumerate(others):
        count = remaining // len(others) + (1 if k < remaining % len(others) else 0)
        if count == 0:
            continue
        if source == "mutate" and human is not None and len(human_names):
            parents = rng.integers(0, len(human_names), count)
            rows.append(mutate_presets(spec, human[parents], rng))
            names += [f"{human_names[p]}~m{i}" for i, p in enumerate(parents)]
            groups.append(human_group[parents])
        elif source == "mutate":  # nothing human to mutate: mutate random presets
            rows.append(mutate_presets(spec, random_presets(spec, count, rng), rng))
            names += [f"random~m{i}" for i in range(count)]
            groups.append(own_groups(count))
        else:
            rows.append(random_presets(spec, count, rng))
            names += [f"random_{i:05d}" for i in range(count)]
            groups.append(own_groups(count))
    if not names:
        raise ASPError(
            f"synth {spec.name!r} has no presets from sources {','.join(sources)}; "
            "add 'random' or 'mutate' to --presets"
        )
    return names, np.concatenate(rows), np.concatenate(groups)


def _split_groups(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Splits presets 80/10/10 by group: every preset of a group lands in the same split.

    The groups, shuffled, go one by one to the split that is least full (relative to its share of
    the presets) once it holds the group, so the shares are met exactly when every group is one
    preset and approximately otherwise. With at least 3 groups, valid and test hold at least one
    (moved, when needed, as the smallest group of the split holding the most groups).

    Args:
        groups: (n,) int group id of each preset.
        rng: the split's random generator.

    Returns:
        (n,) int8 split of each preset: 0/1/2 = train/valid/test.
    """
    n = len(groups)
    ids, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    n_valid = round(n * SPLIT_SHARES[1])
    n_test = round(n * SPLIT_SHARES[2])
    if len(ids) >= 3:
        n_valid, n_test = max(1, n_valid), max(1, n_test)
    targets = np.array([n - n_valid - n_test, n_valid, n_test], dtype=np.float64)
    filled = np.zeros(3)
    label = np.zeros(len(ids), dtype=np.int8)
    order = rng.permutation(len(ids))
    for g in order:
        fullness = np.full(3, np.inf)
        np.divide(filled + sizes[g], targets, out=fullness, where=targets > 0)
        label[g] = np.argmin(fullness)
        filled[label[g]] += sizes[g]
    if len(ids) >= 3:
        rank = np.empty(len(ids), dtype=np.int64)
        rank[order] = np.arange(len(ids))
        for split in (1, 2):
            if (label == split).any():
                continue
            donor = int(np.argmax(np.bincount(label, minlength=3)))
            members = np.flatnonzero(label == donor)
            label[members[np.lexsort((rank[members], sizes[members]))[0]]] = split
    return label[inverse.ravel()]


def make_plan(settings: Settings) -> Plan:
    """Everything the run will do, derived from the settings alone."""
    if settings.n <= 0:
        raise ASPError(f"--n must be a positive number of presets per synth, got {settings.n}")
    if settings.split_all is not None and settings.split_all not in SPLITS:
        raise ASPError(f"--split-all {settings.split_all!r} is not a split; use one of {', '.join(SPLITS)}")
    specs = [load_spec(s) for s in settings.synths]
    shapes = {(s.render.sample_rate, s.render.num_samples) for s in specs}
    if len(shapes) > 1:
        raise ASPError(
            "the synths of one dataset must share sample rate and render length "
            f"(their mels must have one shape); got {sorted(shapes)}"
        )
    plan = Plan(settings, specs, {}, {}, {})
    h = hashlib.sha256(
        json.dumps(
            {"settings": settings.to_json(), "version": GENERATOR_VERSION, "specs": [s.hash for s in specs]},
            sort_keys=True,
        ).encode()
    )
    if len({s.name for s in specs}) != len(specs):
        raise ASPError("--synths names one synth twice")
    for arg, spec in zip(settings.synths, specs):
        names, presets, groups = _synth_presets(spec, settings.presets[arg], settings.n, settings.seed)
        # render exactly what the float32 parameter files will hold
        presets = spec.snap(presets.astype(np.float32).astype(np.float64))
        plan.names[spec.name], plan.presets[spec.name], plan.groups[spec.name] = names, presets, groups
        if settings.split_all is not None:
            plan.splits[spec.name] = np.full(len(names), SPLITS.index(settings.split_all), dtype=np.int8)
        else:
            plan.splits[spec.name] = _split_groups(groups, _rng(settings.seed, spec.name, "split"))
        h.update(presets.tobytes())
        notes = np.array(settings.notes, dtype=np.int16)
        rows = np.repeat(np.arange(len(names)), len(notes))
        sample_notes = np.tile(notes, len(names))
        for start in range(0, len(rows), SHARD_SIZE):
            r = rows[start : start + SHARD_SIZE]
            shard = Shard(len(plan.shards), spec.name, r, presets[r], sample_notes[start : start + SHARD_SIZE])
            shard.digest = hashlib.sha256(
                spec.hash.encode() + shard.presets.tobytes() + shard.notes.tobytes() + bytes([settings.hpss])
            ).hexdigest()[:24]
            plan.shards.append(shard)
    plan.fingerprint = h.hexdigest()[:24]
    return plan


# ---------------------------------------------------------------------------------------
# workers


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
    """Renders one shard and writes it atomically; returns its timing and counts (a worker task)."""
    spec = load_spec(spec_path)
    renderer = _renderer()
    mels, kept, labels, levels = [], [], [], []
    t = {"render": 0.0, "mel": 0.0, "hpss": 0.0, "write": 0.0}
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
    arrays = {
        "mels": np.stack(mels) if mels else np.zeros((0, N_MELS, frames), np.float32),
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
    if bytes(arrays["task"]).decode(errors="replace") != shard.digest:
        return None
    kept = arrays["kept"]
    if len(kept) != len(shard.notes) or arrays["mels"].shape[0] != kept.sum() or len(arrays["hpss"]) != kept.sum():
        return None
    return arrays


# ---------------------------------------------------------------------------------------
# the run


def _check_writable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ASPError(f"output folder {out} is a file, not a folder; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write_test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ASPError(f"cannot write to output folder {out} ({err.strerror}); choose another --out") from None


def _fingerprint(plan_file: Path) -> str | None:
    """The fingerprint of the plan an unfinished run left, or None (none, or unreadable)."""
    try:
        data = json.loads(plan_file.read_text())
    except (OSError, ValueError):
        return None
    return data.get("fingerprint") if isinstance(data, dict) else None


def _read_manifest(path: Path) -> dict | None:
    """A finished dataset's manifest, or None when it is damaged (not JSON, or keys missing)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(data, dict) and isinstance(data.get("fingerprint"), str)):
        return None
    return data if all(isinstance(data.get(k), dict) for k in ("kept", "dropped", "counts")) else None


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


def _remove_dataset(out: Path) -> None:
    """Removes a dataset's own files (``{split}_*.npy``, the manifest, the work folder), nothing else."""
    for p in [p for split in SPLITS for p in out.glob(f"{split}_*.npy")]:
        p.unlink()
    (out / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)


def _iter_results(plan: Plan, todo: list[Shard], work: Path, workers: int) -> Iterator[dict]:
    paths = {s.name: str(s.path) for s in plan.specs}
    tasks = [(shard, paths[shard.synth], plan.settings.hpss, str(work)) for shard in todo]
    yield from run_tasks(render_shard, tasks, workers=workers, initializer=_warm_up)


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


def generate(
    settings: Settings,
    out: str | Path,
    *,
    workers: int | None = None,
    force: bool = False,
    max_shards: int | None = None,
    progress: bool = True,
) -> Summary:
    """Generates (or resumes) a dataset in ``out``.

    Args:
        settings: what to generate.
        out: output folder (the npy_data layout).
        workers: worker processes (default: all cores); 1 renders in this process.
        force: replace a dataset (finished or in progress) made with other settings.
        max_shards: stop after rendering this many shards (the run resumes later).
        progress: show a progress bar.

    Raises:
        ASPError: for bad settings, an unwritable folder, another dataset in the way, or another
            run generating into the same folder (it holds ``out/.lock`` while it runs).
    """
    start = time.perf_counter()
    out = Path(out)
    plan = make_plan(settings)
    _check_writable(out)
    with folder_lock(out, what="another generate.py run", fix="choose another --out"):
        return _generate(plan, out, start, workers=workers, force=force, max_shards=max_shards, progress=progress)


def _generate(
    plan: Plan, out: Path, start: float, *, workers: int | None, force: bool, max_shards: int | None, progress: bool
) -> Summary:
    """``generate``'s work, once the folder is held."""
    settings = plan.settings
    work = out / WORK_DIR
    manifest_path = out / MANIFEST
    plan_file = work / "plan.json"
    previous = _fingerprint(plan_file)
    remove_stale_temps(out, "*.npy", MANIFEST)  # left by a run killed while assembling (only those)
    if manifest_path.is_file():
        manifest = _read_manifest(manifest_path)
        if manifest is not None and manifest.get("fingerprint") == plan.fingerprint:
            shutil.rmtree(work, ignore_errors=True)
            return Summary(out, manifest["kept"], manifest["dropped"], manifest["counts"], 0.0, True, already=True)
        if not force:
            hashes = {s.name: s.hash for s in plan.specs}
            made = {e.get("name"): e.get("hash") for e in (manifest or {}).get("synths", [])}
            changed = [name for name, h in made.items() if h != hashes.get(name)]
            if changed and set(made) <= set(hashes):
                raise ASPError(
                    f"{out} holds a dataset made with an earlier version of {', '.join(changed)} (a spec or "
                    "DSP code changed since); pass --force to regenerate it, or choose another --out"
                )
            what = "a finished dataset made with other arguments" if manifest else "a damaged manifest.json"
            raise ASPError(f"{out} holds {what}; pass --force to replace it, or choose another --out")
        _remove_dataset(out)
    elif any(out.glob("*_mels.npy")) and not force and previous != plan.fingerprint:
        # (with this run's plan in the work folder they are this run's, from an interrupted assembly)
        raise ASPError(
            f"{out} holds npy files of another dataset; pass --force to replace them, or choose another --out"
        )
    work.mkdir(exist_ok=True)
    if plan_file.is_file():
        if previous != plan.fingerprint:
            if not force:
                raise ASPError(
                    f"{out} holds an unfinished dataset made with other arguments; rerun that "
                    "command to finish it, or pass --force to start this one instead"
                )
            _remove_dataset(out)
            work.mkdir()
    write_json(plan_file, {"fingerprint": plan.fingerprint, "settings": settings.to_json()})
    remove_stale_temps(work)  # shards of killed workers

    todo = [s for s in plan.shards if read_shard(work / s.file, s) is None]
    if max_shards is not None:
        todo = todo[:max_shards]
    done_samples = plan.total - sum(len(s.notes) for s in todo)
    times = {"render": 0.0, "mel": 0.0, "hpss": 0.0, "write": 0.0}
    rendered = 0
    workers = workers or os.cpu_count() or 1
    bar = tqdm(
        total=plan.total, initial=done_samples, unit="sample", desc="generate", disable=not progress, smoothing=0.1
    )
    loop_start = time.perf_counter()
    with bar:
        for result in _iter_results(plan, todo, work, workers):
            bar.update(result["samples"])
            rendered += result["samples"]
            for k, v in result["times"].items():
                times[k] += v
    loop_seconds = time.perf_counter() - loop_start
    remaining = [s for s in plan.shards if not (work / s.file).is_file()]
    if remaining:
        return Summary(out, {}, {}, {}, time.perf_counter() - start, False, times, rendered, loop_seconds=loop_seconds)
    summary = assemble(plan, out)
    summary.seconds = time.perf_counter() - start
    summary.times, summary.rendered, summary.loop_seconds = times, rendered, loop_seconds
    return summary


def assemble(plan: Plan, out: Path) -> Summary:
    """Joins the finished shards into the npy_data layout, then writes the manifest."""
    work = out / WORK_DIR
    meta = []  # per shard: (kept mask, hpss)
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
        expected = {f for split in SPLITS for f in split_files(split, synth_names)}
        assert expected == {final.name for final in written}
    manifest = {
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
    write_json(out / MANIFEST, manifest)  # last: a dataset is finished when its manifest exists
    shutil.rmtree(work, ignore_errors=True)
    return Summary(out, kept, dropped, counts, 0.0, True)
