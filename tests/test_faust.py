"""The built-in Faust synths: the default that needs nothing but pip."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FAUST_SYNTHS, synth_preset

import data_generation.render as render_module
from asp.errors import ASPError
from data_generation.presets import human_presets, random_presets, read_preset_file, write_preset_file
from data_generation.render import Renderer, flushed_denormals, rms
from data_generation.spec import load_spec
from data_generation.spec_gen import build_spec, describe_faust


def test_three_builtin_synths_with_categorical_parameters():
    assert len(FAUST_SYNTHS) >= 3
    for name in FAUST_SYNTHS:
        spec = load_spec(name)
        assert 20 <= spec.n_params <= 60, name
        assert sum(p.categorical for p in spec.params) >= 3, name


@pytest.mark.parametrize("name", FAUST_SYNTHS)
def test_spec_matches_the_compiled_dsp(name):
    spec = load_spec(name)
    regenerated = build_spec(
        name=name,
        backend="faust",
        source=spec.source,
        described=describe_faust(spec.resolve_source(), spec.num_voices),
        previous=spec,
    )
    assert regenerated.params == spec.params


@pytest.mark.parametrize("name", FAUST_SYNTHS)
def test_defaults_and_factory_presets_are_audible(name):
    spec = load_spec(name)
    names, presets = human_presets(spec)
    assert len(names) >= 4
    audio = Renderer().render_batch(spec, np.vstack([spec.defaults, presets]))
    assert audio.shape == (len(names) + 1, 220500)
    levels = rms(audio)
    assert (levels > 0.01).all(), dict(zip(["default", *names], levels.round(4)))
    assert np.abs(audio).max() < 1.0
    # the factory presets sound distinct from one another
    spectra = np.abs(np.fft.rfft(audio[1:, 11025:143325], axis=1))
    spectra /= spectra.sum(axis=1, keepdims=True)
    distances = np.abs(spectra[:, None] - spectra[None]).sum(-1)
    assert distances[~np.eye(len(names), dtype=bool)].min() > 0.05


@pytest.mark.parametrize("name", FAUST_SYNTHS)
def test_renders_are_bit_identical(name):
    spec = load_spec(name)
    renderer = Renderer()
    first = renderer.render(spec)
    renderer.render(spec, random_presets(spec, 1, np.random.default_rng(0))[0], note=48)
    np.testing.assert_array_equal(renderer.render(spec), first)
    np.testing.assert_array_equal(Renderer().render(spec), first)


@pytest.mark.parametrize("name", FAUST_SYNTHS)
def test_fast_renders_are_the_vectorized_build_and_differ_by_rounding_only(name):
    """``exact=False`` compiles with -vec: another build (not bit-identical), the same sound."""
    from asp.metrics import log_spectral_distance

    spec = load_spec(name)
    exact, fast = Renderer(), Renderer(exact=False)
    same = []
    for preset in random_presets(spec, 3, np.random.default_rng(4)):
        a, b = exact.render(spec, preset), fast.render(spec, preset)
        assert np.abs(a - b).max() < 0.05 and float(log_spectral_distance(a, b)) < 0.01
        np.testing.assert_array_equal(fast.render(spec, preset), b)  # the fast build repeats itself
        same.append(np.array_equal(a, b))
    assert not all(same)  # another build, not the exact one


def test_renders_flush_denormals_without_changing_the_audio(monkeypatch):
    """Renders run with flush-to-zero/denormals-are-zero (x86-64 Linux: a decaying modal tail was
    10-30x slower in denormals); the mode is off again after, and the audio is the same."""
    tiny = np.full(8, 1e-40, dtype=np.float32)  # denormal float32
    with flushed_denormals() as on:
        inside = tiny * np.float32(1.0)
    if not on:
        pytest.skip("flush-to-zero is set on x86-64 Linux only")
    assert not inside.any()  # denormals-are-zero: a denormal input reads as 0
    assert (tiny * np.float32(1.0)).all()  # the previous mode is back
    spec = load_spec("modal")
    presets = random_presets(spec, 3, np.random.default_rng(0))
    flushed = [Renderer().render(spec, p) for p in presets]
    monkeypatch.setattr(render_module, "_FTZ_PLATFORM", False)
    for preset, audio in zip(presets, flushed):
        plain = Renderer().render(spec, preset)
        assert np.abs(plain).max() > 0.1
        np.testing.assert_array_equal(audio, plain)


def _changed(spec, preset, param):
    out = preset.copy()
    i = spec.names.index(param.name)
    if param.categorical:
        n = param.classes - 1
        out[i] = ((round(preset[i] * n) + 1) % param.classes) / n
    else:
        out[i] = preset[i] + 0.4 if preset[i] < 0.5 else preset[i] - 0.4
    return out


@pytest.mark.parametrize(
    ("name", "continuous", "categorical"),
    [("va", "filter_cutoff", "osc1_wave"), ("fm", "op3_level", "fm_algorithm"), ("modal", "mode_decay", "mode_layout")],
)
def test_one_continuous_and_one_categorical_change_the_audio(name, continuous, categorical):
    spec = load_spec(name)
    renderer = Renderer()
    base = renderer.render(spec)
    assert not spec.param(continuous).categorical and spec.param(categorical).categorical
    for param in (spec.param(continuous), spec.param(categorical)):
        other = renderer.render(spec, _changed(spec, spec.defaults, param))
        assert np.abs(other - base).max() > 1e-3, param.name


@pytest.mark.parametrize("name", FAUST_SYNTHS)
def test_random_presets_are_mostly_audible(name):
    spec = load_spec(name)
    audio = Renderer().render_batch(spec, random_presets(spec, 30, np.random.default_rng(7)))
    assert (rms(audio) > 0.01).mean() >= 0.85
    assert np.isfinite(audio).all()


def test_note_and_velocity_settings(tmp_path):
    renderer = Renderer()
    low = renderer.render("va", note=48)
    high = renderer.render("va", note=72)
    freqs = np.fft.rfftfreq(low.size, 1 / 44100)
    centroid = [float((freqs * np.abs(np.fft.rfft(a))).sum() / np.abs(np.fft.rfft(a)).sum()) for a in (low, high)]
    assert centroid[1] > centroid[0]
    assert renderer.render("va", duration=1.0, note_duration=0.5).shape == (44100,)
    with pytest.raises(ASPError, match="MIDI note"):
        renderer.render("va", note=200)


def test_preset_file_round_trip(tmp_path):
    spec = load_spec("va")
    presets = random_presets(spec, 3, np.random.default_rng(0))
    path = write_preset_file(tmp_path / "p.json", spec, presets, ["a", "b", "c"])
    names, back = read_preset_file(spec, path)
    assert names == ["a", "b", "c"]
    np.testing.assert_allclose(back, presets, atol=1e-6)
    with pytest.raises(ASPError, match="is for synth 'va', not 'fm'"):
        read_preset_file(load_spec("fm"), path)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ASPError, match="not valid JSON"):
        read_preset_file(spec, tmp_path / "bad.json")


def test_broken_dsp_is_a_clear_error(tmp_path):
    import json

    spec = load_spec("va")
    data = spec.to_json()
    (tmp_path / "broken.dsp").write_text("process = undefined_thing;")
    data["name"], data["source"] = "broken", "broken.dsp"
    (tmp_path / "broken.json").write_text(json.dumps(data))
    with pytest.raises(ASPError, match="does not compile"):
        Renderer().render(load_spec(tmp_path / "broken.json"))


@pytest.mark.parametrize("name", FAUST_SYNTHS)
def test_output_stage_tanh_is_within_float_rounding_of_tanh(name):
    """The synths' soft clip computes tanh from exp (libm's tanhf took a quarter of a va render):
    compiled, it stays within 4e-7 of tanh over [-20, 20] and never beyond +-1."""
    import re

    import dawdreamer as daw

    source = open(load_spec(name).resolve_source()).read()
    helper = re.search(r"^fast_tanh\(x\) = .*?\nwith \{.*?\};", source, re.S | re.M)
    assert helper is not None, f"{name}.dsp has no fast_tanh"
    engine = daw.RenderEngine(44100, 512)
    proc = engine.make_faust_processor("clip")
    ramp = "x = ((+(1) ~ _) - 1) * 0.0005 - 20;"  # -20, -19.9995, ... one step a sample
    proc.set_dsp_string(f'import("stdfaust.lib");\n{helper.group(0)}\n{ramp}\nprocess = x <: _, fast_tanh;')
    proc.compile()
    engine.load_graph([(proc, [])])
    engine.render(1.9)
    x, y = engine.get_audio()
    assert x.min() < -19 and x.max() > 19 and np.any(np.abs(x) < 0.01)
    np.testing.assert_allclose(y, np.tanh(x.astype(np.float64)), rtol=0, atol=4e-7)
    assert np.abs(y).max() <= 1.0


def test_va_sample_and_hold_keeps_its_steps_when_the_rate_is_a_hair_off():
    """S&H levels come from an LCG stepped once per LFO cycle: lfo_rate 0.0005 off plays the same
    steps a little later (white noise taken at the sample of each wrap drew other levels: 0.77)."""
    from asp.search import SearchObjective

    va, renderer = load_spec("va"), Renderer()
    held = dict(lfo_wave=1.0, lfo_cutoff=0.8, lfo_rate=0.6, filter_cutoff=0.5, amp_sustain=0.8)
    target = renderer.render(va, synth_preset("va", **held))
    objective = SearchObjective(target)
    near = objective(renderer.render(va, synth_preset("va", **{**held, "lfo_rate": 0.6005})))
    square = objective(renderer.render(va, synth_preset("va", **{**held, "lfo_wave": 0.5})))  # same rate, square
    assert near < 0.1 < square
    # random levels: the loudness of the held note changes from one LFO cycle (0.05 * 2^5.4 Hz) to the next
    cycle, start = 44100 / (0.05 * 2 ** (9 * 0.6)), int(va.render.note_start * 44100)
    levels = [rms(target[start + int(k * cycle) : start + int((k + 1) * cycle)]) for k in range(1, 6)]
    assert max(levels) > 1.3 * min(levels)


def test_a_deleted_working_folder_is_a_clear_error_not_a_crash(tmp_path):
    """DawDreamer's Faust compiler segfaults when the process's working folder was deleted."""
    gone = tmp_path / "gone"
    gone.mkdir()
    code = """import os, shutil
from asp import backend
from asp.cli import run_cli
from data_generation.render import Renderer
shutil.rmtree(os.getcwd())  # the folder this process runs in
def main():
    Renderer().render("va")
run_cli(main)
"""
    root = str(Path(__file__).resolve().parent.parent)
    res = subprocess.run([sys.executable, "-c", code, root], cwd=gone, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "the current folder was deleted; cd to a folder that exists" in res.stderr and "Traceback" not in res.stderr
