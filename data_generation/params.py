"""A spec's parameters and render settings, and their checks when read from JSON (each error
names the spec file and the parameter: ``spec_error``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asp.errors import ASPError

GROUPS = ("vol", "osc", "env", "fil", "lfo", "mod", "fx", "pitch")
RANGE_TOLERANCE = 1e-6  # a value this far (normalized) outside its range is rounding, not an error
RENDER_KEYS = ("sample_rate", "block_size", "note", "velocity", "note_start", "note_duration", "duration")
DEFAULT_RENDER = {
    "sample_rate": 44100,
    "block_size": 512,
    "note": 60,
    "velocity": 127,
    "note_start": 0.25,
    "note_duration": 3.0,
    "duration": 5.0,
}
# the keys a parameter of a spec file may hold: any other is a misspelling
PARAM_KEYS = ("name", "index", "classes", "group", "default", "sample_range", "native_range", "units", "rate_hz",
              "fixed", "label", "choices")  # fmt: skip


@dataclass(frozen=True)
class Param:
    """One synth parameter.

    Attributes:
        name: unique identifier (snake_case for generated specs).
        index: the plugin's parameter index (Faust: position in DawDreamer's parameter list).
        classes: 0 for continuous, n >= 2 for categorical with n classes.
        group: role for per-group errors, one of ``GROUPS``.
        default: normalized default value.
        sample_range: normalized (low, high) sampled when generating random presets.
        native_range: (low, high) sent to DawDreamer: native = low + value * (high - low).
        units: optional (low, high) in the synth's own units, linear in the normalized value.
        rate_hz: optional (low, high): the parameter sets a modulation rate (an LFO's), low Hz
            at 0 and high Hz at 1, exponential in between. The search reads the target's
            modulation rate and tries it (see ``search``): a fast LFO's rate is a needle.
        fixed: not learned: always rendered at ``default`` and left out of encodings.
        label: the plugin's own name for the parameter, when it differs from ``name``.
        choices: optional names of the classes of a categorical parameter.
    """

    name: str
    index: int
    classes: int
    group: str
    default: float
    sample_range: tuple[float, float] = (0.0, 1.0)
    native_range: tuple[float, float] = (0.0, 1.0)
    units: tuple[float, float] | None = None
    rate_hz: tuple[float, float] | None = None
    fixed: bool = False
    label: str | None = None
    choices: tuple[str, ...] | None = None

    @property
    def categorical(self) -> bool:
        return self.classes >= 2

    @property
    def width(self) -> int:
        """Length of this parameter in an encoded vector."""
        return max(1, self.classes)

    def to_json(self) -> dict:
        out = {
            "name": self.name,
            "index": self.index,
            "classes": self.classes,
            "group": self.group,
            "default": self.default,
            "sample_range": list(self.sample_range),
            "native_range": list(self.native_range),
        }
        if self.units is not None:
            out["units"] = list(self.units)
        if self.rate_hz is not None:
            out["rate_hz"] = list(self.rate_hz)
        if self.fixed:
            out["fixed"] = True
        if self.label is not None:
            out["label"] = self.label
        if self.choices is not None:
            out["choices"] = list(self.choices)
        return out


@dataclass(frozen=True)
class RenderSettings:
    """How one note is rendered (the paper's defaults: note 60, on at 0.25 s, held 3 s, 5 s long)."""

    sample_rate: int = 44100
    block_size: int = 512
    note: int = 60
    velocity: int = 127
    note_start: float = 0.25
    note_duration: float = 3.0
    duration: float = 5.0

    @property
    def num_samples(self) -> int:
        return int(round(self.duration * self.sample_rate))


def spec_error(where: str, what: str) -> ASPError:
    """The error for a malformed spec: ``where`` is its file."""
    return ASPError(f"malformed synth spec {where}: {what}")


def _pair(value, where: str, key: str) -> tuple[float, float]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise spec_error(where, f"{key} must be a [low, high] pair of numbers, got {value!r}")
    try:
        pair = float(value[0]), float(value[1])
    except OverflowError:  # an integer beyond any float
        pair = (float("inf"), float("inf"))
    if not all(np.isfinite(pair)):
        raise spec_error(where, f"{key} must be a pair of finite numbers, got {value!r}")
    return pair


def is_int(value, low: int) -> bool:
    """An integer (not a bool) >= ``low``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_param(raw: dict, k: int, where: str) -> Param:
    """The ``k``-th entry of a spec's ``parameters`` checked: its keys, types, ranges and group."""
    if not isinstance(raw, dict):
        raise spec_error(where, f"parameter {k} must be an object, got {raw!r}")
    for key in ("name", "index", "classes", "group", "default"):
        if key not in raw:
            raise spec_error(where, f"parameter {k} ({raw.get('name', '?')}) lacks {key!r}")
    name = raw["name"]
    if not isinstance(name, str) or not name:
        raise spec_error(where, f"parameter {k} has no valid name")
    classes = raw["classes"]
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 0 or classes == 1:
        raise spec_error(
            where, f"parameter {name!r}: classes must be 0 (continuous) or an integer >= 2, got {classes!r}"
        )
    if raw["group"] not in GROUPS:
        raise spec_error(where, f"parameter {name!r}: group {raw['group']!r} is not one of {', '.join(GROUPS)}")
    if not is_int(raw["index"], 0):
        raise spec_error(where, f"parameter {name!r}: index must be an integer >= 0, got {raw['index']!r}")
    default = raw["default"]
    if not _is_number(default) or not 0.0 <= default <= 1.0:
        raise spec_error(where, f"parameter {name!r}: default must be a normalized number in [0, 1], got {default!r}")
    sample_range = _pair(raw.get("sample_range", [0.0, 1.0]), where, f"parameter {name!r} sample_range")
    if not 0.0 <= sample_range[0] <= sample_range[1] <= 1.0:
        raise spec_error(where, f"parameter {name!r}: sample_range must lie in [0, 1] with low <= high")
    native = _pair(raw.get("native_range", [0.0, 1.0]), where, f"parameter {name!r} native_range")
    if native[0] == native[1]:
        raise spec_error(where, f"parameter {name!r}: native_range must not be empty")
    units = _pair(raw["units"], where, f"parameter {name!r} units") if raw.get("units") is not None else None
    if units is not None and units[0] == units[1]:
        raise spec_error(where, f"parameter {name!r}: units must not be empty")
    rate_hz = _pair(raw["rate_hz"], where, f"parameter {name!r} rate_hz") if raw.get("rate_hz") is not None else None
    if rate_hz is not None and (classes or not 0 < rate_hz[0] < rate_hz[1]):
        raise spec_error(
            where,
            f"parameter {name!r}: rate_hz must be [low, high] Hz with 0 < low < high, on a continuous parameter",
        )
    if not isinstance(raw.get("fixed", False), bool):
        raise spec_error(where, f"parameter {name!r}: fixed must be true or false, got {raw['fixed']!r}")
    if not isinstance(raw.get("label"), (str, type(None))):
        raise spec_error(where, f"parameter {name!r}: label must be text, got {raw['label']!r}")
    choices = raw.get("choices")
    if choices is not None:
        if not isinstance(choices, list) or len(choices) != classes:
            raise spec_error(where, f"parameter {name!r}: choices must list exactly {classes} class names")
        choices = tuple(str(c) for c in choices)
    return Param(
        name=name,
        index=int(raw["index"]),
        classes=classes,
        group=raw["group"],
        default=float(default),
        sample_range=sample_range,
        native_range=native,
        units=units,
        rate_hz=rate_hz,
        fixed=raw.get("fixed", False),
        label=raw.get("label"),
        choices=choices,
    )


MAX_DURATION = 600.0  # seconds: a longer render is a mistake, not a preset


def parse_render(raw: object, where: str) -> RenderSettings:
    """A spec's ``render`` object checked: known keys, each a number in its range."""
    if not isinstance(raw, dict):
        raise spec_error(where, f"'render' must be an object of settings ({', '.join(RENDER_KEYS)})")
    unknown = set(raw) - set(RENDER_KEYS)
    if unknown:
        raise spec_error(where, f"unknown render settings {sorted(unknown)}; known: {', '.join(RENDER_KEYS)}")
    render = {**DEFAULT_RENDER, **raw}
    checks = {
        "sample_rate": (is_int(render["sample_rate"], 1000) and render["sample_rate"] <= 384000, "1000-384000 (Hz)"),
        "block_size": (is_int(render["block_size"], 1) and render["block_size"] <= 65536, "an integer 1-65536"),
        "note": (is_int(render["note"], 0) and render["note"] <= 127, "a MIDI note 0-127"),
        "velocity": (is_int(render["velocity"], 1) and render["velocity"] <= 127, "a velocity 1-127"),
    }
    for key in ("note_start", "note_duration", "duration"):
        value = render[key]
        low_ok = _is_number(value) and (value >= 0 if key == "note_start" else value > 0)
        checks[key] = (low_ok and value <= MAX_DURATION, f"seconds, at most {MAX_DURATION:g}")
    for key, (ok, what) in checks.items():
        if not ok:
            raise spec_error(where, f"render setting {key!r} must be {what}, got {render[key]!r}")
    settings = RenderSettings(**render)
    if settings.num_samples < settings.block_size:
        raise spec_error(where, "render: the duration must hold at least one block of samples")
    return settings
