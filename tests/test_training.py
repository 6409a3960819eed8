"""Training scripts on a tiny dataset: checkpoints, reloading, resume, seeds and errors."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_script as run

from asp.errors import ASPError
from asp.training import TrainConfig, collapse_warning, mean_vectors, read_config, train
from data.dataset import load_split
from models import load_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("script", "extra", "folder", "heads"),
    [
        ("train_multi.py", ["-l", "8"], "vae_multi_8_paper", ["va", "fm", "modal"]),
        ("train_single.py", ["-l", "8", "--param-loss", "mixed"], "vae_single_8_paper", ["va", "fm", "modal"]),
        ("train_synth.py", ["-l", "8", "--synth", "fm"], "vae_fm_8_paper", ["fm"]),
    ],
)
@pytest.mark.slow
def test_one_epoch_writes_a_checkpoint_that_reloads_to_identical_predictions(
    tiny_data, tmp_path, script, extra, folder, heads
):
    res = run(script, "-d", str(tiny_data), "--model-dir", str(tmp_path), "--epochs", "1", *extra)
    assert res.returncode == 0, res.stderr[-2000:]
    run_dir = tmp_path / folder
    config = read_config(run_dir)
    assert config["epochs_done"] == 1 and config["latent_size"] == 8 and config["seed"] == 0
    assert [s["name"] for s in config["synths"]] == heads
    assert config["data_fingerprint"] == json.loads((tiny_data / "manifest.json").read_text())["fingerprint"]
    assert (run_dir / "log.csv").is_file() and (run_dir / "tensorboard").is_dir()
    mels = np.asarray(load_split(tiny_data, "test").mels)
    first, _ = load_model(run_dir)
    second, _ = load_model(run_dir)
    a, b = first.predict_vectors(mels), second.predict_vectors(mels)
    assert a.keys() == set(heads)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.slow
def test_resume_continues_at_the_right_epoch(tiny_data, tmp_path):
    cfg = dict(approach="multi", data_dir=str(tiny_data), model_dir=str(tmp_path), latent_size=4, verbose=0)
    train(TrainConfig(epochs=1, **cfg))
    done = train(TrainConfig(epochs=3, **cfg))
    assert done["epochs_done"] == 3
    epochs = [
        int(line.split(",")[0]) for line in (tmp_path / "vae_multi_4_paper" / "log.csv").read_text().splitlines()[1:]
    ]
    assert epochs == [0, 1, 2]
    again = train(TrainConfig(epochs=3, **cfg))  # finished: nothing to do
    assert again["epochs_done"] == 3


def test_a_resumed_run_shuffles_as_the_uninterrupted_one(tiny_data):
    """A single run's training stream takes its shuffle from the epoch Keras is in (the run's
    epoch clock), not from how many epochs the stream has served: resumed after epoch 1, epoch 2
    gets the order an uninterrupted run's epoch 2 gets."""
    from asp.training.distributed import Cluster
    from asp.training.stream import batch_keys
    from data.dataset import load_split

    split = load_split(tiny_data, "train")
    rows = np.arange(len(split.mels))
    keys = batch_keys("multi", split.synths)

    def epochs(stream, n):  # each batch's rows (as their mels' sums), per epoch served
        return [[np.asarray(b["mel"]).sum(axis=(1, 2)).round(3).tolist() for b in stream] for _ in range(n)]

    uninterrupted = Cluster("none", None)
    stream = uninterrupted.make_stream(split, rows, keys, batch_size=4, shuffle=True, seed=0)
    orders = []
    for e in range(2):
        uninterrupted.clock["epoch"] = e  # what the run's EpochClock callback does
        orders += epochs(stream, 1)
    assert orders[0] != orders[1]  # reshuffled
    resumed = Cluster("none", None)
    assert [type(c).__name__ for c in resumed.callbacks()] == ["EpochClock"]
    resumed.callbacks()[0].on_epoch_begin(1)  # Keras resumes at epoch index 1
    again = resumed.make_stream(split, rows, keys, batch_size=4, shuffle=True, seed=0)
    assert epochs(again, 1)[0] == orders[1]


@pytest.mark.slow
def test_killed_run_restarts_from_its_last_epoch(tiny_data, tmp_path):
    cmd = [
        sys.executable,
        "train_multi.py",
        "-d",
        str(tiny_data),
        "--model-dir",
        str(tmp_path),
        "-l",
        "4",
        "--epochs",
        "40",
        "--batch-size",
        "4",
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env
    )
    log = tmp_path / "vae_multi_4_paper" / "log.csv"
    deadline = time.time() + 300
    while time.time() < deadline and (not log.is_file() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = read_config(tmp_path / "vae_multi_4_paper")["epochs_done"]
    assert 2 <= killed_at < 40
    res = subprocess.run(
        [*cmd[:-4], "--epochs", str(killed_at + 2), "--batch-size", "4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"Epoch {killed_at + 1}/{killed_at + 2}" in res.stdout
    assert "Epoch 1/" not in res.stdout
    assert read_config(tmp_path / "vae_multi_4_paper")["epochs_done"] == killed_at + 2


@pytest.mark.slow
def test_seeded_runs_reproduce_the_same_losses(tiny_data, tmp_path):
    cfg = dict(approach="single", data_dir=str(tiny_data), latent_size=4, epochs=2, seed=5, verbose=0)
    one = train(TrainConfig(model_dir=str(tmp_path / "a"), **cfg))
    two = train(TrainConfig(model_dir=str(tmp_path / "b"), **cfg))
    assert one["last_losses"] == two["last_losses"]
    other = train(TrainConfig(model_dir=str(tmp_path / "c"), **{**cfg, "seed": 6}))
    assert other["last_losses"] != one["last_losses"]


def _one_line_error(res, message):
    assert res.returncode == 2, res.stderr[-2000:]
    assert message in res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_unknown_synth_says_which_synths_the_dataset_has(tiny_data, tmp_path):
    res = run("train_serum.py", "-d", str(tiny_data), "--model-dir", str(tmp_path), "--epochs", "1")
    _one_line_error(res, "has synths va, fm, modal but no serum samples")
    assert "train_synth.py --synth NAME" in res.stderr
    assert not (tmp_path / "vae_serum_64_paper").exists()


@pytest.mark.slow
def test_runs_with_other_latent_sizes_do_not_collide(tiny_data, tmp_path):
    assert (
        run(
            "train_single.py", "-d", str(tiny_data), "--model-dir", str(tmp_path), "--epochs", "1", "-l", "4"
        ).returncode
        == 0
    )
    res = run("train_single.py", "-d", str(tiny_data), "--model-dir", str(tmp_path), "--epochs", "1", "-l", "8")
    assert res.returncode == 0, res.stderr[-2000:]  # another run, in its own folder: no collision
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vae_single_4_paper", "vae_single_8_paper"]
    with pytest.raises(Exception, match="latent size 4, not 8"):
        load_model(tmp_path / "vae_single_4_paper", latent_size=8)


@pytest.mark.slow
def test_data_errors(tiny_data, tmp_path):
    res = run("train_multi.py", "-d", str(tmp_path / "missing"), "--epochs", "1")
    _one_line_error(res, "does not exist")
    partial = tmp_path / "partial"
    shutil.copytree(tiny_data, partial)
    (partial / "train_fm_mask.npy").unlink()
    _one_line_error(run("train_multi.py", "-d", str(partial), "--epochs", "1"), "train_fm_mask.npy is missing")
    shutil.copy(tiny_data / "train_fm_mask.npy", partial / "train_fm_mask.npy")
    n = len(np.load(partial / "train_synth.npy"))
    np.save(partial / "train_va_params.npy", np.zeros((n, 7), np.float32))
    _one_line_error(run("train_multi.py", "-d", str(partial), "--epochs", "1"), "has 7 values per sample")
    np.save(partial / "train_va_params.npy", np.zeros((n + 1, 50), np.float32))
    _one_line_error(run("train_multi.py", "-d", str(partial), "--epochs", "1"), "different datasets")
    _one_line_error(run("train_multi.py", "-d", str(tiny_data), "--epochs", "0"), "--epochs must be >= 1")


def test_inference_side_errors(tmp_path):
    with pytest.raises(Exception, match="no trained model"):
        load_model(tmp_path / "nothing")


@pytest.mark.slow
def test_loss_settings_are_recorded_and_checked(tiny_data, tmp_path):
    res = run(
        "train_multi.py", "-d", str(tiny_data), "--model-dir", str(tmp_path), "--epochs", "1", "-l", "4", "--paper-loss"
    )
    assert res.returncode == 0, res.stderr[-2000:]
    config = read_config(tmp_path / "vae_multi_4_paper")
    assert (config["beta"], config["free_bits"], config["kl_warmup_epochs"], config["param_weight"]) == (
        1.0,
        0.0,
        100,
        1.0,
    )
    assert config["kl_warmup_steps"] == 100 * config["steps_per_epoch"]
    # another loss on the same run folder is refused, not mixed in
    res = run("train_multi.py", "-d", str(tiny_data), "--model-dir", str(tmp_path), "--epochs", "2", "-l", "4")
    _one_line_error(res, f"beta = 1.0, not {TrainConfig.beta!r}")
    for flag, value, message in (
        ("--beta", "-1", "--beta must be a finite number >= 0"),
        ("--beta", "nan", "--beta must be a finite number >= 0"),
        ("--free-bits", "-0.5", "--free-bits must be a finite number >= 0"),
        ("--kl-warmup-epochs", "-3", "--kl-warmup-epochs must be >= 0"),
        ("--param-weight", "0", "--param-weight must be a finite number > 0"),
    ):
        res = run("train_multi.py", "-d", str(tiny_data), "--model-dir", str(tmp_path / "bad"), flag, value)
        _one_line_error(res, message)
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_every_epoch_logs_how_much_the_latent_carries(tiny_data, tmp_path):
    train(TrainConfig(approach="multi", data_dir=str(tiny_data), model_dir=str(tmp_path), latent_size=4, epochs=2))
    rows = (tmp_path / "vae_multi_4_paper" / "log.csv").read_text().splitlines()
    header = rows[0].split(",")
    for key in ("val_active_dims", "val_kl_per_dim", "val_param_vs_mean", "val_param_mse_fm", "val_mean_mse_fm"):
        assert key in header
    values = [dict(zip(header, r.split(","))) for r in rows[1:]]
    assert len(values) == 2
    for v in values:
        assert 0 <= float(v["val_active_dims"]) <= 4
        ratio = float(v["val_param_mse_fm"]) / float(v["val_mean_mse_fm"])
        assert float(v["val_param_vs_mean_fm"]) == pytest.approx(ratio, rel=1e-6)
    assert any(
        p.name.startswith("events") for p in (tmp_path / "vae_multi_4_paper" / "tensorboard" / "latent").iterdir()
    )


def test_mean_vectors_and_the_collapse_warning_known_answers(tiny_data):
    split = load_split(tiny_data, "train")
    means = mean_vectors(split, np.arange(len(split.synth)), ["va", "fm", "modal"])
    fm_rows = np.flatnonzero(split.synth == "fm")
    np.testing.assert_allclose(means["fm"], np.asarray(split.params["fm"])[fm_rows].mean(0))
    counts = [int((split.synth == s).sum()) for s in ("va", "fm", "modal")]
    padded = np.asarray(split.params_single).mean(0)  # each sample's own vector, zero-padded
    np.testing.assert_allclose(means["single"], padded, atol=1e-6)
    assert sum(counts) == len(split.synth)
    collapsed = {"param_vs_mean": 1.02, "active_dims": 0.0, "kl_per_dim": 0.001}
    assert "collapsed" in collapse_warning(collapsed) and "--beta" in collapse_warning(collapsed)
    slow = {"param_vs_mean": 1.0, "active_dims": 12.0, "kl_per_dim": 3.0}
    assert "1.00x the training-mean" in collapse_warning(slow) and "collapsed" not in collapse_warning(slow)
    assert collapse_warning({"param_vs_mean": 0.7, "active_dims": 12.0, "kl_per_dim": 3.0}) is None
    assert collapse_warning({"param_vs_mean": float("nan"), "active_dims": 0.0, "kl_per_dim": 0.0}) is None


@pytest.mark.slow
def test_a_note_input_run_records_it_and_evaluates_exports_and_matches_with_notes(tiny_data, tmp_path):
    import asp
    from asp.evaluation.evaluate import evaluate
    from asp.training.export import export

    cfg = dict(approach="multi", data_dir=str(tiny_data), model_dir=str(tmp_path / "m"), latent_size=4, verbose=0)
    train(TrainConfig(epochs=1, note_input=True, **cfg))
    run_dir = tmp_path / "m" / "vae_multi_4_paper"
    assert read_config(run_dir)["note_input"] is True
    with pytest.raises(ASPError, match="other settings .*note_input = True"):  # resumed only with its own setting
        train(TrainConfig(epochs=2, **cfg))
    model, _ = load_model(run_dir)
    test = load_split(tiny_data, "test")
    mels, notes = np.asarray(test.mels), np.asarray(test.note)
    expected = model.predict_vectors(mels, notes=notes)
    rows = evaluate(run_dir, tiny_data, tmp_path / "ev", baselines=(), workers=1, progress=False)
    assert len(rows) == len(test.synth) and all(np.isfinite(r["lsd"]) for r in rows)
    export(run_dir, tiny_data, tmp_path / "export", dtype="float32")
    exported, _ = load_model(tmp_path / "export")
    again = exported.predict_vectors(mels, notes=notes)
    assert all(np.allclose(expected[s], again[s], atol=1e-6) for s in expected)
    found = asp.match(0, model=run_dir, data_dir=tiny_data, out=tmp_path / "match", workers=1, plot=False)
    assert found.matched[0]["results"]
