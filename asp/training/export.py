"""The shipped form of a trained run: the weights inference needs (no optimizer state, no
spectrogram decoder), float16 or float32, and the search's start index (every training sound's
z_mean, encoded preset and note), so that matching needs neither the dataset nor the checkpoint.

``models.load_model`` loads an exported folder like a run folder.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from asp.checkpoints import CONFIG, export_checksums
from asp.errors import ASPError
from asp.files import atomic_folder, write_json
from data.dataset import load_split, training_rows
from models import INFERENCE_WEIGHTS, inference_variables, load_model

INDEX = "index.npz"
DTYPES = ("float16", "float32")
INDEX_DTYPES = (*DTYPES, "uint8")


def pack_index(index: dict[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """The index as ``index.npz`` stores it: float16/float32 as they are; uint8 as 8-bit codes (a
    quarter of float32's bytes): each z dimension between its minimum and maximum in 255 steps
    (``zlo_<synth>``/``zstep_<synth>`` per dimension), presets (in [0, 1]) in steps of 1/255."""
    out = {}
    for key, value in index.items():
        if value.dtype != np.float32:
            out[key] = value  # the notes
        elif dtype != "uint8":
            out[key] = value.astype(dtype)
        elif key.startswith("z_"):
            lo = value.min(axis=0) if len(value) else np.zeros(value.shape[1], np.float32)
            step = np.maximum((value.max(axis=0) if len(value) else lo) - lo, 1e-12) / 255
            out[key] = np.rint((value - lo) / step).astype(np.uint8)
            out[f"zlo_{key[2:]}"], out[f"zstep_{key[2:]}"] = lo.astype(np.float32), step.astype(np.float32)
        else:
            out[key] = np.rint(np.clip(value, 0, 1) * 255).astype(np.uint8)
    return out


def read_index(path: Path) -> dict[str, np.ndarray]:
    """An ``index.npz`` as float32 ``z_<synth>``/``params_<synth>`` and ``note_<synth>``, whichever
    dtype it was packed in (``pack_index``)."""
    with np.load(path) as saved:
        stored = {k: saved[k] for k in saved.files}
    out = {}
    for key, value in stored.items():
        if key.startswith(("zlo_", "zstep_")):
            continue
        if key.startswith("z_") and value.dtype == np.uint8:
            synth = key[2:]
            out[key] = stored[f"zlo_{synth}"] + value.astype(np.float32) * stored[f"zstep_{synth}"]
        elif key.startswith("params_") and value.dtype == np.uint8:
            out[key] = value.astype(np.float32) / 255
        else:
            out[key] = value.astype(np.float32) if value.dtype.kind == "f" else value
    return out


def latent_index(model, data_dir: str | Path, config: dict, batch_size: int = 256) -> dict[str, np.ndarray]:
    """z_mean, encoded preset and note of every training sound the run trained on, per synth."""
    train = load_split(data_dir, "train")
    rows = training_rows(train, config["trained_synths"], config.get("max_samples"), config.get("seed", 0))
    z = np.zeros((len(rows), model.latent_size), np.float32)
    for start in tqdm(range(0, len(rows), batch_size), desc="index", unit="batch"):
        chunk = rows[start : start + batch_size]
        z_mean, _ = model.encoder(np.asarray(train.mels[chunk], dtype=np.float32), training=False)
        z[start : start + len(chunk)] = keras.ops.convert_to_numpy(z_mean)
    out = {}
    for synth in config["trained_synths"]:
        mine = train.synth[rows] == synth
        out[f"params_{synth}"] = np.asarray(train.params[synth][rows[mine]], dtype=np.float32)
        out[f"z_{synth}"] = z[mine]
        out[f"note_{synth}"] = np.asarray(train.note[rows[mine]], dtype=np.int16)
    return out


def git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def export(
    run_dir: str | Path,
    data_dir: str | Path,
    out: str | Path,
    *,
    dtype: str = "float16",
    index_dtype: str | None = None,
    command: str = "",
):
    """Writes the shipped form of a run (see the module docstring) to ``out``; the index in
    ``index_dtype`` (default: ``dtype``)."""
    index_dtype = index_dtype or dtype
    if dtype not in DTYPES:
        raise ASPError(f"--dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    if index_dtype not in INDEX_DTYPES:
        raise ASPError(f"--index-dtype {index_dtype!r}: use one of {', '.join(INDEX_DTYPES)}")
    out = Path(out)
    if out.exists():
        raise ASPError(f"{out} exists; choose a new --out folder (an export is written whole)")
    model, config = load_model(run_dir)
    variables = {k: v.astype(dtype) for k, v in inference_variables(model).items()}
    index = pack_index(latent_index(model, data_dir, config), index_dtype)
    config = dict(config)
    config.pop("data_dir", None)  # the training machine's folder: the data is data_fingerprint
    config["export"] = {
        "dtype": dtype,
        "index_dtype": index_dtype,
        "data_fingerprint": config.get("data_fingerprint"),
        "index_samples": int(sum(len(index[f"note_{s}"]) for s in config["trained_synths"])),
        "command": command,
        "git_revision": git_revision(),
    }
    with atomic_folder(out) as tmp:
        np.savez(tmp / INFERENCE_WEIGHTS, **variables)
        np.savez_compressed(tmp / INDEX, **index)
        config["export"].update(export_checksums(tmp, config, [INFERENCE_WEIGHTS, INDEX]))  # verified on load
        write_json(tmp / CONFIG, config)
    return out
