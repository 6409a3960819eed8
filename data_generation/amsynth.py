"""amsynth's preset banks: read the 3,482 human presets, write predicted presets back.

A ``.bank`` file is text: a first line ``amSynth``, then per preset a line ``<preset> <name> NAME``
followed by ``<parameter> NAME VALUE`` lines, values in amsynth's own units (seconds, class
numbers, ...). The spec's ``units`` for each parameter map them linearly to the normalized plugin
values (fitted from the plugin itself, checked by the tests).

Headless, amsynth loads a preset as an FXP chunk (``CcnK``/``FPCh``, fxID ``amsy``) holding the
preset text after an ``amSynth1.0preset`` header, through DawDreamer's ``load_preset``
(``load_state`` opens an editor and fails without a display).
"""

from __future__ import annotations

import glob
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asp.errors import ASPError
from asp.files import atomic_write
from data_generation.spec import RANGE_TOLERANCE, SynthSpec

BANK_HEADER = "amSynth"
CHUNK_HEADER = "amSynth1.0preset\n"
BANK_SIZE = 128  # amsynth shows a bank as 128 slots
_PARAM_LINE = re.compile(r"^<parameter>\s+(\S+)\s+(\S+)\s*$")
_PRESET_LINE = re.compile(r"^<preset>\s+<name>\s?(.*)$")


@dataclass(frozen=True)
class BankPreset:
    """One preset of a bank: its name and {parameter: value in amsynth units}."""

    name: str
    values: dict[str, float]
    source: str = ""


def read_bank(path: str | Path) -> list[BankPreset]:
    """Parses one ``.bank`` file.

    Raises:
        ASPError: when the file is missing or malformed, with the file and line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
        lines = text.splitlines()
    except OSError as err:
        raise ASPError(f"cannot read amsynth bank {path}: {err.strerror}") from None
    if not lines or lines[0].strip() != BANK_HEADER:
        raise ASPError(f"malformed amsynth bank {path}: the first line must be {BANK_HEADER!r}")
    if not text.endswith("\n") and lines[-1].strip() != "EOF":  # a copy stopped mid-line
        raise ASPError(f"amsynth bank {path} is cut short (its last line cut, no EOF line); copy the whole file again")
    presets: list[BankPreset] = []
    name: str | None = None
    values: dict[str, float] = {}
    ended = False
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        if line.strip() == "EOF":  # amsynth ends its banks with this line
            ended = True
            break
        if m := _PRESET_LINE.match(line):
            if name is not None:
                presets.append(BankPreset(name, values, f"{path.name}#{len(presets)}"))
            name, values = m.group(1).strip(), {}
            continue
        m = _PARAM_LINE.match(line)
        if m is None or name is None:
            raise ASPError(f"malformed amsynth bank {path}, line {number}: {line[:60]!r}")
        try:
            values[m.group(1)] = float(m.group(2))
        except ValueError:
            raise ASPError(f"malformed amsynth bank {path}, line {number}: {m.group(2)!r} is not a number") from None
    if name is not None:
        presets.append(BankPreset(name, values, f"{path.name}#{len(presets)}"))
    _check_whole(path, presets, ended=ended)
    return presets


def _check_whole(path: Path, presets: list[BankPreset], *, ended: bool) -> None:
    """Refuses a bank cut short between lines (a copy or download stopped midway): with no ``EOF``
    line, a last preset with fewer parameters than the one before it (amsynth writes every
    parameter of every preset; a missing one would silently take its default)."""
    if len(presets) < 2 or ended:
        return
    last = presets[-1]
    if len(last.values) < len(presets[-2].values):
        how = f"{len(last.values)} of {len(presets[-2].values)} parameters"
        raise ASPError(
            f"amsynth bank {path} is cut short in preset {len(presets) - 1} ({last.name!r}: {how}, and no EOF line); "
            "copy the whole file again"
        )


def read_banks(pattern: str | Path) -> list[BankPreset]:
    """Reads every bank matching a glob pattern (e.g. ``/usr/share/amsynth/banks/*.bank``), sorted."""
    paths = sorted(glob.glob(str(pattern)))
    if not paths:
        raise ASPError(
            f"no amsynth bank matches {pattern}; install amsynth (`apt-get install amsynth`) "
            "or give the path of a .bank file"
        )
    return [p for path in paths for p in read_bank(path)]


def _units(spec: SynthSpec) -> tuple[np.ndarray, np.ndarray]:
    lo = np.array([(p.units or (0.0, 1.0))[0] for p in spec.params])
    hi = np.array([(p.units or (0.0, 1.0))[1] for p in spec.params])
    return lo, hi


def bank_to_presets(spec: SynthSpec, presets: list[BankPreset]) -> np.ndarray:
    """Bank presets -> normalized presets: (n, n_params) float64; missing parameters take defaults.

    Raises:
        ASPError: for a parameter name the spec does not know, or a value that is NaN, infinite
            or outside the parameter's range in the spec's ``units``.
    """
    index = {p.name: i for i, p in enumerate(spec.params)}
    lo, hi = _units(spec)
    out = np.repeat(spec.defaults[None, :], len(presets), axis=0)
    for row, preset in enumerate(presets):
        unknown = set(preset.values) - set(index)
        if unknown:
            raise ASPError(
                f"amsynth preset {preset.name!r} ({preset.source}) has unknown parameters "
                f"{sorted(unknown)}; is the spec {spec.name!r} for this amsynth version?"
            )
        cols = np.array([index[k] for k in preset.values], dtype=np.int64)
        vals = np.array(list(preset.values.values()), dtype=np.float64)
        normalized = (vals - lo[cols]) / (hi[cols] - lo[cols])
        bad = ~((normalized >= -RANGE_TOLERANCE) & (normalized <= 1.0 + RANGE_TOLERANCE))  # NaN too
        if bad.any():
            k = int(np.argmax(bad))
            name, col = list(preset.values)[k], int(cols[k])
            raise ASPError(
                f"amsynth preset {preset.name!r} ({preset.source}): parameter {name!r} has value {vals[k]:g}, "
                f"outside its range [{lo[col]:g}, {hi[col]:g}]; fix the bank file"
            )
        out[row, cols] = normalized
    return spec.snap(out)


def presets_to_bank_values(spec: SynthSpec, presets: np.ndarray) -> list[dict[str, float]]:
    """Normalized presets (n, n_params) -> amsynth unit values, class numbers as integers."""
    presets = spec.snap(np.atleast_2d(presets))
    lo, hi = _units(spec)
    values = lo + presets * (hi - lo)
    cat = np.array([p.categorical for p in spec.params])
    values[:, cat] = np.rint(values[:, cat])
    return [dict(zip(spec.names, row.tolist(), strict=True)) for row in values]


def _format_value(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6g}"


def preset_text(name: str, values: dict[str, float]) -> str:
    """One bank entry: ``<preset> <name> NAME`` and its parameter lines."""
    clean = " ".join(name.split()) or "unnamed"
    lines = [f"<preset> <name> {clean}"]
    lines += [f"<parameter> {k} {_format_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def write_bank(path: str | Path, spec: SynthSpec, presets: np.ndarray, names: list[str]) -> Path:
    """Writes normalized presets as an amsynth ``.bank`` file amsynth opens (atomically).

    Args:
        path: output file, conventionally ``*.bank``.
        spec: the amsynth spec.
        presets: (n, n_params) normalized presets, n <= 128.
        names: n preset names.
    """
    presets = np.atleast_2d(presets)
    if len(presets) != len(names):
        raise ASPError(f"write_bank got {len(presets)} presets but {len(names)} names")
    if len(presets) > BANK_SIZE:
        raise ASPError(f"an amsynth bank holds at most {BANK_SIZE} presets, got {len(presets)}")
    body = (
        BANK_HEADER
        + "\n"
        + "".join(preset_text(n, v) for n, v in zip(names, presets_to_bank_values(spec, presets), strict=True))
        + "EOF\n"
    )
    path = Path(path)
    with atomic_write(path) as f:
        f.write(body)
    return path


def fxp_chunk(name: str, values: dict[str, float], *, num_params: int = 41) -> bytes:
    """An FXP file (opaque chunk, fxID ``amsy``) that amsynth's ``load_preset`` accepts headless."""
    chunk = (CHUNK_HEADER + preset_text(name, values)).encode() + b"\0"
    body = (
        b"FPCh"
        + struct.pack(">i", 1)
        + b"amsy"
        + struct.pack(">ii", 1, num_params)
        + name.encode()[:27].ljust(28, b"\0")
        + struct.pack(">i", len(chunk))
        + chunk
    )
    return b"CcnK" + struct.pack(">i", len(body)) + body
