"""A model measured on real sounds: recorded and sampled notes that no synth of ours made
(``data_generation/real_sounds.py``: ``make real-sounds``), each matched as ``run_inference.py
--input`` matches a sound, and compared with what a user can do without the network.

Per sound, at its MIDI note (the folder's ``sounds.csv``; pyin's estimate for a folder without one):

- ``one-shot``: the network's preset for each synth the model knows (``Matcher.match``);
- ``searched``: each of those refined by the search with the synth in the loop, as
  ``run_inference.py --input`` refines (from the network's preset and the ``NEAREST_STARTS``
  nearest training presets; a budget per synth), here for every synth, not only the two closest;
- ``lookup``: the training sound of any synth nearest the real sound's mel by the distance the
  nearest-neighbour baseline uses (``data.lookup.nearest_rows``: Euclidean over the whole mel),
  its preset re-rendered at the real sound's note;
- ``mean``: each synth's training-mean preset (``data.dataset.mean_vector``) at the note.

A method's match of a sound is that of its best synth: the synth whose match has the lowest LSD
(as ``run_inference.py`` ranks its matches); its other distances are those of the same render.
Lookup is one sound already. Distances: LSD, multi-scale log-mel and MFCC (``asp.metrics``).

``evaluate_real_sounds`` writes into its output folder ``samples.csv`` (a row per sound, method
and synth rendered; ``best`` marks each method's pick), ``table.md`` and ``table.csv`` (mean with
its 95% CI, median and IQR per method and distance, each method's mean as a multiple of lookup's
with a paired bootstrap 95% CI, a row per synth and per source), ``sounds/<name>/`` (what
``run_inference.py --input`` writes for the sound: report.html playing the sound and each synth's
one-shot and searched match; plus the lookup's and best mean preset's renders and ``scores.json``),
``sounds/index.html`` and ``report/index.html`` (the sound and every method's match side by side).
A sound already matched with the same model, budget and seed is not matched again (a killed run
resumes), and only its lookup and mean rows are scored again against another dataset.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from asp import metrics
from asp.checkpoints import CONFIG
from asp.config import MODEL_DIR
from asp.errors import ASPError
from asp.evaluation.real_tables import SOUNDS, listening_page, summary
from asp.evaluation.results import write_csv
from asp.files import atomic_write, path_problem, read_json, write_json, write_sound
from asp.report import save_mel_png, write_index
from asp.runs import find_run
from asp.search import NEAREST_STARTS, Budget
from data import lookup
from data.dataset import Split, data_fingerprint, load_split, mean_vector, read_manifest
from data.encoding import Codec
from data.features import mel_spectrogram
from data.sound import SAMPLE_RATE, estimate_note, load_audio

SOUND_FILES = (".wav", ".flac", ".ogg", ".aiff")
LIST = "sounds.csv"  # data_generation/real_sounds.py's list: file, source, note, ...
SCORES = "scores.json"  # per sound folder: its rows and the stamp they were scored under
LOOKUP_CHUNK = 512  # training mels per block of the lookup (512 x 220 KB: 113 MB)


@dataclass
class RealSound:
    """A sound file of the set and the MIDI note its matches are rendered at."""

    file: Path
    name: str
    source: str
    note: int


# -- the sounds --------------------------------------------------------------------------------


def read_real_sounds(folder: str | Path, seconds: float = 5.0) -> list[RealSound]:
    """The sounds of a real-sound folder with their notes: ``sounds.csv``'s (file, note, source)
    when the folder has one, else every sound file's, its note estimated (pyin: call this before
    TensorFlow is imported, see ``data.sound``).

    Raises:
        ASPError: a missing folder, one without sound files, files of one name (tone.wav and
            tone.flac), or a list naming a missing file or a note outside 0-127.
    """
    folder = Path(folder)
    if not folder.is_dir():
        exists = folder.exists() or folder.is_symlink()
        problem = (
            (path_problem(folder) or f"{folder} is a file, not a folder") if exists else f"{folder} does not exist"
        )
        raise ASPError(
            f"real-sound folder {problem}; make the set with `make real-sounds` "
            "(data_generation/real_sounds.py --out real_sounds) or name another folder in the config's 'real_sounds'"
        )
    listed = folder / LIST
    if listed.is_file():
        sounds = []
        with open(listed, newline="") as f:
            for k, row in enumerate(csv.DictReader(f), start=2):
                file = folder / str(row.get("file") or "")
                try:
                    note = int(float(row.get("note") or "nan"))
                except (ValueError, OverflowError):
                    note = -1
                if not row.get("file") or not file.is_file():
                    raise ASPError(f"{listed}, line {k}: sound file {file} is missing; make the set again")
                if not 0 <= note <= 127:
                    raise ASPError(f"{listed}, line {k}: note {row.get('note')!r} is not a MIDI note 0-127")
                sounds.append(RealSound(file, file.stem, str(row.get("source") or ""), note))
    else:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SOUND_FILES)
        sounds = [RealSound(p, p.stem, "", estimate_note(load_audio(p, seconds))) for p in files]
    if not sounds:
        raise ASPError(f"real-sound folder {folder} has no sound files; make the set with `make real-sounds`")
    names = [s.name.casefold() for s in sounds]
    twice = sorted({s.file.name for s in sounds if names.count(s.name.casefold()) > 1})
    if twice:  # each sound's output folder is named after its file's stem
        raise ASPError(f"real-sound folder {folder}: {', '.join(twice)} share a name; rename one")
    return sounds


def choose_sounds(sounds: list[RealSound], limit: int | None, seed: int) -> list[RealSound]:
    """At most ``limit`` of the sounds (a seeded choice), in their order."""
    if limit is None or len(sounds) <= limit:
        return list(sounds)
    keep = np.sort(np.random.default_rng(seed).permutation(len(sounds))[:limit])
    return [sounds[k] for k in keep]


# -- the model and its data --------------------------------------------------------------------


def model_folder(model: str | Path, model_dir: str | Path = MODEL_DIR) -> Path:
    """``model`` as a run folder: itself when it holds a config.json, else the run of that name in
    ``model_dir`` (``asp.runs.find_run``)."""
    if Path(model).is_dir() and (Path(model) / CONFIG).is_file():
        return Path(model)
    return find_run(model_dir, str(model))


def check_pair(config: dict, data_dir: str | Path, run_dir: Path) -> str:
    """Refuses a dataset that cannot stand for the model's training data: a synth of the model that
    it lacks, or holds in another encoding (spec hash or vector size). Returns a line saying
    whether it is the model's own training data (the same fingerprint) or another set.

    Raises:
        ASPError: naming the synth, the model and the dataset.
    """
    train = load_split(data_dir, "train")
    hashes = {e["name"]: e["hash"] for e in (read_manifest(data_dir) or {}).get("synths", [])}
    for entry in config.get("encodings") or [{"name": s["name"]} for s in config["synths"]]:
        name = entry["name"]
        fix = (
            f"use the dataset the model was trained on (-d / the config's 'data_dir'), or a model trained on {data_dir}"
        )
        if name not in train.synths or not np.any(train.synth == name):
            raise ASPError(
                f"the model {run_dir} predicts {name} but the training split of {data_dir} has no {name} sounds; {fix}"
            )
        size, width = entry.get("encoded_size"), train.params[name].shape[1]
        if (size is not None and size != width) or (name in hashes and entry.get("hash", hashes[name]) != hashes[name]):
            raise ASPError(
                f"the model {run_dir} and the dataset {data_dir} encode {name} differently (other spec: "
                f"{size} values and hash {entry.get('hash')} against {width} and {hashes.get(name)}); {fix}"
            )
    own = config.get("data_fingerprint")
    fingerprint = data_fingerprint(data_dir)
    if own == fingerprint:
        return (
            f"Lookup and mean presets: the training split of {data_dir}, the model's own training data "
            f"({len(train):,} sounds)."
        )
    return (
        f"Lookup and mean presets: the training split of {data_dir} ({len(train):,} sounds; fingerprint "
        f"{fingerprint}), not the model's own training data (fingerprint {own})."
    )


def nearest_any(
    train: Split, mels: np.ndarray, rows: np.ndarray | None = None, chunk: int = LOOKUP_CHUNK
) -> tuple[np.ndarray, np.ndarray]:
    """For each query mel, the training sound of any synth whose mel is nearest (the exact scan of
    ``data.lookup``, the nearest baseline's distance), and that distance computed in float64.

    Streams the training mels ``chunk`` at a time and drops the pages read from this process's
    memory as it goes: memory stays at a block and the queries, whatever the dataset's size.

    Args:
        train: the split searched.
        mels: (batch, 128, 431) query mels in [0, 1].
        rows: the candidate rows (default: all), e.g. the rows a run trained on.

    Returns:
        ((batch,) int64 rows into ``train``, (batch,) float64 Euclidean distances).
    """
    queries = np.asarray(mels, dtype=np.float32).reshape(len(mels), -1)
    candidates = np.arange(len(train)) if rows is None else np.sort(np.asarray(rows))
    if not len(candidates):
        raise ASPError("the training split has no sounds to look up the nearest one in")
    best_rows = lookup.scan(train.mels, queries, candidates, 1, chunk, progress=True)[:, 0]
    exact = [
        float(np.sqrt(np.sum((np.asarray(train.mels[r], np.float64).ravel() - q.astype(np.float64)) ** 2)))
        for r, q in zip(best_rows, queries)
    ]
    return best_rows, np.asarray(exact)


# -- scoring -------------------------------------------------------------------------------------


def distances(target: metrics.AudioFeatures, audio: np.ndarray) -> dict[str, float]:
    """The table's distances (``METRICS``) of a render to the real sound."""
    match = metrics.AudioFeatures(audio, target.sample_rate)
    return {
        "lsd": float(metrics.log_spectral_distance(target, match)),
        "multi_scale_log_mel_distance": float(metrics.multi_scale_log_mel_distance(target, match)),
        "mfcc_distance": float(metrics.mfcc_distance(target, match)),
    }


def mark_best(rows: list[dict]) -> list[dict]:
    """Sets ``best`` (1 or 0) on one sound's rows: per method, the synth with the lowest LSD."""
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        pick = min(mine, key=lambda r: r["lsd"] if np.isfinite(r["lsd"]) else np.inf)
        for r in mine:
            r["best"] = int(r is pick)
    return rows


def _file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def evaluate_real_sounds(
    sounds: list[RealSound],
    run_dir: str | Path,
    data_dir: str | Path,
    out: str | Path,
    *,
    refine: Budget,
    refine_synths: int | None = None,
    refine_starts: int = NEAREST_STARTS,
    workers: int = 1,
    seed: int = 0,
    report_samples: int = 12,
    title: str = "Real sounds",
    about: str = "",
    progress: bool = True,
) -> list[dict]:
    """Matches every sound (see the module docstring) and writes the tables, the CSVs and the
    listening pages into ``out``; returns the rows of samples.csv.

    Args:
        sounds: ``read_real_sounds``'s (their notes known: pyin runs before TensorFlow).
        run_dir: the model's folder (a run or an exported model).
        data_dir: its training data (or a dataset of the same synths and specs): lookup and mean.
        refine: the search budget per synth and sound.
        refine_synths: how many of a sound's closest one-shot synths are searched (None: every one).
        refine_starts: nearest training presets the search also starts from.
        workers: search render processes.
        report_samples: how many sounds report/index.html plays (the best, median and worst by
            the searched match's LSD, others between).
        about: lines for the table (the data line of ``check_pair``).
    """
    from asp.evaluation.evaluate import trained_rows  # TensorFlow (the network)
    from asp.inference import Matcher

    out = Path(out)
    run_dir = Path(run_dir)
    matcher = Matcher(run_dir, data_dir=data_dir)
    specs = matcher.specs
    train = load_split(data_dir, "train")
    within = trained_rows(matcher.config, train, data_dir)
    stamps, base_stamp = _stamps(
        sounds, run_dir, data_fingerprint(data_dir), within, refine, refine_starts, seed, refine_synths
    )
    targets = [matcher.wav_target(s.file, s.note, name=s.name) for s in sounds]
    saved, whole = _saved_rows(out, sounds, stamps, base_stamp)
    todo = [k for k, s in enumerate(sounds) if s.name not in whole]  # lookup and mean still to score
    found_rows, found_distance = (np.zeros(0, np.int64), np.zeros(0))
    if todo:
        found_rows, found_distance = nearest_any(train, np.stack([targets[k].mel for k in todo]), within)
    means = _mean_presets(specs, train, within)
    search = dict(refine=refine, refine_starts=refine_starts, workers=workers)
    search["refine_synths"] = list(specs) if refine_synths is None else refine_synths  # None: every synth
    rows: list[dict] = []
    bar = tqdm(total=len(sounds), desc="real sounds", unit="sound", disable=not progress)
    try:
        for k, (sound, target) in enumerate(zip(sounds, targets)):
            folder = out / SOUNDS / sound.name
            if sound.name in whole:
                rows += saved[sound.name]
                bar.update(1)
                continue
            mine = saved.get(sound.name)
            if mine is None:  # match it
                folder.parent.mkdir(parents=True, exist_ok=True)
                matcher.match(target, folder, all_outputs=True, **search, seed=seed, progress=False)
                mine = _score_match(sound, target, folder, specs)
            j = todo.index(k)
            mine = mine + _score_baselines(
                matcher, sound, target, folder, specs, means, train, found_rows[j], found_distance[j]
            )
            mark_best(mine)
            write_json(folder / SCORES, {"match": stamps[sound.name], "baselines": base_stamp, "rows": mine})
            rows += mine
            bar.update(1)
            bar.set_postfix({r["method"]: f"{r['lsd']:.2f}" for r in mine if r["best"]})
    finally:
        bar.close()
        matcher.close()
    _write_tables(out, sounds, rows, title=title, about=about, seed=seed, report_samples=report_samples)
    return rows


def _mean_presets(specs: dict, train: Split, within) -> dict:
    """Each synth's training-mean preset (over the run's own training rows ``within``)."""
    return {
        name: Codec(spec).decode(mean_vector(train, name, within).astype(np.float32)[None])[0]
        for name, spec in specs.items()
    }


def _stamps(
    sounds, run_dir: Path, fingerprint: str, within, refine: Budget, refine_starts: int, seed: int, refine_synths=None
):
    """What each part of a sound's scores depends on: ({sound: its match's stamp}, the baselines'
    stamp). A match depends on the model, the data only where the search's nearest starts come
    from it (a model without its own index), the budget, the seed, the sound file and its note."""
    from asp.training.export import INDEX

    match = {
        "model": hashlib.sha256((run_dir / CONFIG).read_bytes()).hexdigest()[:16],
        "starts_from": "index" if (run_dir / INDEX).is_file() else fingerprint,
        "refine": {"renders": refine.renders, "seconds": refine.seconds},
        "refine_starts": refine_starts,
        "seed": seed,
        **({} if refine_synths is None else {"refine_synths": refine_synths}),  # (absent: every synth, as before)
    }
    stamps = {s.name: {**match, "sound": _file_hash(s.file), "note": s.note} for s in sounds}  # each file hashed once
    return stamps, {"data": fingerprint, "rows": None if within is None else len(within)}


def _saved_rows(out: Path, sounds: list[RealSound], stamps: dict, base_stamp: dict) -> tuple[dict, set[str]]:
    """The resume cache: ({sound: its rows still valid}, the sounds whose rows all are)."""
    saved: dict[str, list[dict]] = {}
    whole: set[str] = set()
    for s in sounds:
        scores = _read_scores(out / SOUNDS / s.name / SCORES)
        if (
            scores is None
            or scores.get("match") != stamps[s.name]
            or not (out / SOUNDS / s.name / "match.json").is_file()
        ):
            continue
        saved[s.name] = [r for r in scores["rows"] if r["method"] in ("one-shot", "searched")]
        if scores.get("baselines") == base_stamp:
            saved[s.name] = scores["rows"]
            whole.add(s.name)
    return saved, whole


def _write_tables(out: Path, sounds: list[RealSound], rows: list[dict], *, title, about, seed, report_samples) -> None:
    """samples.csv, table.md, table.csv, sounds/index.html and report/index.html."""
    write_csv(out / "samples.csv", rows)
    doc, table_rows = summary(rows, title=title, about=about, seed=seed)
    with atomic_write(out / "table.md") as f:
        f.write(doc.markdown())
    write_csv(out / "table.csv", table_rows)
    entries = [
        {"folder": out / SOUNDS / s.name, "summary": read_json(out / SOUNDS / s.name / "match.json", "match summary")}
        for s in sounds
    ]
    write_index(out / SOUNDS, entries, [])
    listening_page(out, rows, doc, report_samples=report_samples, title=title)


def _read_scores(path: Path) -> dict | None:
    try:
        data = read_json(path, "scores")
    except ASPError:
        return None
    return data if isinstance(data, dict) and "match" in data and isinstance(data.get("rows"), list) else None


def _row(sound: RealSound, method: str, synth: str, features, audio: np.ndarray, **extra) -> dict:
    return {
        "sound": sound.name,
        "source": sound.source,
        "note": sound.note,
        "method": method,
        "synth": synth,
        "best": 0,
        **distances(features, audio),
        **extra,
    }


def _score_match(sound: RealSound, target, folder: Path, specs: dict) -> list[dict]:
    """A matched sound's rows: each synth's one-shot and searched match, from the wavs
    ``Matcher.match`` wrote into ``folder``."""
    features = metrics.AudioFeatures(target.audio, SAMPLE_RATE)
    searched = {r["synth"]: r for r in read_json(folder / "match.json", "match summary")["results"]}
    rows = []
    for name in specs:
        if (folder / f"{name}.wav").is_file():
            audio = sf.read(folder / f"{name}.wav", dtype="float32")[0]
            rows.append(_row(sound, "one-shot", name, features, audio))
        if (folder / f"{name}.refined.wav").is_file():
            info = searched.get(name, {})
            audio = sf.read(folder / f"{name}.refined.wav", dtype="float32")[0]
            extra = {k: info.get(k, "") for k in ("search_start", "search_renders", "search_seconds")}
            rows.append(_row(sound, "searched", name, features, audio, **extra))
    return rows


def _score_baselines(matcher, sound, target, folder: Path, specs, means, train: Split, row: int, mel_distance: float):
    """A sound's lookup row and each synth's mean-preset row; the lookup's and the best mean
    preset's renders written into the sound's folder (lookup.wav, mean.<synth>.wav)."""
    features = metrics.AudioFeatures(target.audio, SAMPLE_RATE)
    synth = str(train.synth[row])
    spec = specs[synth]
    preset = Codec(spec).decode(np.asarray(train.params[synth][row : row + 1], dtype=np.float32))[0]
    audio = matcher.renderer.render(spec, preset, note=sound.note)
    _keep(folder, "lookup", audio)
    extra = {
        "lookup_row": int(row),
        "lookup_name": str(train.names[row]),
        "lookup_note": int(train.note[row]),
        "mel_distance": round(float(mel_distance), 4),
    }
    rows = [_row(sound, "lookup", synth, features, audio, **extra)]
    mean_audio = {}
    for name, preset in means.items():
        mean_audio[name] = matcher.renderer.render(specs[name], preset, note=sound.note)
        rows.append(_row(sound, "mean", name, features, mean_audio[name]))
    mark_best(rows)
    best_mean = next(r["synth"] for r in rows if r["method"] == "mean" and r["best"])
    for old in folder.glob("mean.*"):  # one mean render: the best synth's (the page plays it)
        old.unlink()
    _keep(folder, f"mean.{best_mean}", mean_audio[best_mean])
    return rows


def _keep(folder: Path, stem: str, audio: np.ndarray) -> None:
    """A baseline's render beside the match's own (``<stem>.wav`` and its mel ``<stem>.mel.png``)."""
    write_sound(folder / f"{stem}.wav", audio, SAMPLE_RATE, subtype="FLOAT")
    save_mel_png(folder / f"{stem}.mel.png", mel_spectrogram(audio))
