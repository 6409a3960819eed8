"""experiments/: metrics' known answers, evaluate.py and the config runner on tiny data."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import toy_spec

from data.dataset import load_split
from data_generation.spec import load_spec
from experiments import metrics

ROOT = Path(__file__).resolve().parent.parent


def noise(seconds=1.0, seed=0):
    return np.random.default_rng(seed).normal(0, 0.1, int(44100 * seconds)).astype(np.float32)


def test_identical_audio_scores_zero():
    x = noise()
    scores = metrics.audio_metrics(x, x)
    assert {k: float(v) for k, v in scores.items()} == {"lsd": 0.0, "mrsd": 0.0, "mel_frobenius": 0.0}


def test_known_gain_change_gives_the_expected_lsd():
    x = noise()
    for gain in (2.0, 10.0, 0.5):
        expected = (2 * np.log10(gain)) ** 2  # log10 |gX|^2 - log10 |X|^2 = 2 log10 g in every bin
        assert float(metrics.log_spectral_distance(x, gain * x)) == pytest.approx(expected, rel=1e-3)
    # the log part of the multi-resolution distance is |ln g| at each of the three resolutions
    magnitude_part = sum(
        np.mean(np.abs(metrics._magnitude(x, n) - metrics._magnitude(2 * x, n))) for n in metrics.MRSD_FFTS
    )
    total = float(metrics.multi_resolution_spectral_distance(x, 2 * x))
    assert total - magnitude_part == pytest.approx(3 * np.log(2), rel=1e-3)


def test_silence_is_floored_not_infinite():
    x = noise()
    value = float(metrics.log_spectral_distance(x, np.zeros_like(x)))
    assert np.isfinite(value) and value > 10


def test_batched_metrics_match_single_ones():
    a, b = np.stack([noise(seed=1), noise(seed=2)]), np.stack([noise(seed=3), 3 * noise(seed=2)])
    batch = metrics.log_spectral_distance(a, b)
    assert batch.shape == (2,)
    assert batch[1] == pytest.approx(float(metrics.log_spectral_distance(a[1], b[1])))


def _toy():
    return toy_spec((0, "osc", 0.0), (3, "fil", 0.0), (2, "fil", 0.0))


def test_parameter_metrics_known_answers():
    spec = _toy()
    target = np.array([[0.5, 0, 1, 0, 1, 0]], np.float32)  # a=0.5, b=class 1, c=class 0
    pred = np.array([[0.7, 0.1, 0.8, 0.3, 0.2, 0.9]], np.float32)  # a=0.7, b=class 1 (right), c=class 1 (wrong)
    assert metrics.categorical_accuracy(spec, target, pred)[0] == pytest.approx(0.5)
    assert metrics.continuous_squared_error(spec, target, pred)[0] == pytest.approx(0.04, rel=1e-5)
    groups = metrics.group_errors(spec, target, pred)
    assert groups["osc"][0] == pytest.approx(0.04, rel=1e-5) and groups["fil"][0] == pytest.approx(0.5)


@pytest.fixture(scope="module")
def tiny_run(tiny_data, tmp_path_factory):
    from training import TrainConfig, train

    models = tmp_path_factory.mktemp("exp_models")
    train(
        TrainConfig(
            approach="multi", data_dir=str(tiny_data), model_dir=str(models), latent_size=4, epochs=1, verbose=0
        )
    )
    return models / "vae_multi_4"


def test_evaluate_writes_one_row_per_sample_and_method(tiny_data, tiny_run, tmp_path):
    from experiments.evaluate import evaluate

    rows = evaluate(tiny_run, tiny_data, tmp_path / "ev", workers=2, progress=False)
    test = load_split(tiny_data, "test")
    with open(tmp_path / "ev" / "samples.csv") as f:
        written = list(csv.DictReader(f))
    assert len(written) == len(rows) == 3 * len(test)
    for method in ("multi", "random", "nearest"):
        mine = [r for r in written if r["method"] == method]
        assert [int(r["index"]) for r in mine] == list(range(len(test)))
        assert [r["synth"] for r in mine] == list(test.synth)
        assert [int(r["hpss"]) for r in mine] == test.hpss.tolist()
        assert all(float(r["lsd"]) >= 0 and 0 <= float(r["cat_accuracy"]) <= 1 for r in mine)
    summary = (tmp_path / "ev" / "summary.md").read_text()
    assert "## lsd per synth" in summary and "| nearest |" in summary and "lsd per HPSS bin" in summary


def test_out_of_domain_renders_every_head(tiny_data, tmp_path):
    from experiments.evaluate import evaluate
    from training import TrainConfig, train

    train(
        TrainConfig(
            approach="multi",
            synths=("va", "fm"),
            data_dir=str(tiny_data),
            model_dir=str(tmp_path),
            latent_size=4,
            epochs=1,
            verbose=0,
        )
    )
    rows = evaluate(
        tmp_path / "vae_multi_4", tiny_data, tmp_path / "ood", synths=["modal"], baselines=(), workers=1, progress=False
    )
    n_modal = int((load_split(tiny_data, "test").synth == "modal").sum())
    assert len(rows) == 2 * n_modal and {r["rendered_synth"] for r in rows} == {"va", "fm"}
    assert "out of domain" in (tmp_path / "ood" / "summary.md").read_text()


def test_runner_trains_evaluates_and_reuses_checkpoints(tiny_data, tmp_path):
    from experiments.run import run_config

    config = tmp_path / "tiny.json"
    config.write_text(
        json.dumps(
            {
                "include": str(ROOT / "experiments/configs/base.json"),
                "data_dir": str(tiny_data),
                "model_dir": str(tmp_path / "models"),
                "latent_size": 4,
                "profiles": {"small": {"epochs": 1, "patience": None, "eval_max_samples": None, "verbose": 0}},
                "rows": [
                    {"label": "baseline", "approach": "synth", "eval_synths": ["va"]},
                    {"label": "multi", "approach": "multi"},
                    {"label": "multi l2", "approach": "multi", "latent_size": 2},
                ],
            }
        )
    )
    out = run_config(config, "small", results=tmp_path / "results", workers=1)
    table = (out / "table.md").read_text()
    for label in ("baseline", "multi", "multi l2", "baseline: random", "baseline: nearest"):
        assert f"| {label} |" in table
    assert {"lsd_boxplot.png", "lsd_vs_latent.png", "lsd_per_hpss.png", "all_samples.csv"} <= {
        p.name for p in out.iterdir()
    }
    weights = sorted((tmp_path / "models").rglob("model.weights.h5"))
    assert len(weights) == 3
    assert out.name == "tiny"
    csvs = sorted(out.rglob("samples.csv"))
    before = [p.stat().st_mtime_ns for p in weights + csvs]
    run_config(config, "small", results=tmp_path / "results", workers=1)
    assert [p.stat().st_mtime_ns for p in weights + csvs] == before  # reused: not retrained, not re-evaluated


def test_shipped_configs_load_with_both_profiles():
    from experiments.run import load_config, resolve

    for path in sorted((ROOT / "experiments/configs").glob("*.json")):
        if path.name == "base.json":
            continue
        config = load_config(path)
        assert config["rows"]
        assert resolve(config, "paper")["epochs"] == 500
        assert resolve(config, "small")["epochs"] <= 30
    assert load_spec("va")  # configs name synths of the built-in dataset
