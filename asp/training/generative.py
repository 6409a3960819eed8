"""Generative parameter heads added to a trained run, its encoder frozen (``models.GenerativeHeads``).

The heads learn, per synth, the distribution of presets given the encoder's z_mean of their sound
(and its note), from every training sound of the run: an exported run's start index
(``index.npz``: z_mean, encoded preset and note of each) or, for a run folder, its training split
encoded once (``asp.training.export.latent_index``). The encoder never runs during training, so
adding the heads to the shipped model's 50,043 sounds takes minutes on 2 cores.

The run folder gains ``generative.weights.npz`` and config.json a ``generative`` entry (kind,
note input, units, and how they were trained); nothing else of the run changes.
"""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from asp.checkpoints import CONFIG, read_config
from asp.errors import ASPError
from asp.files import atomic_path, write_json
from asp.training.export import INDEX, latent_index, read_index
from models import FLOW_UNITS, GENERATIVE_HEADS, GENERATIVE_WEIGHTS, GenerativeHeads, load_model

DEFAULT_EPOCHS = 40
DEFAULT_BATCH = 256
DEFAULT_LR = 1e-3
DTYPES = ("float16", "float32")
PAIRS_PER_FIT = 250_000


def training_set(model, config: dict, run_dir: Path, data_dir: str | Path | None) -> dict[str, np.ndarray]:
    """Per synth ``z_<synth>`` (n, latent), ``params_<synth>`` (n, size), ``note_<synth>`` (n,):
    from the run's index.npz when it has one, else its training split in ``data_dir``."""
    if (run_dir / INDEX).is_file():
        return read_index(run_dir / INDEX)
    if data_dir is None or not Path(data_dir).is_dir():
        raise ASPError(
            f"{run_dir} has no {INDEX} (an exported run's training sounds); pass -d with the dataset it was trained on"
        )
    return latent_index(model, data_dir, config)


def fit_head(
    head,
    z: np.ndarray,
    notes: np.ndarray,
    vectors: np.ndarray,
    *,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH,
    lr: float = DEFAULT_LR,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Trains one generative head (``head.net``) on n samples; returns the loss of each fit call
    (one or more epochs).

    Args:
        z: (n, latent) float32; notes: (n,) MIDI notes; vectors: (n, size) encoded presets in [0, 1].
        seed: the weights' initialization, the noise and the shuffle: a seed gives the same head.
    """
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    # a fresh optimizer each time: the heads are built before any weights are loaded or trained
    head.net.compile(optimizer=keras.optimizers.Adam(lr), loss="mse")
    # an epoch is one fresh draw of (t, noise) per sample; several epochs' draws go to one fit call
    # (Keras' per-call overhead dominates on small sets), at most PAIRS_PER_FIT rows at a time
    per_fit = max(1, min(epochs, PAIRS_PER_FIT // max(len(z), 1)))
    losses = []
    bar = tqdm(total=epochs, desc=f"flow {head.layout.name}", unit="epoch", disable=not progress, leave=False)
    done = 0
    while done < epochs:
        n = min(per_fit, epochs - done)
        draws = [head.training_pairs(z, notes, vectors, rng) for _ in range(n)]
        inputs = [np.concatenate([d[0][j] for d in draws]) for j in range(len(draws[0][0]))]
        target = np.concatenate([d[1] for d in draws])
        history = head.net.fit(inputs, target, batch_size=batch_size, epochs=1, shuffle=True, verbose=0)
        losses.append(float(history.history["loss"][-1]))
        done += n
        bar.update(n)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    return losses


def add_generative_head(
    run_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    kind: str = "flow",
    note_input: bool = True,
    units: int = FLOW_UNITS,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH,
    lr: float = DEFAULT_LR,
    seed: int = 0,
    dtype: str = "float32",
    progress: bool = True,
) -> dict:
    """Trains a generative head per synth of a run on its frozen encoder and adds them to the run.

    Returns:
        What config.json records under ``generative`` (kind, note input, units, epochs,
        samples per synth, last loss per synth, seconds).

    Raises:
        ASPError: an unknown kind or dtype, no training sounds, or a ``generative.weights.npz``
            in the folder that config.json does not record (not ours: it is left alone).
    """
    run_dir = Path(run_dir)
    if kind not in GENERATIVE_HEADS:
        raise ASPError(f"unknown generative head {kind!r}; use one of {', '.join(sorted(GENERATIVE_HEADS))}")
    if dtype not in DTYPES:
        raise ASPError(f"--dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    config = read_config(run_dir)
    weights = run_dir / GENERATIVE_WEIGHTS
    if weights.exists() and not config.get("generative"):
        raise ASPError(f"{weights} exists but {run_dir / CONFIG} does not record it; move it away first")
    start = time.perf_counter()
    model, config = load_model(run_dir)
    data = training_set(model, config, run_dir, data_dir)
    heads = GenerativeHeads(kind, model.layouts, model.latent_size, note_input=note_input, units=units)
    samples, last = {}, {}
    for i, (synth, head) in enumerate(heads.heads.items()):
        z = np.asarray(data.get(f"z_{synth}", np.zeros((0, model.latent_size))), np.float32)
        if not len(z):
            raise ASPError(f"no training sound of {synth} to train its generative head on")
        notes = np.asarray(data[f"note_{synth}"], np.float32)
        vectors = np.asarray(data[f"params_{synth}"], np.float32)
        losses = fit_head(
            head, z, notes, vectors, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed + i, progress=progress
        )
        samples[synth], last[synth] = len(z), round(losses[-1], 5)
    record = {
        **heads.record(),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "dtype": dtype,
        "samples": samples,
        "last_loss": last,
        "seconds": round(time.perf_counter() - start, 1),
    }
    with atomic_path(weights) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **{k: v.astype(dtype) for k, v in heads.variables().items()})
    config = read_config(run_dir)  # as on disk (load_model's copy is the same; re-read to change only ours)
    config["generative"] = record
    write_json(run_dir / CONFIG, config)
    return record
