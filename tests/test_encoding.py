import numpy as np
import pytest
from conftest import ALL_SYNTHS, toy_spec

from asp.errors import ASPError
from data.encoding import Codec
from data_generation.presets import random_presets
from data_generation.spec import load_spec


def _toy():
    return toy_spec((0, "osc", 0.25), (3, "osc", 0.0), (0, "fil", 0.0), (17, "mod", 0.0, True), (2, "env", 1.0))


def test_known_encoding():
    codec = Codec(_toy())
    assert codec.size == 1 + 3 + 1 + 2
    vec = codec.encode(np.array([0.3, 0.5, 0.9, 0.0, 1.0]))
    np.testing.assert_allclose(vec, [0.3, 0, 1, 0, 0.9, 0, 1], rtol=1e-6)
    assert vec.dtype == np.float32
    np.testing.assert_array_equal(codec.continuous_mask, [1, 0, 0, 0, 1, 0, 0])


def test_decode_takes_argmax_and_restores_fixed_defaults():
    codec = Codec(_toy())
    scores = np.array([[1.4, 0.2, 0.1, 0.7, -0.2, 0.6, 0.4]])
    np.testing.assert_allclose(codec.decode(scores), [[1.0, 1.0, 0.0, 0.0, 0.0]])


@pytest.mark.parametrize("name", ALL_SYNTHS)
def test_round_trip_every_spec(name):
    spec = load_spec(name)
    codec = Codec(spec)
    presets = random_presets(spec, 64, np.random.default_rng(1))
    encoded = codec.encode(presets)
    assert encoded.shape == (64, spec.encoded_size)
    # every categorical block is one-hot
    for n, (_, offsets) in codec.blocks.items():
        block = encoded[:, offsets[:, None] + np.arange(n)]
        np.testing.assert_array_equal(block.sum(-1), 1.0)
    np.testing.assert_allclose(codec.decode(encoded), presets, atol=1e-6)
    np.testing.assert_allclose(codec.decode(encoded[0]), presets[0], atol=1e-6)


def test_wrong_shapes_are_clear_errors():
    codec = Codec(load_spec("serum"))
    with pytest.raises(ASPError, match=r"shape \(\.\.\., 315\)"):
        codec.encode(np.zeros((2, 300)))
    with pytest.raises(ASPError, match=r"shape \(\.\.\., 480\)"):
        codec.decode(np.zeros(479))


def test_group_of_position_follows_widths():
    groups = Codec(_toy()).group_of_position()
    assert groups.tolist() == ["osc", "osc", "osc", "osc", "fil", "env", "env"]
