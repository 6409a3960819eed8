"""The paper's VAE (Keras 3 functional networks) and its three approaches.

Networks (the paper's; docs/paper.md, "What the code takes from the paper"):
    encoder   mel (128, 431) -> [Conv2D(8, 3) + BatchNorm + ReLU + MaxPool(2)] x 2 -> flatten
              -> Dense z_mean, Dense z_log_var (latent_size each); z = mean + exp(log_var / 2) * eps
    decoder   z -> Dense -> reshape (32, 108, 8) -> Conv2DTranspose x 2 (stride 2) -> sigmoid -> (128, 431)
    head      z -> Dense 1024 x 3 (ReLU) -> Dense(encoded size): one per synth, or one padded

Approaches:
    multi   joint encoder, one head per synth, each head's output multiplied by its synth's mask
    single  joint encoder, one head over the zero-padded vector, times the padded mask
    synth   one encoder + one head for one synth, trained on that synth's samples only (baseline)

Losses: spectrogram MSE + param_weight * parameter loss + beta_t * KL (the paper's
weight and the default is 1; 10 lets the parameters, not the spectrogram, steer the encoder: docs/training.md,
"The loss"). The reconstruction terms are per-element means (~0.01-0.1 each) while the KL is in nats
summed over the latent dimensions, so at the paper's beta = 1 ignoring z is the optimum: the
latent collapses and every head predicts one average preset. ``beta`` is therefore a training
option (the final KL weight, reached linearly over ``kl_warmup_steps`` steps) and ``free_bits``
the KL per latent dimension (nats, batch mean) below which that dimension is not pushed towards
the prior (Kingma et al. 2016). The paper's settings (beta 1, no free bits, 100 warm-up epochs,
parameter weight 1) stay reachable (``--paper-loss``).
``param_loss="mse"`` is the paper's (sigmoid outputs, MSE on the masked vector); ``"mixed"``
uses MSE for continuous parameters and softmax cross-entropy within each categorical block.
"""

from __future__ import annotations

from asp import backend  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from asp.checkpoints import CONFIG as CONFIG_NAME
from asp.checkpoints import EXPORTED_WEIGHTS, WEIGHTS, damaged_fix, read_config, verify_export
from asp.config import DEFAULTS, LEGACY, check_settings
from asp.errors import ASPError
from data.encoding import Codec
from data_generation.spec import SynthSpec, load_spec, spec_from_json

MEL_SHAPE = (128, 431)
# Bumped when a change alters what training produces with the same settings (recorded in each run's
# config.json and part of the experiment runner's checkpoint key, so stale runs are not reused).
# 2: BatchNorm momentum 0.9, heads start at the training mean, beta and free bits. 3: parts (encoder,
# spectrogram decoder, heads) and the schema (config.json keys by field name).
MODEL_VERSION = 3
HEAD_UNITS = 1024
BN_MOMENTUM = 0.9  # moving statistics that follow a short run (Keras: 0.99, ~500 steps to forget the init)


@dataclass(frozen=True)
class Layout:
    """Where a synth's continuous values and one-hot blocks sit in its encoded vector, as the
    backend ops need it (read from ``data.encoding.Codec``, the one definition of the layout).

    Attributes:
        name: synth name.
        size: encoded size.
        continuous: (size,) float32, 1 at continuous positions.
        segments: (size,) int32, the learned parameter of each position (a categorical block is
            one segment; each continuous value its own).
        n_segments: number of segments.
        n_params: learned parameters (continuous values + blocks).
    """

    name: str
    size: int
    continuous: np.ndarray
    segments: np.ndarray
    n_segments: int
    n_params: int

    @classmethod
    def from_spec(cls, spec: SynthSpec) -> Layout:
        codec = Codec(spec)
        n = len(codec.starts)
        cont, segments = codec.continuous_mask.astype(np.float32), codec.segments.astype(np.int32)
        return cls(spec.name, codec.size, cont, segments, n, n)


def safe(name: str) -> str:
    """A synth name as a Keras layer name."""
    return re.sub(r"[^0-9A-Za-z_]", "_", name)


# ---------------------------------------------------------------------------------------
# parts, registered by name: a run's config.json records which ones it was built with

ENCODERS: dict[str, Callable[[int], keras.Model]] = {}
SPEC_DECODERS: dict[str, Callable[[int], keras.Model | None]] = {}


def register_encoder(name: str):
    """Registers an encoder builder: ``builder(latent_size) -> keras.Model`` taking the mel
    (batch, 128, 431) and returning [z_mean, z_log_var], each (batch, latent_size). Its model
    must be named ``encoder``. A run selects it with ``--encoder NAME``."""

    def add(builder):
        ENCODERS[name] = builder
        return builder

    return add


def register_spec_decoder(name: str):
    """Registers a spectrogram decoder builder: ``builder(latent_size) -> keras.Model`` named
    ``spec_decoder`` mapping z to a (batch, 128, 431) mel in [0, 1], or None for no decoder."""

    def add(builder):
        SPEC_DECODERS[name] = builder
        return builder

    return add


def _part(table: dict, kind: str, name: str):
    if name not in table:
        raise ASPError(f"unknown {kind} {name!r}; use one of {', '.join(sorted(table))}")
    return table[name]


@register_encoder("paper")
def paper_encoder(latent_size: int) -> keras.Model:
    """The paper's: [Conv2D(8, 3) + BatchNorm + ReLU + MaxPool(2)] x 2 -> flatten -> Dense."""
    mel = keras.Input(MEL_SHAPE, name="mel")
    x = layers.Reshape((*MEL_SHAPE, 1))(mel)
    for i in range(2):
        x = layers.Conv2D(8, 3, padding="same", name=f"conv{i}")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"bn{i}")(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    z_mean = layers.Dense(latent_size, name="z_mean")(x)
    z_log_var = layers.Dense(latent_size, name="z_log_var")(x)
    return keras.Model(mel, [z_mean, z_log_var], name="encoder")


def _res_block(x, channels: int, strides: tuple[int, int], name: str):
    """Two 3x3 convolutions with BatchNorm and a projected shortcut (He et al. 2016)."""
    y = layers.Conv2D(channels, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_a")(x)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_a_bn")(y)
    y = layers.ReLU()(y)
    y = layers.Conv2D(channels, 3, padding="same", use_bias=False, name=f"{name}_b")(y)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_b_bn")(y)
    skip = layers.Conv2D(channels, 1, strides=strides, use_bias=False, name=f"{name}_skip")(x)
    skip = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_skip_bn")(skip)
    return layers.ReLU()(layers.Add()([y, skip]))


RESNET_WIDTH = 16
RESNET_DENSE = 256


@register_encoder("resnet")
def resnet_encoder(latent_size: int) -> keras.Model:
    """A residual CNN with frequency-aware pooling, sized for a 2-core CPU.

    A strided stem (frequency / 2, time / 4) and three residual blocks (16 -> 128 channels) reach
    (8 bands, 27 frames); the pooling then keeps both axes instead of flattening everything: the
    mean and max over time of every band (the spectrum's shape: oscillators, filter) and the mean
    over bands of every frame (the envelope). A dense layer maps them to the latent.
    """
    w = RESNET_WIDTH
    mel = keras.Input(MEL_SHAPE, name="mel")
    x = layers.Reshape((*MEL_SHAPE, 1))(mel)
    x = layers.Conv2D(w, (5, 5), strides=(2, 4), padding="same", use_bias=False, name="stem")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.ReLU()(x)  # (64, 108, w)
    x = _res_block(x, 2 * w, (2, 2), "block1")  # (32, 54)
    x = _res_block(x, 4 * w, (2, 2), "block2")  # (16, 27)
    x = _res_block(x, 8 * w, (2, 1), "block3")  # (8, 27)
    bands_mean = layers.Flatten()(ops.mean(x, axis=2))  # (8 * 8w): per band, over time
    bands_max = layers.Flatten()(ops.max(x, axis=2))
    frames = layers.Flatten()(ops.mean(x, axis=1))  # (27 * 8w): per frame, over bands
    x = layers.Concatenate()([bands_mean, bands_max, frames])
    x = layers.Dense(RESNET_DENSE, activation="relu", name="dense")(x)
    z_mean = layers.Dense(latent_size, name="z_mean")(x)
    z_log_var = layers.Dense(latent_size, name="z_log_var")(x)
    return keras.Model(mel, [z_mean, z_log_var], name="encoder")


@register_spec_decoder("paper")
def paper_spec_decoder(latent_size: int) -> keras.Model:
    """z -> Dense -> reshape (32, 108, 8) -> Conv2DTranspose x 2 (stride 2) -> sigmoid -> (128, 431)."""
    z = keras.Input((latent_size,), name="z")
    x = layers.Dense(32 * 108 * 8, activation="relu")(z)
    x = layers.Reshape((32, 108, 8))(x)
    x = layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2DTranspose(1, 3, strides=2, padding="same", activation="sigmoid")(x)  # (128, 432, 1)
    x = layers.Cropping2D(((0, 0), (0, 1)))(x)
    return keras.Model(z, layers.Reshape(MEL_SHAPE)(x), name="spec_decoder")


@register_spec_decoder("none")
def no_spec_decoder(latent_size: int) -> None:
    """No spectrogram reconstruction: the parameter heads alone train the encoder."""
    return None


NOTE_CENTER, NOTE_SCALE = 60.0, 24.0  # a MIDI note as a head input: (note - 60) / 24, about [-1.5, 1.5]


def note_feature(notes):
    """MIDI notes (batch,) -> the heads' note input (batch, 1) float32."""
    notes = ops.reshape(ops.cast(notes, "float32"), (-1, 1))
    return (notes - NOTE_CENTER) / NOTE_SCALE


def build_head(name: str, size: int, latent_size: int, note_input: bool = False) -> keras.Model:
    """z (and, with ``note_input``, the sound's note feature) -> Dense 1024 x 3 (ReLU) -> raw
    parameter scores (batch, size)."""
    z = keras.Input((latent_size,), name="z")
    inputs = [z, keras.Input((1,), name="note")] if note_input else z
    x = layers.Concatenate(name="z_note")(inputs) if note_input else z
    for i in range(3):
        x = layers.Dense(HEAD_UNITS, activation="relu", name=f"dense{i}")(x)
    return keras.Model(inputs, layers.Dense(size, name="scores")(x), name=f"head_{safe(name)}")


# ---------------------------------------------------------------------------------------
# parameter activations and losses (backend ops)


def activate(scores, layout: Layout, param_loss: str):
    """Raw head scores -> parameter vector: sigmoid everywhere (``mse``), or sigmoid on continuous
    positions and a softmax within each categorical block (``mixed``). (batch, size)."""
    if param_loss == "mse":
        return ops.sigmoid(scores)
    cont = ops.convert_to_tensor(layout.continuous)
    return cont * ops.sigmoid(scores) + (1.0 - cont) * ops.exp(_block_log_softmax(scores, layout))


def _block_log_softmax(scores, layout: Layout):
    """log softmax of every categorical block, per position: (batch, size)."""
    segments = ops.convert_to_tensor(layout.segments)
    by_position = ops.transpose(scores)  # (size, batch): segment ops reduce the first axis
    block_max = ops.take(ops.segment_max(by_position, segments, num_segments=layout.n_segments), segments, axis=0)
    shifted = by_position - ops.stop_gradient(block_max)
    log_sum = ops.log(
        ops.take(ops.segment_sum(ops.exp(shifted), segments, num_segments=layout.n_segments), segments, axis=0)
    )
    return ops.transpose(shifted - log_sum)


def param_loss_per_sample(scores, target, mask, layout: Layout, param_loss: str):
    """Parameter loss of one head for each sample: (batch,).

    ``mse``: mean over the vector of (mask * sigmoid(scores) - target)^2 (the paper's).
    ``mixed``: (sum of squared errors of continuous values + sum of block cross-entropies) /
    number of parameters, for the samples the mask selects.
    """
    if param_loss == "mse":
        return ops.mean(ops.square(mask * ops.sigmoid(scores) - target), axis=-1)
    cont = ops.convert_to_tensor(layout.continuous)
    squared = ops.sum(cont * mask * ops.square(ops.sigmoid(scores) - target), axis=-1)
    cross = -ops.sum((1.0 - cont) * mask * target * _block_log_softmax(scores, layout), axis=-1)
    return (squared + cross) / float(layout.n_params)


def kl_per_dimension(z_mean, z_log_var):
    """KL(q(z|x) || N(0, I)) of each latent dimension, averaged over the batch: (latent,)."""
    return ops.mean(-0.5 * (1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var)), axis=0)


def kl_penalty(kl_dims, free_bits: float):
    """The KL term the optimizer sees: sum over dimensions of max(KL_d, free_bits) (a scalar).

    A dimension that carries less than ``free_bits`` nats gets no gradient towards the prior, so
    the encoder can keep information in it (free bits, Kingma et al. 2016).
    """
    if free_bits <= 0:
        return ops.sum(kl_dims)
    return ops.sum(ops.maximum(kl_dims, float(free_bits)))


def kl_weight(step, warmup_steps: int, beta: float = 1.0):
    """Linear KL warm-up to ``beta``: beta * step / warmup_steps, capped at beta (beta from the
    start when warmup_steps is 0)."""
    if warmup_steps <= 0:
        return ops.convert_to_tensor(float(beta))
    return float(beta) * ops.minimum(1.0, ops.cast(step, "float32") / float(warmup_steps))


# ---------------------------------------------------------------------------------------
# parameter heads: a network from z to scores, and how its scores are scored and read


class ParamHead:
    """One parameter decoder: its network (``net``, z -> scores), its loss and its predictions.

    A head serves one synth (``layouts`` of one) or, zero-padded to the widest, several (the
    joint-decoder "single" approach). The approaches are layouts of heads (``heads_for``).
    """

    def __init__(self, name: str, layouts: list[Layout], latent_size: int, param_loss: str, note_input: bool = False):
        self.name, self.layouts, self.param_loss = name, list(layouts), param_loss
        self.size = max(lay.size for lay in self.layouts)
        self.net = build_head(name, self.size, latent_size, note_input)

    @property
    def padded(self) -> bool:
        return len(self.layouts) > 1

    def loss(self, scores, batch: dict):
        """Parameter loss of each sample: (batch,). A synth's values are scored only for the
        samples its mask selects; a padded head scores each sample with its own synth's layout
        (``mse``: against the zero-padded vector, the paper's)."""
        if self.padded and self.param_loss == "mse":
            return ops.mean(ops.square(batch["mask_single"] * ops.sigmoid(scores) - batch["params_single"]), -1)
        total = 0.0
        for lay in self.layouts:
            total = total + param_loss_per_sample(
                scores[:, : lay.size], batch[f"params_{lay.name}"], batch[f"mask_{lay.name}"], lay, self.param_loss
            )
        return total

    def predict(self, scores, layout: Layout) -> np.ndarray:
        """Scores -> the encoded vector of one of its synths (numpy, (batch, size))."""
        return ops.convert_to_numpy(activate(scores[:, : layout.size], layout, self.param_loss))

    def start_at(self, mean: np.ndarray) -> None:
        """Sets the output bias so that the untrained head predicts ``mean`` (the training-mean
        vector): logit(mean) for sigmoid outputs, log(class frequency) in categorical blocks."""
        dense = self.net.get_layer("scores")
        kernel, bias = dense.get_weights()
        mean = np.clip(np.asarray(mean, dtype=np.float64), 0.01, 0.99)
        init = np.log(mean / (1.0 - mean))
        if self.param_loss == "mixed" and not self.padded:
            init = np.where(self.layouts[0].continuous > 0, init, np.log(mean))
        dense.set_weights([kernel, init.astype(bias.dtype)])


def heads_for(
    approach: str, layouts: list[Layout], latent_size: int, param_loss: str, note_input: bool = False
) -> list[ParamHead]:
    """The heads of an approach: one per synth (multi, synth) or one padded head (single)."""
    if approach == "single":
        return [ParamHead("single", layouts, latent_size, param_loss, note_input)]
    return [ParamHead(lay.name, [lay], latent_size, param_loss, note_input) for lay in layouts]


# ---------------------------------------------------------------------------------------
# generative parameter heads: several presets per sound, drawn from a model of every preset that
# makes it (a regression head predicts their average, which may make none of them)

GENERATIVE_HEADS: dict[str, type] = {}
GENERATIVE_WEIGHTS = "generative.weights.npz"  # beside a run's weights: {synth}/{i} per head variable


def register_generative_head(name: str):
    """Registers a generative head class: ``cls(layout, latent_size, note_input, units)`` with
    ``net`` (a keras.Model), ``training_pairs(z, notes, vectors, rng)`` and ``sample(z, notes, k,
    seed)``. A run records it in config.json (``generative``: kind, note input, units)."""

    def add(cls):
        GENERATIVE_HEADS[name] = cls
        return cls

    return add


FLOW_UNITS = 512
FLOW_STEPS = 16  # Euler steps from noise to a preset (bimodal test: 8 already separates the modes)
TIME_FREQUENCIES = 8  # sinusoidal features of the flow time t


def one_hot_blocks(vectors: np.ndarray, layout: Layout) -> np.ndarray:
    """Encoded vectors (..., size) in [0, 1] -> the same with every categorical block set to the
    one-hot of its highest value (continuous positions unchanged)."""
    out = np.array(vectors, dtype=np.float32, copy=True)
    categorical = layout.continuous == 0
    for segment in np.unique(layout.segments[categorical]):
        positions = np.flatnonzero(layout.segments == segment)
        winner = np.argmax(out[..., positions], axis=-1)
        out[..., positions] = np.eye(len(positions), dtype=np.float32)[winner]
    return out


@register_generative_head("flow")
class FlowHead:
    """Conditional flow matching (Lipman et al. 2023; rectified flow, Liu et al. 2023) over one
    synth's encoded preset, conditioned on z (and the note).

    The encoded vector v in [0, 1] (continuous values, categorical one-hot blocks) is mapped to
    x1 = 2v - 1; a path x_t = (1 - t) x0 + t x1 from Gaussian noise x0 is learned by regressing
    the network's velocity on x1 - x0. Sampling integrates the velocity from noise with
    ``FLOW_STEPS`` Euler steps, maps back to [0, 1] and takes the highest class of each
    categorical block. Where several presets make one sound the flow carries noise to each of
    them (a regression head predicts their mean); the network is
    (z, [note], x_t, sin/cos features of t) -> Dense ``units`` x 3 (SiLU) -> velocity.
    """

    def __init__(self, layout: Layout, latent_size: int, note_input: bool = True, units: int = FLOW_UNITS):
        self.layout, self.latent_size, self.note_input = layout, int(latent_size), bool(note_input)
        size = layout.size
        z = keras.Input((latent_size,), name="z")
        x = keras.Input((size,), name="x_t")
        t = keras.Input((1,), name="t")
        inputs = [z, x, t] + ([keras.Input((1,), name="note")] if note_input else [])
        angles = t * ops.convert_to_tensor(np.pi * 2.0 ** np.arange(TIME_FREQUENCIES, dtype=np.float32))
        h = layers.Concatenate(name="inputs")([z, x, ops.sin(angles), ops.cos(angles), *inputs[3:]])
        for i in range(3):
            h = layers.Dense(units, activation="silu", name=f"dense{i}")(h)
        self.net = keras.Model(inputs, layers.Dense(size, name="velocity")(h), name=f"flow_{safe(layout.name)}")

    def _inputs(self, z, x, t, notes) -> list:
        inputs = [np.asarray(z, np.float32), np.asarray(x, np.float32), np.asarray(t, np.float32).reshape(-1, 1)]
        if self.note_input:
            inputs.append(((np.asarray(notes, np.float32) - NOTE_CENTER) / NOTE_SCALE).reshape(-1, 1))
        return inputs

    def training_pairs(self, z: np.ndarray, notes: np.ndarray, vectors: np.ndarray, rng: np.random.Generator):
        """One draw of (inputs, target velocity) for ``net.fit`` from n training samples.

        Args:
            z: (n, latent) z_mean of each sound; notes: (n,) MIDI notes; vectors: (n, size) encoded presets.
            rng: draws t ~ U(0, 1) and the noise.
        """
        x1 = 2.0 * np.asarray(vectors, np.float32) - 1.0
        x0 = rng.standard_normal(x1.shape).astype(np.float32)
        t = rng.uniform(0.0, 1.0, (len(x1), 1)).astype(np.float32)
        return self._inputs(z, (1.0 - t) * x0 + t * x1, t, notes), x1 - x0

    def sample(self, z: np.ndarray, notes: np.ndarray, k: int, seed: int = 0, steps: int = FLOW_STEPS) -> np.ndarray:
        """k presets per sound: (n, k, size) encoded vectors (one-hot blocks), the same for a seed.

        Args:
            z: (n, latent) z_mean of each sound; notes: (n,) MIDI notes (ignored without note input).
        """
        z = np.repeat(np.asarray(z, np.float32), k, axis=0)
        notes = np.repeat(np.asarray(notes, np.float32).reshape(-1), k)
        x = np.random.default_rng(seed).standard_normal((len(z), self.layout.size)).astype(np.float32)
        for i in range(steps):
            t = np.full((len(z),), i / steps, np.float32)
            x = x + ops.convert_to_numpy(self.net(self._inputs(z, x, t, notes), training=False)) / steps
        vectors = one_hot_blocks(np.clip((x + 1.0) / 2.0, 0.0, 1.0), self.layout)
        return vectors.reshape(-1, k, self.layout.size)


class GenerativeHeads:
    """The generative head of each synth of a model (``kind`` in ``GENERATIVE_HEADS``), trained on
    the model's frozen encoder (``asp.training.generative``) and saved in ``GENERATIVE_WEIGHTS``."""

    def __init__(self, kind: str, layouts: list[Layout], latent_size: int, *, note_input: bool, units: int):
        cls = _part(GENERATIVE_HEADS, "generative head", kind)
        self.kind, self.note_input, self.units = kind, bool(note_input), int(units)
        self.heads = {lay.name: cls(lay, latent_size, note_input, units) for lay in layouts}

    def record(self) -> dict:
        """What config.json records of the heads (``generative``): kind, note input, units."""
        return {"kind": self.kind, "note_input": self.note_input, "units": self.units}

    @classmethod
    def from_record(cls, record: dict, layouts: list[Layout], latent_size: int) -> GenerativeHeads:
        return cls(
            record["kind"], layouts, latent_size, note_input=record.get("note_input", True), units=record["units"]
        )

    def variables(self) -> dict[str, np.ndarray]:
        return {
            f"{synth}/{i}": ops.convert_to_numpy(v)
            for synth, head in self.heads.items()
            for i, v in enumerate(head.net.weights)
        }

    def load(self, path: Path) -> None:
        """Sets the heads' variables from ``path`` (any float dtype).

        Raises:
            ValueError: the file holds other variables than the heads have.
        """
        with np.load(path) as saved:
            expected = {f"{s}/{i}": v for s, head in self.heads.items() for i, v in enumerate(head.net.weights)}
            if set(saved.files) != set(expected):
                raise ValueError(f"it holds {len(saved.files)} arrays, the heads have {len(expected)} variables")
            for key, variable in expected.items():
                if tuple(saved[key].shape) != tuple(variable.shape):
                    raise ValueError(f"{key} has shape {saved[key].shape}, the head's is {tuple(variable.shape)}")
                variable.assign(saved[key].astype(np.float32))


# ---------------------------------------------------------------------------------------
# the model


class SynthVAE(keras.Model):
    """A VAE assembled from registered parts: an encoder, a spectrogram decoder (or none) and
    the parameter heads of an approach. Subclassed only for its ``train_step``/``test_step``.

    Args:
        approach: multi, single or synth.
        layouts: the synths' layouts (one for ``synth``), in dataset order.
        latent_size: size of z.
        encoder: a name in ``ENCODERS``.
        spec_decoder: a name in ``SPEC_DECODERS``.
        param_loss: mse or mixed.
        kl_warmup_steps: steps over which the KL weight rises from 0 to ``beta``.
        beta: the final KL weight.
        free_bits: nats per latent dimension left free of the KL penalty.
        param_weight: weight of the parameter loss (the spectrogram loss weighs 1).
        note_input: the heads also take each sound's MIDI note (batches then hold ``note``).
        seed: seed of the reparameterization noise.

    Batches are dicts: ``mel`` (batch, 128, 431); ``params_<synth>``/``mask_<synth>`` for each
    synth; ``params_single``/``mask_single`` for the single approach; ``note`` (batch,) MIDI notes
    with ``note_input``.
    """

    def __init__(
        self,
        *,
        approach: str,
        layouts: list[Layout],
        latent_size: int,
        encoder: str = DEFAULTS["encoder"],
        spec_decoder: str = DEFAULTS["spec_decoder"],
        param_loss: str = DEFAULTS["param_loss"],
        kl_warmup_steps: int = 0,
        beta: float = DEFAULTS["beta"],
        free_bits: float = DEFAULTS["free_bits"],
        param_weight: float = DEFAULTS["param_weight"],
        note_input: bool = DEFAULTS["note_input"],
        seed: int = DEFAULTS["seed"],
        **kwargs,
    ):
        super().__init__(**kwargs)
        # the values TrainConfig refuses, refused by its own check (a model built from Python has none)
        check_settings(
            approach=approach, param_loss=param_loss, beta=beta, free_bits=free_bits, param_weight=param_weight
        )
        if approach == "synth" and len(layouts) != 1:
            raise ASPError("the per-synth approach takes exactly one synth")
        self.approach = approach
        self.layouts = list(layouts)
        self.latent_size = int(latent_size)
        self.param_loss = param_loss
        self.kl_warmup_steps = int(kl_warmup_steps)
        self.beta = float(beta)
        self.free_bits = float(free_bits)
        self.param_weight = float(param_weight)
        self.note_input = bool(note_input)
        self.encoder = _part(ENCODERS, "encoder", encoder)(self.latent_size)
        self.spec_decoder = _part(SPEC_DECODERS, "spectrogram decoder", spec_decoder)(self.latent_size)
        self._param_heads = heads_for(approach, self.layouts, self.latent_size, param_loss, self.note_input)
        self.heads = {head.name: head.net for head in self._param_heads}  # tracked by Keras: the weights
        self._head_of = {lay.name: head for head in self._param_heads for lay in head.layouts}
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.step = self.add_weight(shape=(), initializer="zeros", trainable=False, name="kl_step", dtype="int64")
        self.generative: GenerativeHeads | None = None  # set by load_model for a run that has them
        names = ["loss", "recon_loss", "spec_loss", "param_loss", "kl_loss", "beta"]
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def build(self, input_shape=None):
        z = ops.zeros((1, self.latent_size))
        self.encoder(ops.zeros((1, *MEL_SHAPE)))
        if self.spec_decoder is not None:
            self.spec_decoder(z)
        for head in self.heads.values():
            head(self._head_input(z, ops.full((1,), NOTE_CENTER)))
        self.built = True

    def _head_input(self, z, notes):
        """What the heads take: z, or [z, note feature] with ``note_input``."""
        if not self.note_input:
            return z
        if notes is None:
            raise ASPError(
                "this model was trained with --note-input: it needs each sound's MIDI note "
                "(pass notes=, or a batch with 'note')"
            )
        return [z, note_feature(notes)]

    def call(self, inputs, training=False):
        mel = inputs["mel"] if isinstance(inputs, dict) else inputs
        z_mean, z_log_var = self.encoder(mel, training=training)
        if training:
            eps = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
            z = z_mean + ops.exp(0.5 * z_log_var) * eps
        else:
            z = z_mean
        head_input = self._head_input(z, inputs.get("note") if isinstance(inputs, dict) else None)
        out = {
            "z_mean": z_mean,
            "z_log_var": z_log_var,
            "scores": {name: head(head_input, training=training) for name, head in self.heads.items()},
        }
        if self.spec_decoder is not None:
            out["spec"] = self.spec_decoder(z, training=training)
        return out

    def start_at_mean(self, means: dict[str, np.ndarray]) -> None:
        """Sets each head's output bias so that an untrained head predicts the training-mean
        preset (``ParamHead.start_at``): training starts from the mean predictor instead of 0.5
        everywhere.

        Args:
            means: {head name: mean encoded vector of its training samples}: per synth
                (encoded size,), or ``single`` (largest size,) for the zero-padded vectors.
        """
        for head in self._param_heads:
            head.start_at(means[head.name])

    # -- losses ----------------------------------------------------------------------
    def param_losses(self, scores: dict, batch: dict):
        """Parameter loss per sample, summed over heads: (batch,)."""
        total = 0.0
        for head in self._param_heads:
            total = total + head.loss(scores[head.name], batch)
        return total

    def compute_losses(self, batch: dict, out: dict) -> dict:
        params = ops.mean(self.param_losses(out["scores"], batch))
        spec = ops.mean(ops.square(out["spec"] - batch["mel"])) if "spec" in out else ops.zeros(())
        kl_dims = kl_per_dimension(out["z_mean"], out["z_log_var"])
        beta = kl_weight(self.step, self.kl_warmup_steps, self.beta)
        recon = spec + self.param_weight * params
        return {
            "loss": recon + beta * kl_penalty(kl_dims, self.free_bits),
            "recon_loss": recon,
            "spec_loss": spec,
            "param_loss": params,
            "kl_loss": ops.sum(kl_dims),
            "beta": beta,
        }

    def _record(self, losses: dict) -> dict:
        for name, tracker in self.trackers.items():
            tracker.update_state(losses[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, batch):
        """One optimizer step; TensorFlow (the default) or PyTorch as Keras' backend."""
        if keras.backend.backend() == "torch":
            return self._torch_train_step(batch)
        import tensorflow as tf

        # under tf.distribute the replicas' gradients are summed: each replica's share of the mean
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        with tf.GradientTape() as tape:
            out = self(batch, training=True)
            losses = self.compute_losses(batch, out)
            share = losses["loss"] / replicas if replicas > 1 else losses["loss"]
        variables = self.trainable_variables
        grads = tape.gradient(share, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        self.step.assign_add(1)
        return _across_workers(self._record(losses))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras (TensorFlow backend, under a tf.distribute strategy) takes a first batch before
        fit and evaluate to build the model from it, averaging the batch over the replicas; that
        fails for a dict batch under MultiWorkerMirroredStrategy (keras-team/keras#20329) and
        moves a batch between the workers. This model is built when made (``build``): only the
        optimizer is left to build, which needs no batch."""
        if not self.built:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)
        return None

    def _torch_train_step(self, batch):
        import torch

        losses, grads = self.torch_gradients(batch)
        with torch.no_grad():
            self.optimizer.apply(grads, self.trainable_variables)
        self.step.assign_add(1)
        return self._record({k: v.detach() if hasattr(v, "detach") else v for k, v in losses.items()})

    def torch_gradients(self, batch) -> tuple[dict, list]:
        """One batch's losses and the gradient of its total loss for each trainable variable
        (PyTorch backend).

        Not ``self.zero_grad()`` first: torch's module tree registers a Keras variable under its
        path, and the heads' paths are the same (head_va/dense0/kernel and head_fm/dense0/kernel are
        both dense0/kernel), so it held only the last head's and zero_grad() left the other heads'
        gradients to add up over every step (the GPU run's va and fm heads learned little and its
        loss rose after epoch 3: docs/notes/2026-12-07-hypotheses.md). Each variable's gradient is
        cleared here instead.
        """
        variables = self.trainable_variables
        for v in variables:
            v.value.grad = None
        out = self(batch, training=True)
        losses = self.compute_losses(batch, out)
        losses["loss"].backward()
        return losses, [v.value.grad for v in variables]

    def test_step(self, batch):
        out = self(batch, training=False)
        results = self._record(self.compute_losses(batch, out))
        return _across_workers(results) if keras.backend.backend() == "tensorflow" else results

    # -- prediction ------------------------------------------------------------------
    def predict_vectors(
        self, mels: np.ndarray, batch_size: int = 32, *, notes: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Predicted parameter vectors for every synth the model knows, from z_mean.

        Args:
            mels: (n, 128, 431) float32.
            notes: (n,) MIDI notes of the sounds: needed by a model trained with ``note_input``,
                ignored by the others.

        Returns:
            {synth: (n, encoded size) float32}; categorical blocks hold probabilities (mixed) or
            sigmoid scores (mse), which ``Codec.decode`` turns into presets by argmax.
        """
        out: dict[str, list[np.ndarray]] = {lay.name: [] for lay in self.layouts}
        for start in range(0, len(mels), batch_size):
            z_mean, _ = self.encoder(np.asarray(mels[start : start + batch_size], dtype=np.float32), training=False)
            chunk = None if notes is None else np.asarray(notes[start : start + batch_size], dtype=np.float32)
            head_input = self._head_input(z_mean, chunk)
            scores = {name: head(head_input, training=False) for name, head in self.heads.items()}
            for lay in self.layouts:
                head = self._head_of[lay.name]
                out[lay.name].append(head.predict(scores[head.name], lay))
        return {
            lay.name: np.concatenate(out[lay.name]) if out[lay.name] else np.zeros((0, lay.size), np.float32)
            for lay in self.layouts
        }

    def latent(self, mels: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """z_mean of each mel: (n, latent_size) float32."""
        out = [
            ops.convert_to_numpy(self.encoder(np.asarray(mels[s : s + batch_size], np.float32), training=False)[0])
            for s in range(0, len(mels), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.latent_size), np.float32)

    def sample_vectors(self, mels: np.ndarray, notes: np.ndarray, k: int, seed: int = 0) -> dict[str, np.ndarray]:
        """k presets per sound for every synth, drawn from the generative heads.

        Args:
            mels: (n, 128, 431) float32; notes: (n,) MIDI notes of the sounds.

        Returns:
            {synth: (n, k, encoded size) float32, categorical blocks one-hot}.

        Raises:
            ASPError: the model has no generative heads.
        """
        if self.generative is None:
            raise ASPError(
                "this model has no generative heads to draw presets from; add them with "
                "add_generative_head.py RUN (or pass --candidates 0)"
            )
        z = self.latent(mels)
        return {
            name: head.sample(z, notes, k, seed=seed + i)
            for i, (name, head) in enumerate(self.generative.heads.items())
        }


def _across_workers(results: dict) -> dict:
    """A step's figures as Keras' TensorFlow trainer can reduce them over several workers: there it
    averages each over axis 0, which a scalar lacks, so each becomes shape (1,) (the trackers'
    results, the same on every replica: their variables sum across replicas). Unchanged on one
    worker."""
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    several = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
        strategy.num_replicas_in_sync > len(strategy.extended.worker_devices)
    )
    if several:
        return {name: tf.reshape(value, (1,)) for name, value in results.items()}
    return results


def check_mel_shape(mels: np.ndarray, where: str | Path) -> None:
    """Refuses mel spectrograms of another shape than the model takes, naming their file.

    Raises:
        ASPError: the shape found, the shape wanted, and the fix.
    """
    shape = tuple(np.shape(mels)[1:])
    if shape != MEL_SHAPE:
        raise ASPError(
            f"{where} holds {'x'.join(map(str, shape))} mel spectrograms, but the model takes "
            f"{MEL_SHAPE[0]}x{MEL_SHAPE[1]} (5 s notes at 44.1 kHz, hop 512); regenerate the dataset with "
            "data_generation/generate.py and synth specs that render 5 s (their render duration)"
        )


# ---------------------------------------------------------------------------------------
# building and loading a run's model from its config.json


def build_model(config: dict) -> SynthVAE:
    """A model as a config describes it (built, with untrained weights)."""
    specs = config_specs(config)
    model = SynthVAE(
        approach=config["approach"],
        layouts=[Layout.from_spec(s) for s in specs],
        latent_size=config["latent_size"],
        # a run made before a setting existed was trained with its LEGACY value (beta: the paper's 1)
        encoder=config.get("encoder", LEGACY["encoder"]),
        spec_decoder=config.get("spec_decoder", LEGACY["spec_decoder"]),
        param_loss=config["param_loss"],
        kl_warmup_steps=config.get("kl_warmup_steps", 0),
        beta=config.get("beta", LEGACY["beta"]),
        free_bits=config.get("free_bits", LEGACY["free_bits"]),
        param_weight=config.get("param_weight", LEGACY["param_weight"]),
        note_input=config.get("note_input", False),  # runs made before the option had no note input
        seed=config.get("seed", 0),
    )
    model.build()
    return model


def load_model(run_dir: str | Path, *, latent_size: int | None = None) -> tuple[SynthVAE, dict]:
    """Rebuilds a trained model from its folder: (model, config).

    Args:
        run_dir: e.g. saved_models/vae_multi_64_paper.
        latent_size: when given, must match the checkpoint's.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if latent_size is not None and latent_size != config["latent_size"]:
        raise ASPError(
            f"the model in {run_dir} has latent size {config['latent_size']}, not {latent_size}; "
            f"use -l {config['latent_size']}"
        )
    weights = run_dir / WEIGHTS
    if not weights.is_file() and (run_dir / INFERENCE_WEIGHTS).is_file():
        weights = run_dir / INFERENCE_WEIGHTS  # an exported model (experiments/export_model.py)
        verify_export(run_dir, config)  # its files against the checksums its config records
    if not weights.is_file():
        raise ASPError(f"{weights} is missing: the run has not finished an epoch yet; train it first")
    model = build_model(config)
    problem = load_weights(model, weights)
    if problem:
        fix = (
            damaged_fix(run_dir)
            if weights.name == INFERENCE_WEIGHTS
            else "retrain the run with --fresh, or copy its newest backup/epoch_*.weights.h5 over it (the last "
            "epoch's, not the best)"
        )
        raise ASPError(f"{weights} cannot be loaded ({problem}); it is damaged or from another model: {fix}")
    if not finite_weights(model):
        raise ASPError(
            f"{weights} holds NaN or infinite weights (a run that diverged); retrain it with --fresh and a lower --lr"
        )
    if config.get("generative"):
        model.generative = load_generative(model, config, run_dir)
    return model, config


def load_generative(model: SynthVAE, config: dict, run_dir: Path) -> GenerativeHeads:
    """The generative heads config.json records (``generative``), loaded from the run's
    ``GENERATIVE_WEIGHTS``.

    Raises:
        ASPError: the file is missing or does not fit the heads.
    """
    path = Path(run_dir) / GENERATIVE_WEIGHTS
    fix = "add them again with add_generative_head.py"
    if not path.is_file():
        raise ASPError(f"{path} is missing, but {CONFIG_NAME} records generative heads; {fix}")
    heads = GenerativeHeads.from_record(config["generative"], model.layouts, model.latent_size)
    try:
        heads.load(path)
    except Exception as err:  # numpy and zipfile raise their own kinds for a damaged file
        raise ASPError(f"{path} cannot be loaded ({' '.join(str(err).split())[:200]}); {fix}") from None
    return heads


INFERENCE_WEIGHTS = EXPORTED_WEIGHTS  # an exported model's: encoder and heads only


def inference_parts(model: SynthVAE) -> dict[str, keras.Model]:
    """The parts inference uses, by name: the encoder and each parameter head (not the
    spectrogram decoder)."""
    return {"encoder": model.encoder, **{f"head_{name}": net for name, net in model.heads.items()}}


def inference_variables(model: SynthVAE) -> dict[str, np.ndarray]:
    """The variables of ``inference_parts``, keyed ``<part>/<i>`` in build order."""
    return {
        f"{part}/{i}": keras.ops.convert_to_numpy(v)
        for part, net in inference_parts(model).items()
        for i, v in enumerate(net.weights)
    }


def _load_inference_weights(model: SynthVAE, path: Path) -> None:
    """Sets the encoder's and heads' variables from an exported ``inference.weights.npz`` (any
    float dtype; cast to the model's). The spectrogram decoder keeps its initial weights."""
    with np.load(path) as saved:
        expected = {f"{part}/{i}": v for part, net in inference_parts(model).items() for i, v in enumerate(net.weights)}
        if set(saved.files) != set(expected):
            raise ValueError(f"it holds {len(saved.files)} arrays, the model has {len(expected)} variables")
        for key, variable in expected.items():
            value = saved[key]
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(f"{key} has shape {value.shape}, the model's is {tuple(variable.shape)}")
            variable.assign(value.astype(np.float32))


def load_weights(model: SynthVAE, path: Path) -> str | None:
    """Loads a weights file (a Keras ``.weights.h5``, or an exported ``inference.weights.npz``)
    into a built model; returns why it failed (one line), or None."""
    try:
        if path.name.endswith(".npz"):
            _load_inference_weights(model, path)
        else:
            model.load_weights(path)
    except Exception as err:  # h5py, Keras and TensorFlow each raise their own kinds for a bad file
        text = " ".join(str(err).split()) or type(err).__name__
        return text[:200]
    return None


def finite_weights(model: keras.Model) -> bool:
    return all(np.isfinite(keras.ops.convert_to_numpy(v)).all() for v in model.weights)


def config_specs(config: dict) -> list[SynthSpec]:
    """The synth specs a model was trained with (stored in its config), located where the synth's
    spec file is now, so that relative sources (Faust .dsp files) resolve."""
    specs = []
    for data in config["synths"]:
        try:
            path = load_spec(data["name"]).path
        except ASPError:
            path = None
        specs.append(spec_from_json(data, path=path))
    return specs
