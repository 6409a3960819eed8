"""Whether the latent carries anything: after every epoch, the collapse figures on validation
sounds (active dimensions, KL per dimension, parameter error against the training-mean preset),
logged and warned about."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from asp.backend import tensorflow
from asp.training.checkpoints import bad_losses
from data.dataset import Split, mean_vector
from models import SynthVAE

tf = tensorflow()  # None under another Keras backend: no TensorBoard histograms then

ACTIVE_VARIANCE = 0.01  # a latent dimension is active when Var_x[E[z|x]] exceeds this (Burda et al. 2016)
MONITOR_SAMPLES = 512


def mean_vectors(split: Split, indices: np.ndarray, synths: list[str]) -> dict[str, np.ndarray]:
    """The training-mean predictor of each synth over its own samples among ``indices``
    ({synth: (encoded size,) float64}, zeros for a synth without samples), and ``single``: the mean
    zero-padded vector over all of them, as wide as the widest synth."""
    out = {}
    for s in synths:
        mean = mean_vector(split, s, indices)
        out[s] = np.zeros(split.params[s].shape[1]) if mean is None else mean
    counts = {s: int((split.synth[indices] == s).sum()) for s in synths}
    padded = np.zeros(max(len(v) for v in out.values()))
    for s, v in out.items():
        padded[: len(v)] += v * counts[s] / max(1, sum(counts.values()))
    out["single"] = padded
    return out


def latent_report(
    model: SynthVAE, split: Split, indices: np.ndarray, means: dict[str, np.ndarray], batch_size: int = 64
) -> dict[str, float]:
    """How much the latent carries, on the samples ``indices`` of a split.

    Returns:
        ``_kl_dims`` and ``_z_mean_variance``: (latent,) arrays; ``active_dims``: dimensions
        whose z_mean varies across samples by more than ACTIVE_VARIANCE; ``kl_per_dim``: mean KL
        per dimension, nats; ``kl_dims_min`` / ``kl_dims_max``; and per synth
        ``param_mse_<synth>`` (MSE of the predicted encoded vector),
        ``mean_mse_<synth>`` (the training-mean predictor's) and ``param_vs_mean_<synth>`` (their
        ratio: 1 = no better than predicting the mean preset); ``param_vs_mean`` averages the
        ratios over synths.
    """
    mels = np.asarray(split.mels[np.sort(indices)], dtype=np.float32)
    z_means, z_log_vars = [], []
    for start in range(0, len(mels), batch_size):
        zm, zlv = model.encoder(mels[start : start + batch_size], training=False)
        z_means.append(keras.ops.convert_to_numpy(zm))
        z_log_vars.append(keras.ops.convert_to_numpy(zlv))
    zm, zlv = np.concatenate(z_means).astype(np.float64), np.concatenate(z_log_vars).astype(np.float64)
    kl_dims = np.mean(-0.5 * (1.0 + zlv - zm**2 - np.exp(zlv)), axis=0)
    report = {
        "_kl_dims": kl_dims,  # arrays (underscore keys) go to TensorBoard histograms, not log.csv
        "_z_mean_variance": zm.var(axis=0),
        "active_dims": float((zm.var(axis=0) > ACTIVE_VARIANCE).sum()),
        "kl_per_dim": float(kl_dims.mean()),
        "kl_dims_min": float(kl_dims.min()),
        "kl_dims_max": float(kl_dims.max()),
    }
    vectors = model.predict_vectors(mels, batch_size=batch_size)
    owners = split.synth[np.sort(indices)]
    ratios = []
    for lay in model.layouts:
        mine = np.flatnonzero(owners == lay.name)
        if not len(mine):
            continue
        true = np.asarray(split.params[lay.name][np.sort(indices)[mine]], dtype=np.float64)
        pred = np.mean((vectors[lay.name][mine] - true) ** 2)
        base = np.mean((means[lay.name][None, :] - true) ** 2)
        report[f"param_mse_{lay.name}"] = float(pred)
        report[f"mean_mse_{lay.name}"] = float(base)
        report[f"param_vs_mean_{lay.name}"] = float(pred / base) if base > 0 else float("nan")
        ratios.append(report[f"param_vs_mean_{lay.name}"])
    report["param_vs_mean"] = float(np.mean(ratios)) if ratios else float("nan")
    return report


class LatentMonitor(keras.callbacks.Callback):
    """After every epoch, measures collapse on the validation split (``latent_report``), adds
    the figures to the epoch's logs as ``val_<name>`` (so log.csv and TensorBoard get them), writes
    KL per dimension and z_mean variance histograms to TensorBoard, and prints a one-line warning
    when the parameter error is no better than the training-mean predictor's.
    """

    def __init__(self, split: Split, indices: np.ndarray, means: dict, log_dir: Path, *, verbose: int, seed: int):
        super().__init__()
        if len(indices) > MONITOR_SAMPLES:
            indices = np.sort(np.random.default_rng(seed).permutation(indices)[:MONITOR_SAMPLES])
        self.split, self.indices, self.means, self.verbose = split, indices, means, verbose
        self.writer = tf.summary.create_file_writer(str(log_dir / "latent")) if tf is not None else None

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not len(self.indices) or bad_losses(logs):  # a diverged epoch: nothing to measure
            return
        report = latent_report(self.model, self.split, self.indices, self.means)
        logs.update({f"val_{key}": value for key, value in report.items() if not key.startswith("_")})
        if self.writer is not None:
            with self.writer.as_default(step=epoch):
                for key, value in report.items():
                    if key.startswith("_"):
                        tf.summary.histogram(f"latent/{key[1:]}", value)
                    else:
                        tf.summary.scalar(f"latent/{key}", value)
            self.writer.flush()
        message = collapse_warning(report)
        if self.verbose and message:
            print(f"warning: epoch {epoch + 1}: {message}", flush=True)


NO_BETTER_THAN_MEAN = 1.0  # param_vs_mean at or above this: no better than the training-mean preset
COLLAPSED_KL = 0.01  # nats per dimension: below this on average the posterior is the prior


def collapse_warning(report: dict) -> str | None:
    """One line when a ``latent_report`` shows a model no better than the training-mean preset
    (naming collapse when the latent carries nothing), else None."""
    ratio = report["param_vs_mean"]
    if not ratio >= NO_BETTER_THAN_MEAN:  # nan (no samples) does not warn
        return None
    if report["active_dims"] == 0 or report["kl_per_dim"] < COLLAPSED_KL:
        return (
            f"the latent collapsed ({report['active_dims']:.0f} active dimensions, {report['kl_per_dim']:.3f} nats "
            f"each) and the parameter error is {ratio:.2f}x the training-mean preset's: the model ignores its "
            "input; lower --beta or add --free-bits"
        )
    return (
        f"the parameter error is {ratio:.2f}x the training-mean preset's on validation sounds: no better than "
        "predicting one average preset (yet); train longer, or check the data"
    )
