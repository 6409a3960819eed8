"""Experiment configs: a JSON file per table, ``include`` merging a base under it, ``profiles``
overriding settings; checked key by key before anything is trained or written (see
``asp.experiments`` for what a config holds)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from asp.config import experiment_checks, integer, number, or_null, text, texts
from asp.errors import ASPError
from asp.files import read_json

# What each key of a config may hold: key -> (check, what it must be). A profile may set any
# setting (not rows, profiles or include).
SETTINGS = {
    "name": (text, "a folder name"),
    "title": (text, "text"),
    "about": (text, "text"),
    "test_dir": (or_null(text), "a folder path or null"),
    "eval_max_samples": (or_null(integer(1)), "an integer >= 1 or null"),
    "baselines": (lambda v: isinstance(v, list) and all(text(x) for x in v), "a list of baseline names"),
    "refine_renders": (or_null(integer(1)), "an integer >= 1 or null"),
    "refine_seconds": (or_null(number(0, open_=True)), "a finite number > 0 or null"),
    "report_samples": (integer(0), "an integer >= 0"),
    # a real-sound config (asp.evaluation.real): no rows; a model matched to the sounds of a folder
    "real_sounds": (text, "a folder of real sounds (make real-sounds)"),
    "model": (text, "a run folder, or a run name in model_dir"),
    # how many of a sound's closest one-shot synths its search refines, as run_inference.py --refine-synths
    # does (null: every synth)
    "refine_synths": (or_null(integer(1)), "an integer >= 1 or null"),
    # every training setting (asp.config.TrainConfig, by field name), for all rows; a row may override it
    **{k: v for k, v in experiment_checks().items() if k not in ("approach", "synth", "synths")},
}
REQUIRED = ("data_dir", "epochs", "baselines")  # after include and profile (the rest: TrainConfig's defaults)
REAL_REQUIRED = ("real_sounds", "model", "data_dir")  # a real-sound config's
ROW_KEYS = {
    "label": (text, "text"),
    "approach": (text, "text (multi, single or synth)"),
    "train_synths": (texts, "a non-empty list of synth names"),
    "eval_synths": (texts, "a non-empty list of synth names"),
    # baselines scored with this row's model, from its own training sounds (its max_samples): e.g.
    # ["nearest"] for lookup in the same sounds, as a scaling curve needs
    "baselines": (lambda v: isinstance(v, list) and all(text(x) for x in v), "a list of baseline names"),
    **{
        k: v
        for k, v in experiment_checks().items()
        if k not in ("approach", "synth", "synths", "data_dir", "model_dir")
    },
}


def _check_keys(values: dict, schema: dict, where: str) -> None:
    """Refuses unknown keys and values of the wrong kind, naming the key."""
    for key, value in values.items():
        if key not in schema:
            raise ASPError(f"{where} has an unknown key {key!r}; known: {', '.join(sorted(schema))}")
        check, what = schema[key]
        if not check(value):
            raise ASPError(f"{where}: {key!r} must be {what}, got {json.dumps(value)[:80]}")


def _merged(path: Path, chain: tuple[Path, ...]) -> dict:
    """One config file with its ``include`` chain merged under it (the including file wins)."""
    key = path.resolve()
    if key in chain:
        names = " -> ".join(str(p) for p in (*chain[chain.index(key) :], key))
        raise ASPError(f"experiment config include loop: {names}; remove one of the includes")
    data = read_json(path, "experiment config")
    if not isinstance(data, dict):
        raise ASPError(f"experiment config {path} must hold a JSON object, not {type(data).__name__}")
    profiles = data.get("profiles", {})
    if not (isinstance(profiles, dict) and all(isinstance(v, dict) for v in profiles.values())):
        raise ASPError(f"experiment config {path}: 'profiles' must map profile names to objects of settings")
    for profile, values in profiles.items():
        _check_keys(values, SETTINGS, f"experiment config {path}, profile {profile!r}")
    base = data.pop("include", None)
    if base is None:
        return data
    if not text(base):
        raise ASPError(f"experiment config {path}: 'include' must be the path of a config file, got {base!r}")
    merged = _merged(path.parent / base, (*chain, key))
    merged.pop("name", None)  # a config is named by its own file
    profiles = {**merged.get("profiles", {})}
    for profile, values in data.get("profiles", {}).items():
        profiles[profile] = {**profiles.get(profile, {}), **values}
    merged.update(data)
    merged["profiles"] = profiles
    return merged


def load_config(path: str | Path) -> dict:
    """A config with its ``include`` chain merged (the including file wins), checked: known keys
    only, each of the right kind, and a non-empty ``rows`` list of rows with an approach.

    Raises:
        ASPError: naming the file and the key (or the include loop).
    """
    path = Path(path)
    data = _merged(path, ())
    data.setdefault("name", path.stem)
    where = f"experiment config {path}"
    _check_keys({k: v for k, v in data.items() if k not in ("rows", "profiles")}, SETTINGS, where)
    if data["name"] in (".", "..") or "/" in data["name"] or os.sep in data["name"]:
        raise ASPError(f"{where}: 'name' must be a folder name (no path), got {data['name']!r}")
    rows = data.get("rows")
    if "real_sounds" in data or any("real_sounds" in p for p in data.get("profiles", {}).values()):
        if rows is not None:
            raise ASPError(f"{where}: a real-sound config ('real_sounds') has no 'rows'; it evaluates its 'model'")
        return data
    if not isinstance(rows, list) or not rows:
        raise ASPError(f"{where} needs 'rows': a non-empty list of table rows, each with an 'approach'")
    for k, row in enumerate(rows):
        if not isinstance(row, dict) or "approach" not in row:
            raise ASPError(f"{where}: row {k} must be an object with an 'approach' (multi, single or synth)")
        _check_keys(row, ROW_KEYS, f"{where}, row {k}")
    return data


def resolve(config: dict, profile: str) -> dict:
    """The settings of one profile: the config's, with the profile's over them.

    Raises:
        ASPError: for an unknown profile or a required setting that neither sets.
    """
    if profile not in config.get("profiles", {}):
        raise ASPError(
            f"config {config['name']!r} has no profile {profile!r}; it has "
            f"{', '.join(config.get('profiles', {})) or 'none'}"
        )
    settings = {**{k: v for k, v in config.items() if k != "profiles"}, **config["profiles"][profile]}
    missing = [k for k in (REAL_REQUIRED if "real_sounds" in settings else REQUIRED) if k not in settings]
    if missing:
        raise ASPError(
            f"config {config['name']!r} (profile {profile}) lacks {', '.join(map(repr, missing))} "
            f"({'; '.join(SETTINGS[k][1] for k in missing)}); set it in the config, a file it includes, or the profile"
        )
    return settings


def slug(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")
