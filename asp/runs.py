"""Run folders: their names, their identity, and finding a trained one.

A run lives in ``<model-dir>/<run_name>/`` (e.g. vae_multi_64_resnet) with its ``config.json``
and ``model.weights.h5`` (``asp.checkpoints``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

from asp.config import DEFAULT_ENCODER, KEYED_WITHOUT, MODEL_DIR, OPERATIONAL, TrainConfig
from asp.errors import RESTORE_SHIPPED, ASPError
from asp.files import read_json

# the model the project ships (``make pretrained`` makes it): used when no run of one's own is found
SHIPPED = Path(__file__).resolve().parent.parent / MODEL_DIR / "pretrained"


def shipped_model(model: str, latent_size: int | None = None, encoder: str | None = None) -> Path | None:
    """The shipped pretrained model's folder when it is there and fits the request (the multi
    model; its latent size and encoder if given), else None."""
    if model != "multi" or not (SHIPPED / "config.json").is_file():
        return None
    config = read_json(SHIPPED / "config.json", "the shipped model's config", f"restore it: `{RESTORE_SHIPPED}`")
    if not isinstance(config, dict):
        raise ASPError(
            f"the shipped model's config {SHIPPED / 'config.json'} is damaged; restore it: `{RESTORE_SHIPPED}`"
        )
    if latent_size not in (None, config.get("latent_size")) or encoder not in (None, config.get("encoder")):
        return None
    return SHIPPED


def run_name(cfg: TrainConfig | dict) -> str:
    """The run's folder name: ``vae_<approach or synth>_<latent>_<encoder>`` (e.g.
    vae_multi_64_resnet, vae_single_16_paper, vae_fm_64_resnet). Every other setting lives in its
    config.json; a folder holding other settings is refused, not mixed in."""
    get = cfg.get if isinstance(cfg, dict) else lambda k, d=None: getattr(cfg, k, d)
    kind = get("approach") if get("approach") != "synth" else (get("synth") or get("target_synth"))
    return f"vae_{kind}_{get('latent_size')}_{get('encoder', 'paper')}"


def identity(cfg: TrainConfig, fingerprint: str, model_version: int) -> str:
    """A key of everything a run is trained with (the experiment runner shares a checkpoint
    between configs that train the same model): 12 hex digits."""
    values = {
        k: v
        for k, v in dataclasses.asdict(cfg).items()
        if k not in OPERATIONAL and not (k in KEYED_WITHOUT and v == KEYED_WITHOUT[k])
    }
    key = json.dumps(values, sort_keys=True, default=list) + fingerprint + f"model{model_version}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def find_run(model_dir: str | Path, model: str, latent_size: int | None = None, encoder: str | None = None) -> Path:
    """``-m``, ``-l`` and ``--encoder`` of run_inference -> a run folder.

    The trained runs of ``model`` (multi, single or a synth) that match the latent size and the
    encoder when they are given; of several, the one with latent size 64 and the default encoder.
    Runs named before the latent size and encoder were in every name (vae_multi_64, vae_single,
    vae_<synth>) are found when no newer run matches. With none of one's own in the project's
    ``saved_models``, the multi model is the shipped pretrained one (``SHIPPED``).

    Raises:
        ASPError: no such run (naming the trained ones), or several and the flags do not choose.
    """
    model_dir = Path(model_dir)
    if model_dir.exists() and not model_dir.is_dir():
        raise ASPError(f"model folder {model_dir} is a file, not a folder; pass the folder of trained runs with -md")
    trained = (
        sorted(p.name for p in model_dir.glob("vae_*") if (p / "config.json").is_file()) if model_dir.is_dir() else []
    )
    pattern = re.compile(rf"^vae_{re.escape(model)}_(\d+)_(\w+)$")  # encoder names may hold "_"
    runs = [(name, int(m.group(1)), m.group(2)) for name in trained if (m := pattern.match(name))]
    runs = [r for r in runs if latent_size in (None, r[1]) and encoder in (None, r[2])]
    if len(runs) > 1:
        preferred = [r for r in runs if r[1] == (latent_size or 64) and r[2] == (encoder or DEFAULT_ENCODER)]
        if len(preferred) != 1:
            raise ASPError(
                f"{model_dir} has several {model} runs ({', '.join(r[0] for r in runs)}); "
                "choose one with -l LATENT and/or --encoder NAME"
            )
        runs = preferred
    if runs:
        return model_dir / runs[0][0]
    legacy = {"multi": f"vae_multi_{latent_size or 64}", "single": "vae_single"}.get(model, f"vae_{model}")
    if legacy in trained and encoder in (None, "paper"):
        return model_dir / legacy
    default_dir = model_dir.resolve() == SHIPPED.parent  # the project's own saved_models, not another
    shipped = shipped_model(model, latent_size, encoder) if default_dir else None
    if shipped is not None:  # nothing of one's own in saved_models: the shipped pretrained model
        return shipped
    latent = 64 if latent_size is None else latent_size
    want = f"vae_{model}_{latent}_{encoder or DEFAULT_ENCODER} in {model_dir}"  # what training names it by default
    if latent_size is None or encoder is None:  # any run of the model would have done
        given = (f" of latent size {latent_size}" if latent_size is not None else "") + (
            f" with encoder {encoder}" if encoder is not None else ""
        )
        want += f", nor another {model} run{given}"
    hint = f"trained runs there: {', '.join(trained)}" if trained else "train one first, e.g. `python train_multi.py`"
    of_model = [n for n in trained if n == f"vae_{model}" or n.startswith(f"vae_{model}_")]
    if model not in ("multi", "single") and not of_model:
        hint += "; -m takes multi, single or the synth of a trained baseline"
    raise ASPError(f"no trained model {want} ({hint})")
