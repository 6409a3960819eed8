"""Fault injection: the scripts given bad values, damaged files, a full or read-only disk and
interrupted runs.

Every failure must be clean: a non-zero exit (2, never a signal), exactly one ``error:`` line on
stderr besides progress bars and TensorFlow's start-up log, no traceback, no temp files left,
nothing of the user's removed. Runs that can go on (a damaged last checkpoint, a full disk once
space is freed) must go on.
"""

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import asp_io
import training
from asp_io import ASPError, atomic_write, remove_stale_temps, run_cli
from checkpoints import WEIGHTS
from data.dataset import load_split
from data.sound import estimate_note, load_audio
from data_generation.pipeline import Settings, generate
from training import TrainConfig, backup_path, load_model, train

ROOT = Path(__file__).resolve().parent.parent
SYNTHS = ("va", "fm")
# What may share stderr with the error line: TensorFlow's C++ start-up log and tqdm progress bars.
NOISE = re.compile(
    r"^(WARNING: All log messages before absl|[IWEF]\d{4} \d\d:\d\d:\d\d|To enable the following instructions"
    r"|.*\d+%\|)"
)


def run(*args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


def error_line(res) -> str:
    """Asserts a clean failure and returns its one ``error:`` line."""
    assert res.returncode == 2, f"exit {res.returncode}\n{res.stderr[-3000:]}"
    assert "Traceback" not in res.stdout + res.stderr, res.stderr[-3000:]
    lines = [line for line in res.stderr.replace("\r", "\n").splitlines() if line.strip() and not NOISE.match(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr[-3000:]
    return lines[0]


def temps(folder: Path) -> list[Path]:
    return [p for p in Path(folder).rglob("*") if ".tmp" in p.name]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    """A small (or read-only) file system mounted at ``path``: only root can, where mounting is allowed."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root")
    path.mkdir(parents=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if res.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def unwritable(tmp_path):
    """A folder nobody may write to: chmod for a normal user; for root (whom permissions do not
    stop) a read-only file system."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
    else:
        with tmpfs(tmp_path / "ro", "ro,size=1m") as folder:
            yield folder


SETTINGS = Settings(synths=SYNTHS, presets={s: ("random",) for s in SYNTHS}, n=6, notes=(60,), seed=0, hpss=True)
GENERATE = ["data_generation/generate.py", "--synths", *SYNTHS, "--presets", "random", "--n", "6", "--workers", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """12 samples (8 train, 2 valid, 2 test) of two Faust synths; GENERATE makes the same."""
    out = tmp_path_factory.mktemp("faults") / "data"
    generate(SETTINGS, out, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def run_dir(data, tmp_path_factory):
    """A tiny multi run trained for 2 epochs: models/vae_multi_4."""
    models = tmp_path_factory.mktemp("faults_models")
    train(TrainConfig(approach="multi", data_dir=str(data), model_dir=str(models), latent_size=4, epochs=2,
                      batch_size=4, verbose=0))  # fmt: skip
    return models / "vae_multi_4"


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "models" / run_dir.name
    shutil.copytree(run_dir, target)
    return target


TRAIN = ["train_multi.py", "-l", "4", "--batch-size", "4"]


# ---------------------------------------------------------------------------------------
# the one error path: asp_io


def test_atomic_write_leaves_the_old_file_on_any_failure(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("old")
    for interruption in (RuntimeError("disk on fire"), KeyboardInterrupt()):
        with pytest.raises(type(interruption)), atomic_write(path) as f:
            f.write("half of the new")
            raise interruption
        assert path.read_text() == "old" and temps(tmp_path) == []
    with atomic_write(path) as f:
        f.write("new")
    assert path.read_text() == "new" and temps(tmp_path) == []


def test_an_oserror_while_writing_names_the_file_not_the_temp(tmp_path):
    (tmp_path / "x.json").mkdir()  # a folder where the file should go
    with pytest.raises(OSError) as info:
        asp_io.write_json(tmp_path / "x.json", {})
    assert info.value.filename == str(tmp_path / "x.json") and temps(tmp_path) == []


def test_stale_temps_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"train_mels.npy.{int(dead.stdout)}.tmp"
    live = tmp_path / f"config.json.{os.getppid()}.tmp"
    users = [tmp_path / "notes.tmp.txt", tmp_path / f"draft.txt.{int(dead.stdout)}.tmp"]  # not ours: kept
    for p in (stale, live, *users):
        p.write_text("x")
    assert remove_stale_temps(tmp_path, "*.npy", "config.json") == [stale]
    assert live.exists() and all(p.exists() for p in users)


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        (errno.ENOSPC, "no space left on the disk holding /out/x.npy; free some space"),
        (errno.EDQUOT, "quota"),
        (errno.EACCES, "permission denied for /out/x.npy; make it writable"),
        (errno.EROFS, "read-only file system"),
        (errno.ENOTDIR, "part of this path is a file, not a folder"),
        (errno.EISDIR, "is a folder, not a file"),
        (errno.EIO, "disk may be failing"),
    ],
)
def test_run_cli_turns_an_oserror_into_one_line(code, hint, capsys):
    def main():
        raise OSError(code, os.strerror(code), "/out/x.npy")

    with pytest.raises(SystemExit) as info:
        run_cli(main)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ") and hint in err
    assert "/out/x.npy" in err or code == errno.EIO


def test_run_cli_reads_the_errno_hdf5_puts_in_its_text(capsys):
    def main():
        raise OSError("Can't write data (file write failed: errno = 28, error message = 'No space left on device')")

    with pytest.raises(SystemExit):
        run_cli(main)
    assert "no space left" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        (asp_io.positive_int, "0", "--count must be >= 1, got 0"),
        (asp_io.positive_int, "-5", "--count must be >= 1, got -5"),
        (asp_io.positive_int, "2.5", "--count must be an integer >= 1, got '2.5'"),
        (asp_io.nonnegative_int, "-1", "--count must be >= 0, got -1"),
        (asp_io.positive_float, "nan", "--count must be a finite number > 0, got nan"),
        (asp_io.positive_float, "inf", "--count must be a finite number > 0, got inf"),
        (asp_io.positive_float, "0", "--count must be a finite number > 0, got 0"),
        (asp_io.nonnegative_float, "-0.1", "--count must be a finite number >= 0, got -0.1"),
    ],
)
def test_bad_numbers_are_one_line_usage_errors(kind, text, message, capsys):
    parser = asp_io.ArgumentParser(prog="tool.py")
    parser.add_argument("--count", type=kind)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--count", text])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err == f"error: {message} (see tool.py --help)\n"


# ---------------------------------------------------------------------------------------
# generate.py and the other data-generation scripts


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n", "0"], "--n must be >= 1, got 0"),
        (["--n", "-5"], "--n must be >= 1, got -5"),
        (["--n", "2", "--workers", "0"], "--workers must be >= 1"),
    ],
)
def test_generate_refuses_counts_below_one(args, message, tmp_path):
    res = run("data_generation/generate.py", "--synths", "va", *args, "--out", tmp_path / "d")
    assert message in error_line(res)
    assert not (tmp_path / "d").exists()


def test_generate_into_a_file_or_below_one(tmp_path):
    user_file = tmp_path / "notes.txt"
    user_file.write_text("mine")
    assert "is a file, not a folder" in error_line(run(*GENERATE, "--out", user_file))
    assert "Not a directory" in error_line(run(*GENERATE, "--out", user_file / "d"))
    assert user_file.read_text() == "mine"


def test_generate_into_a_folder_nobody_may_write(unwritable):
    assert "cannot write to output folder" in error_line(run(*GENERATE, "--out", unwritable / "d"))
    assert list(unwritable.iterdir()) == []


def test_generate_on_a_full_disk_fails_cleanly_then_resumes_once_space_is_freed(data, tmp_path):
    with tmpfs(tmp_path / "disk", "size=8m") as disk:
        filler = disk / "filler.bin"
        filler.write_bytes(b"\0" * (5 << 20))  # 3 MB left: the shards fit, the assembled dataset does not
        out = disk / "d"
        line = error_line(run(*GENERATE, "--out", out))
        assert "no space left on the disk holding" in line and str(out) in line
        assert temps(disk) == [] and not (out / "manifest.json").exists()
        filler.unlink()
        res = run(*GENERATE, "--out", out)
        assert res.returncode == 0, res.stderr[-2000:]
        for name in ("train_mels.npy", "test_fm_params.npy", "valid_synth.npy"):
            np.testing.assert_array_equal(np.load(out / name), np.load(data / name))  # same as uninterrupted
        assert temps(disk) == []


def test_render_presets_into_a_file(tmp_path):
    user_file = tmp_path / "renders"
    user_file.write_text("mine")
    line = error_line(run("data_generation/render_presets.py", "--synth", "va", "--limit", "1", "--out", user_file))
    assert "is a file, not a folder" in line and user_file.read_text() == "mine"


def test_demo_sound_into_a_folder_and_view_parameters_spec_into_a_folder(tmp_path):
    assert "is a folder" in error_line(run("data_generation/demo_sound.py", tmp_path))
    line = error_line(run("data_generation/view_parameters.py", "--synth", "va", "--write-spec", tmp_path))
    assert "is a folder" in line and list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------
# sound files


def test_nan_or_inf_samples_in_a_wav_are_refused_by_name(tmp_path):
    audio = np.sin(np.linspace(0, 2000, 44100)).astype(np.float32)
    for bad in (np.nan, np.inf):
        audio[100:110] = bad
        path = tmp_path / f"bad_{bad}.wav"
        sf.write(path, audio, 44100, subtype="FLOAT")
        with pytest.raises(ASPError, match=rf"{re.escape(str(path))} holds 10 non-finite samples"):
            load_audio(path, 5.0)
    with pytest.raises(ASPError, match="non-finite"):
        estimate_note(audio)


# ---------------------------------------------------------------------------------------
# training: values, datasets, configs


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--epochs", "0", "--epochs must be >= 1, got 0"),
        ("--latent-size", "0", "-l/--latent-size must be >= 1, got 0"),
        ("--batch-size", "-1", "--batch-size must be >= 1, got -1"),
        ("--max-samples", "-1", "--max-samples must be >= 1, got -1"),
        ("--lr", "nan", "--lr must be a finite number > 0, got nan"),
        ("--lr", "inf", "--lr must be a finite number > 0, got inf"),
        ("--lr", "0", "--lr must be a finite number > 0, got 0"),
        ("--patience", "0", "--patience must be >= 1"),
        ("--seed", "-3", "--seed must be >= 0"),
        ("--beta", "nan", "--beta must be a finite number >= 0"),
    ],
)
def test_training_flags_out_of_range_are_usage_errors(flag, value, message, capsys):
    with pytest.raises(SystemExit) as info:
        training.parser("train", approach="multi").parse_args([flag, value])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1


def test_training_cli_refuses_zero_epochs_and_a_nan_learning_rate(data, tmp_path):
    for flag, value in (("--epochs", "0"), ("--lr", "nan")):
        line = error_line(run(*TRAIN, "-d", data, "--model-dir", tmp_path, flag, value))
        assert flag in line
    assert list(tmp_path.iterdir()) == []


def test_nan_in_a_dataset_is_refused_naming_the_file(data, tmp_path):
    bad = tmp_path / "data"
    shutil.copytree(data, bad)
    params = np.load(bad / "train_fm_params.npy")
    row = int(np.flatnonzero(np.load(bad / "train_synth.npy") == "fm")[0])
    params[row, 0] = np.nan
    np.save(bad / "train_fm_params.npy", params)
    line = error_line(run(*TRAIN, "-d", bad, "--model-dir", tmp_path / "m", "--epochs", "1"))
    assert f"{bad / 'train_fm_params.npy'} holds NaN or infinite values (sample {row})" in line
    assert not (tmp_path / "m").exists()
    mels = np.load(data / "train_mels.npy")
    mels[3, 5, 7] = np.inf
    np.save(bad / "train_mels.npy", mels)
    np.save(bad / "train_fm_params.npy", np.load(data / "train_fm_params.npy"))
    with pytest.raises(ASPError, match=r"train_mels.npy holds NaN or infinite values \(sample 3\)"):
        train(TrainConfig(approach="multi", data_dir=str(bad), model_dir=str(tmp_path / "m"), latent_size=4, verbose=0))


def test_truncated_or_empty_npy_is_reported_as_such_not_as_pickle(data, tmp_path):
    bad = tmp_path / "data"
    shutil.copytree(data, bad)
    with open(bad / "train_mels.npy", "r+b") as f:
        f.truncate(os.path.getsize(bad / "train_mels.npy") // 2)
    line = error_line(run(*TRAIN, "-d", bad, "--model-dir", tmp_path / "m", "--epochs", "1"))
    assert "train_mels.npy is truncated" in line and "pickle" not in line
    (bad / "valid_va_params.npy").write_bytes(b"")
    with pytest.raises(ASPError, match="valid_va_params.npy is empty; regenerate"):
        load_split(bad, "valid")


@pytest.mark.parametrize(
    "manifest",
    [[1, 2], {"fingerprint": "x"}, {"fingerprint": "x", "synths": "va"}, {"fingerprint": 3, "synths": []}],
)
def test_damaged_manifest(manifest, data, tmp_path):
    bad = tmp_path / "data"
    shutil.copytree(data, bad)
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ASPError, match="manifest .* is damaged"):
        load_split(bad, "train")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.pop("latent_size"), "'latent_size' is missing"),
        (lambda c: c.update(latent_size="64"), "'latent_size' should be int, not str"),
        (lambda c: c.update(epochs_done=True), "'epochs_done' should be int, not bool"),
        (lambda c: c.update(synths={"va": 1}), "'synths' should be list, not dict"),
        (lambda c: c.update(synths=[3]), "every entry of 'synths' must be a spec"),
        (lambda c: c.update(best_loss="low"), "'best_loss' should be int or float or null"),
    ],
)
def test_damaged_run_config(change, message, run_dir, tmp_path):
    config = json.loads((run_dir / "config.json").read_text())
    change(config)
    bad = tmp_path / run_dir.name
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ASPError, match=f"run config .* is damaged: {re.escape(message)}"):
        load_model(bad)


def test_damaged_run_config_at_resume_is_one_line(data, run_dir, tmp_path):
    bad = copy_run(run_dir, tmp_path)
    (bad / "config.json").write_text('{"approach": "multi"')
    line = error_line(run(*TRAIN, "-d", data, "--model-dir", bad.parent, "--epochs", "3"))
    assert "run config" in line and "is not valid JSON" in line and "--fresh" in line


def test_a_file_as_model_dir(data, tmp_path):
    user_file = tmp_path / "models"
    user_file.write_text("mine")
    assert "part of this path is a file" in error_line(run(*TRAIN, "-d", data, "--model-dir", user_file))
    assert user_file.read_text() == "mine"


# ---------------------------------------------------------------------------------------
# training: checkpoints


def test_checkpoints_are_whole_files_with_the_previous_one_kept(run_dir):
    assert sorted(p.name for p in (run_dir / "backup").iterdir()) == [
        "epoch_00001.weights.h5",
        "epoch_00002.weights.h5",
    ]
    assert temps(run_dir) == []


def test_a_run_killed_while_saving_resumes_from_the_checkpoint_before(data, run_dir, tmp_path):
    """What a save cut short leaves: a torn last checkpoint (a writer without the rename) and a
    temp file. The rerun resumes from the epoch before and clears the temp."""
    folder = copy_run(run_dir, tmp_path)
    last = backup_path(folder, 2)
    with open(last, "r+b") as f:
        f.truncate(os.path.getsize(last) // 3)
    stale = folder / f"{WEIGHTS}.99999999.tmp.weights.h5"
    stale.write_bytes(b"\0" * 100)
    res = run(*TRAIN, "-d", data, "--model-dir", folder.parent, "--epochs", "3")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert "backup/epoch_00002.weights.h5 cannot be loaded" in res.stdout
    assert "resuming from backup/epoch_00001.weights.h5 (epoch 1)" in res.stdout
    assert "Epoch 2/3" in res.stdout and "Epoch 1/3" not in res.stdout
    assert json.loads((folder / "config.json").read_text())["epochs_done"] == 3
    assert [line.split(",")[0] for line in (folder / "log.csv").read_text().splitlines()[1:]] == ["0", "1", "2"]
    assert not stale.exists() and temps(folder) == []


def test_a_run_whose_checkpoints_are_all_damaged_says_so_and_keeps_them(data, run_dir, tmp_path):
    folder = copy_run(run_dir, tmp_path)
    files = [backup_path(folder, 1), backup_path(folder, 2), folder / WEIGHTS]
    for p in files:
        with open(p, "r+b") as f:
            f.truncate(1000 if p.name != WEIGHTS else 0)
    line = error_line(run(*TRAIN, "-d", data, "--model-dir", folder.parent, "--epochs", "3"))
    assert f"cannot resume {folder} after 2 epochs" in line and "pass --fresh" in line
    assert [p.stat().st_size for p in files] == [1000, 1000, 0]  # nothing deleted


def test_damaged_or_nan_best_weights_at_inference(run_dir, tmp_path):
    bad = copy_run(run_dir, tmp_path)
    (bad / WEIGHTS).write_bytes(b"")
    with pytest.raises(ASPError, match="cannot be loaded .* retrain the run with --fresh"):
        load_model(bad)
    model, _ = load_model(run_dir)
    model.encoder.weights[0].assign(np.full(model.encoder.weights[0].shape, np.nan, np.float32))
    model.save_weights(bad / WEIGHTS)
    with pytest.raises(ASPError, match="holds NaN or infinite weights"):
        load_model(bad)


def test_a_run_that_goes_nan_fails_and_keeps_its_last_good_checkpoint(data, run_dir, tmp_path, monkeypatch):
    folder = copy_run(run_dir, tmp_path)
    before = {p.name: digest(p) for p in [folder / WEIGHTS, *(folder / "backup").iterdir()]}
    poisoned = tmp_path / "data"
    shutil.copytree(data, poisoned)  # same manifest: the run resumes on it
    mels = np.load(poisoned / "train_mels.npy")
    mels[:] = np.nan
    np.save(poisoned / "train_mels.npy", mels)
    monkeypatch.setattr(training, "check_finite", lambda *args, **kwargs: None)  # let the NaN through
    cfg = TrainConfig(approach="multi", data_dir=str(poisoned), model_dir=str(folder.parent), latent_size=4, epochs=4,
                      batch_size=4, verbose=0)  # fmt: skip
    with pytest.raises(ASPError, match=r"diverged: the loss became nan in epoch 3.*last good checkpoint \(epoch 2\)"):
        train(cfg)
    assert {p.name: digest(p) for p in [folder / WEIGHTS, *(folder / "backup").iterdir()]} == before
    assert json.loads((folder / "config.json").read_text())["epochs_done"] == 2
    assert temps(folder) == []


def test_training_on_a_full_disk_fails_cleanly(data, tmp_path):
    with tmpfs(tmp_path / "disk", "size=3m") as disk:  # room for config.json, not for the weights
        line = error_line(run(*TRAIN, "-d", data, "--model-dir", disk, "--epochs", "1"))
        assert "no space left on the disk holding" in line and "epoch_00001.weights.h5" in line
        assert temps(disk) == []
