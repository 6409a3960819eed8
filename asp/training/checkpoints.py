"""A run's checkpoints: the best weights, the last two epochs' state to resume from, and the
progress in config.json, each written atomically; resuming from the newest one that loads; a
diverged epoch (NaN or infinite loss or weights) stops the run before anything of it is saved."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import h5py
import keras
import numpy as np

from asp.checkpoints import CONFIG, WEIGHTS
from asp.errors import ASPError
from asp.files import atomic_path, atomic_write, read_json, remove_stale_temps, write_json
from models import SynthVAE, finite_weights, load_weights

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


def bad_losses(logs: dict) -> list[str]:
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
        if self.failed is None and bad_losses(logs):
            bad = bad_losses(logs)
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
        self.record(done, logs)

    def record(self, done: int, logs: dict, *, best_missing: bool = False) -> None:
        """The end of an epoch's save, after its backup: the best weights when the monitored loss
        improved (or ``best_missing``: there are none), then the progress in config.json."""
        value = logs.get(self.monitor)
        best = self.config.get("best_loss")
        if value is not None and (best is None or value < best or best_missing):
            save_weights(self.model, self.run_dir / WEIGHTS)
            self.config["best_loss"], self.config["best_epoch"] = float(value), done
        self.config["epochs_done"] = done
        self.config["last_losses"] = {k: float(v) for k, v in logs.items()}
        write_json(self.run_dir / CONFIG, self.config)

    def finish(self, model: keras.Model, done: int, stream, *, validation: bool) -> None:
        """Finishes the save of epoch ``done`` that a run stopped midway (killed while writing
        the best weights or config.json: its backup is whole, and loaded into ``model``): the
        monitored loss measured again on ``stream`` (the validation data, else the training
        data), then ``record``."""
        self.set_model(model)
        losses = model.evaluate(stream, return_dict=True, verbose=0)
        logs = {(f"val_{k}" if validation else k): float(v) for k, v in losses.items()}
        self.record(done, logs, best_missing=not (self.run_dir / WEIGHTS).is_file())


def saved_whole(run_dir: Path, config: dict) -> bool:
    """Whether a run's last save finished: its best weights are there and config.json names them."""
    return (run_dir / WEIGHTS).is_file() and config.get("best_epoch") is not None


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
        legacy_epoch = read_json(run_dir / BACKUP / "training_metadata.json", "training metadata")["epoch"]
    except (ASPError, KeyError, TypeError):
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


def trim_log(path: Path, epochs: int) -> None:
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
