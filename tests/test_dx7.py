"""The dx7 synth: its spec from the engine's own list, rendering, the ROM voices and the cartridges."""

import json
from pathlib import Path

import numpy as np
import pytest

from asp.errors import ASPError
from data_generation import dx7
from data_generation.presets import human_presets, random_presets, read_preset_file
from data_generation.render import Renderer
from data_generation.spec import load_spec

HEXTER = Path("/usr/share/hexter")
needs_dexed = pytest.mark.skipif(
    dx7.dexed is None, reason=f"dexed-py is not installed (pip install {dx7.DEXED_REQUIREMENT}; make venv installs it)"
)
needs_hexter = pytest.mark.skipif(
    not (HEXTER / "dx7_roms.dx7").is_file(),
    reason="hexter's DX7 ROM banks are not installed (apt-get install hexter; CI installs it)",
)
pytestmark = needs_dexed


def test_the_spec_is_the_engines_parameter_list():
    from data_generation.spec_gen import build_spec

    spec = load_spec("dx7")
    assert (spec.backend, spec.n_params, spec.encoded_size) == ("dexed", 145, 225)
    assert sum(p.categorical for p in spec.params) == 22
    assert spec.param("algorithm").classes == 32 and spec.param("lfo_wave").choices[5] == "sample&hold"
    assert spec.param("op3_env_rate2").units == (0.0, 99.0) and spec.param("feedback").units == (0.0, 7.0)
    # regenerating the spec from the engine (view_parameters.py --synth dx7 --write-spec) changes nothing
    again = build_spec(name="dx7", backend="dexed", source="dexed-py", described=dx7.describe_dexed(), previous=spec)
    assert again.to_json(with_path=False) == spec.to_json(with_path=False)
    # the spec's order is the engine's vector: a voice's values land on the parameters named for them
    patch = dx7.require_dexed().Patch()
    patch.algorithm, patch.op[2].output_level, patch.op[4].envelope.rates[1] = 16, 42, 7
    preset = dx7.from_patch(spec, patch)
    assert preset[spec.names.index("algorithm")] == pytest.approx(16 / 31)
    assert preset[spec.names.index("op3_output_level")] == pytest.approx(42 / 99)
    assert preset[spec.names.index("op5_env_rate2")] == pytest.approx(7 / 99)


def test_renders_follow_the_note_conventions_and_repeat_exactly():
    spec = load_spec("dx7")
    renderer = Renderer()
    presets = random_presets(spec, 3, np.random.default_rng(0))
    first = renderer.render(spec, presets[0], note=48)
    renderer.render(spec, presets[1], note=72)  # another voice between: no state carries over
    again = Renderer().render(spec, presets[0], note=48)
    assert first.shape == (spec.render.num_samples,) and first.dtype == np.float32
    assert np.array_equal(first, renderer.render(spec, presets[0], note=48)) and np.array_equal(first, again)
    onset = round(spec.render.onset_seconds * spec.render.sample_rate)
    assert not first[:onset].any() and np.abs(first[onset : onset + 2048]).max() > 0
    # the note plays at its pitch: INIT VOICE (one sine carrier at ratio 1) at A4 peaks at 440 Hz
    sine = renderer.render(spec, None, note=69)[onset : onset + 44100]
    spectrum = np.abs(np.fft.rfft(sine * np.hanning(len(sine))))
    assert np.argmax(spectrum) * 44100 / len(sine) == pytest.approx(440, abs=2)


def test_a_written_voice_renders_what_the_preset_rendered(tmp_path):
    spec = load_spec("dx7")
    renderer = Renderer()
    presets = random_presets(spec, 4, np.random.default_rng(3))  # unrounded values: the engine rounds them
    for k, preset in enumerate(presets):
        path = dx7.write_syx(tmp_path / f"{k}.syx", dx7.single_voice_sysex(dx7.to_patch(spec, preset, f"match {k}")))
        data = path.read_bytes()
        assert len(data) == 163 and data[:6] == dx7.SINGLE_HEADER and data[-1] == 0xF7
        assert data[-2] == (-sum(data[6:-2])) & 0x7F
        names, back = read_preset_file(spec, path)
        assert names == [f"MATCH {k}"]
        assert np.array_equal(renderer.render(spec, back[0], note=55), renderer.render(spec, preset, note=55))
    bank = dx7.write_syx(tmp_path / "bank.syx", dx7.bank_sysex([dx7.to_patch(spec, p) for p in presets]))
    names, back = read_preset_file(spec, bank)
    assert len(names) == 32 and names[4] == "INIT VOICE"  # the rest of the cartridge: INIT VOICEs
    assert np.array_equal(renderer.render(spec, back[2]), renderer.render(spec, presets[2]))


@needs_hexter
def test_the_rom_reads_and_writes_back_byte_identical(tmp_path):
    raw = (HEXTER / "dx7_roms.dx7").read_bytes()
    voices = dx7.read_voices(HEXTER / "dx7_roms.dx7")
    assert len(voices) == 128 and voices[10][0] == "E.PIANO 1"
    for k in range(4):  # the four 32-voice cartridges of the DX7 ROM
        data = dx7.bank_sysex([p for _, p in voices[32 * k : 32 * (k + 1)]])
        assert len(data) == 4104 and data[:6] == bytes.fromhex("f0 43 00 09 20 00") and data[-1] == 0xF7
        assert data[6:-2] == raw[4096 * k : 4096 * (k + 1)]
        assert data[-2] == (-sum(raw[4096 * k : 4096 * (k + 1)])) & 0x7F
        path = dx7.write_syx(tmp_path / f"rom{k}.syx", data)
        assert [n for n, _ in dx7.read_voices(path)] == [n for n, _ in voices[32 * k : 32 * (k + 1)]]
        # Dexed's own reader takes the cartridge too
        assert [p.to_packed() for p in dx7.require_dexed().Patch.load_bank(str(path))] == [
            p.to_packed() for _, p in voices[32 * k : 32 * (k + 1)]
        ]


@needs_hexter
def test_rom_voices_are_the_human_presets_and_the_tx7_rom_is_held_out():
    spec = load_spec("dx7")
    names, presets = human_presets(spec)
    held_names, held = human_presets(spec, holdout=True)
    assert (len(names), len(held_names)) == (368, 64) and held_names[0] == "ACC. PIANO"
    assert not {row.tobytes() for row in held} & {row.tobytes() for row in presets}
    # a voice as a preset and back to a voice is the same voice
    voices = dx7.read_voices(HEXTER / "dx7_roms.dx7")
    assert dx7.to_patch(spec, presets[7]).to_packed()[:118] == voices[7][1].to_packed()[:118]  # less the name


def test_damaged_and_foreign_files_are_refused(tmp_path):
    spec = load_spec("dx7")
    good = dx7.bank_sysex([dx7.to_patch(spec, spec.defaults)])
    cases = {
        "checksum.syx": (good[:-2] + bytes([(good[-2] + 1) & 0x7F, 0xF7]), "checksum"),
        "cut.syx": (good[:3000], "no end"),
        "roland.syx": (bytes([0xF0, 0x41]) + good[2:], "no Yamaha voice dump"),
        "odd.dx7": (b"\x01" * 130, "no DX7 voice file"),
        "empty.syx": (b"", "empty"),
    }
    for name, (data, words) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ASPError, match=words):
            read_preset_file(spec, tmp_path / name)
    with pytest.raises(ASPError, match="no DX7"):
        read_preset_file(load_spec("fm"), tmp_path / "checksum.syx")


def test_without_dexed_py_dx7_says_how_to_install(monkeypatch):
    monkeypatch.setattr(dx7, "dexed", None)
    with pytest.raises(ASPError, match=r"pip install dexed-py==0\.3\.0"):
        Renderer().render(load_spec("dx7"))


def test_a_match_writes_the_voice_and_adds_it_to_the_cartridge(tmp_path):
    from asp.inference.outputs import check_output_folder, write_preset_outputs

    spec = load_spec("dx7")
    renderer = Renderer()
    presets = random_presets(spec, 2, np.random.default_rng(5))
    (tmp_path / "match.json").write_text("{}")
    first = write_preset_outputs(tmp_path, spec, presets[0], "my sound (dx7)")
    refined = write_preset_outputs(tmp_path, spec, presets[1], "my sound (dx7, refined)", stem="dx7.refined")
    names, voices = read_preset_file(spec, tmp_path / "dx7.cartridge.syx")
    assert names[:3] == ["MY SOUND", "MY SOUND R", "INIT VOICE"] and len(names) == 32
    for written, preset, voice in ((first, presets[0], voices[0]), (refined, presets[1], voices[1])):
        # what the match renders (the preset read back from its .syx) is the sound of the voice
        assert np.array_equal(renderer.render(spec, written), renderer.render(spec, preset))
        assert np.array_equal(renderer.render(spec, voice), renderer.render(spec, preset))
    assert read_preset_file(spec, tmp_path / "dx7.syx")[0] == ["MY SOUND"]
    units = json.loads((tmp_path / "dx7.preset.json").read_text())["units"]  # the voice's DX7 values
    patch = dx7.to_patch(spec, presets[0])
    assert units["algorithm"] == patch.algorithm and units["op2_output_level"] == patch.op[1].output_level
    check_output_folder(tmp_path)  # the folder stays one run_inference may replace


@pytest.mark.slow
def test_generate_train_and_match_with_dx7_beside_the_faust_synths(tmp_path):
    """generate.py --synths va fm modal dx7, train_multi.py on the four, run_inference.py writes the .syx."""
    import os
    import subprocess
    import sys

    import soundfile as sf

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")

    def run(*args):
        done = subprocess.run([sys.executable, *args], cwd=root, capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    data, models, out = tmp_path / "data", tmp_path / "models", tmp_path / "match"
    generated = run("data_generation/generate.py", "--synths", "va", "fm", "modal", "dx7", "--n", "12", "--no-hpss",
                    "--out", str(data))  # fmt: skip
    assert "dx7" in generated
    run("train_multi.py", "-d", str(data), "--model-dir", str(models), "-l", "8", "--epochs", "1")
    run("data_generation/demo_sound.py", str(tmp_path / "pluck.wav"))
    printed = run("run_inference.py", "--input", str(tmp_path / "pluck.wav"), "-md", str(models), "-dd", str(data),
                  "-l", "8", "--refine-renders", "40", "--refine-synths", "dx7", "--out", str(out))  # fmt: skip
    assert "dx7" in printed and "DX7 cartridge" in printed
    spec = load_spec("dx7")
    names, voices = read_preset_file(spec, out / "dx7.cartridge.syx")
    assert names[:2] == ["PLUCK", "PLUCK R"]
    note = json.loads((out / "match.json").read_text())["note"]
    for stem, voice in (("dx7", voices[0]), ("dx7.refined", voices[1])):
        wav, _ = sf.read(out / f"{stem}.wav", dtype="float32")
        assert np.array_equal(Renderer().render(spec, voice, note=note), wav)
    assert 'href="dx7.cartridge.syx"' in (out / "report.html").read_text()
    # --start-from: a search that also starts from the refined voice ends at least as close
    printed = run("run_inference.py", "--input", str(tmp_path / "pluck.wav"), "-md", str(models), "-dd", str(data),
                  "-l", "8", "--refine-renders", "20", "--refine-synths", "dx7", "--out", str(tmp_path / "again"),
                  "--start-from", str(out / "dx7.refined.syx"))  # fmt: skip
    before = json.loads((out / "match.json").read_text())["results"]
    after = json.loads((tmp_path / "again" / "match.json").read_text())["results"]
    first, second = (next(r for r in rows if r["synth"] == "dx7") for rows in (before, after))
    assert second["search_distance"] <= first["search_distance"] + 1e-9


@needs_hexter
def test_the_generator_takes_held_out_voices_only_when_asked():
    from asp.builder.sampling import _synth_presets

    spec = load_spec("dx7")
    held_names, held = human_presets(spec, holdout=True)
    names, presets, groups = _synth_presets(spec, ("holdout", "random"), 70, seed=77)
    assert names[:64] == held_names and np.array_equal(presets[:64], held) and len(set(groups)) == 70
    assert all(n.startswith("random_") for n in names[64:])
    names, presets, _ = _synth_presets(spec, ("human", "mutate", "random"), 600, seed=0)
    held_rows = {row.tobytes() for row in held}
    assert len(names) == 600 and not any(row.tobytes() in held_rows for row in presets)


def test_missing_rom_banks_say_how_to_install_them(tmp_path):
    from dataclasses import replace

    spec = replace(load_spec("dx7"), presets=({"kind": "dx7_bank", "path": str(tmp_path / "none" / "*.dx7")},))
    with pytest.raises(ASPError, match="apt-get install hexter"):
        human_presets(spec)


@needs_hexter
@pytest.mark.slow
def test_render_presets_renders_rom_voices_by_name(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "data_generation/render_presets.py", "--synth", "dx7", "--out", str(tmp_path / "r")]
    done = subprocess.run([*command, "--name", "e.piano 1", "--name", "BRASS   1"], cwd=root, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-1000:]
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        ".asp-written.json",
        "000_BRASS_1.wav",
        "001_E.PIANO_1.wav",
    ]
    done = subprocess.run([*command, "--name", "NO SUCH"], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error: no preset named 'NO SUCH'")
