"""Fault injection, the last campaign's cases (issue 34): a save cut short at the end of a run,
--workers beyond the machine, inputs whose outputs collide, odd files (a named pipe, a constant
offset, samples of 1e20), budgets without bounds, SIGTERM, --out ., a full disk, and data or
spec files that were silently accepted. The helpers and the rules are tests/test_faults.py's:
a failure is exit 2 with one ``error:`` line, no traceback, nothing half-written.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import FAULT_SYNTHS
from conftest import run_script as run
from test_faults import error_line, temps, tmpfs, wait_for

from asp import files, parallel
from asp.api import output_names
from asp.checkpoints import WEIGHTS
from asp.errors import ASPError
from asp.training import TrainConfig, backup_path, train
from data.sound import load_audio
from data_generation.presets import read_preset_file
from data_generation.spec import load_spec
from models import load_model

ROOT = Path(__file__).resolve().parent.parent
SYNTHS = FAULT_SYNTHS
TRAIN = ["train_multi.py", "-l", "4", "--batch-size", "4"]


@pytest.fixture(scope="module")
def data(faults_data):
    """conftest's faults_data: 12 samples (8 train, 2 valid, 2 test) of two Faust synths."""
    return faults_data


@pytest.fixture(scope="module")
def models(faults_runs):
    """A folder of trained runs holding vae_multi_4_paper, trained for 1 epoch (conftest's faults_runs)."""
    return faults_runs[0]


def infer(data, models, *args, cwd=ROOT, timeout=300):
    return run("run_inference.py", "-md", models, "-dd", data, *args, cwd=cwd, timeout=timeout)


def tone(path: Path, hz: float, seconds: float = 1.0, **write) -> Path:
    t = np.arange(int(seconds * 44100)) / 44100
    sf.write(path, 0.3 * np.sin(2 * np.pi * hz * t) * np.exp(-2 * t), 44100, **write)
    return path


# ---------------------------------------------------------------------------------------
# 1. a run killed while its final weights were written


@pytest.mark.slow
def test_a_run_killed_while_writing_its_best_weights_finishes_the_save(data, models, tmp_path):
    """What a kill -9 leaves the moment model.weights.h5's temp file appears in epoch 1: the
    epoch's backup whole, no best weights, config.json as the run started (0 epochs), a temp
    file. The rerun finishes the save from the backup and says so; the next has nothing to do."""
    folder = tmp_path / "models" / "vae_multi_4_paper"
    shutil.copytree(models / "vae_multi_4_paper", folder)
    assert backup_path(folder, 1).is_file()
    (folder / WEIGHTS).unlink()
    (folder / "log.csv").unlink()
    config = json.loads((folder / "config.json").read_text())
    config.update(epochs_done=0, best_loss=None, best_epoch=None)
    config.pop("last_losses")
    (folder / "config.json").write_text(json.dumps(config))
    (folder / f"{WEIGHTS}.99999999.tmp.weights.h5").write_bytes(b"\0" * 100)

    res = run(*TRAIN, "-d", data, "--model-dir", folder.parent, "--epochs", "1")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "the run was stopped while saving epoch 1: finishing its save" in res.stdout
    assert "saved" in res.stdout and "at epoch 1), 1 epochs done" in res.stdout
    config = json.loads((folder / "config.json").read_text())
    assert (config["epochs_done"], config["best_epoch"]) == (1, 1) and np.isfinite(config["best_loss"])
    assert (folder / WEIGHTS).is_file() and temps(folder) == []
    load_model(folder)  # inference can use it
    again = run(*TRAIN, "-d", data, "--model-dir", folder.parent, "--epochs", "1")
    assert again.returncode == 0 and "already has 1 epochs; nothing to do" in again.stdout


# ---------------------------------------------------------------------------------------
# 2. --workers beyond what the machine holds


def test_cap_workers_takes_cores_and_free_memory(monkeypatch, capsys):
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    monkeypatch.setattr(parallel, "available_memory", lambda: 20 * 10**9)
    assert parallel.cap_workers(100000) == 2
    assert capsys.readouterr().out == "--workers 100000: using 2 (2 cores, 20.0 GB free, ~400 MB per worker)\n"
    assert parallel.cap_workers(2) == 2 and parallel.cap_workers(None) == 2 and capsys.readouterr().out == ""
    monkeypatch.setattr(parallel, "usable_cores", lambda: 64)
    monkeypatch.setattr(parallel, "available_memory", lambda: 10**9)  # 2 workers of 400 MB
    assert parallel.cap_workers(None) == 2 and "using 2 (64 cores, 1.0 GB free" in capsys.readouterr().out
    monkeypatch.setattr(parallel, "available_memory", lambda: 0)
    assert parallel.cap_workers(8) == 1  # always one, in this process


@pytest.mark.slow
def test_generate_with_100000_workers_uses_what_the_machine_holds(tmp_path):
    assert hasattr(parallel, "cap_workers"), "--workers has no upper bound"  # (as below)
    res = run("data_generation/generate.py", "--synths", "va", "--presets", "random", "--n", "2", "--workers",
              "100000", "--out", tmp_path / "d")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert re.search(r"^--workers 100000: using \d+ \(\d+ cores, [\d.]+ GB free", res.stdout, re.M), res.stdout


@pytest.mark.slow
def test_run_inference_with_100000_workers_uses_what_the_machine_holds(data, models, tmp_path):
    # without a cap the search would start 100000 processes until memory runs out: not tried then
    assert hasattr(parallel, "cap_workers"), "--workers has no upper bound"
    wav = tone(tmp_path / "a.wav", 220)
    res = infer(data, models, "--input", wav, "--out", tmp_path / "o", "--refine-renders", "20", "--refine-synths",
                "1", "--workers", "100000")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    (line,) = [line for line in res.stdout.splitlines() if line.startswith("--workers 100000: using ")]
    assert int(line.split()[3]) <= os.cpu_count()


# ---------------------------------------------------------------------------------------
# 3. two inputs with one stem


def test_output_names_are_unique_and_deterministic():
    files = [Path("d/Tone.flac"), Path("d/bell.wav"), Path("d/tone-wav.ogg"), Path("d/tone.wav")]
    assert output_names(files) == {
        files[0]: "Tone-flac",
        files[1]: "bell",
        files[2]: "tone-wav",
        files[3]: "tone-wav-2",  # its name is taken by another file's stem
    }
    assert output_names(files) == output_names(list(files))


@pytest.mark.slow
def test_two_inputs_with_one_stem_get_a_folder_each(data, models, tmp_path):
    sounds = tmp_path / "sounds"
    sounds.mkdir()
    low, high = tone(sounds / "tone.wav", 110), tone(sounds / "tone.flac", 880)
    res = infer(data, models, "--input", sounds, "--note", "60", "--out", tmp_path / "m", "--no-refine")
    assert res.returncode == 0, res.stderr[-2000:]
    out = tmp_path / "m"
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "tone-flac", "tone-wav"]
    for folder, source in (("tone-wav", low), ("tone-flac", high)):
        assert json.loads((out / folder / "match.json").read_text())["input"] == str(source)
    index = (out / "index.html").read_text()
    assert 'href="tone-wav/report.html"' in index and 'href="tone-flac/report.html"' in index


# ---------------------------------------------------------------------------------------
# 4. a reversed note range among others


@pytest.mark.slow
def test_generate_refuses_a_reversed_note_range_among_others(tmp_path):
    for notes in ("60-50,72", "60-50"):
        line = error_line(run("data_generation/generate.py", "--synths", "va", "--n", "2", "--notes", notes,
                              "--out", tmp_path / "d"))  # fmt: skip
        assert "the range 60-50 runs backwards; write it 50-60" in line
    assert not (tmp_path / "d").exists()


# ---------------------------------------------------------------------------------------
# 5. a named pipe as --input


@pytest.mark.slow
def test_a_named_pipe_as_input_is_refused_at_once(data, models, tmp_path):
    fifo = tmp_path / "fifo.wav"
    os.mkfifo(fifo)
    line = error_line(infer(data, models, "--input", fifo, "--out", tmp_path / "o", timeout=60))
    assert f"audio file {fifo} is not a regular file (a named pipe" in line
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------
# 6. search budgets without bounds, SIGTERM


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--refine-renders", "1000000000000", "at most 1000000 renders per synth"),
        ("--refine", "1e9", "at most 86400 seconds (a day) per synth"),
    ],
)
@pytest.mark.slow
def test_a_search_budget_beyond_sense_is_refused(flag, value, message, data, models, tmp_path):
    wav = tone(tmp_path / "a.wav", 220)
    res = infer(data, models, "--input", wav, "--out", tmp_path / "o", flag, value, timeout=120)  # (not a search)
    assert message in error_line(res) and "loaded" not in res.stdout  # before the model loads
    assert not (tmp_path / "o").exists()


def test_sigterm_cleans_up_like_an_exception(tmp_path):
    script = (
        "import sys, time\nfrom pathlib import Path\nfrom asp.cli import run_cli\nfrom asp.files import atomic_folder\n"
        "def main():\n    with atomic_folder(Path(sys.argv[1])):\n        print('ready', flush=True)\n"
        "        time.sleep(60)\nrun_cli(main)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "out")], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "ready" and temps(tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and err == "terminated\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_sigterm_during_a_search_leaves_no_temp_folder(data, models, tmp_path):
    wav = tone(tmp_path / "a.wav", 220)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, str(ROOT / "run_inference.py"), "-md", str(models), "-dd", str(data), "--input",
               str(wav), "--out", str(tmp_path / "o"), "--refine-renders", "1000000", "--workers", "1"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(tmp_path.glob(".o.*.tmp/va.preset.json")), 120, "the search to start")
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143 and "Traceback" not in err and err.strip().endswith("terminated")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


# ---------------------------------------------------------------------------------------
# 7. tracebacks: a negative seed, --out ., a full disk, mels of another shape


@pytest.mark.parametrize(
    "command",
    [
        ["run_inference.py", "--seed", "-1"],
        ["experiments/evaluate.py", "x", "--out", "o", "--seed", "-1"],
        ["experiments/audibility.py", "x", "--out", "o", "--seed", "-1"],
    ],
)
@pytest.mark.slow
def test_a_negative_seed_is_a_usage_error(command, tmp_path):
    assert "--seed must be >= 0, got -1" in error_line(run(*command, cwd=tmp_path))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_out_dot_writes_into_a_named_child_of_the_current_folder(data, models, tmp_path):
    wav = tone(tmp_path / "bell.wav", 440)
    here = tmp_path / "here"
    here.mkdir()
    res = infer(data, models, "--input", wav, "--out", ".", "--no-refine", cwd=here)
    assert res.returncode == 0, res.stderr[-2000:]
    assert [p.name for p in here.iterdir()] == ["bell"] and (here / "bell" / "report.html").is_file()
    from asp.files import atomic_folder

    with pytest.raises(ASPError, match="cannot write . as a new folder"), atomic_folder(Path(".")):
        pass


@pytest.mark.slow
def test_a_full_disk_while_writing_sounds_is_one_line(data, models, tmp_path):
    wav = tone(tmp_path / "a.wav", 220)
    with tmpfs(tmp_path / "disk", "size=1m") as disk:  # room for target.wav (882 kB), not for the next
        out = disk / "o"
        line = error_line(infer(data, models, "--input", wav, "--out", out, "--no-refine"))
        assert f"no space left on the disk holding {out}/" in line and ".tmp" not in line
        assert list(disk.iterdir()) == []


def test_write_sound_says_which_disk_is_full(tmp_path, monkeypatch):
    """What libsndfile says on a full disk ("System error.", no errno) as one line, without root."""

    def full_disk(*args, **kwargs):
        raise sf.LibsndfileError(2, prefix=f"Error writing {args[0]}: ")

    monkeypatch.setattr(files.sf, "write", full_disk)

    def disk(free_blocks):
        return lambda path: os.statvfs_result((4096, 4096, 10**6, free_blocks, free_blocks, 0, 0, 0, 0, 255))

    monkeypatch.setattr(files.os, "statvfs", disk(0))
    with pytest.raises(ASPError, match=f"no space left on the disk holding {re.escape(str(tmp_path))}/a.wav; free"):
        files.write_sound(tmp_path / ".a.wav.1.tmp", np.zeros(10), 44100, format="WAV", shown=tmp_path / "a.wav")
    monkeypatch.setattr(files.os, "statvfs", disk(10**6))  # room: another failure, said as libsndfile says it
    with pytest.raises(ASPError, match=r"cannot write sound file .*a.wav \(Error writing .*System error.\)"):
        files.write_sound(tmp_path / "a.wav", np.zeros(10), 44100)


@pytest.fixture(scope="module")
def short_mels(data, tmp_path_factory):
    """``data`` whose mels are 128 x 400 (another render length)."""
    folder = tmp_path_factory.mktemp("short") / "data"
    shutil.copytree(data, folder)
    for split in ("train", "valid", "test"):
        np.save(folder / f"{split}_mels.npy", np.ascontiguousarray(np.load(folder / f"{split}_mels.npy")[:, :, :400]))
    return folder


@pytest.mark.slow
def test_mels_of_another_shape_are_one_line_naming_the_shape(short_mels, models, tmp_path):
    wanted = "holds 128x400 mel spectrograms, but the model takes 128x431"
    line = error_line(infer(short_mels, models, "-s", "0", "--out", tmp_path / "o"))
    assert f"{short_mels / 'test_mels.npy'} {wanted}" in line and "regenerate the dataset" in line
    line = error_line(run("experiments/evaluate.py", models / "vae_multi_4_paper", "-d", short_mels, "--out",
                          tmp_path / "e", "--baselines", "none"))  # fmt: skip
    assert f"{short_mels / 'test_mels.npy'} {wanted}" in line
    line = error_line(run(*TRAIN, "-d", short_mels, "--model-dir", tmp_path / "m", "--epochs", "1"))
    assert f"{short_mels}/train_mels.npy {wanted}" in line
    assert not (tmp_path / "o").exists() and not (tmp_path / "m").exists()


# ---------------------------------------------------------------------------------------
# 8. silently accepted: silent training data, --random 0, a DC offset, a class between two,
#    a misspelt spec key


@pytest.mark.slow
def test_training_on_all_zero_spectrograms_is_refused(data, tmp_path):
    blank = tmp_path / "data"
    shutil.copytree(data, blank)
    np.save(blank / "train_mels.npy", np.zeros_like(np.load(data / "train_mels.npy")))
    line = error_line(run(*TRAIN, "-d", blank, "--model-dir", tmp_path / "m", "--epochs", "1"))
    assert f"every spectrogram of the train split ({blank / 'train_mels.npy'}) is all zeros" in line
    shutil.copy(data / "train_mels.npy", blank / "train_mels.npy")
    np.save(blank / "valid_mels.npy", np.zeros_like(np.load(data / "valid_mels.npy")))
    with pytest.raises(ASPError, match="every spectrogram of the valid split"):
        train(TrainConfig(approach="multi", data_dir=str(blank), model_dir=str(tmp_path / "m"), verbose=0))
    assert not (tmp_path / "m").exists()


def test_render_presets_refuses_zero_random_presets(tmp_path):
    line = error_line(run("data_generation/render_presets.py", "--synth", "va", "--random", "0", "--out", tmp_path))
    assert "--random must be >= 1, got 0" in line and list(tmp_path.iterdir()) == []


def test_a_constant_dc_offset_is_silence(tmp_path):
    path = tmp_path / "dc.wav"
    sf.write(path, np.full(44100, 0.3), 44100)
    with pytest.raises(ASPError, match=r"dc.wav is silent \(only a constant offset of 0.3\)"):
        load_audio(path, 5.0)
    t = np.arange(44100) / 44100
    sf.write(path, 0.3 + 0.1 * np.sin(2 * np.pi * 220 * t), 44100)  # a sound on an offset: a sound
    assert np.abs(load_audio(path, 5.0)).max() > 0.3


def test_a_categorical_value_between_two_classes_is_refused(tmp_path):
    path = tmp_path / "p.faust.json"
    path.write_text(json.dumps({"synth": "va", "presets": [{"name": "x", "values": {"osc1_wave": 1.5}}]}))
    with pytest.raises(ASPError, match="'osc1_wave' of 'va' has value 1.5, between two of its classes; it takes "
                                      r"0, 1, 2, 3, 4 \(native units\)"):  # fmt: skip
        read_preset_file(load_spec("va"), path)
    path.write_text(json.dumps({"synth": "va", "presets": [{"name": "x", "values": {"osc1_wave": 2}}]}))
    assert read_preset_file(load_spec("va"), path)[1][0][load_spec("va").names.index("osc1_wave")] == 0.5


def test_a_spec_with_an_unknown_key_is_refused_naming_it(tmp_path):
    spec = json.loads(load_spec("va").path.read_text())
    spec["source"] = str(load_spec("va").resolve_source())
    for where, key in ((spec, "renders"), (spec["parameters"][2], "defualt")):
        where[key] = 1
        path = tmp_path / "mine.json"
        path.write_text(json.dumps(spec))
        with pytest.raises(ASPError, match=f"unknown key '{key}'; a (spec|parameter) holds name, "):
            load_spec(path)
        del where[key]


# ---------------------------------------------------------------------------------------
# 9. messages


@pytest.mark.slow
def test_a_spectrogram_beyond_float_is_blamed_on_the_input(data, models, tmp_path):
    loud = tmp_path / "loud.wav"
    t = np.arange(44100) / 44100
    sf.write(loud, (1e20 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 44100, subtype="FLOAT")
    line = error_line(infer(data, models, "--input", loud, "--out", tmp_path / "o", "--no-refine"))
    assert f"audio file {loud} has samples up to 1e+20" in line and ".tmp" not in line


@pytest.mark.slow
def test_model_not_found_names_real_runs_not_placeholders(data, models, tmp_path):
    assert "-l/--latent-size must be >= 1, got 0" in error_line(infer(data, models, "-l", "0"))
    line = error_line(infer(data, models, "-m", "foo"))
    assert "<" not in line and f"no trained model vae_foo_64_paper in {models}, nor another foo run" in line
    assert "trained runs there: vae_multi_4_paper; -m takes multi, single or the synth of a trained baseline" in line
    line = error_line(infer(data, models, "-m", "single", "-l", "8"))
    assert "<" not in line and "vae_single_8_paper" in line and "nor another single run of latent size 8" in line


@pytest.mark.slow
def test_a_symlink_loop_and_a_file_as_a_folder_are_told_apart(data, models, tmp_path):
    loop = tmp_path / "loop.wav"
    loop.symlink_to(loop)
    wav = tone(tmp_path / "a.wav", 220)
    lines = {
        "loop": error_line(infer(data, models, "--input", loop)),
        "file": error_line(infer(data, models, "--input", wav / "x.wav")),
        "missing": error_line(infer(data, models, "--input", tmp_path / "nope.wav")),
        "data loop": error_line(run(*TRAIN, "-d", loop, "--model-dir", tmp_path / "m")),
        "data file": error_line(run(*TRAIN, "-d", wav, "--model-dir", tmp_path / "m")),
        "models file": error_line(run("run_inference.py", "-md", wav)),
    }
    assert f"{loop} is a symbolic link that loops" in lines["loop"]
    assert f"{wav / 'x.wav'}: part of this path is a file, not a folder" in lines["file"]
    assert "does not exist" in lines["missing"]
    assert f"data folder {loop} is a symbolic link that loops" in lines["data loop"]
    assert f"data folder {wav} is a file, not a folder" in lines["data file"]
    assert f"model folder {wav} is a file, not a folder" in lines["models file"]
    assert len(set(lines.values())) == len(lines)


@pytest.mark.slow
def test_a_bad_refine_synth_is_refused_before_the_model_loads(data, models, tmp_path):
    wav = tone(tmp_path / "a.wav", 220)
    res = infer(data, models, "--input", wav, "--out", tmp_path / "o", "--refine-synths", "serum")
    assert "cannot refine serum: the model predicts va, fm" in error_line(res) and "loaded" not in res.stdout
