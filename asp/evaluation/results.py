"""What evaluations share: their CSV files, the held-out test set check, the worker setup and
task (here, not beside ``evaluate``: a worker importing its task's module should not load
TensorFlow), and the cell texts of their tables (mean ± 95% CI, median, IQR)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from asp import metrics
from asp.errors import ASPError
from asp.files import atomic_write
from asp.stats import finite_values, mean_ci
from data.dataset import Split, load_split, read_manifest
from data_generation.render import Renderer
from data_generation.spec import load_spec

_RENDERER: Renderer | None = None


def cores() -> int:
    """Render workers by default: every core."""
    return os.cpu_count() or 1


def warm_up() -> None:
    """Compiles (and caches) the numba code the metrics use; see ``asp.parallel.run_tasks``."""
    noise = np.random.default_rng(0).normal(0, 0.1, 8192).astype(np.float32)
    metrics.audio_metrics(noise, noise)


def score_sample(spec_path: str, note: int, target: np.ndarray, predictions: list, pos: int) -> tuple[int, list]:
    """Worker task of ``evaluate``: render the true preset and each (method, synth path, preset),
    score them; returns ``(pos, [{method, rendered_synth, metric: value, ...}, ...])``."""
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
    return pos, out


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


def mean_ci_text(values: list, digits: int = 2) -> str:
    """``mean ± 95% CI half-width`` of the finite values; just the mean for one value, ``-`` for none."""
    mean, half = mean_ci(finite_values(values))
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
