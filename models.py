"""The paper's VAE (Keras 3 functional networks) and its three approaches.

Networks (``../shared/reference/paper_facts.md``):
    encoder   mel (128, 431) -> [Conv2D(8, 3) + BatchNorm + ReLU + MaxPool(2)] x 2 -> flatten
              -> Dense z_mean, Dense z_log_var (latent_size each); z = mean + exp(log_var / 2) * eps
    decoder   z -> Dense -> reshape (32, 108, 8) -> Conv2DTranspose x 2 (stride 2) -> sigmoid -> (128, 431)
    head      z -> Dense 1024 x 3 (ReLU) -> Dense(encoded size): one per synth, or one padded

Approaches:
    multi   joint encoder, one head per synth, each head's output multiplied by its synth's mask
    single  joint encoder, one head over the zero-padded vector, times the padded mask
    synth   one encoder + one head for one synth, trained on that synth's samples only (baseline)

Losses: spectrogram MSE + parameter loss + beta_t * KL. The reconstruction terms are per-element
means (~0.01-0.1 each) while the KL is in nats summed over the latent dimensions, so at the
paper's beta = 1 ignoring z is the optimum: the latent collapses and every head predicts one
average preset. ``beta`` is therefore a training option (the final KL weight, reached linearly
over ``kl_warmup_steps`` steps) and ``free_bits`` the KL per latent dimension (nats, batch mean)
below which that dimension is not pushed towards the prior (Kingma et al. 2016). The paper's
settings (beta 1, no free bits, 100 warm-up epochs) stay reachable (``--paper-loss``).
``param_loss="mse"`` is the paper's (sigmoid outputs, MSE on the masked vector); ``"mixed"``
uses MSE for continuous parameters and softmax cross-entropy within each categorical block.
"""

from __future__ import annotations

import data_generation  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import re
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers, ops

from data.encoding import Codec
from data_generation.errors import ASPError
from data_generation.spec import SynthSpec

MEL_SHAPE = (128, 431)
# Bumped when a change alters what training produces with the same settings (recorded in each run's
# config.json and part of the experiment runner's checkpoint key, so stale runs are not reused).
# 2: BatchNorm momentum 0.9, heads start at the training mean, beta and free bits.
MODEL_VERSION = 2
APPROACHES = ("multi", "single", "synth")
PARAM_LOSSES = ("mse", "mixed")
HEAD_UNITS = 1024
BN_MOMENTUM = 0.9  # moving statistics that follow a short run (Keras: 0.99, ~500 steps to forget the init)


@dataclass(frozen=True)
class Layout:
    """Where a synth's continuous values and one-hot blocks sit in its encoded vector.

    Attributes:
        name: synth name.
        size: encoded size.
        continuous: (size,) float32, 1 at continuous positions.
        segments: (size,) int32, the categorical block of each position (continuous positions
            get their own dummy segment).
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
        widths = np.maximum(spec.classes, 1)
        segments = np.repeat(np.arange(len(widths)), widths).astype(np.int32)
        return cls(spec.name, codec.size, codec.continuous_mask.astype(np.float32), segments, len(widths), len(widths))


def safe(name: str) -> str:
    """A synth name as a Keras layer name."""
    return re.sub(r"[^0-9A-Za-z_]", "_", name)


# ---------------------------------------------------------------------------------------
# networks (functional)


def build_encoder(latent_size: int) -> keras.Model:
    """mel (batch, 128, 431) -> z_mean, z_log_var (batch, latent_size)."""
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


def build_spec_decoder(latent_size: int) -> keras.Model:
    """z (batch, latent_size) -> mel (batch, 128, 431) in [0, 1]."""
    z = keras.Input((latent_size,), name="z")
    x = layers.Dense(32 * 108 * 8, activation="relu")(z)
    x = layers.Reshape((32, 108, 8))(x)
    x = layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2DTranspose(1, 3, strides=2, padding="same", activation="sigmoid")(x)  # (128, 432, 1)
    x = layers.Cropping2D(((0, 0), (0, 1)))(x)
    return keras.Model(z, layers.Reshape(MEL_SHAPE)(x), name="spec_decoder")


def build_head(name: str, size: int, latent_size: int) -> keras.Model:
    """z -> raw parameter scores (batch, size); ``activate`` turns them into a vector."""
    z = keras.Input((latent_size,), name="z")
    x = z
    for i in range(3):
        x = layers.Dense(HEAD_UNITS, activation="relu", name=f"dense{i}")(x)
    return keras.Model(z, layers.Dense(size, name="scores")(x), name=f"head_{safe(name)}")


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
# the model


class SynthVAE(keras.Model):
    """The VAE of one approach. Subclassed only for its ``train_step``/``test_step``.

    Args:
        approach: multi, single or synth.
        layouts: the synths' layouts (one for ``synth``), in dataset order.
        latent_size: size of z.
        param_loss: mse or mixed.
        kl_warmup_steps: steps over which the KL weight rises from 0 to ``beta``.
        beta: the final KL weight.
        free_bits: nats per latent dimension left free of the KL penalty.
        seed: seed of the reparameterization noise.

    Batches are dicts: ``mel`` (batch, 128, 431); ``params_<synth>``/``mask_<synth>`` for each
    synth; ``params_single``/``mask_single`` for the single approach.
    """

    def __init__(
        self,
        *,
        approach: str,
        layouts: list[Layout],
        latent_size: int,
        param_loss: str = "mse",
        kl_warmup_steps: int = 0,
        beta: float = 1.0,
        free_bits: float = 0.0,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if approach not in APPROACHES:
            raise ASPError(f"unknown approach {approach!r}; use one of {', '.join(APPROACHES)}")
        if param_loss not in PARAM_LOSSES:
            raise ASPError(f"unknown parameter loss {param_loss!r}; use one of {', '.join(PARAM_LOSSES)}")
        if approach == "synth" and len(layouts) != 1:
            raise ASPError("the per-synth approach takes exactly one synth")
        self.approach = approach
        self.layouts = list(layouts)
        self.latent_size = int(latent_size)
        self.param_loss = param_loss
        self.kl_warmup_steps = int(kl_warmup_steps)
        if not (np.isfinite(beta) and beta >= 0):
            raise ASPError(f"beta must be a finite number >= 0, got {beta}")
        if not (np.isfinite(free_bits) and free_bits >= 0):
            raise ASPError(f"free bits must be a finite number >= 0, got {free_bits}")
        self.beta = float(beta)
        self.free_bits = float(free_bits)
        self.single_size = max(lay.size for lay in self.layouts)
        self.encoder = build_encoder(latent_size)
        self.spec_decoder = build_spec_decoder(latent_size)
        if approach == "single":
            self.heads = {"single": build_head("single", self.single_size, latent_size)}
        else:
            self.heads = {lay.name: build_head(lay.name, lay.size, latent_size) for lay in self.layouts}
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.step = self.add_weight(shape=(), initializer="zeros", trainable=False, name="kl_step", dtype="int64")
        names = ["loss", "recon_loss", "spec_loss", "param_loss", "kl_loss", "beta"]
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def build(self, input_shape=None):
        z = ops.zeros((1, self.latent_size))
        self.encoder(ops.zeros((1, *MEL_SHAPE)))
        self.spec_decoder(z)
        for head in self.heads.values():
            head(z)
        self.built = True

    def call(self, inputs, training=False):
        mel = inputs["mel"] if isinstance(inputs, dict) else inputs
        z_mean, z_log_var = self.encoder(mel, training=training)
        if training:
            eps = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
            z = z_mean + ops.exp(0.5 * z_log_var) * eps
        else:
            z = z_mean
        scores = {name: head(z, training=training) for name, head in self.heads.items()}
        return {
            "z_mean": z_mean,
            "z_log_var": z_log_var,
            "spec": self.spec_decoder(z, training=training),
            "scores": scores,
        }

    def start_at_mean(self, means: dict[str, np.ndarray]) -> None:
        """Sets each head's output bias so that an untrained head predicts the training-mean
        preset: logit(mean) for sigmoid outputs, log(class frequency) within categorical blocks
        (``mixed``). Training then starts from the mean predictor instead of 0.5 everywhere.

        Args:
            means: {head name: mean encoded vector of its training samples}: per synth
                (encoded size,), or ``single`` (largest size,) for the zero-padded vectors.
        """
        for name, head in self.heads.items():
            dense = head.get_layer("scores")
            kernel, bias = dense.get_weights()
            mean = np.clip(np.asarray(means[name], dtype=np.float64), 0.01, 0.99)
            init = np.log(mean / (1.0 - mean))
            lay = next((lay for lay in self.layouts if lay.name == name), None)
            if self.param_loss == "mixed" and lay is not None:
                init = np.where(lay.continuous > 0, init, np.log(mean))
            dense.set_weights([kernel, init.astype(bias.dtype)])

    # -- losses ----------------------------------------------------------------------
    def param_losses(self, scores: dict, batch: dict):
        """Parameter loss per sample, summed over heads: (batch,)."""
        if self.approach == "single":
            s = scores["single"]
            if self.param_loss == "mse":
                return ops.mean(ops.square(batch["mask_single"] * ops.sigmoid(s) - batch["params_single"]), -1)
            total = 0.0
            for lay in self.layouts:  # each sample is scored with its own synth's blocks
                mask = batch[f"mask_{lay.name}"]
                total = total + param_loss_per_sample(s[:, : lay.size], batch[f"params_{lay.name}"], mask, lay, "mixed")
            return total
        total = 0.0
        for lay in self.layouts:
            total = total + param_loss_per_sample(
                scores[lay.name], batch[f"params_{lay.name}"], batch[f"mask_{lay.name}"], lay, self.param_loss
            )
        return total

    def compute_losses(self, batch: dict, out: dict) -> dict:
        spec = ops.mean(ops.square(out["spec"] - batch["mel"]), axis=(1, 2))
        params = self.param_losses(out["scores"], batch)
        kl_dims = kl_per_dimension(out["z_mean"], out["z_log_var"])
        beta = kl_weight(self.step, self.kl_warmup_steps, self.beta)
        spec, params, kl = ops.mean(spec), ops.mean(params), ops.sum(kl_dims)
        return {
            "loss": spec + params + beta * kl_penalty(kl_dims, self.free_bits),
            "recon_loss": spec + params,
            "spec_loss": spec,
            "param_loss": params,
            "kl_loss": kl,
            "beta": beta,
        }

    def _record(self, losses: dict) -> dict:
        for name, tracker in self.trackers.items():
            tracker.update_state(losses[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, batch):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            out = self(batch, training=True)
            losses = self.compute_losses(batch, out)
        variables = self.trainable_variables
        grads = tape.gradient(losses["loss"], variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        self.step.assign_add(1)
        return self._record(losses)

    def test_step(self, batch):
        out = self(batch, training=False)
        return self._record(self.compute_losses(batch, out))

    # -- prediction ------------------------------------------------------------------
    def predict_vectors(self, mels: np.ndarray, batch_size: int = 32) -> dict[str, np.ndarray]:
        """Predicted parameter vectors for every synth the model knows, from z_mean.

        Args:
            mels: (n, 128, 431) float32.

        Returns:
            {synth: (n, encoded size) float32}; categorical blocks hold probabilities (mixed) or
            sigmoid scores (mse), which ``Codec.decode`` turns into presets by argmax.
        """
        out: dict[str, list[np.ndarray]] = {lay.name: [] for lay in self.layouts}
        for start in range(0, len(mels), batch_size):
            res = self(np.asarray(mels[start : start + batch_size], dtype=np.float32), training=False)
            for lay in self.layouts:
                scores = res["scores"]["single" if self.approach == "single" else lay.name][:, : lay.size]
                out[lay.name].append(ops.convert_to_numpy(activate(scores, lay, self.param_loss)))
        return {k: np.concatenate(v) if v else np.zeros((0, 0), np.float32) for k, v in out.items()}
