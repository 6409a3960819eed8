"""Run folders of trained models, without TensorFlow: names, configs, lookup.

A run lives in ``<model-dir>/vae_multi_<latent>/``, ``vae_single/`` or ``vae_<synth>/`` with its
``config.json`` and ``model.weights.h5`` (see training.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from data_generation.errors import ASPError, read_json

CONFIG = "config.json"
WEIGHTS = "model.weights.h5"


def run_name(approach: str, latent_size: int, synth: str | None = None) -> str:
    """The seed's checkpoint names: vae_multi_<latent>, vae_single, vae_<synth>."""
    if approach == "multi":
        return f"vae_multi_{latent_size}"
    if approach == "single":
        return "vae_single"
    return f"vae_{synth}"


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def read_config(run_dir: str | Path) -> dict:
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise ASPError(
            f"no trained model in {run_dir} ({CONFIG} missing); train one first, e.g. "
            "`python train_multi.py`, or pass the right model folder"
        )
    return read_json(path, "run config", "retrain or restore it")


def model_folder(model_dir: str | Path, model: str, latent_size: int | None) -> Path:
    """``-m`` and ``-l`` -> the run folder: vae_multi_<l>, vae_single or vae_<synth>."""
    model_dir = Path(model_dir)
    name = {"multi": f"vae_multi_{latent_size or 64}", "single": "vae_single"}.get(model, f"vae_{model}")
    folder = model_dir / name
    if not (folder / "config.json").is_file():
        runs = (
            sorted(p.name for p in model_dir.glob("vae_*") if (p / "config.json").is_file())
            if model_dir.is_dir()
            else []
        )
        hint = f"trained runs there: {', '.join(runs)}" if runs else "train one first, e.g. `python train_multi.py`"
        raise ASPError(f"no trained model {name} in {model_dir} ({hint})")
    return folder
