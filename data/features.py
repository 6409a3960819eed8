"""The paper's input feature and harmonicity label, computed exactly as its dataset.

Mel spectrogram: librosa, 128 mels, n_fft 2048, hop 512 (a 5 s note at 44.1 kHz gives 128 x 431),
``power_to_db(ref=max)``, then min-max scaled to [0, 1]. HPSS label: librosa HPSS with margin 3.0
on the same STFT; harmonic percentage = mean |H| / mean |STFT|, binned to 20/40/60/80/100.
"""

from __future__ import annotations

from functools import lru_cache

import bottleneck
import librosa
import numpy as np
import scipy.sparse

SAMPLE_RATE = 44100
N_FFT = 2048
HOP = 512
N_MELS = 128
HPSS_MARGIN = 3.0
HPSS_KERNEL = 31  # librosa's default kernel_size


@lru_cache(maxsize=4)
def _mel_basis(sample_rate: int) -> scipy.sparse.csr_matrix:
    """librosa's mel filterbank, sparse: its product needs no BLAS, so it gives the same bits
    whatever the number of threads (and is twice as fast)."""
    return scipy.sparse.csr_matrix(librosa.filters.mel(sr=sample_rate, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32))


def stft(audio: np.ndarray) -> np.ndarray:
    """Complex STFT as librosa's melspectrogram computes it: (1025, frames) complex64."""
    return librosa.stft(np.asarray(audio, dtype=np.float32), n_fft=N_FFT, hop_length=HOP)


def scale_db(power_mel: np.ndarray) -> np.ndarray:
    """``power_to_db(ref=max)`` then min-max scaling to [0, 1]; a constant input gives zeros."""
    db = librosa.power_to_db(power_mel, ref=np.max)
    lo, hi = db.min(), db.max()
    if hi - lo <= 0:
        return np.zeros_like(db, dtype=np.float32)
    return ((db - lo) / (hi - lo)).astype(np.float32)


def mel_from_stft(spectrum: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The scaled mel spectrogram from a complex STFT: (128, frames) float32 in [0, 1]."""
    power = np.abs(spectrum) ** 2
    return scale_db(np.asarray(_mel_basis(sample_rate) @ power))


def mel_spectrogram(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The paper's input: (128, 431) float32 in [0, 1] for a 5 s mono note at 44.1 kHz."""
    return mel_from_stft(stft(audio), sample_rate)


def _median_filter(x: np.ndarray, width: int, axis: int) -> np.ndarray:
    """``scipy.ndimage.median_filter(mode="reflect")`` along one axis, via bottleneck's running
    median (same values, ~12x faster on a 1025 x 431 spectrogram)."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (width // 2, width // 2)
    padded = np.pad(x, pad, mode="symmetric")  # scipy's "reflect" is numpy's "symmetric"
    medians = bottleneck.move_median(padded, width, axis=axis)
    index = [slice(None)] * x.ndim
    index[axis] = slice(width - 1, None)
    return medians[tuple(index)].astype(x.dtype, copy=False)


def harmonic_magnitude(magnitude: np.ndarray) -> np.ndarray:
    """The harmonic part of ``librosa.decompose.hpss(magnitude, margin=3.0)``, computed the same way."""
    harm = _median_filter(magnitude, HPSS_KERNEL, axis=-1)
    perc = _median_filter(magnitude, HPSS_KERNEL, axis=-2)
    mask = librosa.util.softmask(harm, perc * HPSS_MARGIN, power=2.0, split_zeros=False)
    return magnitude * mask


def harmonic_percentage(spectrum: np.ndarray) -> float:
    """Share of the STFT magnitude that HPSS (margin 3.0) assigns to the harmonic part, in [0, 1]."""
    magnitude = np.abs(spectrum)
    total = magnitude.mean()
    if total <= 0:
        return 0.0
    return float(harmonic_magnitude(magnitude).mean() / total)


def hpss_bin(percentage: float | np.ndarray) -> np.ndarray:
    """Bins a harmonic share in [0, 1] to the paper's labels 20/40/60/80/100 (upper bin edges)."""
    pct = np.asarray(percentage, dtype=np.float64) * 100.0
    return np.clip(np.ceil(pct / 20.0) * 20, 20, 100).astype(np.int16)
