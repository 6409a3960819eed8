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
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import FAULT_SYNTHS
from conftest import run_script as run

from asp import cli, files, locks, training
from asp.checkpoints import WEIGHTS
from asp.cli import run_cli
from asp.errors import ASPError
from asp.files import atomic_write, remove_stale_temps
from asp.training import TrainConfig, backup_path, train
from data.dataset import load_split
from data.sound import estimate_note, load_audio
from data_generation.presets import random_presets, read_preset_file
from data_generation.spec import load_spec
from models import load_model

ROOT = Path(__file__).resolve().parent.parent
SYNTHS = FAULT_SYNTHS
# What may share stderr with the error line: TensorFlow's C++ start-up log and tqdm progress bars.
NOISE = re.compile(
    r"^(WARNING: All log messages before absl|[IWEF]\d{4} \d\d:\d\d:\d\d|To enable the following instructions"
    r"|.*\d+%\|)"
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


GENERATE = ["data_generation/generate.py", "--synths", *SYNTHS, "--presets", "random", "--n", "6", "--workers", "1"]


@pytest.fixture(scope="module")
def data(faults_data):
    """conftest's faults_data: 12 samples of two Faust synths; GENERATE makes the same."""
    return faults_data


@pytest.fixture(scope="module")
def run_dir(faults_runs):
    """A tiny multi run trained for 2 epochs (conftest's faults_runs): models/vae_multi_4_paper."""
    return faults_runs[1] / "vae_multi_4_paper"


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "models" / run_dir.name
    shutil.copytree(run_dir, target)
    return target


TRAIN = ["train_multi.py", "-l", "4", "--batch-size", "4"]


# ---------------------------------------------------------------------------------------
# the one error path: asp.errors and asp.cli


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
        files.write_json(tmp_path / "x.json", {})
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


def test_folder_lock_names_its_holder_and_is_released_when_the_run_ends(tmp_path):
    with locks.folder_lock(tmp_path, what="another generate.py run", fix="choose another --out"):
        holder = rf"\(pid {os.getpid()}, started \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d: .*\)"
        with pytest.raises(ASPError, match=rf"is in use by another generate.py run {holder}; wait for it to finish"):
            with locks.folder_lock(tmp_path, what="another generate.py run"):
                pass
    with locks.folder_lock(tmp_path):  # released
        pass
    assert [p.name for p in tmp_path.iterdir()] == [".lock"]  # the lock file stays: it is ours


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
        (cli.positive_int, "0", "--count must be >= 1, got 0"),
        (cli.positive_int, "-5", "--count must be >= 1, got -5"),
        (cli.positive_int, "2.5", "--count must be an integer >= 1, got '2.5'"),
        (cli.nonnegative_int, "-1", "--count must be >= 0, got -1"),
        (cli.positive_float, "nan", "--count must be a finite number > 0, got nan"),
        (cli.positive_float, "inf", "--count must be a finite number > 0, got inf"),
        (cli.positive_float, "0", "--count must be a finite number > 0, got 0"),
        (cli.nonnegative_float, "-0.1", "--count must be a finite number >= 0, got -0.1"),
    ],
)
def test_bad_numbers_are_one_line_usage_errors(kind, text, message, capsys):
    parser = cli.ArgumentParser(prog="tool.py")
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


@pytest.mark.slow
def test_generate_into_a_file_or_below_one(tmp_path):
    user_file = tmp_path / "notes.txt"
    user_file.write_text("mine")
    assert "is a file, not a folder" in error_line(run(*GENERATE, "--out", user_file))
    assert "Not a directory" in error_line(run(*GENERATE, "--out", user_file / "d"))
    assert user_file.read_text() == "mine"


def test_generate_into_a_folder_nobody_may_write(unwritable):
    assert "cannot write to output folder" in error_line(run(*GENERATE, "--out", unwritable / "d"))
    assert list(unwritable.iterdir()) == []


@pytest.mark.slow
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


@pytest.mark.slow
def test_training_cli_refuses_zero_epochs_and_a_nan_learning_rate(data, tmp_path):
    for flag, value in (("--epochs", "0"), ("--lr", "nan")):
        line = error_line(run(*TRAIN, "-d", data, "--model-dir", tmp_path, flag, value))
        assert flag in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
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


@pytest.mark.slow
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
@pytest.mark.slow
def test_damaged_run_config(change, message, run_dir, tmp_path):
    config = json.loads((run_dir / "config.json").read_text())
    change(config)
    bad = tmp_path / run_dir.name
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ASPError, match=f"run config .* is damaged: {re.escape(message)}"):
        load_model(bad)


@pytest.mark.slow
def test_damaged_run_config_at_resume_is_one_line(data, run_dir, tmp_path):
    bad = copy_run(run_dir, tmp_path)
    (bad / "config.json").write_text('{"approach": "multi"')
    line = error_line(run(*TRAIN, "-d", data, "--model-dir", bad.parent, "--epochs", "3"))
    assert "run config" in line and "is not valid JSON" in line and "--fresh" in line


@pytest.mark.slow
def test_a_file_as_model_dir(data, tmp_path):
    user_file = tmp_path / "models"
    user_file.write_text("mine")
    assert "part of this path is a file" in error_line(run(*TRAIN, "-d", data, "--model-dir", user_file))
    assert user_file.read_text() == "mine"


# ---------------------------------------------------------------------------------------
# training: checkpoints


@pytest.mark.slow
def test_checkpoints_are_whole_files_with_the_previous_one_kept(run_dir):
    assert sorted(p.name for p in (run_dir / "backup").iterdir()) == [
        "epoch_00001.weights.h5",
        "epoch_00002.weights.h5",
    ]
    assert temps(run_dir) == []


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_run_whose_checkpoints_are_all_damaged_says_so_and_keeps_them(data, run_dir, tmp_path):
    folder = copy_run(run_dir, tmp_path)
    files = [backup_path(folder, 1), backup_path(folder, 2), folder / WEIGHTS]
    for p in files:
        with open(p, "r+b") as f:
            f.truncate(1000 if p.name != WEIGHTS else 0)
    line = error_line(run(*TRAIN, "-d", data, "--model-dir", folder.parent, "--epochs", "3"))
    assert f"cannot resume {folder} after 2 epochs" in line and "pass --fresh" in line
    assert [p.stat().st_size for p in files] == [1000, 1000, 0]  # nothing deleted


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_run_that_goes_nan_fails_and_keeps_its_last_good_checkpoint(data, run_dir, tmp_path, monkeypatch):
    folder = copy_run(run_dir, tmp_path)
    before = {p.name: digest(p) for p in [folder / WEIGHTS, *(folder / "backup").iterdir()]}
    poisoned = tmp_path / "data"
    shutil.copytree(data, poisoned)  # same manifest: the run resumes on it
    mels = np.load(poisoned / "train_mels.npy")
    mels[:] = np.nan
    np.save(poisoned / "train_mels.npy", mels)
    monkeypatch.setattr(training.planning, "check_finite", lambda *args, **kwargs: None)  # let the NaN through
    cfg = TrainConfig(approach="multi", data_dir=str(poisoned), model_dir=str(folder.parent), latent_size=4, epochs=4,
                      batch_size=4, verbose=0)  # fmt: skip
    with pytest.raises(ASPError, match=r"diverged: the loss became nan in epoch 3.*last good checkpoint \(epoch 2\)"):
        train(cfg)
    assert {p.name: digest(p) for p in [folder / WEIGHTS, *(folder / "backup").iterdir()]} == before
    assert json.loads((folder / "config.json").read_text())["epochs_done"] == 2
    assert temps(folder) == []


@pytest.mark.slow
def test_training_on_a_full_disk_fails_cleanly(data, tmp_path):
    with tmpfs(tmp_path / "disk", "size=3m") as disk:  # room for config.json, not for the weights
        line = error_line(run(*TRAIN, "-d", data, "--model-dir", disk, "--epochs", "1"))
        assert "no space left on the disk holding" in line and "epoch_00001.weights.h5" in line
        assert temps(disk) == []


# ---------------------------------------------------------------------------------------
# concurrency and processes left behind


def spawn(*args) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(
        [sys.executable, *map(str, args)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def workers_of(pid: int) -> list[int]:
    """The multiprocessing workers (spawned) whose parent is ``pid``, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in command and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
def test_two_generate_runs_on_one_folder_the_second_fails_at_once_naming_the_first(tmp_path):
    out = tmp_path / "d"
    first = spawn(*GENERATE[:-2], "--workers", "1", "--n", "200", "--out", out)  # long enough to be caught running
    try:
        wait_for(lambda: f'"pid": {first.pid},' in (out / ".lock").read_text() if (out / ".lock").exists() else 0,
                 120, "the first run to hold the folder")  # fmt: skip
        second = run(*GENERATE, "--out", out, timeout=120)
        line = error_line(second)
        assert f"{out} is in use by another generate.py run (pid {first.pid}, started " in line
        assert "wait for it to finish, or choose another --out" in line
        assert first.poll() is None  # the first run goes on undisturbed
    finally:
        first.kill()
        first.wait()
    # killed, it holds nothing: the kernel released the lock, so the next run takes the folder
    res = run(*GENERATE[:-2], "--workers", "1", "--n", "200", "--max-shards", "1", "--out", out, timeout=120)
    assert res.returncode == 3, res.stderr[-2000:]
    assert temps(out) == []


@pytest.mark.slow
def test_generate_workers_die_when_their_parent_is_killed(tmp_path):
    parent = spawn(*GENERATE[:-2], "--workers", "2", "--n", "400", "--out", tmp_path / "d")
    try:
        workers = wait_for(lambda: len(workers_of(parent.pid)) == 2 and workers_of(parent.pid), 120, "2 workers")
        time.sleep(2)  # into their first shards
        assert all(alive(pid) for pid in workers)
    finally:
        parent.kill()  # kill -9: no chance to shut the pool down
        parent.wait()
    wait_for(lambda: not any(alive(pid) for pid in workers), 5, f"workers {workers} to exit after their parent")


@pytest.mark.slow
def test_worker_pool_workers_die_when_their_parent_is_killed():
    script = (
        "import time; from asp.parallel import WorkerPool; pool = WorkerPool(2); "
        "print('ready', flush=True); pool.map(time.sleep, [(120,), (120,)])"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "ready"
        workers = wait_for(lambda: len(workers_of(parent.pid)) == 2 and workers_of(parent.pid), 60, "2 workers")
        time.sleep(1)  # each is in its two-minute task
    finally:
        parent.kill()
        parent.wait()
    wait_for(lambda: not any(alive(pid) for pid in workers), 5, f"workers {workers} to exit after their parent")


@pytest.mark.slow
def test_a_second_training_run_on_one_folder_is_refused(data, run_dir, tmp_path):
    folder = copy_run(run_dir, tmp_path)
    with locks.folder_lock(folder, what="another training run"):  # this process trains there
        line = error_line(run(*TRAIN, "-d", data, "--model-dir", folder.parent, "--epochs", "3"))
    assert f"{folder} is in use by another training run (pid {os.getpid()}, started " in line
    assert json.loads((folder / "config.json").read_text())["epochs_done"] == 2


# ---------------------------------------------------------------------------------------
# preset files: every format the toolkit writes, and bad values in them


def preset_files(folder: Path) -> dict[str, tuple[str, np.ndarray, Path]]:
    """A preset of va, amsynth and calf_monosynth written by inference's own writer: format ->
    (synth, the preset, the file)."""
    from asp.inference import write_preset_outputs

    files = {}
    for synth, suffix in (("va", ".faust.json"), ("amsynth", ".bank"), ("calf_monosynth", ".params.json")):
        spec = load_spec(synth)
        preset = random_presets(spec, 1, np.random.default_rng(1))[0]
        back = write_preset_outputs(folder, spec, preset, f"my {synth}")
        files[suffix] = (synth, back, folder / f"{synth}{suffix}")
        files[f"{synth}.preset.json"] = (synth, back, folder / f"{synth}.preset.json")
    return files


def test_read_preset_file_reads_every_format_the_toolkit_writes(tmp_path):
    files = preset_files(tmp_path)
    assert len(files) == 6
    for synth, preset, path in files.values():
        names, presets = read_preset_file(load_spec(synth), path)
        assert names == [path.name if path.name.endswith(".params.json") else f"my {synth}"]  # (it has no name)
        np.testing.assert_allclose(presets[0], preset, atol=2e-6, err_msg=path.name)
    with pytest.raises(ASPError, match="is an amsynth bank, but synth 'va' is not amsynth"):
        read_preset_file(load_spec("va"), files[".bank"][2])
    with pytest.raises(ASPError, match="is for synth 'amsynth', not 'va'"):
        read_preset_file(load_spec("va"), files["amsynth.preset.json"][2])
    (tmp_path / "other.json").write_text('{"synth": "va", "tempo": 120}')
    with pytest.raises(ASPError, match="is not a preset file of this toolkit; give a preset file"):
        read_preset_file(load_spec("va"), tmp_path / "other.json")


@pytest.mark.slow
def test_render_presets_takes_a_preset_json_written_by_inference(tmp_path):
    _, preset, path = preset_files(tmp_path)["va.preset.json"]
    res = run("data_generation/render_presets.py", "--synth", "va", "--preset-file", path, "--out", tmp_path / "r")
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [".asp-written.json", "000_my_va.wav"]  # + its record


def _poison(path: Path, value) -> str:
    """Sets the first parameter of a preset file written by ``preset_files`` to ``value``;
    returns the parameter's name."""
    if path.suffix == ".bank":
        lines = path.read_text().splitlines()
        k = next(i for i, line in enumerate(lines) if line.startswith("<parameter>"))
        name = lines[k].split()[1]
        lines[k] = f"<parameter> {name} {value}"
        path.write_text("\n".join(lines) + "\n")
        return name
    data = json.loads(path.read_text())
    if "presets" in data:
        values = data["presets"][0]["values"]
    elif "normalized" in data:
        values = data["normalized"]
    else:
        entry = data["normalized_parameters"][0]
        entry["value"] = value
        path.write_text(json.dumps(data))
        return next(p.name for p in load_spec(data["synth"]).params if p.index == entry["index"])  # not its label
    name = next(iter(values))
    values[name] = value
    path.write_text(json.dumps(data))
    return name


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e9, -1e9])
@pytest.mark.parametrize("fmt", [".faust.json", ".bank", ".params.json", "va.preset.json"])
def test_nan_or_out_of_range_values_in_preset_files_are_refused_by_name(fmt, value, tmp_path):
    synth, _, path = preset_files(tmp_path)[fmt]
    name = _poison(path, value)
    with pytest.raises(ASPError, match=rf"parameter '{re.escape(name)}' .*(finite number|outside its range)"):
        read_preset_file(load_spec(synth), path)


def test_render_presets_refuses_a_nan_preset_naming_the_parameter(tmp_path):
    _, _, path = preset_files(tmp_path)[".faust.json"]
    name = _poison(path, float("nan"))
    line = error_line(
        run("data_generation/render_presets.py", "--synth", "va", "--preset-file", path, "--out", tmp_path / "r")
    )
    assert f"preset file {path}, preset 0 (my va): parameter {name!r} of 'va' has value nan" in line
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------------
# training: changed settings on an existing run, synths without samples


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lr": 0.01}, f"lr = {TrainConfig.lr!r}, not 0.01 (--lr)"),
        ({"batch_size": 2}, "batch_size = 4, not 2 (--batch-size)"),
        ({"seed": 1}, "seed = 0, not 1 (--seed)"),
        ({"max_samples": 6}, "max_samples = None, not 6 (--max-samples)"),
        ({"lr": 0.01, "seed": 1}, f"lr = {TrainConfig.lr!r}, not 0.01 (--lr); seed = 0, not 1 (--seed)"),
    ],
)
@pytest.mark.slow
def test_changed_settings_on_an_existing_run_are_refused_not_ignored(change, message, data, run_dir, tmp_path):
    folder = copy_run(run_dir, tmp_path)
    before = digest(folder / "config.json")
    cfg = TrainConfig(approach="multi", data_dir=str(data), model_dir=str(folder.parent), latent_size=4, epochs=2,
                      batch_size=4, verbose=0)  # fmt: skip
    for key, value in change.items():
        setattr(cfg, key, value)
    with pytest.raises(ASPError, match=re.escape(message) + r".*pass --fresh to start it over.*another --model-dir"):
        train(cfg)  # epochs=2 is done: this used to say "nothing to do"
    assert digest(folder / "config.json") == before


@pytest.mark.slow
def test_changed_learning_rate_at_the_command_line_is_one_line(data, run_dir, tmp_path):
    folder = copy_run(run_dir, tmp_path)
    line = error_line(run(*TRAIN, "-d", data, "--model-dir", folder.parent, "--epochs", "2", "--lr", "0.01"))
    assert f"lr = {TrainConfig.lr!r}, not 0.01 (--lr)" in line and "--fresh" in line


@pytest.fixture(scope="module")
def no_fm_in_train(data, tmp_path_factory):
    """``data`` whose train split holds no fm sample (its fm rows relabelled va)."""
    folder = tmp_path_factory.mktemp("no_fm") / "data"
    shutil.copytree(data, folder)
    synth = np.load(folder / "train_synth.npy")
    np.save(folder / "train_synth.npy", np.where(synth == "fm", "va", synth))
    return folder


@pytest.mark.parametrize(
    ("approach", "extra", "message"),
    [
        ("synth", {"synth": "fm"}, r"has no samples of fm \(train samples: fm 0\): a model cannot learn"),
        ("multi", {"synths": ("va", "fm")}, r"has no samples of fm \(train samples: va 8, fm 0\)"),
        ("multi", {}, "has no samples of fm .*leave it out with --synths"),
        ("single", {}, "has no samples of fm"),
    ],
)
def test_a_synth_without_training_samples_is_refused(approach, extra, message, no_fm_in_train, tmp_path):
    cfg = TrainConfig(approach=approach, data_dir=str(no_fm_in_train), model_dir=str(tmp_path / "m"), latent_size=4,
                      verbose=0, **extra)  # fmt: skip
    with pytest.raises(ASPError, match=message):
        train(cfg)
    assert not (tmp_path / "m").exists()


def test_max_samples_that_leave_a_synth_without_samples(data, tmp_path):
    cfg = TrainConfig(approach="multi", data_dir=str(data), model_dir=str(tmp_path), max_samples=1, verbose=0)
    with pytest.raises(ASPError, match="--max-samples 1 leaves no training samples of (va|fm); raise it"):
        train(cfg)


@pytest.mark.slow
def test_train_synth_cli_for_a_synth_without_training_samples(no_fm_in_train, tmp_path):
    res = run("train_synth.py", "--synth", "fm", "-d", no_fm_in_train, "--model-dir", tmp_path / "m", "--epochs", "1")
    assert "has no samples of fm" in error_line(res)
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------------------------------
# experiment configs


BASE = ROOT / "experiments/configs/base.json"


def config_file(folder: Path, name: str, data) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a": {"include": "a.json", "rows": [{"approach": "multi"}]}}, r"include loop: \S*a.json -> \S*a.json"),
        (
            {"a": {"include": "b.json", "rows": []}, "b": {"include": "c.json"}, "c": {"include": "b.json"}},
            r"include loop: \S*b.json -> \S*c.json -> \S*b.json; remove one of the includes",
        ),
        ({"a": {"include": str(BASE)}}, "needs 'rows': a non-empty list"),
        ({"a": {"include": str(BASE), "rows": {"approach": "multi"}}}, "needs 'rows'"),
        ({"a": {"include": str(BASE), "rows": [{"label": "x"}]}}, "row 0 must be an object with an 'approach'"),
        ({"a": {"include": str(BASE), "rows": ["multi"]}}, "row 0 must be an object with an 'approach'"),
        (
            {"a": {"include": str(BASE), "rows": [{"approach": "multi", "latent": 8}]}},
            "row 0 has an unknown key 'latent'",
        ),
        (
            {"a": {"include": str(BASE), "rows": [{"approach": "multi", "latent_size": 0}]}},
            "row 0: 'latent_size' must be an integer >= 1, got 0",
        ),
        (
            {"a": {"include": str(BASE), "rows": [{"approach": "synth", "eval_synths": "va"}]}},
            "'eval_synths' must be a non-empty list of synth names",
        ),
        ({"a": {"include": str(BASE), "latent_size": "64", "rows": [{"approach": "multi"}]}}, "'latent_size' must be"),
        ({"a": {"include": str(BASE), "epoch": 3, "rows": [{"approach": "multi"}]}}, "unknown key 'epoch'"),
        ({"a": {"include": str(BASE), "lr": float("nan"), "rows": [{"approach": "multi"}]}}, "'lr' must be a finite"),
        (
            {"a": {"include": str(BASE), "profiles": {"small": {"epochs": -1}}, "rows": [{"approach": "multi"}]}},
            "profile 'small': 'epochs' must be an integer >= 1, got -1",
        ),
        ({"a": {"include": str(BASE), "profiles": ["small"], "rows": [{"approach": "multi"}]}}, "'profiles' must map"),
        ({"a": {"include": 7, "rows": [{"approach": "multi"}]}}, "'include' must be the path of a config file"),
        ({"a": {"include": str(BASE), "name": "../x", "rows": [{"approach": "multi"}]}}, "'name' must be a folder"),
        ({"a": [1, 2]}, "must hold a JSON object, not list"),
        ({"a": {"include": "missing.json", "rows": [{"approach": "multi"}]}}, "cannot read experiment config"),
    ],
)
def test_bad_experiment_configs(files, message, tmp_path):
    from asp.experiments import load_config

    for name, data in files.items():
        config_file(tmp_path, name, data)
    with pytest.raises(ASPError, match=message):
        load_config(tmp_path / "a.json")


def test_settings_missing_after_merging_name_the_key(tmp_path):
    from asp.experiments import load_config, resolve

    config = {"latent_size": 4, "param_loss": "mse", "seed": 0, "baselines": [], "profiles": {"small": {"epochs": 1}},
              "rows": [{"approach": "multi"}]}  # fmt: skip
    path = config_file(tmp_path, "a", config)
    with pytest.raises(ASPError, match=r"config 'a' \(profile small\) lacks 'data_dir' \(a folder path\)"):
        resolve(load_config(path), "small")


def test_a_config_that_fails_leaves_no_empty_result_folder(data, tmp_path):
    from asp.experiments import run_config

    results = tmp_path / "results"
    mine = results / "mine"  # the user's: stays
    mine.mkdir(parents=True)
    config = {"include": str(BASE), "data_dir": str(data), "test_dir": None, "model_dir": str(tmp_path / "models"),
              "latent_size": 4, "max_samples": 1, "rows": [{"approach": "multi"}]}  # fmt: skip
    path = config_file(tmp_path, "tiny", config)
    with pytest.raises(ASPError, match="--max-samples 1 leaves no training samples"):  # fails while training
        run_config(path, "small", results=results, workers=1)
    assert [p.name for p in results.iterdir()] == ["mine"] and not (tmp_path / "models").exists()
    shutil.rmtree(results)
    with pytest.raises(ASPError):
        run_config(path, "small", results=results, workers=1)
    assert not results.exists()  # created by the call, empty: removed
    config.update(max_samples=None, rows=[{"approach": "multi", "train_synths": ["va", "serum"]}])
    config_file(tmp_path, "tiny", config)
    with pytest.raises(ASPError, match=r"row 0: 'train_synths' names serum, which \S+ lacks \(it has va, fm\)"):
        run_config(path, "small", results=results, workers=1)  # refused before anything is written
    assert not results.exists()


@pytest.mark.slow
def test_experiment_runner_cli_on_an_include_loop(tmp_path):
    config_file(tmp_path, "a", {"include": "b.json", "rows": [{"approach": "multi"}]})
    config_file(tmp_path, "b", {"include": "a.json"})
    line = error_line(run("experiments/run.py", tmp_path / "a.json", "--results", tmp_path / "results"))
    assert f"include loop: {tmp_path / 'a.json'} -> {tmp_path / 'b.json'} -> {tmp_path / 'a.json'}" in line
    assert not (tmp_path / "results").exists()
