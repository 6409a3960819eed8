import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import ALL_SYNTHS

from asp.errors import ASPError
from data_generation.spec import GROUPS, SYNTH_DIR, load_spec, spec_from_json


def _minimal(**over):
    data = {
        "name": "toy",
        "backend": "vst",
        "source": "/nowhere/toy.so",
        "parameters": [
            {"name": "cutoff", "index": 0, "classes": 0, "group": "fil", "default": 0.5},
            {"name": "wave", "index": 1, "classes": 4, "group": "osc", "default": 0.0, "native_range": [0, 3]},
        ],
    }
    data.update(over)
    return data


@pytest.mark.parametrize("name", ALL_SYNTHS)
def test_every_shipped_spec_loads_and_is_consistent(name):
    spec = load_spec(name)
    assert spec.name == name
    assert all(p.group in GROUPS for p in spec.params)
    assert spec.encoded_size == sum(max(1, p.classes) for p in spec.params if not p.fixed)
    assert spec.render.sample_rate == 44100 and spec.render.block_size == 512
    assert spec.render.num_samples == 220500
    np.testing.assert_array_equal(spec.snap(spec.defaults), spec.defaults)  # defaults are valid classes


@pytest.mark.parametrize(("name", "size", "n_params"), [("serum", 480, 315), ("diva", 759, 281), ("tyrell", 327, 92)])
def test_paper_synths_reproduce_published_sizes(name, size, n_params):
    spec = load_spec(name)
    assert spec.encoded_size == size
    assert spec.n_params == n_params


def test_paper_synth_without_plugin_says_how_to_point_at_it(monkeypatch):
    monkeypatch.delenv("ASP_SERUM_PLUGIN", raising=False)
    with pytest.raises(ASPError, match="ASP_SERUM_PLUGIN"):
        load_spec("serum").resolve_source()
    monkeypatch.setenv("ASP_SERUM_PLUGIN", "/no/such/Serum.so")
    with pytest.raises(ASPError, match="not found"):
        load_spec("serum").resolve_source()


def test_unknown_synth_lists_the_available_ones():
    with pytest.raises(ASPError, match="unknown synth 'nope'.*amsynth"):
        load_spec("nope")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"backend": "au"}, "backend 'au'"),
        ({"parameters": []}, "non-empty"),
        ({"parameters": [{"name": "a", "index": 0, "classes": 1, "group": "osc", "default": 0}]}, "classes"),
        ({"parameters": [{"name": "a", "index": 0, "classes": 0, "group": "synth", "default": 0}]}, "group"),
        ({"parameters": [{"name": "a", "index": 0, "classes": 0, "group": "osc", "default": 2}]}, "default"),
        ({"parameters": [{"name": "a", "index": 0, "classes": 0, "group": "osc"}]}, "lacks 'default'"),
        (
            {
                "parameters": [
                    {"name": "a", "index": 0, "classes": 0, "group": "osc", "default": 0},
                    {"name": "a", "index": 1, "classes": 0, "group": "osc", "default": 0},
                ]
            },
            "duplicate",
        ),
        (
            {
                "parameters": [
                    {"name": "a", "index": 3, "classes": 0, "group": "osc", "default": 0},
                    {"name": "b", "index": 1, "classes": 0, "group": "osc", "default": 0},
                ]
            },
            "index order",
        ),
        (
            {"parameters": [{"name": "a", "index": 0, "classes": 0, "group": "lfo", "default": 0, "rate_hz": [0, 9]}]},
            "rate_hz",
        ),
        (
            {"parameters": [{"name": "a", "index": 0, "classes": 0, "group": "lfo", "default": 0, "rate_hz": [9, 1]}]},
            "rate_hz",
        ),
        (
            {"parameters": [{"name": "a", "index": 0, "classes": 3, "group": "lfo", "default": 0, "rate_hz": [1, 9]}]},
            "rate_hz",
        ),
        ({"render": {"tempo": 120}}, "unknown render"),
        ({"render": {"duration": 2.0}}, "note must end"),
    ],
)
def test_malformed_spec_is_a_clear_error(change, message):
    with pytest.raises(ASPError, match=message):
        spec_from_json(_minimal(**change))


def test_invalid_json_spec_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "bad", ')
    with pytest.raises(ASPError, match="not valid JSON"):
        load_spec(bad)


def test_user_spec_folder_is_searched(tmp_path, monkeypatch):
    (tmp_path / "toy.json").write_text(json.dumps(_minimal()))
    monkeypatch.setenv("ASP_SYNTH_PATH", str(tmp_path))
    spec = load_spec("toy")
    assert spec.encoded_size == 5
    with pytest.raises(ASPError, match="plugin /nowhere/toy.so of synth 'toy' not found.*ASP_TOY_PLUGIN"):
        spec.resolve_source()


def test_preset_from_dict_snaps_categorical_and_rejects_unknown_names():
    spec = spec_from_json(_minimal())
    preset = spec.preset_from_dict({"wave": 0.4, "cutoff": 1.3})
    np.testing.assert_allclose(preset, [1.0, 1 / 3])
    native = spec.preset_from_dict({"wave": 2}, native=True)
    assert native[1] == pytest.approx(2 / 3)
    assert spec.preset_to_dict(native, native=True)["wave"] == 2
    assert spec.preset_to_dict(preset) == {"cutoff": 1.0, "wave": pytest.approx(1 / 3, abs=1e-6)}
    with pytest.raises(ASPError, match="no parameter 'resonance'"):
        spec.preset_from_dict({"resonance": 0.2})
    with pytest.raises(ASPError, match="expected a number"):
        spec.preset_from_dict({"cutoff": "high"})


def test_spec_write_round_trips(tmp_path):
    spec = load_spec("amsynth")
    spec.write(tmp_path / "amsynth.json")
    again = load_spec(tmp_path / "amsynth.json")
    assert again.params == spec.params
    assert again.hash == spec.hash
    assert not list(tmp_path.glob("*.tmp"))


def test_a_rate_hint_round_trips_and_leaves_the_spec_hash_alone(tmp_path):
    va = load_spec("va")
    assert va.params[va.names.index("lfo_rate")].rate_hz == (0.05, 25.6)  # va.dsp: 0.05 Hz * 2^(9 v)
    va.write(tmp_path / "va.json")
    assert load_spec(tmp_path / "va.json").params == va.params
    bare = dataclasses.replace(va, params=tuple(dataclasses.replace(p, rate_hz=None) for p in va.params))
    assert bare.hash == va.hash  # a search hint: datasets and models made before it stay valid


def test_spec_files_live_in_the_package():
    assert (SYNTH_DIR / "amsynth.json").is_file()


def test_a_change_to_a_faust_synths_dsp_changes_its_hash(tmp_path):
    va = load_spec("va")
    (tmp_path / "faust").mkdir()
    dsp = tmp_path / "faust" / "va.dsp"
    dsp.write_bytes(Path(va.resolve_source()).read_bytes())
    va.write(tmp_path / "va.json")
    copy = load_spec(tmp_path / "va.json")
    assert copy.resolve_source() == str(dsp)
    assert copy.hash == va.hash  # the same spec and the same DSP code
    dsp.write_text(dsp.read_text().replace("0.05 * pow(2, 9*lfo_rate)", "0.1 * pow(2, 9*lfo_rate)"))
    changed = dataclasses.replace(copy)  # a fresh instance: the hash is cached per instance
    assert changed.hash != va.hash  # datasets and models made with the old va are stale
