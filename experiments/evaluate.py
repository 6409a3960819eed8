"""Evaluates a trained model on a split: predicts every sample's preset, renders it with its synth
(parallel workers, one engine each), computes every metric, writes one CSV row per sample and
method, and summaries (per synth, per HPSS bin, per parameter group) as markdown, each cell a mean
with its 95% confidence interval.

Baselines in the same table: ``mean`` (the synth's training-mean preset: the mean of its encoded
training vectors, so each categorical parameter takes its most frequent class: a model that
collapsed to one output does no better), ``random`` (a random preset from the synth's sample
ranges) and ``nearest`` (the training sample of the same synth with the closest mel, its preset
re-rendered: how users pick presets today, so a model must beat it). ``mean`` and ``nearest``
always use the training split of ``-d/--data-dir``; ``--test-dir`` takes the sounds from a
separately generated dataset (held out from the training data).

    python experiments/evaluate.py saved_models/vae_multi_64_paper -d npy_data --out results/multi
    python experiments/evaluate.py saved_models/vae_multi_64_paper -d npy_data --test-dir npy_heldout --out results/h

Besides the tables, ``<out>/report/index.html`` shows them with plots and every sample's LSD per
method, and plays the target and each method's render of ``--report-samples`` samples (the best,
the median and the worst by the model's LSD), rendered again from the presets kept in
``presets.npz``.
"""

from __future__ import annotations

from pathlib import Path

from asp import backend  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import argparse
import csv
import os
import zlib
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from asp import metrics
from asp.cli import ArgumentParser, nonnegative_int, positive_int, run_cli
from asp.errors import ASPError
from asp.files import atomic_write
from asp.parallel import run_tasks
from asp.report import PRESETS, REPORT_SAMPLES, evaluation_report, hpss_bins, write_presets
from asp.search import NEAREST_STARTS
from data.dataset import Split, load_split, mean_vector, nearest_rows, read_manifest
from data.encoding import Codec
from data_generation.presets import random_presets
from data_generation.render import Renderer
from data_generation.spec import SynthSpec, load_spec

if TYPE_CHECKING:
    from asp.search import Budget

AUDIO_METRICS = metrics.AUDIO_METRICS
PARAM_METRICS = ("cat_accuracy", "cont_sq_error", "param_mse")
BASELINES = ("mean", "random", "nearest")
DIGITS = {"rms_envelope_similarity": 3, "cat_accuracy": 3, "cont_sq_error": 4, "param_mse": 4}
_RENDERER: Renderer | None = None


def _render_and_score(spec_path: str, note: int, target: np.ndarray, predictions: list) -> list[dict]:
    """Worker task: render the true preset and each (method, synth path, preset); score them."""
    global _RENDERER
    if _RENDERER is None:
        _RENDERER = Renderer()
    truth = metrics.AudioFeatures(_RENDERER.render(load_spec(spec_path), target, note=note))
    out = []
    for method, path, preset in predictions:
        audio = _RENDERER.render(load_spec(path), preset, note=note)
        scores = metrics.audio_metrics(truth, audio)
        out.append(
            {"method": method, "rendered_synth": load_spec(path).name, **{k: float(v) for k, v in scores.items()}}
        )
    return out


def nearest_train_presets(test: Split, train: Split, rows: np.ndarray, synth: str) -> np.ndarray:
    """For each test row, the encoded preset of the training sample of ``synth`` with the closest
    mel (``data.dataset.nearest_rows``): (len(rows), encoded size)."""
    nearest = nearest_rows(train, np.asarray(test.mels[rows]), synth, k=1)[:, 0]
    return np.asarray(train.params[synth][nearest], dtype=np.float32)


def mean_train_vector(train: Split, synth: str) -> np.ndarray:
    """The training-mean encoded vector of ``synth`` (``data.dataset.mean_vector``): (encoded size,)
    float32."""
    vector = mean_vector(train, synth)
    if vector is None:
        raise ASPError(f"the training split has no {synth} samples for the mean baseline")
    return vector.astype(np.float32)


def held_out_split(test_dir: str | Path, split: str, data_dir: str | Path) -> Split:
    """One split of a separately generated dataset, checked against the training data.

    Only that split is read, so a folder whose train/valid files have 0 rows works.

    Raises:
        ASPError: a synth the training data lacks, or another encoding (size or spec) of a synth.
    """
    test = load_split(test_dir, split)
    train = load_split(data_dir, "train")
    missing = [s for s in test.synths if s not in train.synths]
    if missing:
        raise ASPError(
            f"the test set {test_dir} has synths {', '.join(missing)} that the training data {data_dir} lacks "
            f"(it has {', '.join(train.synths)}); generate the test set with the training data's synths"
        )
    for s in test.synths:
        width, expected = test.params[s].shape[1], train.params[s].shape[1]
        if width != expected:
            raise ASPError(
                f"{s} vectors in {test_dir} have {width} values but {expected} in {data_dir}: the datasets were "
                "made with other specs; regenerate the test set with the training data's specs"
            )
    test_hashes, train_hashes = _spec_hashes(test_dir), _spec_hashes(data_dir)
    changed = [s for s in test.synths if s in test_hashes and s in train_hashes and test_hashes[s] != train_hashes[s]]
    if changed:
        raise ASPError(
            f"the spec of {', '.join(changed)} differs between {test_dir} and {data_dir} (manifest hashes); "
            "regenerate the test set with the training data's specs"
        )
    return test


def _spec_hashes(data_dir: str | Path) -> dict[str, str]:
    """{synth: spec hash} from a dataset's manifest; empty without one (the paper's data)."""
    manifest = read_manifest(data_dir)
    return {e["name"]: e["hash"] for e in manifest["synths"] if "hash" in e} if manifest else {}


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
            found by ``search.Searcher`` from the model's prediction and the ``refine_starts``
            nearest training presets (from those alone without a model), with its renders and
            seconds. Runs on ``workers`` processes.
        refine_starts: nearest training presets the search starts from, besides the model's.

    Returns:
        The CSV rows.
    """
    from models import config_specs, load_model

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
    vectors = model.predict_vectors(np.asarray(test.mels[rows])) if model is not None else {}
    train = load_split(data_dir, "train") if {"mean", "nearest"} & set(baselines) or refine else None

    # what to render for each sample: (method, spec path, preset)
    plans: list[list] = [[] for _ in rows]
    param_rows: list[tuple[int, str, str, np.ndarray]] = []  # (position, method, synth, predicted vector)
    for synth, spec in specs.items():
        codec = Codec(spec)
        mine = np.flatnonzero(test.synth[rows] == synth)
        if model is not None:
            heads = [synth] if synth in known else list(known)  # out of domain: every head
            for head in heads:
                for pos in mine:
                    vec = vectors[head][pos]
                    plans[pos].append((method, str(known[head].path), Codec(known[head]).decode(vec)))
                    if head == synth:
                        param_rows.append((pos, method, synth, vec))
        for baseline in baselines:
            if baseline == "random":  # rendered as sampled, scored by its encoding
                rng = np.random.default_rng([seed, zlib.crc32(synth.encode())])
                presets = random_presets(spec, len(mine), rng)
                predicted = codec.encode(presets)
            elif baseline == "mean":
                predicted = np.repeat(mean_train_vector(train, synth)[None], len(mine), axis=0)
                presets = codec.decode(predicted)
            else:
                predicted = nearest_train_presets(test, train, rows[mine], synth)
                presets = codec.decode(predicted)
            for k, pos in enumerate(mine):
                plans[pos].append((baseline, str(spec.path), presets[k]))
                param_rows.append((pos, baseline, synth, predicted[k]))

    refined = {}
    if refine is not None:
        refined = _refine(
            test,
            rows,
            train,
            specs,
            vectors if model is not None else None,
            known,
            method,
            refine,
            refine_starts=refine_starts,
            workers=workers or _cores(),
            seed=seed,
            progress=progress,
        )
        for pos, info in refined.items():
            synth = str(test.synth[rows[pos]])
            plans[pos].append((info["method"], str(specs[synth].path), info["preset"]))
            param_rows.append((pos, info["method"], synth, Codec(specs[synth]).encode(info["preset"])))

    tasks = []
    for pos, row in enumerate(rows):
        synth = str(test.synth[row])
        true = Codec(specs[synth]).decode(np.asarray(test.params[synth][row]))
        tasks.append((str(specs[synth].path), int(test.note[row]), true, plans[pos], pos))
    results: dict[int, list[dict]] = {}
    bar = tqdm(total=len(tasks), desc="evaluate", unit="sample", disable=not progress)
    for pos, scored in run_tasks(_indexed, tasks, workers=workers or _cores(), initializer=_warm_up):
        results[pos] = scored
        bar.update(1)
    bar.close()

    param_scores = _param_scores(param_rows, test, rows, specs)
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
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    about = f"Sounds: the {split} split of {source}"
    if test_dir is not None:
        about += f" (held out); the mean and nearest baselines draw from the training split of {data_dir}"
    write_csv(out / "samples.csv", out_rows)
    names = {str(s.path): s.name for s in (*specs.values(), *known.values())}
    write_presets(out / PRESETS, rows, test.note[rows], _preset_table(tasks, names))
    with atomic_write(out / "summary.md") as f:
        f.write(summary_markdown(out_rows, about=about + "."))
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


def write_report(out: str | Path, rows: list[dict], *, report_samples: int, title: str, progress: bool = True) -> Path:
    """One evaluation's plots (LSD per method and synth, per HPSS bin) and its report page,
    ``<out>/report/index.html``: its tables and plots, every sample's LSD, and ``report_samples``
    samples (the best, the median and the worst by the model's LSD, others between) rendered again
    to listen to, from the presets ``evaluate`` kept. Returns the page."""
    from experiments.run import plot

    out = Path(out)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    models = [m for m in methods if m not in BASELINES]
    plot(out, [(m, {}, [r for r in rows if r["method"] == m]) for m in methods], sorted({r["synth"] for r in rows}))
    return evaluation_report(
        out,
        rows,
        preset_files=[out / PRESETS],
        report_samples=report_samples,
        title=title,
        markdown=[out / "summary.md"],
        plots=[out / "lsd_boxplot.png", out / "lsd_per_hpss.png"],
        links=[out / "samples.csv"],
        reference=(models or methods or [None])[0],
        progress=progress,
    )


def _refine(test, rows, train, specs, vectors, known, method, budget, *, refine_starts, workers, seed, progress):
    """Searches a preset for each in-domain sample: {position: {method, preset, refine_renders,
    refine_seconds}}. Starts: the model's prediction (when there is a model) and the nearest
    training presets of the sound's synth."""
    from asp.search import Searcher

    name = f"{method or 'nearest'}+search"
    renderer = Renderer()
    out = {}
    positions = [p for p, row in enumerate(rows) if vectors is None or str(test.synth[row]) in known]
    bar = tqdm(positions, desc="search", unit="sound", disable=not progress)
    with Searcher(workers=workers) as searcher:
        for pos in bar:
            row = rows[pos]
            synth = str(test.synth[row])
            spec, codec = specs[synth], Codec(specs[synth])
            note = int(test.note[row])
            target = renderer.render(spec, codec.decode(np.asarray(test.params[synth][row])), note=note)
            starts = {} if vectors is None else {"model": np.asarray(vectors[synth][pos])}
            if refine_starts > 0:
                near = nearest_rows(train, np.asarray(test.mels[row : row + 1]), synth, k=refine_starts)[0]
                starts.update({f"nearest{k + 1}": np.asarray(train.params[synth][r]) for k, r in enumerate(near)})
            found = searcher.search(spec, target, note, starts, budget, seed=seed, progress=False)
            out[pos] = {
                "method": name,
                "preset": found.preset,
                "refine_renders": found.renders,
                "refine_seconds": round(found.seconds, 2),
            }
            bar.set_postfix(distance=f"{found.start_distance:.2f}->{found.distance:.2f}")
    return out


def _warm_up() -> None:
    """Compiles (and caches) the numba code the metrics use; see ``run_tasks``."""
    noise = np.random.default_rng(0).normal(0, 0.1, 8192).astype(np.float32)
    metrics.audio_metrics(noise, noise)


def _indexed(spec_path, note, target, predictions, pos):
    return pos, _render_and_score(spec_path, note, target, predictions)


def _cores() -> int:
    return os.cpu_count() or 1


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


def write_csv(path: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with atomic_write(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for k, v in row.items():
            try:
                row[k] = (
                    float(v) if v not in ("", None) and k not in ("name", "synth", "method", "rendered_synth") else v
                )
            except ValueError:
                pass
    return rows


def finite_values(values: list) -> np.ndarray:
    """The finite floats among CSV values (blank cells and text are left out): (n,) float64."""
    return np.asarray([x for x in values if isinstance(x, float) and np.isfinite(x)], dtype=np.float64)


def mean_ci_text(values: list, digits: int = 2) -> str:
    """``mean ± 95% CI half-width`` of the finite values; just the mean for one value, ``-`` for none."""
    mean, half = metrics.mean_ci(finite_values(values))
    if not np.isfinite(mean):
        return "-"
    return f"{mean:.{digits}f} ± {half:.{digits}f}" if np.isfinite(half) else f"{mean:.{digits}f}"


def describe(values: list, digits: int = 2) -> str:
    """``mean ± CI half-width / median / IQR`` of the finite values, ``-`` without any."""
    v = finite_values(values)
    if not len(v):
        return "-"
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return f"{mean_ci_text(list(v), digits)} / {med:.{digits}f} / {q3 - q1:.{digits}f}"


def summary_markdown(rows: list[dict], *, about: str = "") -> str:
    """Mean ± 95% CI / median / IQR tables per synth and per HPSS bin, and per-group parameter errors.

    Args:
        rows: the CSV rows of one evaluation.
        about: a line saying which sounds were evaluated.
    """
    in_domain = [r for r in rows if r["rendered_synth"] == r["synth"]]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    synths = sorted({r["synth"] for r in rows})
    lines = ["# Evaluation", ""] + ([about, ""] if about else [])
    lines += [
        "Cells: mean ± half-width of its 95% confidence interval (Student's t) / median / IQR. Lower is "
        "better, except cat_accuracy and rms_envelope_similarity. param_mse: squared error over the whole "
        "encoded vector.",
        "",
    ]
    for metric in (*AUDIO_METRICS, *PARAM_METRICS):
        lines += [
            f"## {metric} per synth",
            "",
            "| method | " + " | ".join(synths) + " | all |",
            "|---" * (len(synths) + 2) + "|",
        ]
        for m in methods:
            digits = DIGITS.get(metric, 2)
            cells = [
                describe([r.get(metric) for r in in_domain if r["method"] == m and r["synth"] == s], digits)
                for s in synths
            ]
            cells.append(describe([r.get(metric) for r in in_domain if r["method"] == m], digits))
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    bins = hpss_bins(rows)
    lines += ["## lsd per HPSS bin", ""]
    if not bins:
        lines.append("no HPSS labels: the test set was generated with `--no-hpss`")
    else:
        lines += ["| method | " + " | ".join(str(b) for b in bins) + " |", "|---" * (len(bins) + 1) + "|"]
        for m in methods:
            cells = [describe([r["lsd"] for r in in_domain if r["method"] == m and int(r["hpss"]) == b]) for b in bins]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    groups = sorted({k[6:] for r in rows for k in r if k.startswith("group_")})
    lines += [
        "",
        "## parameter error per group (mean)",
        "",
        "| method | " + " | ".join(groups) + " |",
        "|---" * (len(groups) + 1) + "|",
    ]
    for m in methods:
        cells = []
        for g in groups:
            vals = [r[f"group_{g}"] for r in in_domain if r["method"] == m and isinstance(r.get(f"group_{g}"), float)]
            cells.append(f"{np.mean(vals):.3f}" if vals else "-")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    out_of_domain = [r for r in rows if r["rendered_synth"] != r["synth"]]
    if out_of_domain:
        lines += [
            "",
            "## out of domain: lsd by rendered synth",
            "",
            "| sounds of | rendered with | lsd |",
            "|---|---|---|",
        ]
        for s in sorted({r["synth"] for r in out_of_domain}):
            for t in sorted({r["rendered_synth"] for r in out_of_domain if r["synth"] == s}):
                vals = [r["lsd"] for r in out_of_domain if r["synth"] == s and r["rendered_synth"] == t]
                lines.append(f"| {s} | {t} | {describe(vals)} |")
    return "\n".join(lines) + "\n"


def comparison(rows: list[dict]) -> str:
    """How each model method compares with the baselines, per synth: its mean LSD and parameter
    MSE as multiples of each baseline's (below 1 = better). Own-synth matches only."""
    own = [r for r in rows if r["rendered_synth"] == r["synth"]]
    methods = list(dict.fromkeys(r["method"] for r in own))
    models = [m for m in methods if m not in BASELINES]
    present = [b for b in BASELINES if b in methods]
    lines = []
    for m in models:
        lines.append(f"{m} against the baselines (mean LSD, parameter MSE; x < 1: the model is better):")
        for synth in sorted({r["synth"] for r in own}):

            def mean(metric, method, synth=synth):
                values = finite_values([r.get(metric) for r in own if r["method"] == method and r["synth"] == synth])
                return float(values.mean()) if len(values) else float("nan")

            base = m.removesuffix("+search")  # a search's rows also compare with the one-shot match
            against = ([base] if base != m and base in methods else []) + present
            parts = []
            for metric, name in (("lsd", "LSD"), ("param_mse", "parameter MSE")):
                value = mean(metric, m)
                ratios = ", ".join(f"{value / mean(metric, b):.2f}x {b}" for b in against if mean(metric, b) > 0)
                parts.append(f"{name} {value:.3g}" + (f" ({ratios})" if ratios else ""))
            lines.append(f"  {synth}: " + "; ".join(parts))
    return "\n".join(lines)


def main() -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", nargs="?", help="a trained run folder (omit with --baselines-only)")
    p.add_argument("-d", "--data-dir", default="npy_data")
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument(
        "--test-dir",
        help="take the sounds from this dataset's --split (held out); mean and nearest still use -d's training split",
    )
    p.add_argument("--baselines", default=",".join(BASELINES), help="comma-separated: mean, random, nearest, or none")
    p.add_argument("--synths", nargs="+", help="evaluate these synths' sounds (out of domain if the model lacks one)")
    p.add_argument("--max-samples", type=positive_int, default=None)
    p.add_argument("--workers", type=positive_int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--refine",
        type=float,
        metavar="SECONDS",
        help="add <model>+search rows: search with the synth for this long per sound (see asp/search.py)",
    )
    p.add_argument(
        "--refine-renders",
        type=int,
        metavar="N",
        help="... or for this many renders per sound (reproducible); with --refine, whichever ends first",
    )
    p.add_argument(
        "--refine-starts",
        type=nonnegative_int,
        default=NEAREST_STARTS,
        help=f"nearest training presets the search also starts from (default {NEAREST_STARTS})",
    )
    p.add_argument(
        "--report-samples",
        type=nonnegative_int,
        default=REPORT_SAMPLES,
        metavar="N",
        help=f"render N samples again for report/index.html: the best, median and worst by the model's LSD and "
        f"others between (default {REPORT_SAMPLES}; 0: the report without audio)",
    )
    args = p.parse_args()
    refine = None
    if args.refine is not None or args.refine_renders is not None:
        from asp.search import Budget

        refine = Budget(renders=args.refine_renders, seconds=args.refine)
    if args.refine_starts < 0:
        raise ASPError(f"--refine-starts must be 0 or more, got {args.refine_starts}")
    baselines = tuple(b for b in args.baselines.split(",") if b and b != "none")
    if any(b not in BASELINES for b in baselines):
        raise ASPError(f"--baselines takes {', '.join(BASELINES)} (comma-separated) or none")
    if args.run_dir is None and not baselines:
        raise ASPError("give a run folder, or baselines to evaluate")
    rows = evaluate(
        args.run_dir,
        args.data_dir,
        args.out,
        split=args.split,
        test_dir=args.test_dir,
        baselines=baselines,
        synths=args.synths,
        max_samples=args.max_samples,
        workers=args.workers,
        seed=args.seed,
        refine=refine,
        refine_starts=args.refine_starts,
    )
    print((Path(args.out) / "summary.md").read_text().split("## mrsd")[0])
    verdict = comparison(rows)
    if verdict:
        print(verdict)
    print(f"{len(rows)} rows in {Path(args.out) / 'samples.csv'}; every table in {Path(args.out) / 'summary.md'}")
    where = f"{args.test_dir or args.data_dir} ({args.split} split)"
    title = f"Evaluation of {args.run_dir or 'the baselines'} on {where}"
    print(f"report: {write_report(args.out, rows, report_samples=args.report_samples, title=title)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
