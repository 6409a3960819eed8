"""Generative parameter heads: a head learns a two-mode answer that a regression head averages,
best of K finds the right mode, and a head added to a trained run loads with it."""

import json

import keras
import numpy as np
import pytest

from asp.errors import ASPError
from asp.inference.candidates import candidates, summarize
from asp.training.generative import add_generative_head, fit_head
from models import GENERATIVE_WEIGHTS, FlowHead, Layout, build_head, load_model, one_hot_blocks

# two continuous values and one categorical choice of two classes
LAYOUT = Layout("toy", 4, np.array([1, 1, 0, 0], np.float32), np.array([0, 1, 2, 2], np.int32), 3, 3)
LATENT = 4
# per sound (its z), the two presets that make it
MODES = {
    0: (np.array([0.2, 0.8, 1, 0]), np.array([0.8, 0.2, 0, 1])),
    1: (np.array([0.1, 0.1, 1, 0]), np.array([0.9, 0.9, 0, 1])),
}


def two_mode_set(n_per_mode=150, seed=0):
    """z of two sounds (a little noise around e0 and e1) and, for each, both of its presets equally often."""
    rng = np.random.default_rng(seed)
    z, notes, vectors = [], [], []
    for sound, presets in MODES.items():
        for preset in presets:
            center = np.eye(LATENT, dtype=np.float32)[sound]
            z.append(center + 0.05 * rng.standard_normal((n_per_mode, LATENT)).astype(np.float32))
            vectors.append(np.repeat(preset[None].astype(np.float32), n_per_mode, axis=0))
            notes.append(np.full(n_per_mode, 60.0, np.float32))
    return np.concatenate(z), np.concatenate(notes), np.concatenate(vectors)


@pytest.fixture(scope="module")
def trained_flow():
    z, notes, vectors = two_mode_set()
    head = FlowHead(LAYOUT, LATENT, note_input=True, units=64)
    losses = fit_head(head, z, notes, vectors, epochs=60, batch_size=64, lr=3e-3, seed=0, progress=False)
    return head, losses


def nearest_mode(samples, presets):
    """Index of the closer of the two presets for each sample (by the continuous values), and its distance."""
    d = np.stack([np.abs(samples[:, :2] - p[:2]).max(axis=1) for p in presets], axis=1)
    return d.argmin(axis=1), d.min(axis=1)


def test_one_hot_blocks_keeps_continuous_and_picks_the_highest_class():
    out = one_hot_blocks(np.array([[0.3, 0.7, 0.4, 0.6], [0.1, 0.9, 0.8, 0.2]]), LAYOUT)
    np.testing.assert_allclose(out, [[0.3, 0.7, 0, 1], [0.1, 0.9, 1, 0]], atol=1e-7)


def test_flow_samples_cover_both_modes_and_best_of_k_finds_the_right_one(trained_flow):
    head, losses = trained_flow
    assert losses[-1] < 1.0  # 1.75 (the variance of x1 - x0) for a head that ignores its inputs
    for sound, presets in MODES.items():
        z = np.eye(LATENT, dtype=np.float32)[sound][None]
        samples = head.sample(z, np.array([60]), k=64, seed=1)[0]
        which, distance = nearest_mode(samples, presets)
        close = distance < 0.12
        assert close.mean() >= 0.8, f"sound {sound}: only {close.mean():.2f} of samples near a mode"
        share = which[close].mean()  # both modes drawn, neither a stray few
        assert 0.2 <= share <= 0.8, f"sound {sound}: {share:.2f} of the close samples from the second mode"
        # each sample's class goes with its mode, as in every training preset
        assert (samples[close, 2:].argmax(axis=1) == which[close]).mean() >= 0.9
        for target in presets:  # best of K by distance to the target finds it
            found = candidates(np.full(4, 0.5), samples, {})
            distances = {k: float(np.abs(v - target).max()) for k, v in found.items()}
            summary = summarize(distances)
            assert summary["winner_source"] == "sample" and summary["distance"]["min"] < 0.12
            assert summary["count"] == 65 and summary["by_source"]["sample"] == 64
    # the same seed gives the same draws
    z = np.eye(LATENT, dtype=np.float32)[:1]
    np.testing.assert_array_equal(head.sample(z, np.array([60]), 8, seed=3), head.sample(z, np.array([60]), 8, seed=3))


def test_a_regression_head_lands_between_the_modes():
    z, notes, vectors = two_mode_set()
    keras.utils.set_random_seed(0)
    net = build_head("toy", LAYOUT.size, LATENT)
    net.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    net.fit(z, vectors, batch_size=64, epochs=8, verbose=0)
    for sound, presets in MODES.items():
        predicted = np.asarray(net(np.eye(LATENT, dtype=np.float32)[sound][None]))[0]
        np.testing.assert_allclose(predicted[:2], [0.5, 0.5], atol=0.1)  # the mean of the two presets
        _, distance = nearest_mode(predicted[None], presets)
        assert distance[0] > 0.2  # far from both: neither preset makes its sound


def test_summarize_counts_sources_and_breaks_ties_by_order():
    s = summarize({"network": 0.5, "sample 1": 0.3, "sample 2": 0.3, "nearest 1 (index row 4)": 0.9})
    assert s["winner"] == "sample 1" and s["by_source"] == {"network": 1, "sample": 2, "nearest": 1}
    assert s["distance"] == {"min": 0.3, "median": 0.4, "max": 0.9}
    assert s["best_by_source"] == {"network": 0.5, "sample": 0.3, "nearest": 0.9}


@pytest.mark.slow
def test_a_head_added_to_a_trained_run_loads_with_it(tiny_models, tiny_data, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_models / "vae_multi_8_paper", run)
    record = add_generative_head(run, data_dir=tiny_data, units=16, epochs=2, progress=False)
    config = json.loads((run / "config.json").read_text())
    assert config["generative"]["kind"] == "flow" and config["generative"]["units"] == 16
    assert set(record["samples"]) == {"va", "fm", "modal"} and all(n > 0 for n in record["samples"].values())
    model, _ = load_model(run)
    mels = np.load(tiny_data / "test_mels.npy")[:2]
    drawn = model.sample_vectors(mels, np.array([60, 60]), k=3, seed=0)
    for lay in model.layouts:
        assert drawn[lay.name].shape == (2, 3, lay.size)
        assert ((drawn[lay.name] >= 0) & (drawn[lay.name] <= 1)).all()
    np.testing.assert_array_equal(drawn["fm"], model.sample_vectors(mels, np.array([60, 60]), k=3, seed=0)["fm"])
    # a damaged weights file: one line naming it
    (run / GENERATIVE_WEIGHTS).write_bytes(b"not an npz")
    with pytest.raises(ASPError, match="generative.weights.npz cannot be loaded"):
        load_model(run)


def test_a_weights_file_it_did_not_write_is_left_alone(tiny_models, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_models / "vae_multi_8_paper", run)
    (run / GENERATIVE_WEIGHTS).write_bytes(b"someone else's")
    with pytest.raises(ASPError, match="does not record it"):
        add_generative_head(run, data_dir=None, epochs=1, progress=False)
    assert (run / GENERATIVE_WEIGHTS).read_bytes() == b"someone else's"


def test_a_model_without_heads_says_how_to_add_them(tiny_models):
    model, _ = load_model(tiny_models / "vae_multi_8_paper")
    with pytest.raises(ASPError, match="add_generative_head.py"):
        model.sample_vectors(np.zeros((1, 128, 431), np.float32), np.array([60]), k=2)


def test_an_unknown_generative_head_is_refused_before_training(tiny_data, tmp_path):
    from asp.training import TrainConfig, train

    cfg = TrainConfig(data_dir=str(tiny_data), model_dir=str(tmp_path), latent_size=8, epochs=1, generative_head="gan")
    with pytest.raises(ASPError, match="--generative-head 'gan' is not a registered head; use one of flow"):
        train(cfg)
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def run_with_heads(tiny_models, tiny_data, tmp_path_factory):
    import shutil

    run = tmp_path_factory.mktemp("heads") / "run"
    shutil.copytree(tiny_models / "vae_multi_8_paper", run)
    add_generative_head(run, data_dir=tiny_data, units=16, epochs=2, progress=False)
    return run


@pytest.mark.slow
def test_best_of_k_ranks_every_candidate_and_the_search_starts_from_the_winner(run_with_heads, tiny_data, tmp_path):
    import soundfile as sf

    from asp.inference import Matcher
    from asp.search import Budget
    from data.dataset import load_split
    from data_generation.presets import read_preset_file
    from data_generation.render import Renderer
    from data_generation.spec import load_spec

    matcher = Matcher(run_with_heads, data_dir=tiny_data)
    try:
        target = matcher.test_target(tiny_data, 2)
        found = matcher.match(
            target, tmp_path / "m", all_outputs=True, best_of=4, refine=Budget(renders=12), refine_synths=["va"]
        )
    finally:
        matcher.close()
    train = load_split(tiny_data, "train")
    rows = {r["synth"]: r for r in found["results"]}
    for synth, row in rows.items():
        c = row["candidates"]
        nearest = min(8, int(np.sum(train.synth == synth)))
        assert c["by_source"] == {"network": 1, "sample": 4, "nearest": nearest} and c["count"] == 5 + nearest
        assert c["distance"]["min"] == min(c["best_by_source"].values()) <= c["best_by_source"]["network"]
        spec = load_spec(synth)
        _, presets = read_preset_file(spec, tmp_path / "m" / f"{synth}.best.faust.json")
        best, _ = sf.read(tmp_path / "m" / f"{synth}.best.wav", dtype="float32")
        np.testing.assert_array_equal(Renderer().render(spec, presets[0], note=target.note), best)
    assert rows["va"]["search_start"] == rows["va"]["candidates"]["winner"]
    assert rows["va"]["search_distance"] <= rows["va"]["search_distance_start"]
    page = (tmp_path / "m" / "report.html").read_text()
    assert page.count("<h3>best of K") == 3 and "va.best.wav" in page and "drawn" in page


def test_best_of_k_needs_generative_heads(tiny_models):
    from asp.inference import Matcher

    matcher = Matcher(tiny_models / "vae_multi_8_paper")
    assert matcher.best_of(None) == 0  # off by default without heads
    with pytest.raises(ASPError, match="--best-of 3: the model in .* has no generative heads"):
        matcher.best_of(3)
    with pytest.raises(ASPError, match="--best-of must be 0"):
        matcher.best_of(-1)
