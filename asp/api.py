"""The public API: the things users script, and what the commands call.

    load_model(model)              a trained model ready to match sounds (an ``asp.inference.Matcher``)
    match(source, model=...)       presets for a sound file, a folder of sound files, or a test sample
    render(synth, preset)          a preset played by a synth: (n,) float32 audio
    generate(synths, n, out=...)   a dataset in the npy_data layout

    import asp
    audio = asp.render("fm", note=57)                     # the spec's default preset
    found = asp.match("my_sound.wav", model="multi", out="matches/my_sound")
    print(found.matched[0]["results"][0]["synth"])        # the closest synth

The modules that import TensorFlow are imported inside ``load_model`` and ``match``, after the
sounds are read and their notes estimated: librosa's pyin compiles numba code, which segfaults
once TensorFlow is loaded (see ``data.sound``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from asp.builder import Settings, Summary, parse_notes, parse_sources
from asp.builder import generate as build_dataset
from asp.checkpoints import CONFIG, read_config
from asp.config import DATA_DIR, MODEL_DIR
from asp.errors import ASPError
from asp.files import path_problem
from asp.locks import folder_lock, output_lock
from asp.report import check_index, write_index
from asp.runs import find_run
from asp.search import NEAREST_STARTS, Budget
from data.dataset import pick_test_index
from data.sound import estimate_note, load_audio
from data_generation.presets import read_preset_file
from data_generation.render import Renderer, default_renderer
from data_generation.spec import SynthSpec, load_spec

if TYPE_CHECKING:
    from asp.inference import Matcher, Target

SOUND_FILES = (".wav", ".flac", ".ogg", ".aiff")


def load_model(
    model: str | Path = "multi",
    *,
    model_dir: str | Path = MODEL_DIR,
    latent_size: int | None = None,
    encoder: str | None = None,
    data_dir: str | Path | None = DATA_DIR,
    plugin_paths: dict[str, str] | None = None,
) -> Matcher:
    """A trained model, built from its run folder's config.json and loaded, with a renderer.

    Args:
        model: a run folder, or multi, single or a synth with a trained baseline, found in
            ``model_dir`` (``asp.runs.find_run``: ``latent_size`` and ``encoder`` choose among runs).
        data_dir: the dataset whose training presets a search also starts from (None: none).
        plugin_paths: {synth: plugin path} overriding the specs' sources.

    Raises:
        ASPError: no such run, or its files are damaged.
    """
    from asp.inference import Matcher  # TensorFlow

    run_dir = run_folder(model, model_dir, latent_size, encoder)
    return Matcher(run_dir, latent_size=latent_size, plugin_paths=plugin_paths, data_dir=data_dir)


def run_folder(model: str | Path, model_dir: str | Path, latent_size: int | None, encoder: str | None) -> Path:
    """``model`` as a run folder: itself when it holds a config.json, else the run of that name
    in ``model_dir``."""
    if Path(model).is_dir() and (Path(model) / CONFIG).is_file():
        return Path(model)
    return find_run(model_dir, str(model), latent_size, encoder)


@dataclass
class Matches:
    """What ``match`` did: per target matched, {"target" (an ``asp.inference.Target``), "out"
    (its folder; for a folder of sounds without its audio and mel, which are in that folder, so that
    memory stays flat in the number of files), "results" (per synth, closest first: synth, lsd, mrsd,
    refined_lsd, ...),
    "summary" (what match.json holds), "model_seconds"}; (file, error) per sound that could not be
    matched; the index.html of a folder's matches (or None); how many sounds there were."""

    matched: list[dict] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    index: Path | None = None
    sounds: int = 1  # the sound files of a folder (1 for a file or a test sample)


def _check_refine_synths(config: dict, refine_synths: int | list[str]) -> None:
    """Refuses refine synths (a list of names) that the model does not predict."""
    predicted = [s["name"] for s in config["synths"]]
    unknown = [s for s in refine_synths if s not in predicted] if isinstance(refine_synths, list) else []
    if unknown:
        raise ASPError(
            f"cannot refine {', '.join(unknown)}: the model predicts {', '.join(predicted)}; "
            "pick --refine-synths among them"
        )


def match(
    source: str | Path | int | None = None,
    *,
    model: str | Path | Matcher = "multi",
    model_dir: str | Path = MODEL_DIR,
    latent_size: int | None = None,
    encoder: str | None = None,
    data_dir: str | Path = DATA_DIR,
    out: str | Path | None = None,
    note: int | None = None,
    all_outputs: bool = False,
    synth: str | None = None,
    hpss: int | None = None,
    seed: int | None = None,
    refine: Budget | None = None,
    refine_synths: int | list[str] = 2,
    refine_starts: int = NEAREST_STARTS,
    best_of: int | None = None,
    workers: int | None = None,
    plot: bool = True,
    plugin_paths: dict[str, str] | None = None,
    on_load: Callable[[Matcher, Path], None] | None = None,
    on_match: Callable[[Target, dict], None] | None = None,
) -> Matches:
    """Matches sounds with a trained model: a preset for each synth (every synth for a sound file),
    rendered and compared, written with report.html into an output folder per sound.

    Args:
        source: a sound file (any rate, mono or stereo), a folder of sound files (each matched into
            ``out/<name>/``, named by ``output_names``, with an index.html), or the index of a test
            sample of ``data_dir`` (None or -1: a random one, of ``synth`` and ``hpss`` when given,
            seeded by ``seed``).
        model: a loaded ``Matcher`` (``load_model``), a run folder, or a run name in ``model_dir``.
        out: the output folder (default inference_out/<name>/; ``.`` or ``..``: <that folder>/<name>/;
            for a folder of sounds, the root of its matches).
        note: MIDI note to render at; None estimates each sound's (pyin). With a loaded ``model``
            TensorFlow is loaded already: give the note, or load the model by name here.
        all_outputs: a test sample matched by every synth head, not only its own synth's.
        refine: a search budget per refined synth (None: the network's presets only).
        refine_synths / refine_starts / workers: the synths refined (how many of the closest, or
            names), the nearest training presets the search also starts from, and its render
            processes (default: all cores).
        best_of: K presets drawn per synth from the model's generative heads, rendered with the
            network's and the nearest presets, the closest kept (``<synth>.best.*``) and searched
            from; 0 turns it off; None: ``asp.search.BEST_OF_K`` for a model with the heads, else off.
        on_load / on_match: called with the loaded model and its run folder, and after each sound
            with its target and result (``run_inference.py`` prints them).

    Raises:
        ASPError: bad input or model; for a single sound, a sound that cannot be matched.
    """
    matcher = model if not isinstance(model, (str, Path)) else None
    run_dir = None if matcher is not None else run_folder(model, model_dir, latent_size, encoder)
    config = matcher.config if matcher is not None else read_config(run_dir)
    _check_refine_synths(config, refine_synths if refine else [])  # before the model loads (seconds)
    is_sound = source is not None and not isinstance(source, int)
    if is_sound:  # read the sounds and estimate their notes before TensorFlow is loaded
        files, notes, found = _read_sounds(Path(source), out, config["synths"][0]["render"]["duration"], note)
    else:
        if synth is None and (source is None or source < 0):  # a baseline matches its own synth's sounds
            synth = config.get("target_synth")
        index = pick_test_index(data_dir, -1 if source is None else source, synth=synth, hpss=hpss, seed=seed)
    held = contextlib.ExitStack()  # the output's lock: a second run into the same --out is refused
    if is_sound:
        held.enter_context(_output_lock(Path(source), files, out))
    own = matcher is None
    if own:
        matcher = _load_matcher(run_dir, latent_size, plugin_paths, data_dir, on_load)
    settings = dict(refine=refine, refine_synths=refine_synths, refine_starts=refine_starts, best_of=best_of)
    settings.update(workers=workers or os.cpu_count() or 1, seed=seed or 0, plot=plot)
    try:
        if is_sound:
            return _match_sounds(matcher, Path(source), files, notes, out, found, settings, on_match)
        return _match_test_sample(matcher, data_dir, index, out, all_outputs, settings, on_match)
    finally:
        if own:
            matcher.close()  # the search workers
        held.close()


def _load_matcher(run_dir: Path, latent_size, plugin_paths, data_dir, on_load) -> Matcher:
    """The run's model, loaded (TensorFlow: only after the sounds' notes are estimated)."""
    from asp.inference import Matcher

    matcher = Matcher(run_dir, latent_size=latent_size, plugin_paths=plugin_paths, data_dir=data_dir)
    if on_load is not None:
        on_load(matcher, run_dir)
    return matcher


def _match_test_sample(matcher: Matcher, data_dir, index: int, out, all_outputs: bool, settings: dict, on_match):
    """Matches test sample ``index`` of ``data_dir`` into its folder under ``out``."""
    target = matcher.test_target(data_dir, index)
    folder = output_folder(out, target.name) if out else Path("inference_out") / target.name
    result = matcher.match(target, folder, all_outputs=all_outputs, **settings)
    if on_match is not None:
        on_match(target, result)
    return Matches([{"target": target, **result}])


def _output_lock(source: Path, files: list[Path], out) -> contextlib.AbstractContextManager:
    """Holds the output of a match of sound files until it ends: a folder's root of matches, or one
    sound's folder, through a lock file beside it (inside ``.`` or ``..``), removed at the end, so
    that a second run into it at once is refused, naming the first, instead of replacing its results."""
    what, fix = "another run_inference.py run", "choose another --out"
    if source.is_dir():
        root = Path(out) if out else Path("inference_out")
        if root.name in ("", ".", ".."):  # an existing folder, never replaced: the lock goes inside
            return folder_lock(root, what=what, fix=fix, remove=True)
        return output_lock(root, what=what, fix=fix)
    name = output_names(files)[files[0]]
    folder = output_folder(out, name) if out else Path("inference_out") / name
    return output_lock(folder, what=what, fix=fix)


def _read_sounds(source: Path, out, seconds: float, note: int | None) -> tuple[list[Path], dict, Matches]:
    """The sound files of ``source``, each one's note, and the files of a folder that cannot be read."""
    found = Matches()
    if source.is_dir():
        files = sorted(f for f in source.iterdir() if f.suffix.lower() in SOUND_FILES)
        if not files:
            raise ASPError(f"folder {source} has no .wav/.flac/.ogg/.aiff files")
        check_index(Path(out) if out else Path("inference_out"))  # before any work
    elif source.exists():
        files = [source]
    else:  # missing, a symbolic link loop, or a file where the path needs a folder
        raise ASPError(f"input {path_problem(source)}")
    found.sounds = len(files)
    notes: dict[Path, int] = {}
    what = "notes" if note is None else "read"  # pyin takes seconds per file: progress from the first
    for file in tqdm(files, desc=what, unit="file", disable=not source.is_dir()):
        try:
            audio = load_audio(file, seconds)
            notes[file] = note if note is not None else estimate_note(audio)
        except ASPError as err:
            if not source.is_dir():
                raise
            found.failed.append((str(file), str(err)))
            print(f"error: {err}", file=sys.stderr)
    return files, notes, found


def _match_sounds(matcher, source: Path, files, notes, out, found: Matches, settings: dict, on_match) -> Matches:
    """Matches every readable sound file; a folder's failures are recorded, a single file's raised."""
    root = Path(out) if out else Path("inference_out")
    single = len(files) == 1 and not source.is_dir()
    names = output_names(files)  # tone.wav and tone.flac: tone-wav/ and tone-flac/
    for file in tqdm([f for f in files if f in notes], desc="match", unit="file", disable=single):
        try:
            target = matcher.wav_target(file, notes[file], name=names[file])
            folder = output_folder(out, target.name) if (out and single) else root / target.name
            result = matcher.match(target, folder, all_outputs=True, progress=single, **settings)
            if on_match is not None:
                on_match(target, result)
            if not single:  # memory flat in the number of files: its audio and mel are in its folder now
                target = dataclasses.replace(target, audio=np.zeros(0, np.float32), mel=np.zeros((0, 0), np.float32))
            found.matched.append({"target": target, **result})
        except ASPError as err:
            if single:
                raise
            found.failed.append((str(file), str(err)))
            print(f"error: {err}", file=sys.stderr)
    if source.is_dir() and found.matched:
        entries = [{"folder": m["out"], "summary": m["summary"]} for m in found.matched]
        found.index = write_index(root, entries, found.failed)
    return found


def output_folder(out: str | Path, name: str) -> Path:
    """``out`` as one sound's output folder: the path given, or, where it names the current folder
    or one above (``.``, ``..``), its child ``name``."""
    out = Path(out)
    return out / name if out.name in ("", ".", "..") else out


def output_names(files: list[Path]) -> dict[Path, str]:
    """The output folder name of each sound file of a folder, unique among them: its stem
    (``tone.wav`` -> ``tone``), or, where files share a stem (letter case aside), the stem and the
    suffix (``tone.wav`` -> ``tone-wav``, ``tone.flac`` -> ``tone-flac``); a name still taken gets
    ``-2``, ``-3``, ... in the order of ``files``. The same files always get the same names."""
    stems = [f.stem.casefold() for f in files]
    names: dict[Path, str] = {}
    taken: set[str] = set()
    for file, stem in zip(files, stems):
        name = file.stem if stems.count(stem) == 1 else f"{file.stem}-{file.suffix.lstrip('.')}"
        unique, k = name, 2
        while unique.casefold() in taken:
            unique, k = f"{name}-{k}", k + 1
        taken.add(unique.casefold())
        names[file] = unique
    return names


def render(
    synth: str | Path | SynthSpec,
    preset: np.ndarray | dict | str | Path | None = None,
    *,
    note: int | None = None,
    plugin_paths: dict[str, str] | None = None,
) -> np.ndarray:
    """One note of a synth: (n,) float32 mono audio at the spec's sample rate and length.

    Args:
        synth: a synth name, a spec file, or a ``SynthSpec``.
        preset: normalized parameter values ((n_params,) in [0, 1]), {name: value}, a preset file
            (.faust.json, .preset.json, .params.json, an amsynth .bank: its first preset), or None
            for the spec's defaults.
        note: MIDI note (default: the spec's).
        plugin_paths: {synth: plugin path} overriding the spec's source.
    """
    spec = synth if isinstance(synth, SynthSpec) else load_spec(synth)
    if isinstance(preset, (str, Path)):
        preset = read_preset_file(spec, preset)[1][0]
    settings = {} if note is None else {"note": int(note)}
    return _renderer(plugin_paths).render(spec, preset, **settings)


_RENDERERS: dict[tuple, Renderer] = {}


def _renderer(plugin_paths: dict[str, str] | None) -> Renderer:
    """The process's renderer for these plugin paths (one engine per synth, reused)."""
    if not plugin_paths:
        return default_renderer()
    key = tuple(sorted(plugin_paths.items()))
    if key not in _RENDERERS:
        _RENDERERS[key] = Renderer(plugin_paths=dict(plugin_paths))
    return _RENDERERS[key]


def generate(
    synths: Sequence[str],
    n: int,
    *,
    out: str | Path = DATA_DIR,
    presets: list[str] | None = None,
    notes: str = "60",
    seed: int = 0,
    hpss: bool = True,
    split_all: str | None = None,
    one_note: bool = False,
    layout: str = "auto",
    mel_dtype: str = "float32",
    workers: int | None = None,
    force: bool = False,
    max_shards: int | None = None,
    progress: bool = True,
) -> Summary:
    """Generates (or resumes) a dataset in ``out``: ``n`` presets of each synth rendered at each
    note, their mels, HPSS labels and encodings (``asp.builder``).

    Args:
        synths: synth names or spec paths.
        presets: preset sources as ``generate.py --presets`` takes them: ``human,mutate`` for every
            synth, ``amsynth=human`` for one (default human, mutate and random).
        notes: ``60``, ``60-71`` or ``48,60,72``.
        hpss: compute the HPSS labels (False: 0).
        split_all: put every preset in this split (a held-out folder), else 80/10/10 by group.
        one_note: each preset at one note drawn from ``notes`` (seeded) instead of at every note.
        layout: ``assembled`` (one mel file per split: the published layout), ``sharded`` (the
            mels stay in the shard files, read in place, with a lookup index: for datasets larger
            than memory) or ``auto`` (sharded above ``asp.builder.SHARDED_ABOVE`` bytes of mels); see docs/datasets.md.
        mel_dtype: ``float32`` or ``float16`` (half the disk; read back as float32).
        workers: render processes (default: all cores).
        force: replace a dataset made with other settings.
        max_shards: stop after this many shards (the run resumes later).

    Raises:
        ASPError: bad settings, or ``out`` holds another dataset (without ``force``) or is in use.
    """
    synths = tuple(synths)
    if len(set(synths)) != len(synths):
        raise ASPError("--synths names a synth twice")
    settings = Settings(
        synths=synths,
        presets=parse_sources(presets, synths),
        n=n,
        notes=parse_notes(notes),
        seed=seed,
        hpss=hpss,
        split_all=split_all,
        one_note=one_note,
        mel_dtype=mel_dtype,
    )
    return build_dataset(
        settings, out, layout=layout, workers=workers, force=force, max_shards=max_shards, progress=progress
    )
