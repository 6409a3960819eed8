"""Data at many pitches, baselines drawn from a run's own training sounds, and the exported
(shipped) form of a model: its weights and the search's start index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asp.builder import Settings, make_plan
from asp.errors import ASPError
from asp.runs import SHIPPED
from data.dataset import load_split, training_rows
from data.lookup import nearest_rows


def _settings(**kw):
    base = dict(synths=("va", "fm"), presets={"va": ("random",), "fm": ("random",)}, n=30, notes=(60,), seed=3)
    return Settings(**{**base, **kw})


def test_one_note_renders_each_preset_once_at_a_seeded_note():
    notes = tuple(range(36, 85))
    plan = make_plan(_settings(notes=notes, one_note=True))
    assert plan.total == 60  # one sample per preset, not one per note
    drawn = np.concatenate([s.notes for s in plan.shards])
    assert set(drawn.tolist()) <= set(notes) and len(set(drawn.tolist())) > 10
    again = np.concatenate([s.notes for s in make_plan(_settings(notes=notes, one_note=True)).shards])
    assert np.array_equal(drawn, again)
    every = make_plan(_settings(notes=(48, 60)))
    assert every.total == 120  # without it, every preset at every note


def test_one_note_off_keeps_the_fingerprint_of_older_datasets():
    assert "one_note" not in _settings().to_json()
    assert make_plan(_settings()).fingerprint != make_plan(_settings(one_note=True)).fingerprint


def test_nearest_vectors_known_answer():
    from data.lookup import nearest_vectors

    vectors = np.array([[3.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.0]], np.float16)
    query = np.zeros(2, np.float32)
    assert nearest_vectors(vectors, query, 3).tolist() == [3, 1, 2]  # 0.25, then a tie of 1: the lower row
    assert nearest_vectors(vectors, query, 9).tolist() == [3, 1, 2, 0]


def test_nearest_rows_within_takes_only_those_candidates(tiny_data):
    train = load_split(tiny_data, "train")
    va = np.flatnonzero(train.synth == "va")
    query = np.asarray(train.mels[va[:1]])
    assert nearest_rows(train, query, "va", k=1)[0, 0] == va[0]  # itself
    within = va[1:]
    found = nearest_rows(train, query, "va", k=2, within=within)[0]
    assert va[0] not in found and set(found) <= set(within)


def test_training_rows_are_the_runs_own(tiny_data, tiny_models):
    from asp.evaluation.evaluate import trained_rows

    train = load_split(tiny_data, "train")
    config = json.loads((tiny_models / "vae_multi_8_paper" / "config.json").read_text())
    assert trained_rows(config, train, tiny_data) is None  # trained on all of them
    subset = {**config, "max_samples": 5}
    rows = trained_rows(subset, train, tiny_data)
    assert np.array_equal(rows, training_rows(train, config["trained_synths"], 5, config["seed"]))
    assert len(rows) == 5
    other = {**subset, "data_fingerprint": "another dataset"}
    assert trained_rows(other, train, tiny_data) is None


@pytest.mark.parametrize("dtype,index_dtype", [("float32", "float32"), ("float16", "float16"), ("float16", "uint8")])
def test_exported_model_predicts_as_the_run(tiny_data, tiny_models, tmp_path, dtype, index_dtype):
    from asp.training.export import export, read_index
    from models import load_model

    run = tiny_models / "vae_multi_8_paper"
    out = export(run, tiny_data, tmp_path / "exported", dtype=dtype, index_dtype=index_dtype, command="test")
    assert not (out / "model.weights.h5").exists()
    model, config = load_model(run)
    shipped, shipped_config = load_model(out)
    assert shipped_config["export"]["dtype"] == dtype and shipped_config["export"]["command"] == "test"
    # no path of the machine it was exported on (the data is its fingerprint)
    assert "data_dir" not in shipped_config and str(tiny_data) not in (out / "config.json").read_text()
    test = load_split(tiny_data, "test")
    mels = np.asarray(test.mels[:4])
    a, b = model.predict_vectors(mels), shipped.predict_vectors(mels)
    tol = 0 if dtype == "float32" else 0.02
    for synth in a:
        assert np.abs(a[synth] - b[synth]).max() <= tol
    assert shipped_config["export"]["index_dtype"] == index_dtype
    with np.load(out / "index.npz") as stored:
        assert stored["z_va"].dtype == np.dtype(index_dtype)
    index = read_index(out / "index.npz")
    train = load_split(tiny_data, "train")
    for synth in config["trained_synths"]:
        mine = np.flatnonzero(train.synth == synth)
        assert index[f"params_{synth}"].shape == (len(mine), train.params[synth].shape[1])
        assert index[f"z_{synth}"].shape == (len(mine), config["latent_size"])
        assert np.array_equal(index[f"note_{synth}"], train.note[mine])
        # 8-bit codes: within half a step of 1/255 of each dimension's range; presets in [0, 1] too
        assert np.abs(index[f"params_{synth}"] - train.params[synth][mine]).max() <= (
            0.5 / 255 + 1e-6 if index_dtype == "uint8" else 1e-3
        )
        z, _ = model.encoder(np.asarray(train.mels[mine]), training=False)
        z = np.asarray(z)
        step = (z.max(axis=0) - z.min(axis=0)) / 255 if index_dtype == "uint8" else 0
        assert np.all(np.abs(index[f"z_{synth}"] - z) <= 0.5 * step + 0.01 * (1 + np.abs(z).max()))


def test_shipped_config_records_no_absolute_path():
    def strings(value):
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return [value] if isinstance(value, str) else []

    config = json.loads((SHIPPED / "config.json").read_text())
    found = strings(config)
    # a spec's own system paths (dx7's hexter banks under /usr/share) are the spec's, the same on every machine
    specs = Path(__file__).resolve().parents[1] / "data_generation" / "synths"
    own = {s for name in config["trained_synths"] for s in strings(json.loads((specs / f"{name}.json").read_text()))}
    assert found and not [s for s in found if (Path(s).is_absolute() or s.startswith("~")) and s not in own]
    assert not [s for s in own if s.startswith(("/home", "/work", "/tmp", "/root"))]


def test_export_refuses_an_existing_folder_and_a_damaged_file(tiny_data, tiny_models, tmp_path):
    from asp.training.export import export
    from models import load_model

    with pytest.raises(ASPError, match="exists"):
        export(tiny_models / "vae_multi_8_paper", tiny_data, tmp_path)
    out = export(tiny_models / "vae_multi_8_paper", tiny_data, tmp_path / "x", command="test")
    with np.load(out / "inference.weights.npz") as saved:
        arrays = {k: saved[k] for k in saved.files}
    arrays.pop(next(iter(arrays)))
    np.savez(out / "inference.weights.npz", **arrays)
    with pytest.raises(ASPError, match="inference.weights.npz is damaged .*export the run again"):
        load_model(out)  # its checksum, recorded at export


SHIPPED_PREDICTION = {  # the shipped model's first six values per head for va's defaults at note 48
    "va": [0.10371, 0.47487, 0.40511, 0.64201, 0.18181, 0.48125],
    "fm": [0.06925, 0.04764, 0.03486, 0.04248, 0.18723, 0.23288],
    "modal": [0.44595, 0.6175, 0.3878, 0.41375, 0.54636, 0.04077],
    "dx7": [0.94574, 0.51407, 0.32309, 0.35956, 0.08152, 0.01004],
}


def test_the_shipped_model_loads_and_reproduces_its_known_prediction():
    from asp.runs import SHIPPED, find_run
    from asp.training.export import read_index
    from data.features import mel_spectrogram
    from data_generation.render import render
    from models import load_model

    model, config = load_model(SHIPPED)
    assert config["export"]["command"] == "make pretrained" and config["train_samples"] > 50_000
    size = sum(p.stat().st_size for p in SHIPPED.iterdir())
    assert size < 40 * 2**20
    mel = mel_spectrogram(render("va", note=48))
    vectors = model.predict_vectors(mel[None].astype(np.float32))
    for synth, expected in SHIPPED_PREDICTION.items():
        assert np.allclose(vectors[synth][0, :6], expected, atol=2e-4), synth
    index = read_index(SHIPPED / "index.npz")
    assert sum(len(index[f"note_{s}"]) for s in config["trained_synths"]) == config["train_samples"]
    notes = np.concatenate([index[f"note_{s}"] for s in config["trained_synths"]])
    assert notes.min() == 36 and notes.max() == 84  # the pitch range it was trained on
    assert config["generative"]["kind"] == "flow"  # best of K draws from its heads
    own = [p for p in SHIPPED.parent.glob("vae_multi_*") if (p / "config.json").is_file()]  # e.g. make demo's
    if own:  # a run of one's own in the project's saved_models takes the shipped model's place
        assert find_run(SHIPPED.parent, "multi") in own
    else:  # nothing of one's own (a fresh clone): the shipped model
        assert find_run(SHIPPED.parent, "multi") == SHIPPED


def test_a_run_of_ones_own_takes_the_shipped_models_place(tiny_models, tmp_path):
    from asp.runs import find_run

    with pytest.raises(ASPError, match="no trained model"):
        find_run(tmp_path, "multi")  # another --model-dir: no fallback
    assert find_run(tiny_models, "multi") == tiny_models / "vae_multi_8_paper"


def test_search_starts_from_the_shipped_index(tmp_path):
    from asp.inference import Matcher
    from asp.runs import SHIPPED
    from asp.training.export import read_index
    from data_generation.render import render

    wav = tmp_path / "tone.wav"
    sf.write(wav, render("fm", note=64), 44100)
    matcher = Matcher(SHIPPED, data_dir=None)
    target = matcher.wav_target(wav, 64)
    starts = matcher.nearest_starts(target, "fm", 3)
    assert len(starts) == 3 and all("index row" in name for name in starts)
    index = read_index(SHIPPED / "index.npz")
    z, _ = matcher.model.encoder(target.mel[None].astype(np.float32), training=False)
    nearest = int(np.argmin(np.sum((index["z_fm"] - np.asarray(z)[0]) ** 2, axis=1)))
    assert np.array_equal(next(iter(starts.values())), index["params_fm"][nearest])
