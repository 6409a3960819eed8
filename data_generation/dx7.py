"""The Yamaha DX7 through Dexed's engine (the pip package ``dexed-py``): its parameter list, voices
and cartridges (``.syx``, hexter's ``.dx7``).

A dx7 preset is the engine's own 145-value vector (``dexed.Preset.to_array``) in the spec's
order: 123 continuous values in [0, 1] (each a DX7 value 0-99, 0-31, 0-14, 0-7 or 0-3 divided by
its maximum; the engine rounds them to the DX7's integer steps) and 22 categorical ones (key sync,
LFO sync, algorithm 1-32, LFO wave, and per operator frequency mode and the two scaling curves).
A preset becomes a voice (``to_patch``) exactly as the engine loads it, so a voice written to a
``.syx`` and read back renders the same samples.

Files: a single-voice dump (163 bytes: ``F0 43 0n 00 01 1B``, 155 voice bytes, checksum, ``F7``),
a 32-voice bulk dump (4,104 bytes: ``F0 43 0n 09 20 00``, 32 packed 128-byte voices, checksum,
``F7``; what Dexed and a DX7 load as a cartridge), and hexter's ``.dx7`` banks (packed voices
one after another, no framing; Debian's ``hexter`` package ships the DX7 and TX7 ROMs).

``dexed-py`` is optional at import time: without it the other synths work, and rendering dx7 or
reading a voice says how to install it (``require_dexed``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from asp.errors import ASPError
from asp.files import atomic_write
from data_generation.spec import SynthSpec

try:  # the DX7 engine: optional, see require_dexed
    import dexed
except ImportError:  # pragma: no cover - depends on the environment
    dexed = None

DEXED_REQUIREMENT = "dexed-py==0.3.0"  # the version requirements-common.txt pins
INSTALL_HINT = f"install it with `.venv/bin/python -m pip install {DEXED_REQUIREMENT}` (`make venv` does)"
VOICE_BYTES = 155  # an unpacked voice (VCED) without the operator on/off byte
PACKED_BYTES = 128  # a voice in a bulk dump (VMEM)
BANK_VOICES = 32
SINGLE_HEADER = bytes([0xF0, 0x43, 0x00, 0x00, 0x01, 0x1B])  # single voice, 155 bytes
BANK_HEADER = bytes([0xF0, 0x43, 0x00, 0x09, 0x20, 0x00])  # 32 voices, 4096 bytes
SINGLE_SIZE = len(SINGLE_HEADER) + VOICE_BYTES + 2
BANK_SIZE = len(BANK_HEADER) + BANK_VOICES * PACKED_BYTES + 2
NAME_CHARS = 10

# the engine's categorical fields: their class names (the DX7 manual's), from dexed.Preset's int fields
CHOICES = {
    "osc_key_sync": ("off", "on"),
    "lfo_sync": ("off", "on"),
    "algorithm": tuple(str(k) for k in range(1, 33)),
    "lfo_wave": ("triangle", "saw down", "saw up", "square", "sine", "sample&hold"),
    "frequency_mode": ("ratio", "fixed"),
    "left_curve": ("-lin", "-exp", "+exp", "+lin"),
    "right_curve": ("-lin", "-exp", "+exp", "+lin"),
}
# what random presets draw from (normalized): carriers quiet below output level 60 and envelopes
# whose levels 1-3 stay low leave 41% of uniform random presets silent (RMS <= 0.01 at note 60),
# these ranges 10%; transpose stays at its centre (no transposition: the note is the note played)
SAMPLE_RANGES = {"output_level": (0.6, 1.0), "env_level1": (0.5, 1.0), "env_level2": (0.5, 1.0),
                 "env_level3": (0.5, 1.0), "transpose": (0.5, 0.5)}  # fmt: skip
_GROUPS = (("pitch_env", "pitch"), ("env", "env"), ("lfo", "lfo"), ("output_level", "vol"), ("frequency", "osc"),
           ("detune", "osc"), ("transpose", "pitch"), ("algorithm", "mod"), ("feedback", "mod"),
           ("osc_key_sync", "osc"), ("velocity", "vol"), ("breakpoint", "vol"), ("depth", "vol"),
           ("curve", "vol"), ("rate_scaling", "env"), ("sensitivity", "mod"))  # fmt: skip


def require_dexed() -> object:
    """The ``dexed`` module, or a one-line error saying how to install it."""
    if dexed is None:
        raise ASPError(f"synth 'dx7' needs the Python package dexed-py (the DX7 engine), not installed; {INSTALL_HINT}")
    return dexed


def describe_dexed() -> list[dict]:
    """The engine's parameters in ``Preset.to_array`` order, as ``spec_gen.build_spec`` takes them.

    Names follow the engine's fields, per operator ``op1``-``op6`` (the DX7's numbering) and per
    envelope stage ``rate1``-``rate4`` / ``level1``-``level4``. Continuous ones carry their DX7
    range as ``units``; categorical ones their class names. Defaults are the engine's INIT VOICE.

    Returns:
        145 dicts: label, index, classes, default, native_range, group, sample_range and units
        or choices.
    """
    engine = require_dexed()
    preset = engine.Preset()
    defaults = preset.to_array().astype(np.float64)
    int_fields = {"osc_key_sync", "lfo_sync", "algorithm", "lfo_wave"} | {
        f"op_{k}" for k in ("frequency_mode", "left_curve", "right_curve")
    }
    out: list[dict] = []
    for field in engine.Preset.DATA_FIELDS:
        shape = np.shape(np.asarray(getattr(preset, field)))
        base = field.removeprefix("op_")
        if len(shape) == (2 if field.startswith("op_") else 1):  # envelope stages: env_rates -> env_rate1..4
            stem, plural = base.rsplit("_", 1)
            base = [f"{stem}_{plural[:-1]}{j + 1}" for j in range(shape[-1])]
        else:
            base = [base]
        labels = [f"op{i + 1}_{b}" for i in range(6) for b in base] if field.startswith("op_") else base
        for label in labels:
            index = len(out)
            key = label.split("_", 1)[1] if label.startswith("op") and label[2].isdigit() else label
            entry: dict = {"label": label, "index": index, "default": float(defaults[index])}
            if field in int_fields:
                choices = CHOICES[key]
                entry |= {"classes": len(choices), "native_range": [0.0, float(len(choices) - 1)]}
                entry["choices"] = list(choices)
                entry["default"] = float(defaults[index]) / (len(choices) - 1)
            else:
                scale = engine.Preset.SCALES[field]
                entry |= {"classes": 0, "native_range": [0.0, 1.0], "units": [0.0, float(scale)]}
            stage = re.sub(r"^op\d_", "", label)
            entry["sample_range"] = list(SAMPLE_RANGES.get(stage, (0.0, 1.0)))
            entry["group"] = next((g for word, g in _GROUPS if word in label), "mod")
            out.append(entry)
    return out


# -- presets <-> voices ----------------------------------------------------------------------------
def voice_name(text: str) -> str:
    """A name as a DX7 voice name: 10 printable ASCII characters (others become spaces), upper case."""
    clean = "".join(c if 32 <= ord(c) < 127 else " " for c in str(text)).upper()
    return " ".join(clean.split())[:NAME_CHARS].ljust(NAME_CHARS)


def to_patch(spec: SynthSpec, preset: np.ndarray, name: str = "ASP MATCH"):
    """A normalized preset (n_params,) -> a ``dexed.Patch``, rounded to the DX7's steps exactly as
    the engine loads it (``DexedSynth.load_preset``)."""
    engine = require_dexed()
    native = spec.to_native(np.asarray(preset, dtype=np.float64))
    return engine.Preset.from_array(native.astype(np.float32)).to_patch(voice_name(name))


def from_patch(spec: SynthSpec, patch) -> np.ndarray:
    """A ``dexed.Patch`` -> (n_params,) float64 normalized preset."""
    values = patch.to_preset().to_array().astype(np.float64)
    classes = np.array([p.classes for p in spec.params])
    cat = classes >= 2
    values[cat] = values[cat] / (classes[cat] - 1)
    return spec.snap(values)


def checksum(data: bytes) -> int:
    """A DX7 sysex checksum: the low 7 bits of minus the sum of the data bytes."""
    return (-sum(data)) & 0x7F


def single_voice_sysex(patch) -> bytes:
    """A single-voice dump of a patch: 163 bytes that Dexed and a DX7 load into the edit buffer."""
    voice = patch.to_sysex()[:VOICE_BYTES]
    return SINGLE_HEADER + voice + bytes([checksum(voice), 0xF7])


def bank_sysex(patches: list) -> bytes:
    """A 32-voice bulk dump (4,104 bytes); fewer patches are followed by INIT VOICEs."""
    engine = require_dexed()
    if len(patches) > BANK_VOICES:
        raise ASPError(f"a DX7 bank holds {BANK_VOICES} voices, got {len(patches)}")
    voices = list(patches) + [engine.Patch() for _ in range(BANK_VOICES - len(patches))]
    payload = b"".join(p.to_packed() for p in voices)
    return BANK_HEADER + payload + bytes([checksum(payload), 0xF7])


def write_syx(path: str | Path, data: bytes) -> Path:
    """Writes sysex bytes atomically (a killed run leaves the old file or the new one)."""
    path = Path(path)
    with atomic_write(path, "wb") as f:
        f.write(data)
    return path


def _message(data: bytes, start: int, path: Path) -> bytes:
    end = data.find(0xF7, start)
    if end < 0:
        raise ASPError(f"malformed sysex file {path}: a message at byte {start} has no end (F7); the file is cut short")
    return data[start : end + 1]


def read_voices(path: str | Path) -> list[tuple[str, object]]:
    """Every voice of a DX7 file: a ``.syx`` (32-voice bulk dumps and single-voice dumps, any
    number one after another) or a hexter ``.dx7`` / raw payload (packed 128-byte voices).

    Returns:
        [(name, dexed.Patch)], names with their padding stripped and runs of spaces made one
        (``BRASS   1`` -> ``BRASS 1``).

    Raises:
        ASPError: for an unreadable or empty file, a message that is no DX7 voice dump, a wrong
            checksum (the file is damaged), or a raw file whose size is no multiple of 128 bytes.
    """
    engine = require_dexed()
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ASPError(f"cannot read DX7 voice file {path}: {err.strerror}") from None
    if not data:
        raise ASPError(f"DX7 voice file {path} is empty")
    patches = []
    if data[0] != 0xF0:  # hexter's .dx7 or a bare payload: packed voices without framing
        if len(data) % PACKED_BYTES:
            raise ASPError(
                f"{path} is no DX7 voice file: {len(data)} bytes, neither sysex (starting F0) nor packed "
                f"{PACKED_BYTES}-byte voices; give a .syx cartridge or a hexter .dx7 bank"
            )
        patches = [engine.Patch.from_packed(data[k : k + PACKED_BYTES]) for k in range(0, len(data), PACKED_BYTES)]
    pos = 0
    while pos < len(data) and data[0] == 0xF0:
        if data[pos] != 0xF0:
            raise ASPError(f"malformed sysex file {path}: byte {pos} is {data[pos]:02X}, not the start of a message F0")
        message = _message(data, pos, path)
        if message[:2] != b"\xf0\x43" or len(message) < 6 or message[2] & 0xF0 != 0:
            raise ASPError(f"{path}: the message at byte {pos} is no Yamaha voice dump (header {message[:6].hex(' ')})")
        if message[3:6] == BANK_HEADER[3:6] and len(message) == BANK_SIZE:
            body = message[6:-2]
            voices = [body[k : k + PACKED_BYTES] for k in range(0, len(body), PACKED_BYTES)]
            make = engine.Patch.from_packed
        elif message[3:6] == SINGLE_HEADER[3:6] and len(message) == SINGLE_SIZE:
            body = message[6:-2]
            voices, make = [body], lambda v: engine.Patch.from_sysex(bytes(v) + b"\x3f")
        else:
            raise ASPError(
                f"{path}: the message at byte {pos} ({len(message)} bytes, header {message[:6].hex(' ')}) is neither "
                f"a 32-voice dump ({BANK_SIZE} bytes) nor a single-voice dump ({SINGLE_SIZE} bytes)"
            )
        if checksum(body) != message[-2]:
            raise ASPError(
                f"{path}: the checksum of the message at byte {pos} is {message[-2]:02X}, its data sums to "
                f"{checksum(body):02X}: the file is damaged; export it again"
            )
        patches += [make(v) for v in voices]
        pos += len(message)
    return [(" ".join(p.name.split()), p) for p in patches]


def read_voice_presets(spec: SynthSpec, path: str | Path) -> tuple[list[str], np.ndarray]:
    """The voices of a DX7 file as presets: (names, (n, n_params) normalized)."""
    voices = read_voices(path)
    return [n for n, _ in voices], np.stack([from_patch(spec, p) for _, p in voices])


def is_voice_file(path: str | Path) -> bool:
    """A DX7 file by its name (``.syx``, ``.dx7``) or, for a file, its first byte (sysex starts F0)."""
    path = Path(path)
    if path.suffix.lower() in (".syx", ".dx7"):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(1) == b"\xf0"
    except OSError:
        return False
