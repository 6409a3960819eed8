"""models.py on tiny inputs: shapes, masking, losses, KL schedule."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from asp.errors import ASPError
from data_generation.spec import load_spec
from models import (
    MEL_SHAPE,
    Layout,
    SynthVAE,
    activate,
    kl_penalty,
    kl_per_dimension,
    kl_weight,
    param_loss_per_sample,
)

SYNTHS = ["va", "fm", "modal"]


def layouts(names=SYNTHS):
    return [Layout.from_spec(load_spec(n)) for n in names]


def batch(n=4, owner="va", names=SYNTHS, seed=0):
    rng = np.random.default_rng(seed)
    out = {"mel": rng.random((n, *MEL_SHAPE)).astype(np.float32)}
    single = max(load_spec(s).encoded_size for s in names)
    out["params_single"] = np.zeros((n, single), np.float32)
    out["mask_single"] = np.zeros((n, single), np.float32)
    for s in names:
        size = load_spec(s).encoded_size
        own = s == owner
        out[f"params_{s}"] = (rng.random((n, size)) * own).astype(np.float32)
        out[f"mask_{s}"] = np.full((n, size), float(own), np.float32)
        if own:
            out["params_single"][:, :size] = out[f"params_{s}"]
            out["mask_single"][:, :size] = 1.0
    return out


@pytest.mark.parametrize("approach", ["multi", "single", "synth"])
def test_each_approach_builds_with_spec_derived_shapes(approach):
    lays = layouts(["va"] if approach == "synth" else SYNTHS)
    model = SynthVAE(approach=approach, layouts=lays, latent_size=8)
    model.build()
    out = model(batch(2), training=False)
    assert tuple(out["spec"].shape) == (2, *MEL_SHAPE)
    assert tuple(out["z_mean"].shape) == (2, 8)
    if approach == "single":
        assert tuple(out["scores"]["single"].shape) == (2, max(lay.size for lay in lays))
    else:
        for lay in lays:
            assert tuple(out["scores"][lay.name].shape) == (2, lay.size)
    vectors = model.predict_vectors(batch(3)["mel"])
    assert {k: v.shape for k, v in vectors.items()} == {lay.name: (3, lay.size) for lay in lays}
    assert all((v >= 0).all() and (v <= 1).all() for v in vectors.values())


@pytest.mark.parametrize("param_loss", ["mse", "mixed"])
def test_masked_heads_get_no_gradient_from_other_synths_samples(param_loss):
    model = SynthVAE(approach="multi", layouts=layouts(), latent_size=8, param_loss=param_loss)
    model.build()
    data = batch(4, owner="va")
    with tf.GradientTape() as tape:
        out = model(data, training=True)
        loss = ops.mean(model.param_losses(out["scores"], data))
    fm_vars = model.heads["fm"].trainable_variables
    va_vars = model.heads["va"].trainable_variables
    grads = tape.gradient(loss, fm_vars + va_vars)
    assert all(g is None or float(ops.max(ops.abs(g))) == 0.0 for g in grads[: len(fm_vars)])
    assert any(g is not None and float(ops.max(ops.abs(g))) > 0.0 for g in grads[len(fm_vars) :])


def test_kl_warmup_schedule():
    assert [float(kl_weight(s, 100)) for s in (0, 25, 50, 100, 400)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    assert float(kl_weight(0, 0)) == 1.0
    assert [float(kl_weight(s, 10, beta=0.01)) for s in (0, 5, 10, 20)] == pytest.approx([0, 0.005, 0.01, 0.01])
    assert float(kl_weight(7, 0, beta=0.25)) == 0.25


def test_kl_per_dimension_and_free_bits_known_answers():
    # q = N(mu, 1): KL = mu^2 / 2 per dimension; dims with mu 0, 1, 2 -> 0, 0.5, 2 nats
    z_mean = np.array([[0.0, 1.0, 2.0], [0.0, -1.0, 2.0]], np.float32)
    kl = ops.convert_to_numpy(kl_per_dimension(z_mean, np.zeros_like(z_mean)))
    np.testing.assert_allclose(kl, [0.0, 0.5, 2.0], atol=1e-6)
    assert float(kl_penalty(kl, 0.0)) == pytest.approx(2.5)
    assert float(kl_penalty(kl, 1.0)) == pytest.approx(1.0 + 1.0 + 2.0)  # dims under 1 nat count as 1


def test_free_bits_leave_informative_dimensions_without_kl_gradient():
    z_mean = tf.Variable([[0.3, 2.0], [-0.3, -2.0]])
    with tf.GradientTape() as tape:
        penalty = kl_penalty(kl_per_dimension(z_mean, tf.zeros_like(z_mean)), 0.5)
    grad = tape.gradient(penalty, z_mean).numpy()
    assert np.all(grad[:, 0] == 0.0)  # 0.045 nats < 0.5: free
    np.testing.assert_allclose(grad[:, 1], [1.0, -1.0])  # d/dmu mean(mu^2/2) over a batch of 2


def test_mixed_activation_is_a_softmax_per_block():
    lay = Layout.from_spec(load_spec("va"))
    scores = np.random.default_rng(0).normal(size=(5, lay.size)).astype(np.float32) * 3
    probs = ops.convert_to_numpy(activate(scores, lay, "mixed"))
    sums = np.zeros((5, lay.n_segments))
    np.add.at(sums.T, lay.segments, probs.T)
    categorical = np.unique(lay.segments[lay.continuous == 0])
    np.testing.assert_allclose(sums[:, categorical], 1.0, rtol=1e-5)
    cont = lay.continuous == 1
    np.testing.assert_allclose(probs[:, cont], 1 / (1 + np.exp(-scores[:, cont])), rtol=1e-5)


def test_mixed_loss_known_answers():
    lay = Layout.from_spec(load_spec("va"))
    target = np.zeros((1, lay.size), np.float32)
    cont = lay.continuous == 1
    target[0, cont] = 0.5
    for seg in np.unique(lay.segments[~cont]):  # class 0 of every block
        target[0, np.flatnonzero(lay.segments == seg)[0]] = 1.0
    mask = np.ones_like(target)
    zeros = np.zeros_like(target)  # sigmoid(0) = 0.5 exact; uniform blocks: CE = log(n) each
    expected = sum(np.log(n) for n in load_spec("va").classes if n >= 2) / lay.n_params
    got = float(param_loss_per_sample(zeros, target, mask, lay, "mixed")[0])
    assert got == pytest.approx(expected, rel=1e-5)
    confident = np.where(target == 1.0, 20.0, zeros).astype(np.float32)
    assert float(param_loss_per_sample(confident, target, mask, lay, "mixed")[0]) < 1e-6
    assert float(param_loss_per_sample(confident, target, 0 * mask, lay, "mixed")[0]) == 0.0


def test_the_parameter_weight_scales_only_the_parameter_loss():
    data = batch(3)
    losses = {}
    for weight in (1.0, 10.0):
        keras.utils.set_random_seed(0)
        model = SynthVAE(approach="multi", layouts=layouts(), latent_size=8, param_weight=weight, beta=0.5)
        model.build()
        losses[weight] = {k: float(v) for k, v in model.compute_losses(data, model(data, training=False)).items()}
        kl = 0.5 * losses[weight]["kl_loss"]
        assert losses[weight]["loss"] == pytest.approx(
            losses[weight]["spec_loss"] + weight * losses[weight]["param_loss"] + kl, rel=1e-5
        )
    # same initial weights: the terms are equal, only their sum differs
    assert losses[10.0]["param_loss"] == pytest.approx(losses[1.0]["param_loss"], rel=1e-6)
    assert losses[10.0]["loss"] - losses[1.0]["loss"] == pytest.approx(9 * losses[1.0]["param_loss"], rel=1e-4)


def test_paper_mse_loss_of_a_masked_head_is_zero():
    lay = Layout.from_spec(load_spec("fm"))
    scores = np.random.default_rng(1).normal(size=(3, lay.size)).astype(np.float32)
    zeros = np.zeros((3, lay.size), np.float32)
    assert float(ops.max(param_loss_per_sample(scores, zeros, zeros, lay, "mse"))) == 0.0


def test_bad_model_arguments():
    with pytest.raises(ASPError, match="approach must be multi, single or synth"):
        SynthVAE(approach="triple", layouts=layouts(), latent_size=8)
    with pytest.raises(ASPError, match="exactly one synth"):
        SynthVAE(approach="synth", layouts=layouts(), latent_size=8)
    with pytest.raises(ASPError, match="--beta must be"):
        SynthVAE(approach="multi", layouts=layouts(), latent_size=8, beta=-1.0)
    with pytest.raises(ASPError, match="--free-bits must be"):
        SynthVAE(approach="multi", layouts=layouts(), latent_size=8, free_bits=float("nan"))
    with pytest.raises(ASPError, match="--param-weight must be"):
        SynthVAE(approach="multi", layouts=layouts(), latent_size=8, param_weight=0.0)


def test_note_input_heads_read_the_note_and_need_it():
    model = SynthVAE(approach="multi", layouts=layouts(), latent_size=8, note_input=True)
    model.build()
    mels = batch(2)["mel"]
    with pytest.raises(ASPError, match="trained with --note-input: it needs each sound's MIDI note"):
        model.predict_vectors(mels)
    low, high = (model.predict_vectors(mels, notes=np.array([n, n])) for n in (36, 84))
    assert all(low[s].shape == (2, lay.size) for s, lay in zip(SYNTHS, layouts()))
    assert any(np.abs(low[s] - high[s]).max() > 1e-4 for s in SYNTHS)  # the note reaches the heads
    plain = SynthVAE(approach="multi", layouts=layouts(), latent_size=8)
    plain.build()
    a, b = (plain.predict_vectors(mels, notes=np.array([n, n])) for n in (36, 84))
    assert all(np.array_equal(a[s], b[s]) for s in SYNTHS)  # a model without it ignores notes


@pytest.mark.slow
def test_note_input_learns_what_only_the_note_tells():
    """Every sound has the same spectrogram and a preset set by its note: only a model that is
    given the note can beat the mean preset."""
    rng = np.random.default_rng(0)
    notes = rng.integers(36, 85, 64)
    data = batch(64, owner="va")
    data["mel"] = np.zeros_like(data["mel"])
    data["params_va"] = np.repeat(((notes - 36) / 48.0)[:, None], data["params_va"].shape[1], 1).astype(np.float32)
    data["note"] = notes.astype(np.float32)
    losses = {}
    for note_input in (False, True):
        keras.utils.set_random_seed(0)
        model = SynthVAE(
            approach="multi", layouts=layouts(), latent_size=4, note_input=note_input, spec_decoder="none", beta=0.0
        )
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        stream = tf.data.Dataset.from_tensor_slices(data).batch(16)
        model.fit(stream, epochs=30, verbose=0, shuffle=False)
        losses[note_input] = float(model.evaluate(stream, verbose=0, return_dict=True)["param_loss"])
    mean_loss = float(np.mean((data["params_va"] - data["params_va"].mean()) ** 2))  # per value
    assert losses[False] > 0.5 * mean_loss  # the spectrogram tells nothing
    assert losses[True] < 0.2 * mean_loss  # the note does
