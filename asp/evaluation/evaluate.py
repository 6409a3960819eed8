"""Evaluates a trained model on a split: predicts every sample's preset, renders it with its synth
(parallel workers, one engine each), computes every metric, and writes one CSV row per sample and
method (``samples.csv``), the summary tables (``summary.md``) and every preset rendered
(``presets.npz``).

Baselines in the same table: ``mean`` (the synth's training-mean preset: the mean of its encoded
training vectors, so each categorical parameter takes its most frequent class: a model that
collapsed to one output does no better), ``random`` (a random preset from the synth's sample
ranges) and ``nearest`` (the training sample of the same synth with the closest mel, its preset
re-rendered: how users pick presets today, so a model must beat it). ``mean`` and ``nearest``
always use the training split of ``data_dir``; ``test_dir`` takes the sounds from a separately
generated dataset (held out from the training data).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asp import cluster, metrics
from asp.cluster import run_tasks
from asp.errors import ASPError
from asp.evaluation.results import cores, held_out_split, score_sample, warm_up, write_csv
from asp.evaluation.summary import BASELINES, summary_document
from asp.files import atomic_write
from asp.report import PRESETS, write_presets
from asp.search import NEAREST_STARTS, Budget, Searcher
from asp.search.fanout import search_sound
from asp.search.fanout import warm_up as search_warm_up
from data.dataset import Split, load_split, mean_vector, read_manifest, training_rows
from data.encoding import Codec
from data.lookup import nearest_rows
from data_generation.presets import random_presets
from data_generation.render import Renderer
from data_generation.spec import SynthSpec, load_spec
from models import check_mel_shape, config_specs, load_model


def nearest_train_presets(
    test: Split, train: Split, rows: np.ndarray, synth: str, within: np.ndarray | None = None
) -> np.ndarray:
    """For each test row, the encoded preset of the training sample of ``synth`` (among the rows
    ``within``, default all) with the closest mel (``data.lookup.nearest_rows``): (len(rows),
    encoded size)."""
    nearest = nearest_rows(train, np.asarray(test.mels[rows]), synth, k=1, within=within)[:, 0]
    return np.asarray(train.params[synth][nearest], dtype=np.float32)


def mean_train_vector(train: Split, synth: str, within: np.ndarray | None = None) -> np.ndarray:
    """The training-mean encoded vector of ``synth`` (``data.dataset.mean_vector``, over the rows
    ``within``, default all): (encoded size,) float32."""
    vector = mean_vector(train, synth, within)
    if vector is None:
        raise ASPError(f"the training split has no {synth} samples for the mean baseline")
    return vector.astype(np.float32)


def trained_rows(config: dict | None, train: Split | None, data_dir: str | Path) -> np.ndarray | None:
    """The rows of ``data_dir``'s training split that a run trained on, when it took a subset
    (``--max-samples``) of this very dataset: the baselines then draw from the same sounds as the
    model. None: all rows."""
    if config is None or train is None or not config.get("max_samples"):
        return None
    manifest = read_manifest(data_dir)
    if manifest is None or manifest.get("fingerprint") != config.get("data_fingerprint"):
        return None
    return training_rows(train, config["trained_synths"], config["max_samples"], config.get("seed", 0))


def evaluate(
    run_dir: str | Path | None,
    data_dir: str | Path,
    out: str | Path,
    *,
    split: str = "test",
    test_dir: str | Path | None = None,
    baselines: tuple[str, ...] = BASELINES,
    synths: list[str] | None = None,
    max_samples: int | None = None,
    workers: int | None = None,
    seed: int = 0,
    label: str | None = None,
    refine: Budget | None = None,
    refine_starts: int = NEAREST_STARTS,
    progress: bool = True,
) -> list[dict]:
    """Evaluates a model (and baselines) and writes ``<out>/samples.csv``, ``<out>/summary.md`` and
    ``<out>/presets.npz`` (every preset rendered, the true ones included, for ``write_report``).

    Args:
        run_dir: a trained run folder, or None for baselines only.
        data_dir: the dataset the model was trained on: the sounds (without ``test_dir``) and the
            training split the ``mean`` and ``nearest`` baselines draw from.
        out: output folder.
        split: the split to evaluate (of ``test_dir`` when given, else of ``data_dir``).
        test_dir: a separately generated dataset whose ``split`` holds the sounds to evaluate
            (held out from the training data); its synths and encodings must match ``data_dir``'s.
        baselines: any of mean, random, nearest.
        synths: evaluate the sounds of these synths (default: the model's, or all). A synth the
            model does not know is matched out of domain: every head's preset is rendered.
        max_samples: evaluate at most this many samples (seeded choice).
        workers: render workers (default: all cores).
        label: method name of the model in the tables (default: its approach).
        refine: a search budget per sound: adds a ``<method>+search`` row per sound, the preset
            found by ``asp.search.Searcher`` from the model's prediction and the ``refine_starts``
            nearest training presets (from those alone without a model), with its renders and
            seconds. Runs on ``workers`` processes.
        refine_starts: nearest training presets the search starts from, besides the model's.

    Returns:
        The CSV rows.
    """
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ASPError(f"unknown baseline {', '.join(unknown)}; use {', '.join(BASELINES)}")
    test = load_split(data_dir, split) if test_dir is None else held_out_split(test_dir, split, data_dir)
    source = Path(data_dir if test_dir is None else test_dir)
    model, config = (None, None) if run_dir is None else load_model(run_dir)
    known = {s.name: s for s in config_specs(config)} if config else {}
    method = label or (config["approach"] if config else None)
    wanted = synths or (list(known) if known else test.synths)
    rows = np.flatnonzero(np.isin(test.synth, wanted))
    if max_samples is not None and len(rows) > max_samples:
        rows = np.sort(np.random.default_rng(seed).permutation(rows)[:max_samples])
    if len(rows) == 0:
        raise ASPError(f"the {split} split of {source} has no samples of {', '.join(wanted)}")
    specs: dict[str, SynthSpec] = {s: known.get(s) or load_spec(s) for s in set(test.synth[rows])}
    if model is not None:
        check_mel_shape(test.mels, source / f"{split}_mels.npy")
    vectors = model.predict_vectors(np.asarray(test.mels[rows]), notes=test.note[rows]) if model is not None else {}
    train = load_split(data_dir, "train") if {"mean", "nearest"} & set(baselines) or refine else None
    work = _Work(test, rows, specs, known, method, within=trained_rows(config, train, data_dir))
    work.plan_model(vectors if model is not None else None)
    work.plan_baselines(baselines, train, seed)
    refined = {}
    if refine is not None:
        vectors_or_none = vectors if model is not None else None
        refined = _refine(work, train, vectors_or_none, refine, refine_starts, workers or cores(), seed, progress)
        work.plan_refined(refined)
    out_rows = work.score(workers=workers or cores(), progress=progress, refined=refined)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "samples.csv", out_rows)
    names = {str(s.path): s.name for s in (*specs.values(), *known.values())}
    write_presets(out / PRESETS, rows, test.note[rows], _preset_table(work.tasks(), names))
    about = sounds_line(split, source, data_dir if test_dir is not None else None)
    with atomic_write(out / "summary.md") as f:
        f.write(summary_document(out_rows, about=about).markdown())
    return out_rows


def sounds_line(split: str, source: str | Path, train_dir: str | Path | None = None) -> str:
    """The line of a summary that says which sounds were evaluated (``train_dir``: the training
    data of a held-out test set, whose training split the baselines draw from)."""
    about = f"Sounds: the {split} split of {source}"
    if train_dir is not None:
        about += f" (held out); the mean and nearest baselines draw from the training split of {train_dir}"
    return about + "."


@dataclass
class _Work:
    """What an evaluation renders and scores for each sample: ``plans[pos]`` holds (method, spec
    path, preset) per render, ``param_rows`` (position, method, synth, predicted vector)."""

    test: Split
    rows: np.ndarray
    specs: dict[str, SynthSpec]
    known: dict[str, SynthSpec]
    method: str | None
    within: np.ndarray | None = None  # the training rows baselines draw from (None: all)
    plans: list[list] = field(default_factory=list)
    param_rows: list[tuple[int, str, str, np.ndarray]] = field(default_factory=list)

    def __post_init__(self):
        self.plans = [[] for _ in self.rows]

    def plan_model(self, vectors: dict | None) -> None:
        """The model's presets: its own synth's head, or every head out of domain."""
        if vectors is None:
            return
        for synth in self.specs:
            mine = np.flatnonzero(self.test.synth[self.rows] == synth)
            heads = [synth] if synth in self.known else list(self.known)  # out of domain: every head
            for head in heads:
                for pos in mine:
                    vec = vectors[head][pos]
                    self.plans[pos].append(
                        (self.method, str(self.known[head].path), Codec(self.known[head]).decode(vec))
                    )
                    if head == synth:
                        self.param_rows.append((pos, self.method, synth, vec))

    def plan_baselines(self, baselines: tuple[str, ...], train: Split | None, seed: int) -> None:
        for synth, spec in self.specs.items():
            codec = Codec(spec)
            mine = np.flatnonzero(self.test.synth[self.rows] == synth)
            for baseline in baselines:
                if baseline == "random":  # rendered as sampled, scored by its encoding
                    rng = np.random.default_rng([seed, zlib.crc32(synth.encode())])
                    presets = random_presets(spec, len(mine), rng)
                    predicted = codec.encode(presets)
                elif baseline == "mean":
                    predicted = np.repeat(mean_train_vector(train, synth, self.within)[None], len(mine), axis=0)
                    presets = codec.decode(predicted)
                else:
                    predicted = nearest_train_presets(self.test, train, self.rows[mine], synth, self.within)
                    presets = codec.decode(predicted)
                for k, pos in enumerate(mine):
                    self.plans[pos].append((baseline, str(spec.path), presets[k]))
                    self.param_rows.append((pos, baseline, synth, predicted[k]))

    def plan_refined(self, refined: dict) -> None:
        for pos, info in refined.items():
            synth = str(self.test.synth[self.rows[pos]])
            self.plans[pos].append((info["method"], str(self.specs[synth].path), info["preset"]))
            self.param_rows.append((pos, info["method"], synth, Codec(self.specs[synth]).encode(info["preset"])))

    def tasks(self) -> list[tuple]:
        """One worker task per sample: (spec path, note, true preset, plan, position)."""
        tasks = []
        for pos, row in enumerate(self.rows):
            synth = str(self.test.synth[row])
            true = Codec(self.specs[synth]).decode(np.asarray(self.test.params[synth][row]))
            tasks.append((str(self.specs[synth].path), int(self.test.note[row]), true, self.plans[pos], pos))
        return tasks

    def score(self, *, workers: int, progress: bool, refined: dict) -> list[dict]:
        """Renders and scores every plan on ``workers`` processes: the CSV rows."""
        tasks = self.tasks()
        results: dict[int, list[dict]] = {}
        bar = tqdm(total=len(tasks), desc="evaluate", unit="sample", disable=not progress)
        for pos, scored in run_tasks(score_sample, tasks, workers=workers, initializer=warm_up):
            results[pos] = scored
            bar.update(1)
        bar.close()
        test, rows = self.test, self.rows
        param_scores = _param_scores(self.param_rows, test, rows, self.specs)
        out_rows = []
        for pos, row in enumerate(rows):
            synth = str(test.synth[row])
            for scored in results[pos]:
                entry = {
                    "name": str(test.names[row]),
                    "index": int(row),
                    "synth": synth,
                    "hpss": int(test.hpss[row]),
                    "note": int(test.note[row]),
                    **scored,
                }
                entry.update(param_scores.get((pos, scored["method"], scored["rendered_synth"]), {}))
                if pos in refined and scored["method"] == refined[pos]["method"]:
                    entry.update({k: refined[pos][k] for k in ("refine_renders", "refine_seconds")})
                out_rows.append(entry)
        return out_rows


def _preset_table(tasks: list, names: dict[str, str]) -> list[dict]:
    """Every preset the tasks render (the true one as method ``target``), one array per method and
    rendered synth with NaN rows where a sample has none (``report.write_presets``'s ``renders``)."""
    table: dict[tuple[str, str], dict] = {}
    for pos, (spec_path, _note, true, plan, _pos) in enumerate(tasks):
        for method, path, preset in [("target", spec_path, true), *plan]:
            key = (method, names[path])
            if key not in table:
                shape = (len(tasks), len(preset))
                table[key] = {"method": method, "synth": key[1], "spec": path, "presets": np.full(shape, np.nan)}
            table[key]["presets"][pos] = preset
    return list(table.values())


def _refine(work: _Work, train, vectors, budget, refine_starts, workers, seed, progress) -> dict:
    """Searches a preset for each in-domain sample: {position: {method, preset, refine_renders,
    refine_seconds}}. Starts: the model's prediction (when there is a model) and the nearest
    training presets of the sound's synth. On a Ray cluster (``asp.cluster``) each sound's search
    is one task (``asp.search.fanout``), else the sounds go one by one, each search's renders on
    ``workers`` processes."""
    test, rows, specs, known, method = work.test, work.rows, work.specs, work.known, work.method
    name = f"{method or 'nearest'}+search"
    out = {}
    positions = [p for p, row in enumerate(rows) if vectors is None or str(test.synth[row]) in known]

    def job(pos: int) -> tuple:
        """(spec, true preset, note, starts) of the sound at ``pos``."""
        row = rows[pos]
        synth = str(test.synth[row])
        starts = {} if vectors is None else {"model": np.asarray(vectors[synth][pos])}
        if refine_starts > 0:
            mel = np.asarray(test.mels[row : row + 1])
            near = nearest_rows(train, mel, synth, k=refine_starts, within=work.within)[0]
            starts.update({f"nearest{k + 1}": np.asarray(train.params[synth][r]) for k, r in enumerate(near)})
        true = Codec(specs[synth]).decode(np.asarray(test.params[synth][row]))
        return specs[synth], true, int(test.note[row]), starts

    def found_row(found) -> dict:
        return {
            "method": name,
            "preset": found.preset,
            "refine_renders": found.renders,
            "refine_seconds": round(found.seconds, 2),
        }

    if cluster.connected():
        tasks = [(*job(pos), budget, seed, pos) for pos in positions]
        bar = tqdm(total=len(tasks), desc="search", unit="sound", disable=not progress)
        for pos, found in run_tasks(search_sound, tasks, workers=workers, initializer=search_warm_up):
            out[pos] = found_row(found)
            bar.update(1)
        bar.close()
        return dict(sorted(out.items()))
    renderer = Renderer()
    bar = tqdm(positions, desc="search", unit="sound", disable=not progress)
    with Searcher(workers=workers) as searcher:
        for pos in bar:
            spec, true, note, starts = job(pos)
            target = renderer.render(spec, true, note=note)
            found = searcher.search(spec, target, note, starts, budget, seed=seed, progress=False)
            out[pos] = found_row(found)
            bar.set_postfix(distance=f"{found.start_distance:.2f}->{found.distance:.2f}")
    return out


def _param_scores(param_rows, test: Split, rows: np.ndarray, specs: dict) -> dict:
    out = {}
    for pos, method, synth, vec in param_rows:
        spec = specs[synth]
        true = np.asarray(test.params[synth][rows[pos]])[None]
        pred = np.asarray(vec)[None]
        entry = {
            "cat_accuracy": float(metrics.categorical_accuracy(spec, true, pred)[0]),
            "cont_sq_error": float(metrics.continuous_squared_error(spec, true, pred)[0]),
            "param_mse": float(metrics.parameter_mse(true, pred)[0]),
        }
        entry.update({f"group_{g}": float(v[0]) for g, v in metrics.group_errors(spec, true, pred).items()})
        out[(pos, method, synth)] = entry
    return out
