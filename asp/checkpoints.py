"""Run folders of trained models, without TensorFlow: their config.json, checked.

A run lives in ``<model-dir>/<asp.runs.run_name>/`` (e.g. vae_multi_64_resnet) with its
``config.json`` and ``model.weights.h5`` (see ``asp.training``); ``asp.runs.find_run`` finds one.
"""

from __future__ import annotations

from pathlib import Path

from asp.errors import ASPError
from asp.files import read_json

CONFIG = "config.json"
WEIGHTS = "model.weights.h5"


# what a run's config must hold for a model to be rebuilt and a run resumed: key -> accepted types
_NUMBER = (int, float)
REQUIRED = {
    "approach": (str,),
    "latent_size": (int,),
    "param_loss": (str,),
    "synths": (list,),
    "seed": (int,),
    "epochs_done": (int,),
}
OPTIONAL = {
    "beta": _NUMBER,
    "free_bits": _NUMBER,
    "kl_warmup_steps": (int,),
    "best_loss": (*_NUMBER, type(None)),
    "best_epoch": (int, type(None)),
    "trained_synths": (list,),
    "last_losses": (dict,),
}


def check_config(config: object, path: Path) -> dict:
    """A run config as read from ``path``, checked for the keys and types the code relies on.

    Raises:
        ASPError: naming the first missing or mistyped key.
    """
    fix = "restore it, or retrain the run with --fresh"
    if not isinstance(config, dict):
        raise ASPError(f"run config {path} is damaged: it must hold a JSON object; {fix}")
    for key, kinds in {**REQUIRED, **OPTIONAL}.items():
        if key not in config:
            if key in REQUIRED:
                raise ASPError(f"run config {path} is damaged: {key!r} is missing; {fix}")
            continue
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            wanted = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise ASPError(
                f"run config {path} is damaged: {key!r} should be {wanted}, not {type(value).__name__}; {fix}"
            )
    if config["latent_size"] < 1 or config["epochs_done"] < 0 or not config["synths"]:
        raise ASPError(f"run config {path} is damaged: latent_size, epochs_done or synths out of range; {fix}")
    if not all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in config["synths"]):
        raise ASPError(f"run config {path} is damaged: every entry of 'synths' must be a spec with a name; {fix}")
    return config


def read_config(run_dir: str | Path) -> dict:
    """A run's config.json, checked (``check_config``)."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise ASPError(
            f"no trained model in {run_dir} ({CONFIG} missing); train one first, e.g. "
            "`python train_multi.py`, or pass the right model folder"
        )
    return check_config(read_json(path, "run config", "restore it, or retrain the run with --fresh"), path)
