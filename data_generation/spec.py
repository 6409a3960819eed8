"""Synth specs: one JSON file per synth declares everything the project knows about it.

A spec names the synth and its backend (``faust`` with a shipped ``.dsp`` file, ``vst``/``vst3``
with a plugin path, ``lv2`` with a plugin URI), lists every parameter in plugin index order, and
holds the render settings. Encoded vector sizes, decoder head sizes and random preset sampling
are all derived from it.

Values are *normalized* everywhere in the project: each parameter is a number in [0, 1], and a
categorical parameter with ``n`` classes takes the values ``k / (n - 1)`` (class ``k``), as in the
paper's published dataset. ``native_range`` maps normalized values to what DawDreamer's
``set_parameter`` expects (slider units for Faust, [0, 1] for plugins); ``units`` optionally maps
them to the synth's own units (e.g. seconds in an amsynth ``.bank`` file).

Spec files live in ``data_generation/synths/``; users add their own in a folder named by the
``ASP_SYNTH_PATH`` environment variable (``os.pathsep``-separated) or pass a path to a ``.json``.
The plugin path of a ``vst``/``vst3``/``lv2`` spec can be overridden with the environment
variable ``ASP_<NAME>_PLUGIN`` (e.g. ``ASP_SERUM_PLUGIN=/path/to/Serum.so``) or a script flag.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from asp.errors import ASPError
from asp.files import not_a_file_problem, path_problem, read_json, write_json
from data_generation.params import (  # noqa: F401  (re-exported: a spec's parts)
    DEFAULT_RENDER,
    GROUPS,
    PARAM_KEYS,
    RANGE_TOLERANCE,
    RENDER_KEYS,
    Param,
    RenderSettings,
    is_int,
    parse_param,
    parse_render,
    spec_error,
)

SYNTH_DIR = Path(__file__).resolve().parent / "synths"
BACKENDS = ("faust", "vst", "vst3", "lv2", "dexed")  # dexed: the DX7 engine of the pip package dexed-py
CLASS_TOLERANCE = 1e-3  # a categorical value this far (in classes) from a class is rounding, not between classes
# the keys a spec file may hold at its top (a parameter's: PARAM_KEYS): any other is a misspelling
SPEC_KEYS = ("name", "description", "backend", "source", "num_voices", "render", "presets", "parameters")


@dataclass(frozen=True)
class SynthSpec:
    """A synth: its backend, parameters and render settings. Build it with ``load_spec``."""

    name: str
    backend: str
    source: str | None
    params: tuple[Param, ...]
    render: RenderSettings = field(default_factory=RenderSettings)
    description: str = ""
    num_voices: int = 0  # faust: 0 = monophonic, driven by the renderer; n = n-voice MIDI polyphony
    presets: tuple[dict, ...] = ()
    path: Path | None = None

    # -- derived facts -------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        return len(self.params)

    @cached_property
    def learned(self) -> tuple[Param, ...]:
        """Parameters that are encoded and predicted (all but ``fixed`` ones)."""
        return tuple(p for p in self.params if not p.fixed)

    @cached_property
    def learned_index(self) -> np.ndarray:
        """Positions of the learned parameters in a full preset array: (n_learned,) int."""
        return np.array([i for i, p in enumerate(self.params) if not p.fixed], dtype=np.int64)

    @cached_property
    def classes(self) -> np.ndarray:
        """Class counts of the learned parameters: (n_learned,) int, 0 = continuous."""
        return np.array([p.classes for p in self.learned], dtype=np.int64)

    @property
    def encoded_size(self) -> int:
        """Length of the encoded vector: sum over learned parameters of max(1, classes)."""
        return int(np.maximum(self.classes, 1).sum())

    @cached_property
    def defaults(self) -> np.ndarray:
        """Default preset: (n_params,) float64 normalized."""
        return np.array([p.default for p in self.params], dtype=np.float64)

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise ASPError(
            f"synth {self.name!r} has no parameter {name!r}; see "
            f"`python data_generation/view_parameters.py --synth {self.name}`"
        )

    @cached_property
    def hash(self) -> str:
        """Short fingerprint of everything that defines the encoding and the sound: the spec (not
        the search's hints, ``rate_hz``: adding one leaves datasets and models valid) and, for a
        Faust synth, its ``.dsp`` code, so that datasets and models made before a change to the
        DSP are found stale (a plugin's binary is not covered)."""
        data = self.to_json(with_path=False)
        for param in data["parameters"]:
            param.pop("rate_hz", None)
        if self.backend == "faust":
            try:
                code = Path(self.resolve_source()).read_bytes().replace(b"\r\n", b"\n")
            except ASPError:
                code = None  # no DSP to read: rendering says so, with the fix
            data["dsp_sha256"] = None if code is None else hashlib.sha256(code).hexdigest()
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    # -- presets -------------------------------------------------------------------------
    def snap(self, values: np.ndarray) -> np.ndarray:
        """Clips to [0, 1] and rounds categorical values to their class: (..., n_params)."""
        values = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
        n = np.array([p.classes for p in self.params])
        cat = n >= 2
        if cat.any():
            steps = (n[cat] - 1).astype(np.float64)
            values[..., cat] = np.rint(values[..., cat] * steps) / steps
        return values

    def preset_from_dict(self, values: dict, *, native: bool = False, strict: bool = False) -> np.ndarray:
        """Builds a full preset from ``{name: value}``; unnamed parameters take their default.

        Args:
            values: parameter values, normalized, or native slider units with ``native=True``.
            native: interpret values in ``native_range`` units (Faust sliders, class numbers).
            strict: refuse a value outside the parameter's range (normalized: [0, 1]) instead
                of clipping it, and a categorical value between two classes (``osc1_wave: 1.5``)
                instead of snapping it to one: what a preset file must hold.

        Returns:
            (n_params,) float64 normalized preset.

        Raises:
            ASPError: for an unknown name, a value that is not a finite number, or (strict) one
                out of range; the message names the parameter.
        """
        out = self.defaults.copy()
        index = {p.name: i for i, p in enumerate(self.params)}
        for name, value in values.items():
            if name not in index:
                raise ASPError(
                    f"synth {self.name!r} has no parameter {name!r} (in preset values); "
                    f"see `python data_generation/view_parameters.py --synth {self.name}`"
                )
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ASPError(f"parameter {name!r} of {self.name!r} has value {value!r}; expected a number")
            try:
                value = float(value)
            except OverflowError:  # an integer beyond any float
                value = float("inf")
            if not np.isfinite(value):
                raise ASPError(f"parameter {name!r} of {self.name!r} has value {value}; expected a finite number")
            p = self.params[index[name]]
            lo, hi = p.native_range if native else (0.0, 1.0)
            normalized = (value - lo) / (hi - lo)
            if strict and not -RANGE_TOLERANCE <= normalized <= 1.0 + RANGE_TOLERANCE:
                raise ASPError(
                    f"parameter {name!r} of {self.name!r} has value {value:g}, outside its range "
                    f"[{min(lo, hi):g}, {max(lo, hi):g}]" + (" (native units)" if native else " (normalized)")
                )
            step = normalized * (p.classes - 1)
            if strict and p.categorical and abs(step - round(step)) > CLASS_TOLERANCE:
                allowed = [lo + k * (hi - lo) / (p.classes - 1) for k in range(p.classes)]
                names = f" ({', '.join(p.choices)})" if p.choices else ""
                raise ASPError(
                    f"parameter {name!r} of {self.name!r} has value {value:g}, between two of its classes; it takes "
                    f"{', '.join(f'{v:.6g}' for v in allowed)}{names}"
                    + (" (native units)" if native else " (normalized)")
                )
            out[index[name]] = normalized
        return self.snap(out)

    def preset_to_dict(self, preset: np.ndarray, *, native: bool = False) -> dict[str, float | int]:
        """Named values of a preset (normalized, or native units with class numbers as ints)."""
        preset = self.snap(preset)
        out: dict[str, float | int] = {}
        for p, v in zip(self.params, preset, strict=True):
            if native:
                lo, hi = p.native_range
                v = lo + v * (hi - lo)
                out[p.name] = int(round(v)) if p.categorical else round(float(v), 6)
            else:
                out[p.name] = round(float(v), 6)
        return out

    def to_native(self, presets: np.ndarray) -> np.ndarray:
        """Values for DawDreamer's ``set_parameter``: (..., n_params) float64."""
        lo = np.array([p.native_range[0] for p in self.params])
        hi = np.array([p.native_range[1] for p in self.params])
        return lo + self.snap(presets) * (hi - lo)

    # -- serialization -------------------------------------------------------------------
    def to_json(self, *, with_path: bool = True) -> dict:
        out = {
            "name": self.name,
            "description": self.description,
            "backend": self.backend,
            "source": self.source,
        }
        if self.backend == "faust":
            out["num_voices"] = self.num_voices
        out["render"] = {k: getattr(self.render, k) for k in RENDER_KEYS}
        out["presets"] = [dict(p) for p in self.presets]
        out["parameters"] = [p.to_json() for p in self.params]
        return out

    def write(self, path: Path) -> None:
        """Writes the spec as JSON (atomically: a temp file, then a rename)."""
        write_json(path, self.to_json())

    # -- backend -------------------------------------------------------------------------
    def plugin_env(self) -> str:
        """Environment variable that overrides this synth's plugin path."""
        return f"ASP_{self.name.upper().replace('-', '_')}_PLUGIN"

    def resolve_source(self, override: str | None = None) -> str:
        """Where the synth lives: a ``.dsp`` path, a plugin path or an LV2 URI.

        Args:
            override: a path given on the command line, taking precedence over everything.

        Raises:
            ASPError: when the plugin is not found, saying how to point at it.
        """
        if self.backend == "faust":
            if override:
                raise ASPError(
                    f"--plugin {self.name}={override}: synth {self.name!r} is built in (Faust, from its .dsp) and "
                    f"loads no plugin; drop --plugin {self.name}=..."
                )
            if self.source is None:
                raise ASPError(f"faust synth {self.name!r} names no .dsp source in its spec")
            src = Path(self.source)
            if not src.is_absolute() and self.path is not None:
                src = self.path.parent / src
            if not src.is_file():
                raise ASPError(f"faust source {src} of synth {self.name!r} not found; fix 'source' in its spec")
            return str(src)
        if self.backend == "dexed":  # a Python package, not a file: data_generation.dx7.require_dexed checks it
            return self.source or "dexed-py"
        source = override or os.environ.get(self.plugin_env()) or self.source
        how = f"point at it with --plugin {self.name}=/path/to/plugin or the environment variable {self.plugin_env()}"
        if not source:
            raise ASPError(f"synth {self.name!r} needs its {self.backend.upper()} plugin, which is not set; {how}")
        if self.backend == "lv2":
            if "://" in source or source.startswith("urn:"):
                return source
            if not Path(source).exists():
                raise ASPError(f"LV2 plugin {source!r} of synth {self.name!r} not found; {how}")
            return source
        if not Path(source).exists():
            hint = " (install it with `apt-get install amsynth`)" if self.name == "amsynth" else ""
            raise ASPError(f"plugin {source} of synth {self.name!r} not found{hint}; {how}")
        if not Path(source).is_dir() and (problem := not_a_file_problem(source)):  # /dev/null, a pipe
            raise ASPError(f"plugin of synth {self.name!r}: {problem}; {how}")
        return source


# ---------------------------------------------------------------------------------------
# loading and validation (each parameter's and the render settings' checks: data_generation.params)


def _check_keys(data: object, where: str) -> None:
    """Refuses a key a spec file may not hold (a misspelt one would be ignored), naming the known ones."""
    if not isinstance(data, dict):
        return  # spec_from_json says what is wrong
    unknown = [k for k in data if k not in SPEC_KEYS]
    if unknown:
        raise spec_error(where, f"unknown key {unknown[0]!r}; a spec holds {', '.join(SPEC_KEYS)}")
    for k, raw in enumerate(data.get("parameters") if isinstance(data.get("parameters"), list) else []):
        unknown = [key for key in raw if key not in PARAM_KEYS] if isinstance(raw, dict) else []
        if unknown:
            raise spec_error(
                where,
                f"parameter {k} ({raw.get('name', '?')}) has an unknown key {unknown[0]!r}; a parameter holds "
                f"{', '.join(PARAM_KEYS)}",
            )


def spec_from_json(data: dict, *, path: Path | None = None) -> SynthSpec:
    """Validates a spec dict (as read from JSON) and builds the ``SynthSpec``."""
    where = str(path) if path else "(in memory)"
    if not isinstance(data, dict):
        raise spec_error(where, "the file must hold a JSON object")
    for key in ("name", "backend", "parameters"):
        if key not in data:
            raise spec_error(where, f"missing key {key!r}")
    if not isinstance(data["name"], str) or not data["name"]:
        raise spec_error(where, f"'name' must be the synth's name (text), got {data['name']!r}")
    if data["backend"] not in BACKENDS:
        raise spec_error(where, f"backend {data['backend']!r} is not one of {', '.join(BACKENDS)}")
    if not isinstance(data.get("source"), (str, type(None))):
        raise spec_error(where, f"'source' must be a path or URI (text), got {data['source']!r}")
    if not is_int(data.get("num_voices", 0), 0):
        raise spec_error(where, f"'num_voices' must be an integer >= 0, got {data['num_voices']!r}")
    if not isinstance(data["parameters"], list) or not data["parameters"]:
        raise spec_error(where, "'parameters' must be a non-empty list")
    params = tuple(parse_param(raw, k, where) for k, raw in enumerate(data["parameters"]))
    names = [p.name for p in params]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise spec_error(where, f"duplicate parameter names {dupes}")
    indexes = [p.index for p in params]
    if indexes != sorted(indexes) or len(set(indexes)) != len(indexes):
        raise spec_error(where, "parameters must be listed in increasing plugin index order")
    settings = parse_render(data.get("render", {}), where)
    if not settings.note_start + settings.note_duration <= settings.duration:
        raise spec_error(where, "render: the note must end within the render duration")
    if data["backend"] == "faust" and not data.get("source"):
        raise spec_error(where, "a faust synth needs 'source', the path of its .dsp file")
    presets = data.get("presets", [])
    if not isinstance(presets, list) or not all(isinstance(p, dict) and "kind" in p for p in presets):
        raise spec_error(where, "'presets' must be a list of objects with a 'kind'")
    return SynthSpec(
        name=str(data["name"]),
        backend=data["backend"],
        source=data.get("source"),
        params=params,
        render=settings,
        description=str(data.get("description", "")),
        num_voices=data.get("num_voices", 0),
        presets=tuple(presets),
        path=path,
    )


def spec_dirs() -> list[Path]:
    """Folders searched for spec files: ``$ASP_SYNTH_PATH`` entries first, then the built-ins."""
    extra = [Path(p) for p in os.environ.get("ASP_SYNTH_PATH", "").split(os.pathsep) if p]
    return [*extra, SYNTH_DIR]


def available_synths() -> list[str]:
    """Names of every spec found in ``spec_dirs()``."""
    names: set[str] = set()
    for d in spec_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.json") if not p.name.endswith(".presets.json"))
    return sorted(names)


_CACHE: dict[str, SynthSpec] = {}


def load_spec(name_or_path: str | Path) -> SynthSpec:
    """Loads a spec by synth name (searched in ``spec_dirs()``) or by the path of a ``.json`` file.

    Raises:
        ASPError: for an unknown synth or a malformed spec, naming the problem and the fix.
    """
    key = str(name_or_path)
    if key in _CACHE:
        return _CACHE[key]
    path = Path(key)
    if path.suffix != ".json":
        found = [d / f"{key}.json" for d in spec_dirs() if (d / f"{key}.json").is_file()]
        if not found:
            raise ASPError(
                f"unknown synth {key!r}; available: {', '.join(available_synths())} "
                "(or give the path of a spec .json file)"
            )
        path = found[0]
    if not path.is_file():  # missing, or a named pipe or a device: say which
        raise ASPError(f"synth spec file {not_a_file_problem(path) or path_problem(path) or f'{path} not found'}")
    data = read_json(path, "synth spec", "fix the file or regenerate it with view_parameters.py --write-spec")
    _check_keys(data, str(path))
    spec = spec_from_json(data, path=path.resolve())
    _CACHE[key] = spec
    return spec
