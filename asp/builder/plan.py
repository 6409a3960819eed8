"""A dataset's plan, made up front from the arguments and the seed alone: which presets of which
synths, which notes, which split, cut into shards of consecutive samples of one synth."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from asp.builder.sampling import ALL_SOURCES, SOURCES, _rng, _split_groups, _synth_presets
from asp.errors import ASPError
from data.dataset import GENERATOR_VERSION, LAYOUTS, SPLITS
from data.features import HOP, N_MELS
from data.mels import MEL_DTYPES, shard_file
from data_generation.spec import SynthSpec, load_spec

SHARD_SIZE = 32
WORK_DIR = ".work"  # the shards and plan of an unfinished run, inside its folder
SHARDED_ABOVE = 16 * 2**30  # --layout auto: sharded when the planned mels take more bytes than this


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
    one_note: bool = False  # each preset at one note drawn from ``notes`` (seeded), not at all of them
    mel_dtype: str = "float32"  # how the mels are stored (float16: half the disk)

    def to_json(self) -> dict:
        extra = {"one_note": True} if self.one_note else {}  # absent when off: older fingerprints hold
        if self.mel_dtype != "float32":
            extra["mel_dtype"] = self.mel_dtype
        return {
            **extra,
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
    mel_dtype: str = "float32"  # what its mels are stored as

    @property
    def file(self) -> str:
        return shard_file(self.index)


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

    @property
    def mel_shape(self) -> tuple[int, int]:
        """(n_mels, frames) of one mel."""
        return N_MELS, 1 + self.specs[0].render.num_samples // HOP

    def layout(self, wanted: str) -> str:
        """The layout a ``--layout`` value gives this plan: ``auto`` is sharded when the planned
        mels (silent ones included) take more than ``SHARDED_ABOVE`` bytes."""
        if wanted not in (*LAYOUTS, "auto"):
            raise ASPError(f"--layout {wanted!r} is not a layout; use auto or one of {', '.join(LAYOUTS)}")
        if wanted != "auto":
            return wanted
        n_mels, frames = self.mel_shape
        size = self.total * n_mels * frames * np.dtype(self.settings.mel_dtype).itemsize
        return "sharded" if size > SHARDED_ABOVE else "assembled"


def parse_notes(text: str) -> tuple[int, ...]:
    """``"60"`` -> (60,); ``"60-71"`` -> (60, ..., 71); ``"48,60,72"`` -> (48, 60, 72)."""
    notes: list[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            if sep and int(hi) < int(lo):  # range() would drop it without a word
                raise ASPError(f"--notes {text!r}: the range {part.strip()} runs backwards; write it {hi}-{lo}")
            notes += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    except ASPError:
        raise
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
        bad = [s for s in sources if s not in ALL_SOURCES]
        if bad or not sources:
            raise ASPError(f"--presets {item!r}: sources must be among {', '.join(ALL_SOURCES)}")
        if sep:
            if name not in synths:
                raise ASPError(f"--presets {item!r} names synth {name!r}, which is not in --synths")
            per[name] = sources
        else:
            default = sources
    return {s: per.get(s, default) for s in synths}


def make_plan(settings: Settings) -> Plan:
    """Everything the run will do, derived from the settings alone."""
    if settings.n <= 0:
        raise ASPError(f"--n must be a positive number of presets per synth, got {settings.n}")
    if settings.mel_dtype not in MEL_DTYPES:
        raise ASPError(f"--mel-dtype {settings.mel_dtype!r} is not a mel storage; use one of {', '.join(MEL_DTYPES)}")
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
        if settings.one_note:
            rows = np.arange(len(names))
            sample_notes = _rng(settings.seed, spec.name, "note").choice(notes, size=len(names))
        else:
            rows = np.repeat(np.arange(len(names)), len(notes))
            sample_notes = np.tile(notes, len(names))
        for start in range(0, len(rows), SHARD_SIZE):
            r = rows[start : start + SHARD_SIZE]
            shard = Shard(len(plan.shards), spec.name, r, presets[r], sample_notes[start : start + SHARD_SIZE])
            shard.mel_dtype = settings.mel_dtype
            dtype = b"" if settings.mel_dtype == "float32" else settings.mel_dtype.encode()  # float32: as before
            shard.digest = hashlib.sha256(
                spec.hash.encode() + shard.presets.tobytes() + shard.notes.tobytes() + bytes([settings.hpss]) + dtype
            ).hexdigest()[:24]
            plan.shards.append(shard)
    plan.fingerprint = h.hexdigest()[:24]
    return plan
