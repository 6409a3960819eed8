"""The one training function, ``train``: plans the run, holds its folder, builds the model, and
fits it with the run's callbacks (collapse monitor, checkpoints, loggers)."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import keras

from asp import backend
from asp.checkpoints import CONFIG, WEIGHTS, read_config
from asp.config import TrainConfig
from asp.errors import ASPError
from asp.files import write_json
from asp.runs import run_name
from asp.training.checkpoints import Checkpoints, restore, saved_whole, trim_log
from asp.training.distributed import Cluster, connect
from asp.training.generative import add_generative_head
from asp.training.monitor import LatentMonitor, mean_vectors
from asp.training.planning import Plan, check_parts, open_run, plan, run_config
from asp.training.stream import batch_keys
from models import SynthVAE, build_model

tf = backend.tensorflow()  # None under another Keras backend (KERAS_BACKEND=torch)

# glibc gives every thread that allocates its own malloc arena; tf.data's threads moving 7 MB
# batches then held ~4 GB of freed memory. Two arenas keep the peak near 1.4 GB (bench/training.py).
_M_ARENA_MAX = -8


def limit_malloc_arenas() -> None:
    """At most two glibc malloc arenas for the threads created from now on (Linux; elsewhere a
    no-op). Called before a run builds its streams: importing TensorFlow creates none."""
    libc = ctypes.CDLL(None) if sys.platform.startswith("linux") else None
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_ARENA_MAX, 2)


def train(cfg: TrainConfig, *, callbacks: list | None = None) -> dict:
    """Trains (or resumes) one model; returns its final config dict.

    Args:
        callbacks: extra Keras callbacks (after the run's own; bench/training.py times epochs).

    Raises:
        ASPError: for bad settings, a missing or inconsistent dataset, an unknown synth, or an
            existing checkpoint made with other settings.
    """
    limit_malloc_arenas()
    check_parts(cfg)
    cluster = connect(cfg)  # --distribute: the strategy, before any other TensorFlow operation
    p = plan(cfg)
    run_dir = Path(cfg.model_dir) / run_name(cfg)
    config = {**run_config(cfg, p), **cluster.record(cfg, len(p.train_idx))}
    # the chief (or a single run) holds the run folder until the end; other workers write a copy
    with cluster.run_folder(run_dir) as folder:
        config = open_run(folder, cfg, config)
        keras.utils.set_random_seed(cfg.seed)
        if tf is not None:
            tf.config.experimental.enable_op_determinism()
        streams = _streams(cfg, p, cluster)
        means = mean_vectors(p.train_split, p.train_idx, p.synths)
        model = _compiled_model(cfg, config, means, cluster)
        # the total loss grows with the KL weight during warm-up, so runs are compared on reconstruction
        monitor = "val_recon_loss" if streams[1] is not None else "recon_loss"
        checkpoints = Checkpoints(folder, config, monitor)
        own = cluster.callbacks() + run_callbacks(cfg, p, folder, means, checkpoints)
        done = config["epochs_done"] >= cfg.epochs and saved_whole(folder, config)
        cluster.agree(config, epochs_done=config["epochs_done"], finished=done)
        if done:
            if cfg.verbose and cluster.chief:
                print(f"{run_dir} already has {config['epochs_done']} epochs; nothing to do (raise --epochs to go on)")
            return _with_generative(cfg, folder, config, cluster)
        with cluster.lost_workers():
            start = _resume(model, folder, config, checkpoints, cfg, p, streams, cluster)
            cluster.agree(config, resuming_after_epoch=start)
            if cfg.verbose:
                resuming = f", resuming after epoch {start}" if start else ""
                print(
                    f"training {run_dir.name} on {cluster.describe(backend.devices())}: {len(p.train_idx)} train / "
                    f"{len(p.valid_idx)} valid samples, synths {', '.join(p.synths)}, encoder {cfg.encoder}, "
                    f"latent {cfg.latent_size}, {cfg.epochs} epochs{resuming}"
                )
            model.fit(
                streams[0],
                validation_data=streams[1],
                initial_epoch=start,
                epochs=cfg.epochs,
                callbacks=own + list(callbacks or []),
                verbose=cfg.verbose,
                shuffle=False,
            )  # the stream reshuffles itself, seeded, every epoch
        _check_diverged(checkpoints, folder, config, cfg)
        config = read_config(folder)
        if cfg.verbose and cluster.chief:
            print_summary(config, run_dir, monitor, validation=bool(len(p.valid_idx)))
        return _with_generative(cfg, folder, config, cluster)


def _with_generative(cfg: TrainConfig, folder: Path, config: dict, cluster: Cluster) -> dict:
    """With ``--generative-head``: the run's generative heads added on its frozen encoder
    (``asp.training.generative``), unless it has heads of that kind; the config as it then is."""
    if (
        cfg.generative_head is None
        or not cluster.chief
        or (config.get("generative") or {}).get("kind") == cfg.generative_head
    ):
        return config
    add_generative_head(
        folder, data_dir=cfg.data_dir, kind=cfg.generative_head, seed=cfg.seed, progress=cfg.verbose > 0
    )
    return read_config(folder)


def _streams(cfg: TrainConfig, p: Plan, cluster: Cluster) -> tuple:
    """The training stream (reshuffled every epoch) and the validation one (None without samples)."""
    keys = batch_keys(cfg.approach, p.synths, cfg.note_input)
    make_stream = cluster.make_stream
    train_stream = make_stream(p.train_split, p.train_idx, keys, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed)
    valid_stream = (
        make_stream(p.valid_split, p.valid_idx, keys, batch_size=cfg.batch_size, shuffle=False, seed=cfg.seed)
        if len(p.valid_idx)
        else None
    )
    return train_stream, valid_stream


def _compiled_model(cfg: TrainConfig, config: dict, means: dict, cluster: Cluster) -> SynthVAE:
    """The run's model, its heads starting at the training mean, compiled (on every replica of a
    distributed run)."""
    with cluster.scope():
        model = build_model(config)
        model.start_at_mean(means)  # a resumed run restores its own weights over these
        model.compile(optimizer=keras.optimizers.Adam(config["lr_used"]))
    return model


def _resume(
    model: SynthVAE,
    run_dir: Path,
    config: dict,
    checkpoints: Checkpoints,
    cfg: TrainConfig,
    p: Plan,
    streams: tuple,
    cluster: Cluster,
) -> int:
    """Restores the newest checkpoint that loads; returns the epochs it had done (config.json and
    log.csv follow it). A save the run was killed in (the epoch's backup whole, its best weights or
    config.json not) is finished first, from that backup."""
    recorded = config["epochs_done"]
    with cluster.scope():  # the optimizer's variables, mirrored like the model's
        start = restore(model, run_dir, config)
    if start > 0 and (start > recorded or not saved_whole(run_dir, config)):
        if cfg.verbose:
            print(
                f"the run was stopped while saving epoch {start}: finishing its save (best weights, config.json) "
                f"from the checkpoint of epoch {start}",
                flush=True,
            )
        measure = streams[1]
        if measure is None:  # no validation data: the training data, in order
            keys = batch_keys(cfg.approach, p.synths, cfg.note_input)
            measure = cluster.make_stream(
                p.train_split, p.train_idx, keys, batch_size=cfg.batch_size, shuffle=False, seed=0
            )
        checkpoints.finish(model, start, measure, validation=streams[1] is not None)
    elif start != config["epochs_done"]:
        config["epochs_done"] = start
        write_json(run_dir / CONFIG, config)
    trim_log(run_dir / "log.csv", start)
    return start


def _check_diverged(checkpoints: Checkpoints, run_dir: Path, config: dict, cfg: TrainConfig) -> None:
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
    ]
    if tf is not None:
        out.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False))
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
