"""The one training function behind train_multi.py, train_single.py, train_synth.py and the
paper's per-synth scripts (train_serum.py, train_diva.py, train_tyrell.py).

Data stream from the memory-mapped npy_data files through ``tf.data`` in batches (never the
whole dataset in memory). Each run lives in ``<model-dir>/<asp.runs.run_name>/`` (e.g.
``vae_multi_64_resnet``, ``vae_single_16_paper``, ``vae_fm_64_resnet``) and holds:
    model.weights.h5   the best weights (lowest validation reconstruction loss: spectrogram +
                       parameters; the total loss rises with the KL weight during warm-up)
    config.json        the resolved config: approach, latent size, synth specs, data fingerprint,
                       seed, epochs done; inference rebuilds the model from it alone
    backup/            epoch_<n>.weights.h5, the weights and optimizer state after the last two
                       epochs: a killed run restarted with the same command continues from the
                       last one that loads (the one before, if the last is damaged)
    log.csv, tensorboard/
    .lock              held while a run trains: a second run on the folder fails at once, naming it

Every file is written to a temp file and renamed (``asp.files.atomic_path``), so a run killed at
any moment leaves whole files. An epoch whose loss or weights are NaN or infinite stops the run
with an ``ASPError``; nothing of that epoch is saved, so the last good checkpoint stays. A run
resumes only with the settings it was trained with (``asp.config.changed_settings``: not a different ``--lr``);
``--epochs`` and ``--patience`` may change, which is how a run goes on.
"""

from __future__ import annotations

from asp import backend  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults; devices())

# isort: split
import argparse
import contextlib
import ctypes
import hashlib
import json
import mmap
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# glibc gives every thread that allocates its own malloc arena; tf.data's threads moving 7 MB
# batches then held ~4 GB of freed memory. Two arenas keep the peak near 1.4 GB (bench/training.py).
_M_ARENA_MAX = -8
ctypes.CDLL(None).mallopt(_M_ARENA_MAX, 2)

import h5py  # noqa: E402  (after mallopt)
import keras  # noqa: E402  (after mallopt)
import numpy as np  # noqa: E402  (after mallopt)
import tensorflow as tf  # noqa: E402  (after mallopt)

from asp.checkpoints import CONFIG, WEIGHTS, read_config  # noqa: E402  (after mallopt)
from asp.cli import ArgumentParser  # noqa: E402  (after mallopt)
from asp.config import PAPER_LOSS, PAPER_MODEL, TrainConfig, add_arguments, changed_settings, from_arguments  # noqa: E402
from asp.errors import ASPError  # noqa: E402  (after mallopt)
from asp.files import atomic_path, atomic_write, remove_stale_temps, write_json  # noqa: E402  (after mallopt)
from asp.locks import folder_lock  # noqa: E402  (after mallopt)
from asp.runs import run_name  # noqa: E402  (after mallopt)
from data.dataset import Split, check_finite, load_split, mean_vector, read_manifest  # noqa: E402  (after mallopt)
from data_generation.spec import SynthSpec, load_spec  # noqa: E402  (after mallopt)
from models import (  # noqa: E402  (after mallopt)
    ENCODERS,
    MEL_SHAPE,
    MODEL_VERSION,
    SPEC_DECODERS,
    SynthVAE,
    build_model,
    finite_weights,
    load_weights,
)

# ---------------------------------------------------------------------------------------
# data


def dataset_specs(data_dir: str | Path, split: Split) -> list[SynthSpec]:
    """The synth specs of a dataset, checked against its files (and manifest when it has one)."""
    manifest = read_manifest(data_dir)
    specs = []
    for name in split.synths:
        spec = load_spec(name)
        if manifest is not None:
            entry = next(s for s in manifest["synths"] if s["name"] == name)
            if entry["hash"] != spec.hash:
                raise ASPError(
                    f"the spec of {name!r} changed since {data_dir} was generated; "
                    "regenerate the dataset (or restore the spec)"
                )
        width = split.params[name].shape[1]
        if width != spec.encoded_size:
            raise ASPError(
                f"{data_dir}/{split.name}_{name}_params.npy has {width} values per sample but the "
                f"{name} spec encodes {spec.encoded_size}; the files do not match the spec"
            )
        specs.append(spec)
    if tuple(split.mels.shape[1:]) != MEL_SHAPE:
        raise ASPError(
            f"{data_dir}/{split.name}_mels.npy holds {split.mels.shape[1:]} spectrograms; the model takes {MEL_SHAPE}"
        )
    if split.params_single is not None:
        single = max(s.encoded_size for s in specs)
        if split.params_single.shape[1] != single:
            raise ASPError(
                f"{data_dir}/{split.name}_params_single.npy has width {split.params_single.shape[1]}, "
                f"expected {single} (the largest encoded size)"
            )
    return specs


def data_fingerprint(data_dir: str | Path) -> str:
    """The manifest's fingerprint, or a hash of the files' shapes for a dataset without one."""
    manifest = read_manifest(data_dir)
    if manifest is not None:
        return manifest["fingerprint"]
    shapes = sorted((p.name, p.stat().st_size) for p in Path(data_dir).glob("*.npy"))
    return hashlib.sha256(json.dumps(shapes).encode()).hexdigest()[:24]


def batch_keys(approach: str, synths: list[str]) -> list[str]:
    keys = ["mel"]
    for s in synths:
        keys += [f"params_{s}", f"mask_{s}"]
    if approach == "single":
        keys += ["params_single", "mask_single"]
    return keys


def make_stream(
    split: Split,
    indices: np.ndarray,
    keys: list[str],
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
) -> tf.data.Dataset:
    """Batches of the memory-mapped arrays as a ``tf.data.Dataset`` (reshuffled every epoch).

    Only one batch of rows is read at a time, so memory does not grow with the dataset.
    """
    arrays = {"mel": split.mels}
    for s in split.synths:
        arrays[f"params_{s}"] = split.params[s]
        arrays[f"mask_{s}"] = split.masks[s]
    single = max((split.params[s].shape[1] for s in split.synths if f"params_{s}" in keys), default=0)
    for key in ("params_single", "mask_single"):  # padded to the largest synth of this run
        arrays[key] = None if getattr(split, key) is None else getattr(split, key)[:, :single]
    missing = [k for k in keys if arrays.get(k) is None]
    if missing:
        raise ASPError(f"the {split.name} split lacks {missing}; the single approach needs params_single/mask_single")
    epoch = {"n": 0}
    mapping = getattr(split.mels, "_mmap", None)  # the memory map behind the mels, if any

    def batches():
        order = indices
        if shuffle:
            order = np.random.default_rng([seed, epoch["n"]]).permutation(indices)
        epoch["n"] += 1
        for start in range(0, len(order), batch_size):
            rows = np.sort(order[start : start + batch_size])
            batch = {k: np.asarray(arrays[k][rows], dtype=np.float32) for k in keys}
            if mapping is not None:  # drop the pages just read from this process's memory
                mapping.madvise(mmap.MADV_DONTNEED)
            yield batch

    signature = {k: tf.TensorSpec((None, *arrays[k].shape[1:]), tf.float32) for k in keys}
    n_batches = int(np.ceil(len(indices) / batch_size))
    stream = tf.data.Dataset.from_generator(batches, output_signature=signature)
    return stream.apply(tf.data.experimental.assert_cardinality(n_batches)).prefetch(2)


# ---------------------------------------------------------------------------------------
# configs and checkpoints


BACKUP = "backup"
KEEP_BACKUPS = 2  # the last epoch's state and the one before, in case the last is damaged


def backup_path(run_dir: Path, epoch: int) -> Path:
    """The weights and optimizer state after ``epoch`` epochs."""
    return run_dir / BACKUP / f"epoch_{epoch:05d}.weights.h5"


def save_weights(model: keras.Model, path: Path) -> None:
    """``model.save_weights``, atomically: a temp file in the same folder, then a rename."""
    with atomic_path(path, suffix=".weights.h5") as tmp:  # Keras insists on the .weights.h5 ending
        try:
            model.save_weights(tmp)
        except BaseException:
            _close_h5(tmp)
            raise


def _close_h5(path: Path) -> None:
    """Closes the HDF5 file that a failed ``save_weights`` left open (a full disk): left open,
    HDF5 flushes it again at exit and crashes the process (SIGSEGV)."""
    for fid in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE):
        if os.fsdecode(fid.name) == str(path):
            with contextlib.suppress(Exception):  # closing reports the same write failure again
                h5py.File(fid).close()


def _bad_losses(logs: dict) -> list[str]:
    """The losses of an epoch's logs that are NaN or infinite (other figures may be NaN: a ratio
    over no samples)."""
    return [k for k, v in logs.items() if k.endswith("loss") and not np.isfinite(v)]


class Checkpoints(keras.callbacks.Callback):
    """Saves a run after every epoch, each file atomically, in this order: the state to resume
    from (``backup/epoch_<n>.weights.h5``, keeping the one before), the best weights
    (``model.weights.h5``) when the monitored loss improved, and the progress in config.json.

    A NaN or infinite loss (checked after every batch, like ``TerminateOnNaN``) or weights (after
    every epoch) stops the run before anything of that epoch is saved; ``failed`` then says what
    happened and ``train`` turns it into an ``ASPError``.
    """

    def __init__(self, run_dir: Path, config: dict, monitor: str):
        super().__init__()
        self.run_dir, self.config, self.monitor = run_dir, config, monitor
        self.failed: str | None = None
        self.epoch = 0

    def on_train_begin(self, logs=None):
        (self.run_dir / BACKUP).mkdir(parents=True, exist_ok=True)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.failed is None and loss is not None and not np.isfinite(loss):
            self._fail(f"the loss became {float(loss)} in epoch {self.epoch + 1}, batch {batch + 1}")

    def _fail(self, what: str) -> None:
        self.failed = what
        self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.failed is None and _bad_losses(logs):
            bad = _bad_losses(logs)
            self._fail(f"{bad[0]} became {float(logs[bad[0]])} in epoch {epoch + 1}")
        if self.failed is None and not finite_weights(self.model):
            self._fail(f"the weights became NaN or infinite in epoch {epoch + 1}")
        if self.failed is not None:
            return
        done = epoch + 1
        save_weights(self.model, backup_path(self.run_dir, done))
        for old in _backups(self.run_dir)[KEEP_BACKUPS:]:
            old[0].unlink(missing_ok=True)
        for legacy in ("latest.weights.h5", "training_metadata.json"):  # Keras BackupAndRestore's, older runs
            (self.run_dir / BACKUP / legacy).unlink(missing_ok=True)
        value = logs.get(self.monitor)
        best = self.config.get("best_loss")
        if value is not None and (best is None or value < best):
            save_weights(self.model, self.run_dir / WEIGHTS)
            self.config["best_loss"], self.config["best_epoch"] = float(value), done
        self.config["epochs_done"] = done
        self.config["last_losses"] = {k: float(v) for k, v in logs.items()}
        write_json(self.run_dir / CONFIG, self.config)


_BACKUP_NAME = re.compile(r"^epoch_(\d+)\.weights\.h5$")


def _backups(run_dir: Path) -> list[tuple[Path, int]]:
    """The run's resume points, newest first: (weights file, epochs done)."""
    found = []
    folder = run_dir / BACKUP
    for p in folder.glob("epoch_*.weights.h5") if folder.is_dir() else []:
        m = _BACKUP_NAME.match(p.name)
        if m:
            found.append((p, int(m.group(1))))
    return sorted(found, key=lambda item: -item[1])


def _resume_points(run_dir: Path, config: dict) -> list[tuple[Path, int]]:
    """Where a run can continue from, best first: its backups, the state Keras' BackupAndRestore
    left (runs trained before the backups were ours), then the best weights."""
    points = _backups(run_dir)
    legacy = run_dir / BACKUP / "latest.weights.h5"
    try:
        legacy_epoch = json.loads((run_dir / BACKUP / "training_metadata.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        legacy_epoch = None
    if legacy.is_file() and isinstance(legacy_epoch, int):
        points.append((legacy, legacy_epoch))
    if (run_dir / WEIGHTS).is_file() and isinstance(config.get("best_epoch"), int):
        points.append((run_dir / WEIGHTS, config["best_epoch"]))
    return points


def restore(model: SynthVAE, run_dir: Path, config: dict) -> int:
    """Loads a compiled model's weights and optimizer state from the newest resume point of a
    run that loads and holds finite values; returns the epochs it had done (0: nothing to resume,
    the run starts from the beginning).

    Raises:
        ASPError: the run has done epochs but none of its checkpoints can be loaded.
    """
    remove_stale_temps(run_dir, WEIGHTS, CONFIG, "log.csv")  # left by a run killed while saving
    remove_stale_temps(run_dir / BACKUP, "epoch_*.weights.h5")
    points = _resume_points(run_dir, config)
    if not points and not config.get("epochs_done"):
        return 0
    model.optimizer.build(model.trainable_variables)
    failures = []
    for path, epoch in points:
        problem = load_weights(model, path)
        if problem is None and not finite_weights(model):
            problem = "NaN or infinite weights"
        if problem is None:
            if failures:
                print(
                    f"warning: {'; '.join(failures)}; resuming from {path.relative_to(run_dir)} (epoch {epoch})",
                    flush=True,
                )
            return epoch
        failures.append(f"{path.relative_to(run_dir)} cannot be loaded ({problem})")
    if not failures:
        detail = "no checkpoint file is left"
    else:
        more = f"; {len(failures) - 1} more cannot be loaded either" if len(failures) > 1 else ""
        detail = f"{failures[0]}{more}"
    raise ASPError(
        f"cannot resume {run_dir} after {config.get('epochs_done')} epochs: {detail}; "
        "pass --fresh to start the run over"
    )


def _trim_log(path: Path, epochs: int) -> None:
    """Drops the rows of log.csv beyond ``epochs`` (a run resumed from an earlier checkpoint)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    keep = lines[:1] + [
        line for line in lines[1:] if line.split(",", 1)[0].isdigit() and int(line.split(",", 1)[0]) < epochs
    ]
    if keep != lines:
        with atomic_write(path) as f:
            f.writelines(keep)


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
        self.writer = tf.summary.create_file_writer(str(log_dir / "latent"))

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not len(self.indices) or _bad_losses(logs):  # a diverged epoch: nothing to measure
            return
        report = latent_report(self.model, self.split, self.indices, self.means)
        with self.writer.as_default(step=epoch):
            for key, value in report.items():
                if key.startswith("_"):
                    tf.summary.histogram(f"latent/{key[1:]}", value)
                else:
                    logs[f"val_{key}"] = value
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


def _strategy() -> tf.distribute.Strategy:
    """MirroredStrategy over several visible GPUs, TensorFlow's default strategy otherwise."""
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def _check_every_synth_has_samples(cfg: TrainConfig, available: dict[str, int], picked: np.ndarray) -> None:
    """Refuses a run that would train a synth's head (or a per-synth model) on no samples.

    Args:
        available: {synth: samples of it in the train split} for the synths of the run.
        picked: (n,) the synth of each training sample the run takes (after ``--max-samples``).
    """
    empty = [s for s, n in available.items() if n == 0]
    if empty:
        counts = ", ".join(f"{s} {n}" for s, n in available.items())
        fix = (
            "generate a dataset with samples of it"
            if cfg.approach == "synth"
            else "leave it out with --synths, or generate a dataset with samples of it"
        )
        raise ASPError(
            f"the train split of {cfg.data_dir} has no samples of {', '.join(empty)} (train samples: {counts}): "
            f"a model cannot learn a synth it never hears; {fix}"
        )
    short = [s for s in available if not (picked == s).any()]
    if short:
        raise ASPError(
            f"--max-samples {cfg.max_samples} leaves no training samples of {', '.join(short)}; raise it "
            f"(the train split has {sum(available.values())})"
        )


@dataclass
class Plan:
    """What a run trains on: its synths and the rows of each split it takes."""

    specs: list[SynthSpec]
    train_split: Split
    train_idx: np.ndarray
    valid_split: Split | None
    valid_idx: np.ndarray

    @property
    def synths(self) -> list[str]:
        return [s.name for s in self.specs]


def check_parts(cfg: TrainConfig) -> None:
    """Refuses settings of the wrong kind and parts that are not registered (one line each)."""
    cfg.check()
    for name, table in (("encoder", ENCODERS), ("spec_decoder", SPEC_DECODERS)):
        if getattr(cfg, name) not in table:
            flag = "--" + name.replace("_", "-")
            raise ASPError(
                f"{flag} {getattr(cfg, name)!r} is not a registered part; use one of {', '.join(sorted(table))}"
            )


def plan(cfg: TrainConfig) -> Plan:
    """The synths and samples of a run, checked: every synth has training samples, nothing is NaN.

    Raises:
        ASPError: a missing or inconsistent dataset, a synth it lacks.
    """
    train_split = load_split(cfg.data_dir, "train")
    specs = dataset_specs(cfg.data_dir, train_split)
    names = [s.name for s in specs]
    if cfg.approach == "synth":
        if cfg.synth not in names:
            raise ASPError(
                f"{cfg.data_dir} has synths {', '.join(names)} but no {cfg.synth} samples; train a "
                "per-synth baseline for one of them with `python train_synth.py --synth NAME`"
            )
        specs = [s for s in specs if s.name == cfg.synth]
    elif cfg.synths:
        unknown = [s for s in cfg.synths if s not in names]
        if unknown:
            raise ASPError(f"{cfg.data_dir} has synths {', '.join(names)}, not {', '.join(unknown)} (--synths)")
        specs = [s for s in specs if s.name in cfg.synths]
    wanted = [s.name for s in specs]
    valid_split = load_split(cfg.data_dir, "valid") if (Path(cfg.data_dir) / "valid_mels.npy").is_file() else None
    if valid_split is not None:
        dataset_specs(cfg.data_dir, valid_split)

    def pick(split: Split, limit: int | None) -> np.ndarray:
        idx = np.flatnonzero(np.isin(split.synth, wanted))
        if limit is not None and len(idx) > limit:
            idx = np.sort(np.random.default_rng(cfg.seed).permutation(idx)[:limit])
        return idx

    available = {s: int((train_split.synth == s).sum()) for s in wanted}
    train_idx = pick(train_split, cfg.max_samples)
    valid_idx = pick(valid_split, cfg.max_samples) if valid_split is not None else np.zeros(0, int)
    _check_every_synth_has_samples(cfg, available, train_split.synth[train_idx])
    check_finite(train_split, train_idx, data_dir=cfg.data_dir)  # NaN in, NaN weights out
    if len(valid_idx):
        check_finite(valid_split, valid_idx, data_dir=cfg.data_dir)
    return Plan(specs, train_split, train_idx, valid_split, valid_idx)


def run_config(cfg: TrainConfig, p: Plan) -> dict:
    """The run's config.json: its settings (``TrainConfig.record``), the synth specs, the data's
    fingerprint and what derives from them; progress fields start empty."""
    steps = int(np.ceil(len(p.train_idx) / cfg.batch_size))
    return {
        **cfg.record(),
        "target_synth": cfg.synth if cfg.approach == "synth" else None,
        "trained_synths": p.synths,
        "synths": [s.to_json(with_path=False) for s in p.specs],
        "encodings": [{"name": s.name, "encoded_size": s.encoded_size, "hash": s.hash} for s in p.specs],
        "data_fingerprint": data_fingerprint(cfg.data_dir),
        "train_samples": int(len(p.train_idx)),
        "valid_samples": int(len(p.valid_idx)),
        "kl_warmup_steps": cfg.kl_warmup_epochs * steps,
        "steps_per_epoch": steps,
        "epochs_done": 0,
        "best_loss": None,
        "best_epoch": None,
        "model_version": MODEL_VERSION,
        "keras_version": keras.__version__,
    }


def open_run(run_dir: Path, cfg: TrainConfig, config: dict) -> dict:
    """Takes over the run folder's progress (same settings) or starts it over (``--fresh``), and
    writes config.json; returns the config to train with. Call with the folder's lock held.

    Raises:
        ASPError: the folder holds a run trained with other settings (and no ``--fresh``).
    """
    if (run_dir / CONFIG).is_file() and not cfg.fresh:
        old = read_config(run_dir)
        changed = changed_settings(old, config)
        if changed:
            raise ASPError(
                f"{run_dir} holds a model trained with other settings (its config.json has "
                f"{'; '.join(changed)}); pass --fresh to start it over with these, or choose another --model-dir"
            )
        for key in ("epochs_done", "best_loss", "best_epoch", "last_losses"):  # progress so far
            if key in old:
                config[key] = old[key]
    elif cfg.fresh and run_dir.exists():
        for child in (BACKUP, WEIGHTS, CONFIG, "log.csv"):
            path = run_dir / child
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    write_json(run_dir / CONFIG, config)
    return config


def train(cfg: TrainConfig, *, callbacks: list | None = None) -> dict:
    """Trains (or resumes) one model; returns its final config dict.

    Args:
        callbacks: extra Keras callbacks (after the run's own; bench/training.py times epochs).

    Raises:
        ASPError: for bad settings, a missing or inconsistent dataset, an unknown synth, or an
            existing checkpoint made with other settings.
    """
    check_parts(cfg)
    p = plan(cfg)
    run_dir = Path(cfg.model_dir) / run_name(cfg)
    config = run_config(cfg, p)
    run_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(run_dir, what="another training run", fix="choose another --model-dir"):  # held until the end
        config = open_run(run_dir, cfg, config)
        keras.utils.set_random_seed(cfg.seed)
        tf.config.experimental.enable_op_determinism()
        keys = batch_keys(cfg.approach, p.synths)
        train_stream = make_stream(
            p.train_split, p.train_idx, keys, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed
        )
        valid_stream = (
            make_stream(p.valid_split, p.valid_idx, keys, batch_size=cfg.batch_size, shuffle=False, seed=cfg.seed)
            if len(p.valid_idx)
            else None
        )
        means = mean_vectors(p.train_split, p.train_idx, p.synths)
        with _strategy().scope():
            model = build_model(config)
            model.start_at_mean(means)  # a resumed run restores its own weights over these
            model.compile(optimizer=keras.optimizers.Adam(cfg.lr))
        # the total loss grows with the KL weight during warm-up, so runs are compared on reconstruction
        monitor = "val_recon_loss" if valid_stream is not None else "recon_loss"
        checkpoints = Checkpoints(run_dir, config, monitor)
        own = run_callbacks(cfg, p, run_dir, means, checkpoints)
        if config["epochs_done"] >= cfg.epochs:
            if cfg.verbose:
                print(f"{run_dir} already has {config['epochs_done']} epochs; nothing to do (raise --epochs to go on)")
            return config
        start = restore(model, run_dir, config)
        if start != config["epochs_done"]:
            config["epochs_done"] = start
            write_json(run_dir / CONFIG, config)
        _trim_log(run_dir / "log.csv", start)
        if cfg.verbose:
            print(
                f"training {run_dir.name} on {backend.devices()}: {len(p.train_idx)} train / {len(p.valid_idx)} "
                f"valid samples, synths {', '.join(p.synths)}, encoder {cfg.encoder}, latent {cfg.latent_size}, "
                f"{cfg.epochs} epochs" + (f", resuming after epoch {start}" if start else "")
            )
        model.fit(
            train_stream,
            validation_data=valid_stream,
            initial_epoch=start,
            epochs=cfg.epochs,
            callbacks=own + list(callbacks or []),
            verbose=cfg.verbose,
            shuffle=False,
        )  # the stream reshuffles itself, seeded, every epoch
        if checkpoints.failed:
            kept = (
                f"the last good checkpoint (epoch {config['epochs_done']}) is kept"
                if config["epochs_done"]
                else "nothing was saved"
            )
            raise ASPError(
                f"training {run_dir} diverged: {checkpoints.failed}; {kept}. Lower --lr (now {cfg.lr:g}) "
                "or check the dataset, then rerun (add --fresh to start over)"
            )
        config = read_config(run_dir)
        if cfg.verbose:
            print_summary(config, run_dir, monitor, validation=bool(len(p.valid_idx)))
        return config


def run_callbacks(cfg: TrainConfig, p: Plan, run_dir: Path, means: dict, checkpoints: Checkpoints) -> list:
    """The run's own callbacks, in order: the collapse monitor (it adds its figures to the
    epoch's logs), the checkpoints (they stop a diverged run), then the loggers, and early
    stopping with ``--patience``."""
    monitor_split, monitor_idx = (p.valid_split, p.valid_idx) if len(p.valid_idx) else (p.train_split, p.train_idx)
    latent_monitor = LatentMonitor(
        monitor_split, monitor_idx, means, run_dir / "tensorboard", verbose=cfg.verbose, seed=cfg.seed
    )
    out = [
        latent_monitor,
        checkpoints,
        keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False),
    ]
    if cfg.patience:
        out.append(keras.callbacks.EarlyStopping(monitor=checkpoints.monitor, patience=cfg.patience, mode="min"))
    return out


def print_summary(config: dict, run_dir: Path, monitor: str, *, validation: bool) -> None:
    """The lines a finished run prints: where the best weights are, and how the last epoch
    compares with the training-mean preset."""
    print(
        f"saved {run_dir / WEIGHTS} (best {monitor} {config['best_loss']:.4f} at epoch "
        f"{config['best_epoch']}), {config['epochs_done']} epochs done"
    )
    last = config.get("last_losses", {})
    synths = config["trained_synths"]
    ratios = [f"{s} {last[f'val_param_vs_mean_{s}']:.2f}x" for s in synths if f"val_param_vs_mean_{s}" in last]
    if ratios:
        print(
            f"last epoch, {'validation' if validation else 'training'} sounds: parameter error "
            f"{', '.join(ratios)} the training-mean preset's; {last['val_active_dims']:.0f} of "
            f"{config['latent_size']} latent dimensions active, {last['val_kl_per_dim']:.2f} nats each"
        )


# ---------------------------------------------------------------------------------------
# the scripts


def parser(description: str, *, approach: str, synth: str | None = None) -> argparse.ArgumentParser:
    """The shared command line of the train scripts: a flag per setting of ``asp.config.TrainConfig``."""
    p = ArgumentParser(description=description)
    skip = ["synth"] if approach != "synth" or synth is not None else []
    if approach == "synth":
        skip.append("synths")
    add_arguments(p, choices={"encoder": sorted(ENCODERS), "spec_decoder": sorted(SPEC_DECODERS)}, skip=skip)
    p.add_argument(
        "--paper-loss",
        action="store_true",
        help="the paper's loss settings: --beta 1 --free-bits 0 --kl-warmup-epochs 100 --param-weight 1 "
        "(they collapse the latent)",
    )
    p.add_argument(
        "--paper",
        action="store_true",
        help="every setting as the paper has it: --paper-loss plus --encoder paper --param-loss mse --lr 1e-4",
    )
    return p


def main(description: str, *, approach: str, synth: str | None = None) -> int:
    args = parser(description, approach=approach, synth=synth).parse_args()
    fixed = {"approach": approach}
    if synth is not None:
        fixed["synth"] = synth
    if args.paper_loss or args.paper:
        fixed.update(PAPER_LOSS)
    if args.paper:
        fixed.update(PAPER_MODEL)
    train(from_arguments(args, **fixed))
    return 0
