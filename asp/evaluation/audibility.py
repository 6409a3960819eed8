"""Which parameters a sound reveals: for each sound of a split, every learned parameter of its
preset is swept over its sampling range (continuous: the range's low end, middle and high end;
categorical: every class in range) with the others at their true values, each variant is
rendered, and the largest log spectral distance from the true sound is kept.

A parameter whose sweep stays under ``--threshold`` (LSD) is inaudible in that preset: no method
can read it from the sound (a filter's resonance with the filter open, an LFO's rate at depth 0),
so its best guess is the mean of the presets it was drawn from. The error those guesses leave is
the **inaudible floor** of the parameter MSE: no model, however much data it trains on, is
expected to score below it. With ``-d`` it is written as a multiple of the training-mean preset's
error, the same ratio ``evaluate.py`` reports for a model (its parameter-MSE row over the mean
baseline's), so the two compare directly.

    python experiments/audibility.py npy_heldout --split test -d npy_data --max-samples 150 --out results/audibility

Writes ``<out>/sweeps.csv`` (one row per sound and parameter: its largest LSD) and
``<out>/summary.md`` (per synth: the inaudible share and the floor; per parameter: how often it
is audible). The floor is an estimate, not a proof, and errs both ways: a parameter that is audible in a preset can
still be hard to read (it trades off against another), which raises the true floor; the LSD
averages over the whole 5 s, so it barely registers a change confined to the onset (a short
attack or decay time), which a model reading the mel may still learn, so such parameters count as
inaudible more often than a listener would say (a lower ``--threshold`` counts fewer); and the
mean of the split's own presets stands in for the mean of the distribution they came from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from asp import metrics
from asp.cluster import run_tasks
from asp.errors import ASPError
from asp.evaluation.results import cores, held_out_split, warm_up, write_csv
from asp.files import atomic_write, check_outputs, mark_written
from data.dataset import Split, load_split, mean_vector
from data.encoding import Codec
from data_generation.render import Renderer
from data_generation.spec import Param, SynthSpec, load_spec

THRESHOLD = 0.1  # LSD: a variant closer than this to the true sound counts as the same sound
_RENDERER: Renderer | None = None


def sweep_values(param: Param) -> list[float]:
    """The normalized values a parameter is swept over: its sampling range's ends and middle
    (continuous), or every class in the range (categorical)."""
    lo, hi = param.sample_range
    if param.classes >= 2:
        steps = param.classes - 1
        first, last = int(np.ceil(lo * steps - 1e-9)), int(np.floor(hi * steps + 1e-9))
        return [k / steps for k in range(first, last + 1)]
    return [lo, (lo + hi) / 2, hi]


def sweep(spec: SynthSpec, preset: np.ndarray, note: int, renderer: Renderer) -> np.ndarray:
    """For each learned parameter of ``spec``, the largest LSD between the true sound of
    ``preset`` and the sound with that parameter at each of its ``sweep_values`` (0 when every
    value equals the preset's own): (n learned,) float64."""
    truth = metrics.AudioFeatures(renderer.render(spec, preset, note=note))
    out = np.zeros(len(spec.learned))
    for k, index in enumerate(spec.learned_index):
        variants = []
        for value in sweep_values(spec.params[index]):
            if abs(value - preset[index]) > 1e-9:
                variant = preset.copy()
                variant[index] = value
                variants.append(spec.snap(variant))
        if variants:
            audio = np.stack([renderer.render(spec, v, note=note) for v in variants])
            out[k] = float(np.max(metrics.log_spectral_distance(truth, audio)))
    return out


def _sweep_task(spec_path: str, preset: np.ndarray, note: int, pos: int) -> tuple[int, np.ndarray]:
    """Worker task: one sound's sweep (one renderer per worker process)."""
    global _RENDERER
    if _RENDERER is None:
        _RENDERER = Renderer()
    return pos, sweep(load_spec(spec_path), preset, note, _RENDERER)


def inaudible_floor(
    codec: Codec, true: np.ndarray, loudest: np.ndarray, prior_mean: np.ndarray, threshold: float
) -> float:
    """The parameter MSE left by the inaudible parameters when each is guessed at ``prior_mean``
    and the audible ones exactly: mean over sounds and encoded positions, like
    ``metrics.parameter_mse``.

    Args:
        codec: the synth's encoding.
        true: (n, encoded size) the true encoded presets.
        loudest: (n, n learned) each parameter's largest sweep LSD (``sweep``).
        prior_mean: (encoded size,) the mean encoded preset the sounds were drawn from.
        threshold: LSD under which a parameter is inaudible.
    """
    quiet = (np.asarray(loudest) < threshold)[:, codec.segments]  # per encoded position
    return float(np.mean(np.square(np.asarray(true) - prior_mean) * quiet))


def audibility(
    data_dir: str | Path,
    out: str | Path,
    *,
    split: str = "test",
    train_dir: str | Path | None = None,
    synths: list[str] | None = None,
    max_samples: int | None = None,
    threshold: float = THRESHOLD,
    workers: int | None = None,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, dict]:
    """Sweeps every sound of a split (``--max-samples``: the seeded choice ``evaluate.py`` makes
    with the same seed) and writes ``sweeps.csv`` and ``summary.md`` under ``out``.

    Args:
        data_dir: the dataset whose ``split`` holds the sounds.
        out: output folder.
        train_dir: a training dataset: the floor is also given as a multiple of its mean preset's
            parameter MSE (the sounds' encodings must match it).
        synths: only these synths' sounds.
        max_samples: at most this many sounds.
        threshold: LSD under which a parameter counts as inaudible.
        workers: render workers (default: all cores).
        seed: seed of the ``max_samples`` choice.
        overwrite: replace a ``sweeps.csv`` or ``summary.md`` in ``out`` that no run wrote (else refused
            before any work).

    Returns:
        {synth: {"sounds", "inaudible", "floor", "mean_mse" (or None), "per_param": {name: (audible
        share, median largest LSD)}}}.
    """
    if not (np.isfinite(threshold) and threshold > 0):
        raise ASPError(f"--threshold must be a positive LSD, got {threshold}")
    check_outputs([Path(out) / "sweeps.csv", Path(out) / "summary.md"], overwrite=overwrite)  # a user's summary.md
    test = load_split(data_dir, split) if train_dir is None else held_out_split(data_dir, split, train_dir)
    train = load_split(train_dir, "train") if train_dir is not None else None
    wanted = synths or test.synths
    unknown = [s for s in wanted if s not in test.synths]
    if unknown:
        raise ASPError(
            f"the {split} split of {data_dir} has no {', '.join(unknown)} sounds (it has {', '.join(test.synths)})"
        )
    rows = np.flatnonzero(np.isin(test.synth, wanted))
    if max_samples is not None and len(rows) > max_samples:
        rows = np.sort(np.random.default_rng(seed).permutation(rows)[:max_samples])
    if len(rows) == 0:
        raise ASPError(f"the {split} split of {data_dir} has no sounds to sweep")
    specs = {s: load_spec(s) for s in set(test.synth[rows])}
    tasks = []
    for pos, row in enumerate(rows):
        spec = specs[str(test.synth[row])]
        preset = Codec(spec).decode(np.asarray(test.params[spec.name][row]))
        tasks.append((str(spec.path), preset, int(test.note[row]), pos))
    loudest: dict[int, np.ndarray] = {}
    bar = tqdm(total=len(tasks), desc="audibility", unit="sound", disable=not progress)
    for pos, values in run_tasks(_sweep_task, tasks, workers=workers or cores(), initializer=warm_up):
        loudest[pos] = values
        bar.update(1)
    bar.close()
    csv_rows, results = [], {}
    for synth in sorted(specs):
        mine = [pos for pos, row in enumerate(rows) if test.synth[row] == synth]
        results[synth] = _synth_result(test, train, specs[synth], rows, mine, loudest, threshold)
        csv_rows += _csv_rows(test, specs[synth], rows, mine, loudest)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "sweeps.csv", csv_rows)
    with atomic_write(out / "summary.md") as f:
        f.write(summary_markdown(results, threshold=threshold, about=f"the {split} split of {data_dir}"))
    mark_written(out / "sweeps.csv", out / "summary.md")
    return results


def _synth_result(
    test: Split,
    train: Split | None,
    spec: SynthSpec,
    rows: np.ndarray,
    mine: list[int],
    loudest: dict,
    threshold: float,
) -> dict:
    """One synth's entry of ``audibility``'s results (``mine``: the positions of its sounds in ``rows``)."""
    synth, codec = spec.name, Codec(spec)
    table = np.stack([loudest[pos] for pos in mine])
    true = np.asarray(test.params[synth][rows[mine]])
    everyone = np.asarray(test.params[synth][np.flatnonzero(test.synth == synth)])
    floor = inaudible_floor(codec, true, table, everyone.mean(axis=0), threshold)
    mean_mse = None
    if train is not None:
        mean_mse = float(np.mean(metrics.parameter_mse(true, mean_vector(train, synth)[None])))
    names = [p.name for p in spec.learned]
    return {
        "sounds": len(mine),
        "inaudible": float(np.mean(table < threshold)),
        "floor": floor,
        "mean_mse": mean_mse,
        "per_param": {
            n: (float(np.mean(table[:, k] >= threshold)), float(np.median(table[:, k]))) for k, n in enumerate(names)
        },
    }


def _csv_rows(test: Split, spec: SynthSpec, rows: np.ndarray, mine: list[int], loudest: dict) -> list[dict]:
    """One row per sound of the synth and parameter: its largest sweep LSD."""
    names = [p.name for p in spec.learned]
    out = []
    for pos in mine:
        row = rows[pos]
        for name, value in zip(names, loudest[pos]):
            out.append(
                {
                    "name": str(test.names[row]),
                    "index": int(row),
                    "synth": spec.name,
                    "parameter": name,
                    "max_lsd": float(value),
                }
            )
    return out


def summary_markdown(results: dict[str, dict], *, threshold: float, about: str) -> str:
    """The per-synth and per-parameter tables of ``audibility``'s results."""
    lines = [
        "# Audibility",
        "",
        f"Sounds: {about}. A parameter is inaudible in a preset when sweeping it over its range changes the "
        f"sound by less than LSD {threshold:g}.",
        "",
        "| synth | sounds | inaudible (preset, parameter) pairs | inaudible floor of the parameter MSE "
        "| vs the training-mean preset |",
        "|---|---|---|---|---|",
    ]
    for synth, r in results.items():
        ratio = f"{r['floor'] / r['mean_mse']:.2f}x" if r["mean_mse"] else "-"
        lines.append(f"| {synth} | {r['sounds']} | {100 * r['inaudible']:.0f}% | {r['floor']:.4f} | {ratio} |")
    for synth, r in results.items():
        lines += [
            "",
            f"## {synth}: how often each parameter is audible",
            "",
            "| parameter | audible in | median largest LSD |",
            "|---|---|---|",
        ]
        order = sorted(r["per_param"].items(), key=lambda item: -item[1][0])
        lines += [f"| {name} | {100 * share:.0f}% | {median:.2f} |" for name, (share, median) in order]
    return "\n".join(lines) + "\n"
