"""The search's objective: how far a render is from the target (``SearchObjective``), and the
target's modulation rates (``modulation_rates``), which the search tries for rate parameters."""

from __future__ import annotations

import math
from functools import lru_cache

import librosa
import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

from asp.errors import ASPError

OBJECTIVE_SCALES = ((256, 32), (1024, 64), (4096, 128), (2048, 0))  # (n_fft, mel bands or 0: linear), hop n_fft // 2
SILENT_SAMPLE = 1e-20  # |sample| below this scores as 0 (far below the floor; keeps floats normal)
OBJECTIVE_FLOOR_DB = 120.0  # mel energy below the target's peak minus this counts as silence
# half of each frame's weight decays with this time constant (s) from the note's start: see SearchObjective
OBJECTIVE_EARLY_SECONDS = 1.0
# Hz: the band modulation rates are read in (slower ones show too few cycles in a note and are no
# needle; the frame rate allows up to 86 Hz)
MODULATION_RATES = (0.6, 26.0)


@lru_cache(maxsize=8)
def _objective_filters(sample_rate: int, n_fft: int, bands: int) -> np.ndarray:
    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=bands).astype(np.float32).T


@lru_cache(maxsize=8)
def _window(n_fft: int) -> np.ndarray:
    return np.hanning(n_fft).astype(np.float32)


def _mel_magnitudes(audio: np.ndarray, sample_rate: int) -> list[np.ndarray]:
    """Mel-filtered STFT magnitudes at each objective scale: [(frames, bands) float32]."""
    audio = np.asarray(audio, dtype=np.float32)
    # samples below -400 dB to 0: decaying renders end in subnormal floats, which made the FFTs and
    # the mel products of one modal render 17x slower (165 ms instead of 9.5); the score is the same
    audio = np.where(np.abs(audio) < SILENT_SAMPLE, np.float32(0), audio)
    half = max(n for n, _ in OBJECTIVE_SCALES) // 2
    padded = np.pad(audio, (half, half))  # once: each scale's centred frames are a view into it
    out = []
    for n_fft, bands in OBJECTIVE_SCALES:
        view = padded[half - n_fft // 2 : half + len(audio) + n_fft // 2]
        windowed = sliding_window_view(view, n_fft)[:: n_fft // 2] * _window(n_fft)
        magnitude = np.abs(scipy.fft.rfft(windowed, axis=1, workers=1, overwrite_x=True))
        out.append(magnitude @ _objective_filters(sample_rate, n_fft, bands) if bands else magnitude)
    return out


@lru_cache(maxsize=16)
def _frame_weights(frames: int, hop: int, sample_rate: int) -> np.ndarray:
    """(frames,) weights of a scale's frames, divided by their count (see ``SearchObjective``)."""
    decay = np.exp(-np.arange(frames) * hop / sample_rate / OBJECTIVE_EARLY_SECONDS)
    weights = 0.5 + 0.5 * decay / decay.mean()
    return (weights / frames).astype(np.float32)


class SearchObjective:
    """Distance of a render to one target: the mean over scales of the frame-weighted mean
    |log S - log S'|.

    Three mel scales (n_fft 256, 1024, 4096, hop n_fft / 2, 32-128 bands) see attacks and pitch
    alike; a linear-frequency magnitude spectrum (n_fft 2048) sees partials the mel bands merge
    (it brought the LSD after 600 renders from 2.31 to 1.59 on fm, 0.89 to 0.79 on va). The floor
    sits 120 dB below the target's peak at each scale, so differences in silence do not count and
    loudness does. 0 for the target itself.

    Frames are weighted towards the note's start: half of each weight is uniform, half decays as
    exp(-t / ``OBJECTIVE_EARLY_SECONDS``), normalized to a mean of 1. A modulation whose rate is a
    little off drifts out of phase over the note, so with uniform weights the rate of a strong
    LFO was a needle (0.003 off took one va sound from 0 to 0.32); the first second forgives a
    rate about 5x further off, which gives CMA-ES a basin to find. (17 held-out va sounds at
    1,100 renders: mean LSD 1.047 -> 0.951.)

    Args:
        target: (n,) mono float audio.
        sample_rate: in Hz.
    """

    def __init__(self, target: np.ndarray, sample_rate: int = 44100):
        target = np.asarray(target, dtype=np.float32)
        if target.ndim != 1 or not np.all(np.isfinite(target)):
            raise ASPError("the search target must be finite mono audio")
        self.sample_rate = int(sample_rate)
        self.length = len(target)
        mels = _mel_magnitudes(target, self.sample_rate)
        self.floors = [max(float(m.max()), 1e-6) * 10 ** (-OBJECTIVE_FLOOR_DB / 20) for m in mels]
        self.logs = [np.log(m + f) for m, f in zip(mels, self.floors)]
        self.weights = [
            _frame_weights(len(m), n_fft // 2, self.sample_rate) for m, (n_fft, _) in zip(mels, OBJECTIVE_SCALES)
        ]

    def __call__(self, audio: np.ndarray) -> float:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.shape != (self.length,):
            raise ASPError(f"a render to score must have {self.length} samples, got shape {audio.shape}")
        if not np.all(np.isfinite(audio)):
            return math.inf
        total = 0.0
        for m, floor, log_target, weights in zip(
            _mel_magnitudes(audio, self.sample_rate), self.floors, self.logs, self.weights
        ):
            m += floor  # in place: |log(m + floor) - log_target| without temporaries
            np.log(m, out=m)
            m -= log_target
            total += float(np.abs(m, out=m).mean(axis=1) @ weights)
        return total / len(self.logs)


def modulation_rates(audio: np.ndarray, sample_rate: int, start: float, end: float) -> list[float]:
    """The target's modulation rates in Hz, at most two: the strongest periodicity of its mel band
    levels (an LFO on a filter, a level or a pitch) and of their frame-to-frame change (a
    sample-and-hold LFO, whose steps have no periodic level), read over ``start``-``end`` s (the
    held note). Only rates in ``MODULATION_RATES`` are read; a second within 2% of the first is
    left out.

    On the 17 held-out va sounds of the 30 s table (docs/inference.md), the first or the second is within 0.3%
    of the LFO's true rate on each of the 4 with an LFO faster than 1 Hz and more than an octave
    deep on the cutoff; on shallower ones, beating between detuned oscillators or pulse-width
    modulation can win instead (or twice the rate), so each rate is only tried.
    """
    hop = 256
    power = librosa.feature.melspectrogram(
        y=np.asarray(audio, dtype=np.float32), sr=sample_rate, n_fft=2048, hop_length=hop, n_mels=64, power=2.0
    )
    levels = np.log(power + max(float(power.max()), 1e-30) * 1e-10)
    frame_rate = sample_rate / hop
    first, last = int(start * frame_rate), min(int(end * frame_rate), levels.shape[1])
    if last - first < 16:
        return []
    x = levels[:, first:last]
    x = x - x.mean(axis=1, keepdims=True)
    x = x - np.linspace(0.0, 1.0, x.shape[1])[None] * (x[:, -1:] - x[:, :1])  # the note's slow drift
    n = 1 << 15  # zero-padded: 0.005 Hz bins, refined by a parabola through the peak's log power
    freqs = np.fft.rfftfreq(n, 1.0 / frame_rate)
    usable = (freqs > MODULATION_RATES[0]) & (freqs < MODULATION_RATES[1])
    rates: list[float] = []
    for signal in (x, np.abs(np.diff(x, axis=1))):
        signal = signal - signal.mean(axis=1, keepdims=True)
        spectrum = (np.abs(np.fft.rfft(signal * np.hanning(signal.shape[1])[None], n=n, axis=1)) ** 2).sum(axis=0)
        i = int(np.argmax(np.where(usable, spectrum, 0.0)))
        if not (usable[i - 1] and usable[i + 1]) or spectrum[i] <= 0:
            continue  # the band's edge: the skirt of a rate outside it, not a peak
        y = np.log(spectrum[i - 1 : i + 2] + 1e-30)
        curvature = y[0] - 2 * y[1] + y[2]
        offset = 0.5 * (y[0] - y[2]) / curvature if curvature < 0 else 0.0
        rate = float(freqs[i] + offset * (freqs[1] - freqs[0]))
        if all(abs(r / rate - 1) > 0.02 for r in rates):
            rates.append(rate)
    return rates
