"""Sound files as model inputs: loading any file, and estimating the note it plays.

No TensorFlow here: librosa's pyin compiles numba code on first use, and compiling with
llvmlite once TensorFlow is loaded segfaults (the same LLVM clash as importing tensorflow before
dawdreamer). Scripts estimate notes before they import TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from asp.errors import ASPError

SAMPLE_RATE = 44100
MIN_SECONDS = 0.1
SILENT_PEAK = 1e-4
# samples beyond this are not a sound but a damaged or mis-scaled file: a float wav's lie within
# about -1..1, and values near 1e15 overflow the spectrogram's power to infinity
MAX_PEAK = 1e3


def load_audio(path: str | Path, seconds: float) -> np.ndarray:
    """Any sound file -> mono float32 at 44.1 kHz, trimmed or zero-padded to ``seconds``.

    A file that is silent once its DC offset (its mean) is taken away is refused like an all-zero
    one: a constant offset is no sound to match.

    Raises:
        ASPError: for a path that is not a regular file (reading a named pipe would wait for a
            writer forever), an unreadable, empty, too short or silent file, or one holding NaN
            or infinite samples (a float wav can), or samples beyond ``MAX_PEAK``.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "a named pipe, socket or device"
        raise ASPError(f"audio file {path} is not a regular file ({kind}); give a sound file")
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ASPError(f"cannot read audio file {path} ({reason}); give a wav/flac/ogg file") from None
    if audio.size == 0:
        raise ASPError(f"audio file {path} is empty")
    bad = int(np.count_nonzero(~np.isfinite(audio)))
    if bad:
        raise ASPError(
            f"audio file {path} holds {bad} non-finite samples (NaN or inf); re-export it, or replace them with 0"
        )
    mono = audio.mean(axis=1)
    if len(mono) / rate < MIN_SECONDS:
        raise ASPError(f"audio file {path} is too short ({len(mono) / rate:.3f} s); give at least {MIN_SECONDS} s")
    if np.abs(mono).max() > MAX_PEAK:
        raise ASPError(
            f"audio file {path} has samples up to {np.abs(mono).max():.3g}, far beyond a sound file's -1..1; "
            "it is damaged or mis-scaled: normalize it"
        )
    if np.abs(mono - mono.mean(dtype=np.float64)).max() < SILENT_PEAK:  # silence, or a constant offset
        offset = f" (only a constant offset of {mono.mean():.3g})" if np.abs(mono).max() >= SILENT_PEAK else ""
        raise ASPError(f"audio file {path} is silent{offset}; give a file with sound in it")
    if rate != SAMPLE_RATE:
        mono = librosa.resample(mono, orig_sr=rate, target_sr=SAMPLE_RATE)
    n = int(round(seconds * SAMPLE_RATE))
    return np.pad(mono[:n], (0, max(0, n - len(mono)))).astype(np.float32)


def estimate_note(audio: np.ndarray, default: int = 60) -> int:
    """The MIDI note of a sound (median pyin f0 over voiced frames), or ``default`` if unpitched.

    Raises:
        ASPError: for a sound holding NaN or infinite samples.
    """
    if not np.isfinite(audio).all():
        raise ASPError("the sound holds non-finite samples (NaN or inf); its note cannot be estimated")
    y = librosa.resample(audio[: 3 * SAMPLE_RATE], orig_sr=SAMPLE_RATE, target_sr=22050)
    f0, voiced, _ = librosa.pyin(
        y, fmin=librosa.note_to_hz("C1"), fmax=librosa.note_to_hz("C7"), sr=22050, frame_length=2048
    )
    f0 = f0[voiced & np.isfinite(f0)]
    if len(f0) < 3:
        return default
    return int(np.clip(np.round(librosa.hz_to_midi(np.median(f0))), 0, 127))


ONSET_DB = -40.0  # a sound starts at its first sample within 40 dB of its peak


def align_onset(audio: np.ndarray, at_seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Moves a sound so that it starts at ``at_seconds`` (where the synths start their notes),
    keeping its length: leading samples are cut or zeros prepended, and the end padded or cut.

    A sound starts at its first sample within 40 dB of its peak magnitude.

    Args:
        audio: (n,) mono float.
        at_seconds: where the onset should be.

    Returns:
        (n,) float32.
    """
    audio = np.asarray(audio, dtype=np.float32)
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    if peak == 0.0:
        return audio
    onset = int(np.argmax(np.abs(audio) >= peak * 10 ** (ONSET_DB / 20)))
    shift = int(round(at_seconds * sample_rate)) - onset
    if shift >= 0:
        return np.concatenate([np.zeros(shift, dtype=np.float32), audio[: len(audio) - shift]])
    return np.concatenate([audio[-shift:], np.zeros(-shift, dtype=np.float32)])
