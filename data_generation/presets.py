"""Where presets come from: a synth's human presets, random sampling, mutations of human presets.

Every function returns normalized presets, (n, n_params) float64, in the spec's parameter order.
The spec's ``presets`` list names its human preset sources:
``{"kind": "factory", "path": "va.presets.json"}`` (a JSON file of named presets, values in native
slider units), ``{"kind": "amsynth_bank", "path": "/usr/share/amsynth/banks/*.bank"}`` or
``{"kind": "dx7_bank", "path": "/usr/share/hexter/*.dx7"}`` (DX7 voices: ``.dx7`` or ``.syx``).
A source marked ``"holdout": true`` is kept out of ``human_presets`` (so out of every dataset
made from human presets and their mutations) and read with ``human_presets(spec, holdout=True)``:
human-made sounds no model trained on, for evaluation.
"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np

from asp.errors import ASPError
from asp.files import not_a_file_problem, read_json, write_json
from data_generation import amsynth, dx7, lv2
from data_generation.spec import SynthSpec


def resolve_path(spec: SynthSpec, path: str) -> Path:
    """A path of a spec's preset source: a relative one is relative to the spec file's folder."""
    p = Path(path)
    if not p.is_absolute() and spec.path is not None:
        p = spec.path.parent / p
    return p


PRESET_FORMATS = (
    "a preset file (.faust.json: 'presets' in native units), a <synth>.preset.json ('normalized' values), "
    "a .params.json ('normalized_parameters'), an amsynth .bank, an LV2 preset bundle (.lv2 folder) "
    "or, for dx7, a .syx cartridge or voice (or a hexter .dx7 bank)"
)


def read_preset_file(spec: SynthSpec, path: str | Path) -> tuple[list[str], np.ndarray]:
    """Reads any preset file the toolkit writes (the one reader every tool uses), by content:

    - ``{"synth": NAME, "presets": [{"name": ..., "values": {...}}]}`` (``write_preset_file``,
      ``<synth>.faust.json``, the shipped ``*.presets.json``): native units (Faust slider
      values, class numbers); a single ``{"synth", "name", "values"}`` preset too;
    - ``<synth>.preset.json``: ``{"synth", "name", "normalized": {name: value}}``;
    - ``<synth>.params.json``: ``{"synth", "plugin", "normalized_parameters": [{"index", "name",
      "value"}]}`` (a parameter found by its index where the name agrees, else by its name);
      named after the file;
    - an amsynth ``.bank`` (by suffix, or a first line ``amSynth``), in the spec's ``units``;
    - an LV2 preset bundle (a ``.lv2`` folder, ``lv2.write_preset_bundle``) in the plugin's units;
    - for a ``dexed`` synth (dx7), a DX7 ``.syx`` (a 32-voice cartridge or single voices) or a
      hexter ``.dx7`` bank (by suffix, or a first byte F0).

    Parameters a file leaves out take their defaults.

    Returns:
        names: n preset names.
        presets: (n, n_params) float64 normalized presets.

    Raises:
        ASPError: for an unreadable or malformed file, a file for another synth, an unknown
            parameter, or a value that is NaN, infinite, out of its range or, for a categorical
            parameter, between two classes (``osc1_wave: 1.5``: refused, not snapped to one;
            the message lists the values it takes).
    """
    path = Path(path)
    if not path.is_dir() and (problem := not_a_file_problem(path)):  # a named pipe would block the read
        raise ASPError(f"preset file {problem}; give {PRESET_FORMATS}")
    if path.suffix == ".lv2" or (path / "manifest.ttl").is_file():  # an LV2 preset bundle (a folder)
        name, preset = lv2.preset_from_bundle(spec, path)
        return [name], preset[None]
    if path.suffix == ".bank" or _starts_with(path, amsynth.BANK_HEADER):
        return _read_bank_file(spec, path)
    if dx7.is_voice_file(path):
        if spec.backend != "dexed":
            raise ASPError(f"{path} is a DX7 voice file, but synth {spec.name!r} is no DX7; give it with --synth dx7")
        return dx7.read_voice_presets(spec, path)
    data = read_json(path, "preset file", f"give {PRESET_FORMATS}")
    if not isinstance(data, dict):
        raise ASPError(f"malformed preset file {path}: expected a JSON object")
    if data.get("synth") not in (None, spec.name):
        raise ASPError(f"preset file {path} is for synth {data['synth']!r}, not {spec.name!r}")
    if "presets" in data or "values" in data:
        entries = data.get("presets", [data])
        if not isinstance(entries, list) or not entries:
            raise ASPError(f"malformed preset file {path}: expected a non-empty 'presets' list")
        native = True
    elif "normalized" in data:
        entries, native = [{"name": data.get("name", path.name), "values": data["normalized"]}], False
    elif "normalized_parameters" in data:
        entries, native = [{"name": data.get("name", path.name), "values": _listed_values(spec, path, data)}], False
    else:
        raise ASPError(f"{path} is not a preset file of this toolkit; give {PRESET_FORMATS}")
    names, rows = [], []
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("values"), dict):
            key = "values" if native else "normalized"
            raise ASPError(f"malformed preset file {path}: preset {k} needs a {key!r} object")
        names.append(str(entry.get("name", f"preset {k}")))
        try:
            rows.append(spec.preset_from_dict(entry["values"], native=native, strict=True))
        except ASPError as err:
            raise ASPError(f"preset file {path}, preset {k} ({names[-1]}): {err}") from None
    return names, np.stack(rows)


def _starts_with(path: Path, header: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(header)) == header.encode()
    except OSError:  # read_json says what is wrong with it
        return False


def _listed_values(spec: SynthSpec, path: Path, data: dict) -> dict:
    """A .params.json's ``normalized_parameters`` as {parameter name: value}."""
    listing = data["normalized_parameters"]
    if not isinstance(listing, list) or not listing:
        raise ASPError(f"malformed preset file {path}: 'normalized_parameters' must be a non-empty list")
    labels = [p.label or p.name for p in spec.params]
    by_name = {label: p.name for label, p in zip(labels, spec.params) if labels.count(label) == 1}
    by_name |= {p.name: p.name for p in spec.params}  # (plugins may give two parameters one label)
    by_index = {p.index: p for p in spec.params}
    values: dict = {}
    for k, entry in enumerate(listing):
        if not isinstance(entry, dict) or "value" not in entry:
            raise ASPError(f"malformed preset file {path}: normalized_parameters entry {k} needs a 'value'")
        name, index = entry.get("name"), entry.get("index")
        at = by_index.get(index) if isinstance(index, int) and not isinstance(index, bool) else None
        if at is not None and name in (None, at.name, at.label):
            key = at.name  # the parameter at that index, as the file names it
        else:
            key = by_name.get(name) if isinstance(name, str) else None
        if key is None:
            raise ASPError(
                f"preset file {path}: normalized_parameters entry {k} (name {name!r}, index {index!r}) is no "
                f"parameter of {spec.name!r}; see `python data_generation/view_parameters.py --synth {spec.name}`"
            )
        if key in values:
            raise ASPError(f"preset file {path} sets parameter {key!r} twice")
        values[key] = entry["value"]
    return values


def _read_bank_file(spec: SynthSpec, path: Path) -> tuple[list[str], np.ndarray]:
    if not (spec.name == "amsynth" or any(s.get("kind") == "amsynth_bank" for s in spec.presets)):
        raise ASPError(
            f"{path} is an amsynth bank, but synth {spec.name!r} is not amsynth; give a .faust.json, "
            ".preset.json or .params.json preset file"
        )
    bank = amsynth.read_bank(path)
    if not bank:
        raise ASPError(f"amsynth bank {path} holds no presets")
    return [b.name for b in bank], amsynth.bank_to_presets(spec, bank)


def write_preset_file(path: str | Path, spec: SynthSpec, presets: np.ndarray, names: list[str]) -> Path:
    """Writes presets as a JSON preset file (native units) that ``read_preset_file`` loads back."""
    presets = np.atleast_2d(presets)
    data = {
        "synth": spec.name,
        "presets": [
            {"name": n, "values": spec.preset_to_dict(p, native=True)} for n, p in zip(names, presets, strict=True)
        ],
    }
    path = Path(path)
    write_json(path, data)
    return path


def human_presets(spec: SynthSpec, *, holdout: bool = False) -> tuple[list[str], np.ndarray]:
    """All human-made presets the spec's sources name: (names, (n, n_params) normalized).

    Args:
        holdout: the sources marked ``"holdout": true`` instead of the others.
    """
    names: list[str] = []
    rows: list[np.ndarray] = []
    for source in spec.presets:
        if bool(source.get("holdout", False)) != holdout:
            continue
        kind, path = source.get("kind"), source.get("path")
        if not path:
            raise ASPError(f"spec {spec.name!r}: preset source {source} needs a 'path'")
        if kind == "factory":
            n, p = read_preset_file(spec, resolve_path(spec, path))
        elif kind == "amsynth_bank":
            bank = amsynth.read_banks(resolve_path(spec, path))
            n, p = [b.name for b in bank], amsynth.bank_to_presets(spec, bank)
        elif kind == "dx7_bank":
            n, p = _dx7_banks(spec, resolve_path(spec, path))
        else:
            raise ASPError(f"spec {spec.name!r}: unknown preset source kind {kind!r} (factory, amsynth_bank, dx7_bank)")
        names += n
        rows.append(p)
    if not rows:
        return [], np.zeros((0, spec.n_params))
    return names, np.concatenate(rows)


def _dx7_banks(spec: SynthSpec, pattern: Path) -> tuple[list[str], np.ndarray]:
    """Every voice of the DX7 files matching a glob pattern, files in sorted order."""
    files = sorted(glob.glob(str(pattern)))
    if not files:
        raise ASPError(
            f"no DX7 bank matches {pattern}; install Debian's hexter (`apt-get install hexter`: the DX7 and TX7 "
            "ROM voices), or give a .syx with --preset-file"
        )
    read = [dx7.read_voice_presets(spec, f) for f in files]
    return [n for names, _ in read for n in names], np.concatenate([p for _, p in read])


def random_presets(spec: SynthSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform random presets within each parameter's ``sample_range``; fixed ones at default.

    Categorical parameters draw uniformly among the classes whose value lies in the range.
    """
    lo = np.array([p.sample_range[0] for p in spec.params])
    hi = np.array([p.sample_range[1] for p in spec.params])
    out = lo + rng.random((n, spec.n_params)) * (hi - lo)
    classes = np.array([p.classes for p in spec.params])
    cat = classes >= 2
    if cat.any():
        steps = classes[cat] - 1
        first = np.ceil(lo[cat] * steps - 1e-9)
        last = np.floor(hi[cat] * steps + 1e-9)
        k = first + np.floor(rng.random((n, cat.sum())) * (last - first + 1))
        out[:, cat] = np.minimum(k, last) / steps
    fixed = np.array([p.fixed for p in spec.params])
    out[:, fixed] = spec.defaults[fixed]
    return spec.snap(out)


def mutate_presets(
    spec: SynthSpec,
    presets: np.ndarray,
    rng: np.random.Generator,
    *,
    n_changes: int = 3,
    scale: float = 0.15,
) -> np.ndarray:
    """Perturbs a few learned parameters of each preset to grow realistic data.

    A continuous parameter moves by a normal step of std ``scale`` (clipped to its sample range
    widened to include its current value); a categorical one is redrawn from its sample range.

    Args:
        presets: (n, n_params) normalized presets.
        n_changes: how many parameters change per preset.
        scale: std of a continuous change, in normalized units.
    """
    presets = np.array(presets, dtype=np.float64, copy=True)
    learned = spec.learned_index
    k = min(n_changes, len(learned))
    n = len(presets)
    order = np.argsort(rng.random((n, len(learned))), axis=1)[:, :k]
    cols = learned[order]  # (n, k) columns to change
    rows = np.repeat(np.arange(n)[:, None], k, axis=1)
    current = presets[rows, cols]
    # categorical: redraw from the sample range, preferring a class other than the current one
    redrawn = random_presets(spec, n, rng)[rows, cols]
    for _ in range(4):
        same = redrawn == current
        if not same.any():
            break
        redrawn = np.where(same, random_presets(spec, n, rng)[rows, cols], redrawn)
    # continuous: a normal step, reflected back into the (widened) sample range
    lo = np.array([p.sample_range[0] for p in spec.params])[cols]
    hi = np.array([p.sample_range[1] for p in spec.params])[cols]
    lo, hi = np.minimum(lo, current), np.maximum(hi, current)
    stepped = current + rng.normal(0.0, scale, size=current.shape)
    stepped = np.where(stepped < lo, 2 * lo - stepped, stepped)
    stepped = np.clip(np.where(stepped > hi, 2 * hi - stepped, stepped), lo, hi)
    cat = np.array([p.classes for p in spec.params])[cols] >= 2
    presets[rows, cols] = np.where(cat, redrawn, stepped)
    return spec.snap(presets)
