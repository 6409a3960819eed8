"""The paper's evaluation metrics, written once (``../shared/reference/paper_facts.md``).

Audio metrics take mono audio, (n,) or (batch, n) float; parameter metrics take encoded vectors
(batch, encoded size) of one synth. Lower is better except for accuracy.
"""

from __future__ import annotations

import librosa
import numpy as np

from data.encoding import Codec
from data_generation.spec import SynthSpec

POWER_FLOOR = 1e-10  # the paper's code left zero-energy bins uninitialized; we floor them
MRSD_FFTS = (64, 512, 2048)


def _magnitude(audio: np.ndarray, n_fft: int) -> np.ndarray:
    """|STFT| with librosa's defaults (hop n_fft // 4), float64: (..., 1 + n_fft // 2, frames)."""
    return np.abs(librosa.stft(np.asarray(audio, dtype=np.float32), n_fft=n_fft)).astype(np.float64)


def log_spectral_distance(target: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """The paper's LSD: mean over bins and frames of (log10 |X|^2 - log10 |Y|^2)^2, n_fft 2048.

    Powers are floored at 1e-10. Returns (batch,) or a scalar array for (n,) inputs.
    """
    x = np.maximum(_magnitude(target, 2048) ** 2, POWER_FLOOR)
    y = np.maximum(_magnitude(predicted, 2048) ** 2, POWER_FLOOR)
    return np.mean((np.log10(x) - np.log10(y)) ** 2, axis=(-2, -1))


def multi_resolution_spectral_distance(target: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Sum over n_fft in {64, 512, 2048} of mean |X - Y| + mean |log X - log Y| (magnitudes)."""
    total = 0.0
    for n_fft in MRSD_FFTS:
        x, y = _magnitude(target, n_fft), _magnitude(predicted, n_fft)
        floor = np.sqrt(POWER_FLOOR)
        total = total + np.mean(np.abs(x - y), axis=(-2, -1))
        total = total + np.mean(np.abs(np.log(np.maximum(x, floor)) - np.log(np.maximum(y, floor))), axis=(-2, -1))
    return np.asarray(total)


def mel_db(audio: np.ndarray, sample_rate: int = 44100) -> np.ndarray:
    """dB mel spectrogram (128 mels, n_fft 2048, hop 512, ref 1.0, top 80 dB): (..., 128, frames)."""
    power = librosa.feature.melspectrogram(y=np.asarray(audio, dtype=np.float32), sr=sample_rate)
    return librosa.power_to_db(power, ref=1.0)


def mel_frobenius(target: np.ndarray, predicted: np.ndarray, sample_rate: int = 44100) -> np.ndarray:
    """Frobenius norm of the difference of the two dB mel spectrograms: (batch,)."""
    diff = mel_db(target, sample_rate) - mel_db(predicted, sample_rate)
    return np.sqrt(np.sum(diff**2, axis=(-2, -1)))


def audio_metrics(target: np.ndarray, predicted: np.ndarray, sample_rate: int = 44100) -> dict[str, np.ndarray]:
    """LSD, multi-resolution spectral distance and mel Frobenius distance in one call."""
    return {
        "lsd": log_spectral_distance(target, predicted),
        "mrsd": multi_resolution_spectral_distance(target, predicted),
        "mel_frobenius": mel_frobenius(target, predicted, sample_rate),
    }


def categorical_accuracy(spec: SynthSpec, target: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Share of categorical parameters whose argmax class is right: (batch,) (nan without any)."""
    codec = Codec(spec)
    t, p = np.atleast_2d(target), np.atleast_2d(predicted)
    right, count = np.zeros(len(t)), 0
    for n, (_, offsets) in codec.blocks.items():
        index = offsets[:, None] + np.arange(n)[None, :]
        right += (t[:, index].argmax(-1) == p[:, index].argmax(-1)).sum(-1)
        count += len(offsets)
    return right / count if count else np.full(len(t), np.nan)


def continuous_squared_error(spec: SynthSpec, target: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Mean squared error over the continuous parameters: (batch,) (nan without any)."""
    mask = Codec(spec).continuous_mask
    if not mask.any():
        return np.full(len(np.atleast_2d(target)), np.nan)
    diff = np.atleast_2d(target)[:, mask] - np.atleast_2d(predicted)[:, mask]
    return np.mean(diff**2, axis=-1)


def group_errors(spec: SynthSpec, target: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """Per parameter group (vol/osc/env/...): mean error over its parameters, (batch,) each.

    A continuous parameter's error is its squared error; a categorical one's is 0 when its
    argmax class is right and 1 otherwise.
    """
    codec = Codec(spec)
    t, p = np.atleast_2d(target), np.atleast_2d(predicted)
    errors = np.zeros((len(t), len(spec.learned)))
    cont = spec.classes == 0
    starts = np.concatenate([[0], np.cumsum(np.maximum(spec.classes, 1))[:-1]])
    errors[:, cont] = (t[:, starts[cont]] - p[:, starts[cont]]) ** 2
    for n, (params, offsets) in codec.blocks.items():
        index = offsets[:, None] + np.arange(n)[None, :]
        errors[:, params] = (t[:, index].argmax(-1) != p[:, index].argmax(-1)).astype(float)
    groups = np.array([q.group for q in spec.learned])
    return {g: errors[:, groups == g].mean(axis=1) for g in sorted(set(groups))}
