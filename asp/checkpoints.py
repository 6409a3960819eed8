"""Run folders of trained models, without TensorFlow: their config.json, checked.

A run lives in ``<model-dir>/<asp.runs.run_name>/`` (e.g. vae_multi_64_resnet) with its
``config.json`` and ``model.weights.h5`` (see ``asp.training``); ``asp.runs.find_run`` finds one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from asp.errors import RESTORE_SHIPPED, ASPError
from asp.files import file_sha256, read_json

CONFIG = "config.json"
WEIGHTS = "model.weights.h5"
EXPORTED_WEIGHTS = "inference.weights.npz"  # an exported model's (asp.training.export): encoder and heads only
# the config keys that define an exported model's network: their digest is recorded at export
MODEL_KEYS = ("approach", "latent_size", "encoder", "spec_decoder", "note_input", "trained_synths", "synths")


def damaged_fix(run_dir: Path) -> str:
    """What to do about a damaged file of a run folder: retrain a training run; restore or export
    again an exported one (it has no backups, and --fresh would train a new model)."""
    if (run_dir / EXPORTED_WEIGHTS).is_file() and not (run_dir / WEIGHTS).is_file():
        return (
            f"restore the exported model's folder (the shipped pretrained model: `{RESTORE_SHIPPED}`), "
            "or export the run again with experiments/export_model.py"
        )
    return "restore it, or retrain the run with --fresh"


def model_digest(config: dict) -> str:
    """The sha256 of the config keys that define an exported model (``MODEL_KEYS``): a renamed synth
    or a changed latent size shows, a moved data folder does not."""
    same = {k: config.get(k) for k in MODEL_KEYS}
    return hashlib.sha256(json.dumps(same, sort_keys=True).encode()).hexdigest()


def export_checksums(folder: Path, config: dict, files: list[str]) -> dict:
    """What an export records in its config's ``export`` block to be verified on load: each file's
    sha256 and the model keys' digest."""
    return {"sha256": {name: file_sha256(folder / name) for name in files}, "model_sha256": model_digest(config)}


def verify_export(run_dir: str | Path, config: dict) -> None:
    """Checks an exported model's files against the checksums its config.json records (written by
    ``export_checksums``; a config without them is not checked), so that a missing, truncated or
    changed file (the shipped model's index.npz, its weights, its config) is named with the fix
    instead of failing later, or silently losing the search's nearest starts.

    Raises:
        ASPError: naming the first file that is missing or differs.
    """
    run_dir = Path(run_dir)
    export = config.get("export")
    recorded = export.get("sha256") if isinstance(export, dict) else None
    if not isinstance(recorded, dict):
        return
    fix = damaged_fix(run_dir)
    if export.get("model_sha256") not in (None, model_digest(config)):
        raise ASPError(
            f"{run_dir / CONFIG} was changed since the model was exported (its synths, latent size or encoder differ "
            f"from the ones the weights were trained with); {fix}"
        )
    for name, digest in recorded.items():
        path = run_dir / str(name)
        if not path.is_file():
            raise ASPError(f"{path} is missing from the exported model; {fix}")
        if file_sha256(path) != digest:
            raise ASPError(f"{path} is damaged (its checksum differs from the one in {CONFIG}); {fix}")


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
    fix = damaged_fix(path.parent)
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
    return check_config(read_json(path, "run config", damaged_fix(Path(run_dir))), path)
