"""run_inference.py on a tiny trained model: outputs, re-rendering, any input sound, errors."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asp.search import SearchSpace
from data_generation.presets import read_preset_file
from data_generation.render import Renderer
from data_generation.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_test_sample_without_an_hpss_label_shows_none(tiny_data, tiny_models, tmp_path):
    """Data made with `generate.py --no-hpss` labels every sound 0: no "hpss 0", and --hpss says why."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    np.save(data / "test_hpss.npy", np.zeros_like(np.load(data / "test_hpss.npy")))
    res = infer(data, tiny_models, "-s", "0", "--no-refine", "--out", str(tmp_path / "o"))
    assert res.returncode == 0, res.stderr[-2000:]
    (head,) = [line for line in res.stdout.splitlines() if "true synth" in line]
    assert "(preset " in head and "hpss" not in head
    assert "HPSS bin" not in (tmp_path / "o" / "report.html").read_text()
    res = infer(data, tiny_models, "--hpss", "80", "--no-refine", "--out", str(tmp_path / "p"))
    assert res.returncode == 2 and "has no HPSS labels (generated with --no-hpss); drop --hpss" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "p").exists()
    labelled = infer(tiny_data, tiny_models, "-s", "0", "--no-refine", "--out", str(tmp_path / "q"))
    assert ", hpss " in labelled.stdout and "HPSS bin" in (tmp_path / "q" / "report.html").read_text()


@pytest.mark.slow
def test_written_preset_renders_the_predicted_wav(tiny_data, tiny_models, tmp_path):
    out = tmp_path / "o"
    assert infer(tiny_data, tiny_models, "-s", "1", "-a", "--out", str(out)).returncode == 0
    note = json.loads(json.dumps(int(np.load(tiny_data / "test_note.npy")[1])))
    for synth in ("va", "modal"):
        spec = load_spec(synth)
        _, presets = read_preset_file(spec, out / f"{synth}.faust.json")
        predicted, _ = sf.read(out / f"{synth}.wav", dtype="float32")
        np.testing.assert_array_equal(Renderer().render(spec, presets[0], note=note), predicted)


@pytest.mark.slow
def test_own_synth_only_without_all_outputs(tiny_data, tiny_models, tmp_path):
    out = tmp_path / "o"
    res = infer(tiny_data, tiny_models, "--synth", "fm", "--seed", "0", "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    assert {p.name for p in out.glob("*.wav")} == {"target.wav", "fm.wav"}
    res = infer(tiny_data, tiny_models, "-m", "va", "-s", "0", "--out", str(tmp_path / "b"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "b" / "va.wav").is_file()


@pytest.mark.slow
def test_stereo_22k_two_second_wav_input(tiny_data, tiny_models, tmp_path):
    t = np.arange(2 * 22050) / 22050
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * np.exp(-t)
    sf.write(tmp_path / "in.wav", np.stack([tone, 0.5 * tone], axis=1), 22050)
    res = infer(
        tiny_data, tiny_models, "--input", str(tmp_path / "in.wav"), "--out", str(tmp_path / "o"), "--no-refine"
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "note 57" in res.stdout  # A3 = 220 Hz, estimated with pyin
    target, rate = sf.read(tmp_path / "o" / "target.wav")
    assert rate == 44100 and target.shape == (220500,)
    start = 11264  # the onset moved to where the synths start their notes: 0.25 s rounded up to a 512-block
    assert np.abs(target[: start - 2]).max() == 0.0 and np.abs(target[start + 2]) > 0.01
    assert np.abs(target[start + 2 * 44100 + 10 :]).max() == 0.0  # zero-padded to the training length
    assert {p.name for p in (tmp_path / "o").glob("*.wav")} == {"target.wav", "va.wav", "fm.wav", "modal.wav"}


@pytest.mark.slow
def test_folder_of_wavs_in_one_process(tiny_data, tiny_models, tmp_path):
    folder = tmp_path / "sounds"
    folder.mkdir()
    for k, f in enumerate((110.0, 440.0)):
        t = np.arange(44100) / 44100
        sf.write(folder / f"s{k}.wav", 0.2 * np.sin(2 * np.pi * f * t), 44100)
    res = infer(
        tiny_data, tiny_models, "--input", str(folder), "--note", "60", "--out", str(tmp_path / "m"), "--no-refine"
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["index.html", "s0", "s1"]
    assert res.stdout.count("model step") == 2 and res.stdout.count("loaded in") == 1


def _bad(res, message, out):
    assert res.returncode == 2, res.stderr[-2000:]
    assert message in res.stderr and "Traceback" not in res.stderr
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))


@pytest.mark.slow
def test_bad_inputs_are_one_line_errors_and_leave_nothing(tiny_data, tiny_models, tmp_path):
    out = tmp_path / "o"
    _bad(infer(tiny_data, tiny_models, "-l", "32", "--out", str(out)), "no trained model vae_multi_32", out)
    _bad(infer(tiny_data, tiny_models, "-m", "va", "-l", "32", "--out", str(out)), "no trained model vae_va_32", out)
    _bad(infer(tiny_data, tiny_models, "-m", "single", "--out", str(out)), "no trained model vae_single_", out)
    _bad(infer(tiny_data, tiny_models, "--encoder", "resnet", "--out", str(out)), "no trained model vae_multi_", out)
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


@pytest.mark.slow
def test_refined_match_is_written_reproducible_and_never_worse(tiny_data, tiny_models, tmp_path):
    args = (
        "-s",
        "2",
        "-a",
        "--refine-renders",
        "40",
        "--refine-synths",
        "va",
        "modal",
        "--workers",
        "1",
        "--seed",
        "3",
    )
    res = infer(tiny_data, tiny_models, *args, "--out", str(tmp_path / "a"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("\n     refined ") == 2 and " renders, " in res.stdout
    summary = json.loads((tmp_path / "a" / "match.json").read_text())
    rows = {r["synth"]: r for r in summary["results"]}
    assert "refined_lsd" not in rows["fm"]
    note = int(np.load(tiny_data / "test_note.npy")[2])
    for synth in ("va", "modal"):
        row = rows[synth]
        # the budget is spent up to what cannot pay for one more CMA-ES generation
        assert 40 - SearchSpace(load_spec(synth)).popsize < row["search_renders"] <= 40
        assert row["search_distance"] <= row["search_distance_start"]
        assert row["search_start"] == "network" or row["search_start"].startswith("nearest")
        spec = load_spec(synth)
        _, presets = read_preset_file(spec, tmp_path / "a" / f"{synth}.refined.faust.json")
        refined, _ = sf.read(tmp_path / "a" / f"{synth}.refined.wav", dtype="float32")
        np.testing.assert_array_equal(Renderer().render(spec, presets[0], note=note), refined)
        assert (tmp_path / "a" / f"{synth}.refined.preset.json").is_file()
    again = infer(tiny_data, tiny_models, *args, "--out", str(tmp_path / "b"))
    assert again.returncode == 0, again.stderr[-2000:]
    for synth in ("va", "modal"):  # the same seed and render budget: the same presets
        name = f"{synth}.refined.faust.json"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.slow
def test_output_folders_it_did_not_make_are_never_touched(tiny_data, tiny_models, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    res = infer(tiny_data, tiny_models, "-s", "0", "--out", str(mine))
    assert res.returncode == 2 and "was not made by run_inference" in res.stderr and "Traceback" not in res.stderr
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and not list(tmp_path.glob(".mine*"))
    res = infer(tiny_data, tiny_models, "-s", "0", "--out", str(mine / "notes.txt"))
    assert res.returncode == 2 and "not a folder" in res.stderr
    ours = tmp_path / "ours"
    stale = tmp_path / ".ours.999999999.tmp"  # what a match killed midway leaves (its pid is gone)
    stale.mkdir()
    (stale / "target.wav").write_bytes(b"")
    assert infer(tiny_data, tiny_models, "-s", "0", "--out", str(ours)).returncode == 0
    assert not stale.exists()
    res = infer(tiny_data, tiny_models, "-s", "1", "--out", str(ours))  # its own output: replaced
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((ours / "match.json").read_text())["target"].startswith("test_00001")
    (ours / "mine.txt").write_text("a file the user added")
    res = infer(tiny_data, tiny_models, "-s", "0", "--out", str(ours))
    assert res.returncode == 2 and (ours / "mine.txt").read_text() == "a file the user added"


@pytest.mark.parametrize(
    "args, message",
    [
        (("--refine", "0"), "positive number of seconds"),
        (("--refine", "-3"), "positive number of seconds"),
        (("--refine-renders", "0"), "at least 1 render"),
        (("--refine-renders", "5", "--no-refine"), "--no-refine cannot go with"),
        (("--refine-renders", "5", "--refine-synths", "serum"), "cannot refine serum"),
        (("--refine-synths", "0", "--refine-renders", "5"), "--refine-synths must be at least 1"),
        (("--workers", "0", "--refine-renders", "5"), "--workers must be >= 1"),
        (("-s", "-4"), "--sample must be a test sample index"),
    ],
)
@pytest.mark.slow
def test_bad_search_settings_are_one_line_errors(tiny_data, tiny_models, tmp_path, args, message):
    out = tmp_path / "o"
    _bad(infer(tiny_data, tiny_models, "-s", "0", "-a", *args, "--out", str(out)), message, out)


def test_align_onset_moves_a_sound_to_the_note_start():
    from data.sound import align_onset

    audio = np.zeros(1000, dtype=np.float32)
    audio[100:200] = 0.5
    audio[90] = 0.001  # 54 dB below the peak: noise before the onset, not the onset
    moved = align_onset(audio, 0.01, sample_rate=10000)  # onset wanted at sample 100: unchanged
    np.testing.assert_array_equal(moved, audio)
    later = align_onset(audio, 0.025, sample_rate=10000)
    assert later.shape == (1000,) and np.flatnonzero(later >= 0.5).tolist() == list(range(250, 350))
    earlier = align_onset(audio, 0.0, sample_rate=10000)
    assert np.flatnonzero(earlier >= 0.5).tolist() == list(range(100)) and earlier[-1] == 0.0
    np.testing.assert_array_equal(align_onset(np.zeros(10), 0.5), np.zeros(10))


def test_a_rendered_note_starts_where_sound_files_are_aligned_to():
    """DawDreamer starts a note at the first block boundary from note_start: sound files are moved
    there, not to note_start itself (239 samples, 5.4 ms, earlier)."""
    from data_generation.params import RenderSettings
    from data_generation.presets import random_presets
    from data_generation.render import Renderer
    from data_generation.spec import load_spec

    settings = RenderSettings()
    assert round(settings.onset_seconds * settings.sample_rate) == 11264 == 22 * 512
    assert RenderSettings(note_start=0.5, block_size=256).onset_seconds * 44100 == 22272  # 87 blocks
    spec = load_spec("va")
    audio = Renderer().render(spec, random_presets(spec, 1, np.random.default_rng(1))[0], note=60)
    assert np.flatnonzero(audio)[0] == round(spec.render.onset_seconds * spec.render.sample_rate)


@pytest.mark.slow
def test_a_nan_wav_in_a_folder_does_not_lose_the_good_ones(tiny_data, tiny_models, tmp_path):
    folder = tmp_path / "sounds"
    folder.mkdir()
    t = np.arange(44100) / 44100
    sf.write(folder / "good.wav", 0.2 * np.sin(2 * np.pi * 220 * t), 44100, subtype="FLOAT")
    bad = 0.2 * np.sin(2 * np.pi * 220 * t)
    bad[1000] = np.nan
    sf.write(folder / "bad.wav", bad, 44100, subtype="FLOAT")
    res = infer(tiny_data, tiny_models, "--input", str(folder), "--out", str(tmp_path / "m"), "--no-refine")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "bad.wav holds 1 non-finite samples" in res.stderr and "1 of 2 files could not be matched" in res.stderr
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["good", "index.html"]
    assert "bad.wav holds 1 non-finite samples" in (tmp_path / "m" / "index.html").read_text()
    assert (tmp_path / "m" / "good" / "match.json").is_file()
