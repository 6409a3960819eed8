"""experiments/: metrics' known answers, evaluate.py and the config runner on tiny data."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import toy_spec

from asp import metrics, stats
from asp.errors import ASPError
from data.dataset import load_split
from data.encoding import Codec
from data_generation.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent


def noise(seconds=1.0, seed=0):
    return np.random.default_rng(seed).normal(0, 0.1, int(44100 * seconds)).astype(np.float32)


def tone(seconds=1.0, freq=440.0):
    t = np.arange(int(44100 * seconds)) / 44100
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_identical_audio_scores_zero():
    x = noise()
    scores = metrics.audio_metrics(x, x)
    assert list(scores) == list(metrics.AUDIO_METRICS)
    assert {k: float(v) for k, v in scores.items()} == {
        "lsd": 0.0,
        "mrsd": 0.0,
        "mel_frobenius": 0.0,
        "multi_scale_log_mel_distance": 0.0,
        "mfcc_distance": 0.0,
        "rms_envelope_similarity": 1.0,
    }


def test_field_metrics_known_answers():
    x = noise()
    for gain in (2.0, 10.0):
        # log(g M + 1e-5) - log(M + 1e-5) = ln g where the mel magnitudes M are far above 1e-5
        assert float(metrics.multi_scale_log_mel_distance(x, gain * x)) == pytest.approx(np.log(gain), rel=1e-3)
        # a gain shifts every dB mel bin by the same amount, which only c0 (dropped) sees
        assert float(metrics.mfcc_distance(x, gain * x)) == pytest.approx(0.0, abs=1e-4)  # float32 STFT
        assert float(metrics.rms_envelope_similarity(x, gain * x)) == pytest.approx(1.0)
    assert metrics.multi_scale_log_mel_distance(x, 10 * x) > metrics.multi_scale_log_mel_distance(x, 2 * x)
    assert metrics.mfcc_distance(x, tone()) > 10 * metrics.mfcc_distance(x, 2 * x) + 1.0  # another timbre
    ramp = np.linspace(0.0, 1.0, len(x), dtype=np.float32)
    assert (
        float(metrics.rms_envelope_similarity(tone() * ramp, tone() * ramp[::-1])) < -0.95
    )  # mirrored (padded edges: not -1)
    assert float(metrics.rms_envelope_similarity(tone() * ramp, tone() * ramp**2)) > 0.9  # both rise
    assert float(metrics.rms_envelope_similarity(x, np.zeros_like(x))) == 0.0  # silence has no envelope
    assert float(metrics.rms_envelope_similarity(np.zeros_like(x), np.zeros_like(x))) == 1.0


def test_field_metrics_batched_and_with_reused_features():
    loud, quiet = noise(seed=1), 1e-3 * noise(seed=2)
    target, predicted = np.stack([loud, quiet]), np.stack([2 * loud, tone() * 1e-3])
    batch = metrics.audio_metrics(target, predicted)
    features = metrics.AudioFeatures(target[1])
    for name, values in batch.items():
        assert values.shape == (2,), name
        # each item is scored alone: the mel's 80 dB range is cut below its own maximum, not the batch's
        assert values[1] == pytest.approx(float(metrics.audio_metrics(target[1], predicted[1])[name]), rel=1e-6)
        assert values[1] == pytest.approx(float(metrics.audio_metrics(features, predicted[1])[name]), rel=1e-6)


def test_mean_confidence_interval_known_answer():
    mean, half = stats.mean_ci([1.0, 2.0, 3.0, 4.0, np.nan])
    # t(0.975, 3) = 3.182446, sample sd = 1.290994, n = 4
    assert mean == 2.5 and half == pytest.approx(3.182446 * 1.290994 / 2, rel=1e-5)
    assert stats.mean_ci([5.0])[0] == 5.0 and np.isnan(stats.mean_ci([5.0])[1])
    assert all(np.isnan(stats.mean_ci([])))


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
    # squared errors .04 .01 .04 .09 .64 .81 over the six encoded values
    assert metrics.parameter_mse(target, pred)[0] == pytest.approx(1.63 / 6, rel=1e-5)
    assert metrics.parameter_mse(target, target)[0] == 0.0


def test_mean_baseline_takes_the_mean_and_the_most_frequent_class(tiny_data):
    from asp.evaluation.evaluate import mean_train_vector

    train = load_split(tiny_data, "train")
    spec = load_spec("fm")
    codec = Codec(spec)
    own = np.asarray(train.params["fm"][train.synth == "fm"])
    vector = mean_train_vector(train, "fm")
    assert vector.shape == (spec.encoded_size,)
    np.testing.assert_allclose(vector[codec.continuous_mask], own[:, codec.continuous_mask].mean(0), rtol=1e-5)
    preset = codec.decode(vector)
    for n, (params, offsets) in codec.blocks.items():
        counts = np.stack([own[:, o : o + n].sum(0) for o in offsets])  # (params, n) class counts
        np.testing.assert_allclose(preset[spec.learned_index][params], counts.argmax(1) / (n - 1))


@pytest.fixture(scope="module")
def held_out(tiny_data, tmp_path_factory):
    """tiny_data's valid split as the test split of its own folder, with 0-row train/valid files
    (what ``generate.py --split-all test`` writes)."""
    out = tmp_path_factory.mktemp("held_out")
    for path in tiny_data.glob("valid_*.npy"):
        array = np.load(path)
        np.save(out / path.name.replace("valid_", "test_", 1), array)
        for split in ("train", "valid"):
            np.save(out / path.name.replace("valid_", f"{split}_", 1), array[:0])
    manifest = json.loads((tiny_data / "manifest.json").read_text())
    manifest["fingerprint"] = "held-out"
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture(scope="module")
def tiny_run(tiny_data, tmp_path_factory):
    from asp.training import TrainConfig, train

    models = tmp_path_factory.mktemp("exp_models")
    train(
        TrainConfig(
            approach="multi", data_dir=str(tiny_data), model_dir=str(models), latent_size=4, epochs=1, verbose=0
        )
    )
    return models / "vae_multi_4_paper"


@pytest.mark.slow
def test_evaluate_writes_one_row_per_sample_and_method(tiny_data, tiny_run, tmp_path):
    from asp.evaluation.evaluate import evaluate

    rows = evaluate(tiny_run, tiny_data, tmp_path / "ev", workers=2, progress=False)
    test = load_split(tiny_data, "test")
    with open(tmp_path / "ev" / "samples.csv") as f:
        written = list(csv.DictReader(f))
    assert len(written) == len(rows) == 4 * len(test)
    for column in (*metrics.AUDIO_METRICS, "cat_accuracy", "cont_sq_error", "param_mse"):
        assert column in written[0]
    for method in ("multi", "mean", "random", "nearest"):
        mine = [r for r in written if r["method"] == method]
        assert [int(r["index"]) for r in mine] == list(range(len(test)))
        assert [r["synth"] for r in mine] == list(test.synth)
        assert [int(r["hpss"]) for r in mine] == test.hpss.tolist()
        assert all(float(r["lsd"]) >= 0 and 0 <= float(r["cat_accuracy"]) <= 1 for r in mine)
        assert all(float(r["param_mse"]) >= 0 and -1 <= float(r["rms_envelope_similarity"]) <= 1 for r in mine)
    summary = (tmp_path / "ev" / "summary.md").read_text()
    assert "## lsd per synth" in summary and "| nearest |" in summary and "lsd per HPSS bin" in summary
    assert "| mean |" in summary and "## param_mse per synth" in summary and " ± " in summary
    assert f"the test split of {tiny_data}." in summary


@pytest.mark.slow
def test_evaluate_refine_adds_searched_rows(tiny_data, tiny_run, tmp_path, capsys):
    from asp.evaluation.evaluate import evaluate
    from asp.evaluation.summary import comparison
    from asp.search import Budget

    rows = evaluate(
        tiny_run,
        tiny_data,
        tmp_path / "ev",
        baselines=("nearest",),
        max_samples=3,
        workers=1,
        progress=False,
        refine=Budget(renders=12),
        refine_starts=2,
    )
    searched = [r for r in rows if r["method"] == "multi+search"]
    assert len(searched) == 3 and all(r["refine_renders"] == 12 and r["refine_seconds"] > 0 for r in searched)
    assert all(np.isfinite(r["lsd"]) and np.isfinite(r["param_mse"]) for r in searched)
    assert "| multi+search |" in (tmp_path / "ev" / "summary.md").read_text()
    assert "x multi, " in comparison(rows)  # the search's rows are compared with the one-shot match too
    with open(tmp_path / "ev" / "samples.csv") as f:
        assert {r["refine_renders"] for r in csv.DictReader(f) if r["method"] == "multi"} == {""}


def test_evaluate_on_a_held_out_test_set(tiny_data, held_out, tmp_path):
    from asp.evaluation.evaluate import evaluate

    rows = evaluate(
        None, tiny_data, tmp_path / "ev", test_dir=held_out, baselines=("mean", "nearest"), workers=1, progress=False
    )
    valid = load_split(tiny_data, "valid")  # the held-out sounds
    for method in ("mean", "nearest"):
        assert [r["name"] for r in rows if r["method"] == method] == list(valid.names)
    # the held-out folder has 0-row train/valid files: mean and nearest drew from tiny_data's training split
    assert all(np.isfinite(r["param_mse"]) and np.isfinite(r["lsd"]) for r in rows)
    assert f"the test split of {held_out} (held out)" in (tmp_path / "ev" / "summary.md").read_text()


def test_evaluate_cli_takes_a_test_dir(tiny_data, held_out, tmp_path, monkeypatch, capsys):
    from experiments.evaluate import main

    base = ["evaluate.py", "-d", str(tiny_data), "--out", str(tmp_path / "cli")]
    monkeypatch.setattr("sys.argv", [*base, "--baselines", "median"])
    with pytest.raises(ASPError, match="--baselines takes mean, random, nearest"):
        main()
    monkeypatch.setattr(
        "sys.argv", [*base, "--test-dir", str(held_out), "--baselines", "mean", "--max-samples", "1", "--workers", "1"]
    )
    assert main() == 0
    with open(tmp_path / "cli" / "samples.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["method"] == "mean" and row["name"] in set(load_split(held_out, "test").names)
    assert "(held out)" in capsys.readouterr().out


def test_held_out_test_sets_must_match_the_training_data(tiny_data, held_out, tmp_path):
    from asp.evaluation.evaluate import evaluate

    def attempt(test_dir, **kw):
        return evaluate(None, tiny_data, tmp_path / "ev", test_dir=test_dir, workers=1, progress=False, **kw)

    other = tmp_path / "other"
    shutil.copytree(held_out, other)
    params = np.load(other / "test_fm_params.npy")
    np.save(other / "test_fm_params.npy", np.concatenate([params, params[:, :1]], axis=1))
    with pytest.raises(ASPError, match="fm vectors in .* have"):
        attempt(other)
    shutil.rmtree(other)
    shutil.copytree(held_out, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["synths"][0]["hash"] = "0" * 16
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ASPError, match="differs between"):
        attempt(other)
    small = tmp_path / "small"
    shutil.copytree(tiny_data, small)
    manifest = json.loads((small / "manifest.json").read_text())
    manifest["synths"] = [s for s in manifest["synths"] if s["name"] != "modal"]
    (small / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ASPError, match="modal that the training data"):
        evaluate(None, small, tmp_path / "ev", test_dir=held_out, workers=1, progress=False)
    with pytest.raises(ASPError, match="unknown baseline"):
        attempt(held_out, baselines=("median",))


@pytest.mark.slow
def test_out_of_domain_renders_every_head(tiny_data, tmp_path):
    from asp.evaluation.evaluate import evaluate
    from asp.training import TrainConfig, train

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
        tmp_path / "vae_multi_4_paper",
        tiny_data,
        tmp_path / "ood",
        synths=["modal"],
        baselines=(),
        workers=1,
        progress=False,
    )
    n_modal = int((load_split(tiny_data, "test").synth == "modal").sum())
    assert len(rows) == 2 * n_modal and {r["rendered_synth"] for r in rows} == {"va", "fm"}
    assert "out of domain" in (tmp_path / "ood" / "summary.md").read_text()


@pytest.mark.slow
def test_runner_trains_evaluates_and_reuses_checkpoints(tiny_data, held_out, tmp_path):
    from asp.experiments import run_config

    config = tmp_path / "tiny.json"
    config.write_text(
        json.dumps(
            {
                "include": str(ROOT / "experiments/configs/base.json"),
                "data_dir": str(tiny_data),
                "model_dir": str(tmp_path / "models"),
                "test_dir": str(held_out),
                "latent_size": 4,
                "refine_renders": 12,  # the network's preset and the 8 nearest are scored first
                "report_samples": 2,
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
    for label in ("baseline", "multi", "multi l2", "baseline: mean", "baseline: random", "baseline: nearest"):
        assert f"| {label} |" in table
        assert (f"| {label}+search |" in table) != label.startswith("baseline:")  # models only are refined
    assert f"Test set: the test split of {held_out}, held out" in table
    for heading in ("log-mel distance", "MFCC distance", "RMS envelope similarity", "parameter MSE"):
        assert f" {heading} |" in table
    assert " ± " in table
    held = {str(n) for n in load_split(held_out, "test").names}
    with open(out / "all_samples.csv") as f:
        assert {r["name"] for r in csv.DictReader(f)} <= held
    assert {"lsd_boxplot.png", "lsd_vs_latent.png", "lsd_per_hpss.png", "all_samples.csv"} <= {
        p.name for p in out.iterdir()
    }
    weights = sorted((tmp_path / "models").rglob("model.weights.h5"))
    assert len(weights) == 3
    assert out.name == "tiny"
    # the report plays report_samples sounds among those the first row scored, each with every row's preset
    with open(out / "all_samples.csv") as f:
        scored = {r["index"] for r in csv.DictReader(f) if r["row"] == "baseline"}
    assert len(list((out / "report" / "audio").glob("*_target.flac"))) == min(2, len(scored)) > 0
    report = (out / "report" / "index.html").read_text()
    for stem in ("baseline", "baseline_search", "multi", "multi_search", "multi_l2", "mean", "random", "nearest"):
        assert f"_{stem}.flac" in report, stem
    assert 'src="../lsd_boxplot.png"' in report and 'href="../table.md"' in report
    csvs = sorted(out.rglob("samples.csv"))
    before = [p.stat().st_mtime_ns for p in weights + csvs]
    run_config(config, "small", results=tmp_path / "results", workers=1)
    assert [p.stat().st_mtime_ns for p in weights + csvs] == before  # reused: not retrained, not re-evaluated


def test_runner_passes_kl_settings_and_keys_checkpoints_by_them(tmp_path):
    from asp.experiments import model_dir_for, train_runs
    from asp.training import TrainConfig

    if not {"beta", "free_bits", "kl_warmup_epochs"} <= set(TrainConfig.__dataclass_fields__):
        pytest.skip("TrainConfig has no beta/free_bits fields yet")
    settings = {"data_dir": "d", "latent_size": 4, "param_loss": "mse", "epochs": 1, "seed": 0, "beta": 0.5}
    ((_, plain),) = train_runs(settings, {"approach": "multi"}, ["va"])
    ((_, tuned),) = train_runs(
        settings, {"approach": "multi", "beta": 0.1, "free_bits": 0.25, "kl_warmup_epochs": 3}, ["va"]
    )
    assert plain.beta == 0.5 and plain.free_bits == TrainConfig.free_bits
    assert plain.kl_warmup_epochs == TrainConfig.kl_warmup_epochs
    assert (tuned.beta, tuned.free_bits, tuned.kl_warmup_epochs) == (0.1, 0.25, 3)
    assert model_dir_for(plain, "f", "m") != model_dir_for(tuned, "f", "m")
    for key, value in (("beta", 0.1), ("free_bits", 0.25), ("kl_warmup_epochs", 3)):
        changed = train_runs(settings, {"approach": "multi", key: value}, ["va"])[0][1]
        assert model_dir_for(changed, "f", "m") != model_dir_for(plain, "f", "m"), key


def test_shipped_configs_load_with_both_profiles():
    from asp.experiments import load_config, resolve

    for path in sorted((ROOT / "experiments/configs").glob("*.json")):
        if path.name == "base.json":
            continue
        config = load_config(path)
        if "real_sounds" in config:  # a real-sound config evaluates a trained model: no rows to train
            assert "rows" not in config and resolve(config, "small")["model"] and resolve(config, "paper")
            continue
        assert config["rows"]
        assert resolve(config, "paper")["epochs"] == 500
        assert resolve(config, "small")["epochs"] <= 30
        # every table has the three baselines: for all rows, or lookup per row in its own training sounds
        per_row = [set(row.get("baselines", [])) for row in config["rows"]]
        assert {"mean", "random"} <= set(resolve(config, "small")["baselines"])
        assert "nearest" in resolve(config, "small")["baselines"] or any("nearest" in b for b in per_row)
    assert load_spec("va")  # configs name synths of the built-in dataset


def test_relative_table_divides_by_the_mean_baseline():
    from asp.experiments import relative_table

    def rows(lsd, mse, synth="fm"):
        return [{"synth": synth, "rendered_synth": synth, "lsd": lsd, "param_mse": mse}]

    table = [
        ("multi", {}, rows(2.0, 0.03) + rows(1.0, 0.05, "va")),
        ("baseline: mean", {}, rows(8.0, 0.06) + rows(4.0, 0.10, "va")),
    ]
    lines = relative_table(table, ["fm", "va"])
    assert lines[-1] == "| multi | 0.25x | 0.25x | 0.50x | 0.50x |"
    assert relative_table(table[:1], ["fm", "va"]) == []


def test_a_second_runner_on_the_same_config_fails_at_once_and_leaves_nothing(tiny_data, tmp_path):
    from asp.errors import ASPError
    from asp.experiments import run_config
    from asp.locks import folder_lock

    config = tmp_path / "busy.json"
    rows = [{"label": "multi", "approach": "multi"}]
    settings = {"data_dir": str(tiny_data), "test_dir": None, "latent_size": 4, "rows": rows}
    config.write_text(json.dumps({"include": str(ROOT / "experiments/configs/base.json"), **settings}))
    out = tmp_path / "results" / "busy"
    out.mkdir(parents=True)
    with folder_lock(out), pytest.raises(ASPError, match="in use by another experiments/run.py run"):
        run_config(config, "small", results=tmp_path / "results", workers=1)
    assert [p.name for p in out.iterdir()] == [".lock"]  # the holder's lock only: nothing trained or written
    fresh = tmp_path / "other"
    with pytest.raises(ASPError, match="has no profile"):  # a failure before the lock leaves no folder
        run_config(config, "nope", results=fresh, workers=1)
    assert not fresh.exists()


def test_scaling_crossing_known_answers():
    from asp.experiments.scaling import crossing
    from asp.stats import ratio_ci

    sizes = np.array([1000.0, 2000.0, 100000.0])
    # network 10 - 2 ln(N/1000) ... lookup 8 - 1 ln(N/1000): equal where ln(N/1000) = 2, N = 1000 e^2
    net = 10 - 2 * np.log(sizes / 1000)
    look = 8 - 1 * np.log(sizes / 1000)
    kind, where = crossing(sizes[:2], net[:2], look[:2])
    assert kind == "projected" and where == pytest.approx(1000 * np.e**2, rel=1e-9)
    assert crossing(sizes, net, look) == ("measured", 100000.0)  # already better at the largest size
    assert crossing(sizes, look + 1, look) == ("projected", float("inf"))  # parallel: never
    net_s, look_s = np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0])
    ratio, low, high = ratio_ci(net_s, look_s)
    assert (ratio, low, high) == (2.0, 2.0, 2.0)  # every resample has the same ratio
    ratio, low, high = ratio_ci(np.array([1.0, 3.0, 2.0, 5.0]), np.array([2.0, 2.0, 2.0, 2.0]))
    assert ratio == pytest.approx(11 / 8) and low < ratio < high
    # 0.9x lookup: 10 - 2x = 0.9 (8 - x) where x = ln(N/1000) = 2.8 / 1.1
    kind, where = crossing(sizes[:2], net[:2], look[:2], ratio=0.9)
    assert kind == "projected" and where == pytest.approx(1000 * np.exp(2.8 / 1.1), rel=1e-9)
    assert crossing(sizes, net, look, ratio=0.9) == ("measured", 100000.0)  # 0.79 vs 0.9 x 3.39 there
    # better at the first size, worse at the second, better at the last: measured from the last on
    assert crossing(sizes, np.array([1.0, 3.0, 1.0]), np.array([2.0, 2.0, 2.0])) == ("measured", 100000.0)
    assert crossing(sizes, np.array([1.0, 1.0, 1.0]), np.array([2.0, 2.0, 2.0])) == ("measured", 1000.0)
    # better only before the largest size: not there at the end, so projected
    assert crossing(sizes[:2], np.array([1.0, 3.0]), np.array([2.0, 2.0]))[0] == "projected"


def test_scaling_points_per_synth_against_lookup_and_the_mean():
    from asp.experiments.scaling import scaling_blocks, scaling_points

    def rows(method, values):  # (synth, lsd, param_mse) per sound
        return [
            {"index": i, "synth": s, "rendered_synth": s, "method": method, "lsd": lsd, "param_mse": mse}
            for i, (s, lsd, mse) in enumerate(values)
        ]

    sounds = ["va", "va", "fm", "fm"]
    table = [
        ("small", {}, rows("small", zip(sounds, [4.0, 6.0, 8.0, 8.0], [0.1, 0.1, 0.2, 0.2]))),
        ("small / nearest", {}, rows("nearest", zip(sounds, [2.0, 3.0, 4.0, 4.0], [0.0] * 4))),
        ("big", {}, rows("big", zip(sounds, [2.0, 2.0, 6.0, 6.0], [0.05, 0.05, 0.1, 0.1]))),
        ("big / nearest", {}, rows("nearest", zip(sounds, [2.0, 2.0, 3.0, 3.0], [0.0] * 4))),
        ("baseline: mean", {}, rows("mean", zip(sounds, [10.0, 10.0, 12.0, 12.0], [0.2, 0.2, 0.4, 0.4]))),
    ]
    sizes = {"small": 100, "big": 10000}
    va = scaling_points(table, sizes, "va")
    assert [p["sounds"] for p in va] == [100, 10000] and [p["n"] for p in va] == [2, 2]
    assert va[0]["network"][0] == 5.0 and va[0]["lookup"][0] == 2.5 and va[0]["ratio"][0] == 2.0
    assert va[1]["vs_mean"] == {"lsd": 0.2, "param_mse": pytest.approx(0.25)}
    assert scaling_points(table, sizes, "fm")[1]["ratio"][0] == 2.0
    assert scaling_points(table, sizes)[0]["network"][0] == 6.5  # every sound
    # va reaches lookup at 10,000 sounds (measured); fm gains 2 LSD per 100x on lookup's 1
    fm = scaling_points(table, sizes, "fm")
    text = "\n".join(b.markdown() for b in scaling_blocks(scaling_points(table, sizes), {"va": va, "fm": fm}))
    assert "va: the network matches lookup from 10,000 training sounds on (measured)" in text
    assert "fm: the network reaches 0.9x lookup at about" in text and "0.25x" in text


@pytest.mark.slow
def test_runner_scaling_rows_get_their_own_lookup(tiny_data, held_out, tmp_path):
    from asp.experiments import run_config

    config = tmp_path / "scaling.json"
    config.write_text(
        json.dumps(
            {
                "include": str(ROOT / "experiments/configs/base.json"),
                "data_dir": str(tiny_data),
                "model_dir": str(tmp_path / "models"),
                "test_dir": str(held_out),
                "latent_size": 4,
                "baselines": ["mean"],
                "report_samples": 0,
                "profiles": {"small": {"epochs": 1, "patience": None, "eval_max_samples": None, "verbose": 0}},
                "rows": [
                    {"label": f"{n} sounds", "approach": "multi", "max_samples": n, "baselines": ["nearest"]}
                    for n in (6, 12)
                ],
            }
        )
    )
    out = run_config(config, "small", results=tmp_path / "results", workers=1)
    table = (out / "table.md").read_text()
    assert "| 6 sounds / nearest |" in table and "| 12 sounds / nearest |" in table
    assert "network / lookup (95% CI)" in table and "| 6 |" in table and "| 12 |" in table
    assert (out / "lsd_vs_sounds.png").is_file()
    # each row's lookup searched only its own training sounds: the 6-sound lookup is never closer
    with open(out / "all_samples.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["rendered_synth"] == r["synth"]]
    lookup = {n: {r["index"]: float(r["lsd"]) for r in rows if r["row"] == f"{n} sounds / nearest"} for n in (6, 12)}
    assert lookup[6].keys() == lookup[12].keys() and lookup[6]
    assert any(lookup[6][k] != lookup[12][k] for k in lookup[6])
    bad = json.loads(config.read_text())
    bad["rows"][0]["baselines"] = ["closest"]
    config.write_text(json.dumps(bad))
    with pytest.raises(ASPError, match="'baselines' names closest; use any of"):
        run_config(config, "small", results=tmp_path / "results2", workers=1)
