"""Synthesizes a sound none of our synths made, for the demo to match: a plucked string
(Karplus-Strong) with a little vibrato, written as a stereo 22.05 kHz wav (so matching it also
exercises resampling and down-mixing).

    python data_generation/demo_sound.py demo_out/pluck.wav [--note 57] [--seconds 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

from asp.cli import ArgumentParser, add_overwrite_flag, positive_float, run_cli
from asp.errors import ASPError
from asp.files import check_outputs, output_path, write_sound

RATE = 22050


def pluck(note: int, seconds: float, seed: int = 0) -> np.ndarray:
    """A Karplus-Strong plucked string at a MIDI note: (n,) float32 in [-1, 1]."""
    freq = 440.0 * 2 ** ((note - 69) / 12)
    period = max(2, int(round(RATE / freq)))
    n = int(seconds * RATE)
    rng = np.random.default_rng(seed)
    out = np.zeros(n)
    buffer = rng.uniform(-1, 1, period)
    for i in range(n):
        out[i] = buffer[i % period]
        buffer[i % period] = 0.996 * 0.5 * (buffer[i % period] + buffer[(i + 1) % period])
    t = np.arange(n) / RATE
    out *= 1 + 0.2 * np.sin(2 * np.pi * 5 * t)  # tremolo
    return (0.8 * out / np.abs(out).max()).astype(np.float32)


def main() -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path")
    parser.add_argument("--note", type=int, default=57)
    parser.add_argument("--seconds", type=positive_float, default=3.0)
    add_overwrite_flag(parser)
    args = parser.parse_args()
    if not 20 <= args.note <= 108:
        raise ASPError(f"--note must be 20-108, got {args.note}")
    if args.seconds > 600:
        raise ASPError(f"--seconds must be at most 600, got {args.seconds:g}")
    path = Path(args.path)
    if path.is_dir():
        raise ASPError(f"{path} is a folder; give a file name such as {path / 'demo.wav'}")
    if path.suffix[1:].upper() not in sf.available_formats():
        raise ASPError(f"{path}: give a sound file name ending in .wav, .flac or .ogg")
    check_outputs([path], overwrite=args.overwrite)  # a user's own pluck.wav: refused
    mono = pluck(args.note, args.seconds)
    path.parent.mkdir(parents=True, exist_ok=True)
    with output_path(path, overwrite=args.overwrite) as tmp:
        write_sound(tmp, np.stack([mono, 0.9 * mono], axis=1), RATE, format=path.suffix[1:].upper(), shown=path)
    print(f"wrote {path}: plucked string, note {args.note}, {args.seconds} s, stereo {RATE} Hz")
    return 0


if __name__ == "__main__":
    run_cli(main)
