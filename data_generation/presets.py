"""Where presets come from: a synth's human presets, random sampling, mutations of human presets.

Every function returns normalized presets, (n, n_params) float64, in the spec's parameter order.
The spec's ``presets`` list names its human preset sources:
``{"kind": "factory", "path": "va.presets.json"}`` (a JSON file of named presets, values in native
slider units) or ``{"kind": "amsynth_bank", "path": "/usr/share/amsynth/banks/*.bank"}``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asp_io import write_json
from data_generation import amsynth
from data_generation.errors import ASPError, read_json
from data_generation.spec import SynthSpec


def _resolve(spec: SynthSpec, path: str) -> Path:
    p = Path(path)
    if not p.is_absolute() and spec.path is not None:
        p = spec.path.parent / p
    return p


def read_preset_file(spec: SynthSpec, path: str | Path) -> tuple[list[str], np.ndarray]:
    """Reads a JSON preset file: ``{"synth": NAME, "presets": [{"name": ..., "values": {...}}]}``.

    Values are native units (Faust slider values, class numbers); missing parameters take defaults.
    A single preset ``{"synth": NAME, "name": ..., "values": {...}}`` is accepted too.
    """
    path = Path(path)
    data = read_json(path, "preset file")
    if not isinstance(data, dict):
        raise ASPError(f"malformed preset file {path}: expected a JSON object")
    if data.get("synth") not in (None, spec.name):
        raise ASPError(f"preset file {path} is for synth {data['synth']!r}, not {spec.name!r}")
    entries = data.get("presets", [data] if "values" in data else None)
    if not isinstance(entries, list) or not entries:
        raise ASPError(f"malformed preset file {path}: expected a non-empty 'presets' list")
    names, rows = [], []
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("values"), dict):
            raise ASPError(f"malformed preset file {path}: preset {k} needs a 'values' object")
        names.append(str(entry.get("name", f"preset {k}")))
        rows.append(spec.preset_from_dict(entry["values"], native=True))
    return names, np.stack(rows)


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


def human_presets(spec: SynthSpec) -> tuple[list[str], np.ndarray]:
    """All human-made presets the spec's sources name: (names, (n, n_params) normalized)."""
    names: list[str] = []
    rows: list[np.ndarray] = []
    for source in spec.presets:
        kind, path = source.get("kind"), source.get("path")
        if not path:
            raise ASPError(f"spec {spec.name!r}: preset source {source} needs a 'path'")
        if kind == "factory":
            n, p = read_preset_file(spec, _resolve(spec, path))
        elif kind == "amsynth_bank":
            bank = amsynth.read_banks(_resolve(spec, path))
            n, p = [b.name for b in bank], amsynth.bank_to_presets(spec, bank)
        else:
            raise ASPError(f"spec {spec.name!r}: unknown preset source kind {kind!r} (factory, amsynth_bank)")
        names += n
        rows.append(p)
    if not rows:
        return [], np.zeros((0, spec.n_params))
    return names, np.concatenate(rows)


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
