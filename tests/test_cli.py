"""The scripts as a user runs them: output, exit codes, one-line errors."""

import json
from pathlib import Path

import pytest
from conftest import needs_amsynth, needs_calf
from conftest import run_script as run

ROOT = Path(__file__).resolve().parent.parent


@needs_amsynth
def test_view_parameters_prints_the_amsynth_table():
    res = run("data_generation/view_parameters.py", "--synth", "amsynth")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "41 parameters (11 categorical, 0 fixed), encoded size 97" in res.stdout
    row = next(line for line in lines if " osc1_waveform " in line)
    assert row.split()[:4] == ["4", "osc1_waveform", "5", "osc"]
    assert len(lines[lines.index(next(line for line in lines if line.strip().startswith("index"))) + 1 :]) == 41


def test_view_parameters_lists_synths():
    res = run("data_generation/view_parameters.py", "--list")
    assert res.returncode == 0
    assert {"serum", "diva", "tyrell", "amsynth"} <= {line.split()[0] for line in res.stdout.splitlines()}


@needs_calf
def test_write_spec_from_a_plugin_and_use_it(tmp_path):
    out = tmp_path / "mono.json"
    res = run(
        "data_generation/view_parameters.py",
        "--plugin",
        "http://calf.sourceforge.net/plugins/Monosynth",
        "--name",
        "mono",
        "--write-spec",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    assert "Calling configure" not in res.stdout + res.stderr  # the plugin's own chatter is silenced
    spec = json.loads(out.read_text())
    assert spec["backend"] == "lv2" and len(spec["parameters"]) == 52
    assert spec["parameters"][0]["classes"] == 16 and spec["parameters"][0]["choices"][0] == "Sawtooth"
    res = run("data_generation/view_parameters.py", "--synth", str(out))
    assert res.returncode == 0 and "encoded size" in res.stdout


@needs_amsynth
def test_regenerating_a_spec_keeps_hand_declarations(tmp_path):
    before = json.loads((ROOT / "data_generation/synths/amsynth.json").read_text())
    copy = tmp_path / "amsynth.json"
    copy.write_text(json.dumps(before))
    res = run("data_generation/view_parameters.py", "--synth", str(copy), "--write-spec")
    assert res.returncode == 0, res.stderr
    assert json.loads(copy.read_text())["parameters"] == before["parameters"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--synth", "nope"], "unknown synth 'nope'"),
        (["--plugin", "/no/such/plugin.so"], "could not load plugin"),
        (["--synth", "va", "--write-spec", "/no/such/dir/x.json"], "does not exist"),  # no plugin needed
    ],
)
def test_view_parameters_errors_are_one_line(args, message):
    res = run("data_generation/view_parameters.py", *args)
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_render_presets_writes_wavs(tmp_path):
    import soundfile as sf

    res = run("data_generation/render_presets.py", "--synth", "va", "--limit", "2", "--out", str(tmp_path / "va"))
    assert res.returncode == 0, res.stderr
    wavs = sorted((tmp_path / "va").glob("*.wav"))
    assert len(wavs) == 2
    audio, rate = sf.read(wavs[0])
    assert rate == 44100 and audio.shape == (220500,)


def test_render_presets_for_a_missing_plugin_leaves_nothing(tmp_path):
    res = run("data_generation/render_presets.py", "--synth", "serum", "--random", "2", "--out", str(tmp_path / "s"))
    assert res.returncode == 2 and "ASP_SERUM_PLUGIN" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "s").exists()
