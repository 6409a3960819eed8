"""run_inference.py on a tiny trained model: outputs, re-rendering, any input sound, errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_generation.presets import read_preset_file
from data_generation.render import Renderer
from data_generation.spec import load_spec
from training import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_models(tiny_data, tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    for approach, synth in (("multi", None), ("synth", "va")):
        train(
            TrainConfig(
                approach=approach,
                synth=synth,
                data_dir=str(tiny_data),
                model_dir=str(models),
                latent_size=8,
                epochs=1,
                verbose=0,
            )
        )
    return models


def infer(tiny_data, tiny_models, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "run_inference.py", "-md", str(tiny_models), "-dd", str(tiny_data), "-l", "8", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_test_sample_writes_every_output(tiny_data, tiny_models, tmp_path):
    out = tmp_path / "o"
    res = infer(tiny_data, tiny_models, "-s", "0", "-a", "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    names = {p.name for p in out.iterdir()}
    assert {"target.wav", "compare.png"} <= names
    for synth in ("va", "fm", "modal"):
        assert {f"{synth}.wav", f"{synth}.preset.json", f"{synth}.faust.json"} <= names
    assert "closest:" in res.stdout and "LSD" in res.stdout and "model step" in res.stdout
    named = json.loads((out / "fm.preset.json").read_text())
    assert set(named["normalized"]) == set(load_spec("fm").names)
    target, rate = sf.read(out / "target.wav")
    assert rate == 44100 and target.shape == (220500,)


def test_written_preset_renders_the_predicted_wav(tiny_data, tiny_models, tmp_path):
    out = tmp_path / "o"
    assert infer(tiny_data, tiny_models, "-s", "1", "-a", "--out", str(out)).returncode == 0
    note = json.loads(json.dumps(int(np.load(tiny_data / "test_note.npy")[1])))
    for synth in ("va", "modal"):
        spec = load_spec(synth)
        _, presets = read_preset_file(spec, out / f"{synth}.faust.json")
        predicted, _ = sf.read(out / f"{synth}.wav", dtype="float32")
        np.testing.assert_array_equal(Renderer().render(spec, presets[0], note=note), predicted)


def test_own_synth_only_without_all_outputs(tiny_data, tiny_models, tmp_path):
    out = tmp_path / "o"
    res = infer(tiny_data, tiny_models, "--synth", "fm", "--seed", "0", "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    assert {p.name for p in out.glob("*.wav")} == {"target.wav", "fm.wav"}
    res = infer(tiny_data, tiny_models, "-m", "va", "-s", "0", "--out", str(tmp_path / "b"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "b" / "va.wav").is_file()


def test_stereo_22k_two_second_wav_input(tiny_data, tiny_models, tmp_path):
    t = np.arange(2 * 22050) / 22050
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * np.exp(-t)
    sf.write(tmp_path / "in.wav", np.stack([tone, 0.5 * tone], axis=1), 22050)
    res = infer(tiny_data, tiny_models, "--input", str(tmp_path / "in.wav"), "--out", str(tmp_path / "o"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "note 57" in res.stdout  # A3 = 220 Hz, estimated with pyin
    target, rate = sf.read(tmp_path / "o" / "target.wav")
    assert rate == 44100 and target.shape == (220500,)
    assert np.abs(target[2 * 44100 + 10 :]).max() == 0.0  # zero-padded to the training length
    assert {p.name for p in (tmp_path / "o").glob("*.wav")} == {"target.wav", "va.wav", "fm.wav", "modal.wav"}


def test_folder_of_wavs_in_one_process(tiny_data, tiny_models, tmp_path):
    folder = tmp_path / "sounds"
    folder.mkdir()
    for k, f in enumerate((110.0, 440.0)):
        t = np.arange(44100) / 44100
        sf.write(folder / f"s{k}.wav", 0.2 * np.sin(2 * np.pi * f * t), 44100)
    res = infer(tiny_data, tiny_models, "--input", str(folder), "--note", "60", "--out", str(tmp_path / "m"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["s0", "s1"]
    assert res.stdout.count("model step") == 2 and res.stdout.count("loaded in") == 1


def _bad(res, message, out):
    assert res.returncode == 2, res.stderr[-2000:]
    assert message in res.stderr and "Traceback" not in res.stderr
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))


def test_bad_inputs_are_one_line_errors_and_leave_nothing(tiny_data, tiny_models, tmp_path):
    out = tmp_path / "o"
    _bad(infer(tiny_data, tiny_models, "-l", "32", "--out", str(out)), "no trained model vae_multi_32", out)
    _bad(infer(tiny_data, tiny_models, "-m", "va", "-l", "32", "--out", str(out)), "latent size 8, not 32", out)
    _bad(infer(tiny_data, tiny_models, "-m", "single", "--out", str(out)), "no trained model vae_single", out)
    _bad(infer(tiny_data, tiny_models, "-s", "999", "--out", str(out)), "out of range", out)
    _bad(infer(tiny_data, tiny_models, "--synth", "serum", "--out", str(out)), "no test sample matches", out)
    (tmp_path / "noise.wav").write_bytes(b"RIFF not really a wav")
    _bad(infer(tiny_data, tiny_models, "--input", str(tmp_path / "noise.wav"), "--out", str(out)), "cannot read", out)
    sf.write(tmp_path / "empty.wav", np.zeros((0, 1)), 44100)
    _bad(infer(tiny_data, tiny_models, "--input", str(tmp_path / "empty.wav"), "--out", str(out)), "is empty", out)
    sf.write(tmp_path / "silent.wav", np.zeros(44100), 44100)
    _bad(infer(tiny_data, tiny_models, "--input", str(tmp_path / "silent.wav"), "--out", str(out)), "is silent", out)
    sf.write(tmp_path / "short.wav", 0.5 * np.ones(100), 44100)
    _bad(infer(tiny_data, tiny_models, "--input", str(tmp_path / "short.wav"), "--out", str(out)), "too short", out)
    _bad(infer(tiny_data, tiny_models, "--input", str(tmp_path / "nope.wav"), "--out", str(out)), "does not exist", out)
