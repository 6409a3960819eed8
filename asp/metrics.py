"""The evaluation metrics, written once: the paper's (docs/paper.md, "What the code takes from the paper") and
the field's perceptual audio distances, all on re-rendered audio.

Audio metrics take mono audio, (n,) or (batch, n) float, or its ``AudioFeatures`` (so that a
target's spectra are computed once for several predictions), and return (batch,) or a scalar
array; each item of a batch is scored on its own. Parameter metrics take encoded vectors (batch,
encoded size) of one synth. Lower is better except for accuracy and the RMS envelope similarity.
"""

from __future__ import annotations

from functools import lru_cache

import librosa
import numpy as np

from data.encoding import Codec
from data_generation.spec import SynthSpec

POWER_FLOOR = 1e-10  # the paper's code left zero-energy bins uninitialized; we floor them
MRSD_FFTS = (64, 512, 2048)
MEL_FFT, MEL_BANDS, TOP_DB = 2048, 128, 80.0  # mel_db: librosa's melspectrogram defaults, hop 512
LOG_MEL_FFTS = (512, 1024, 2048)  # hop n_fft // 4
LOG_MEL_BANDS = 64  # 128 bands leave empty filters at n_fft 512 and 44.1 kHz
LOG_MEL_EPS = 1e-5
N_MFCC = 20  # computed; c0 (the log energy) is dropped, so 19 coefficients compare timbre, not level
RMS_FRAME, RMS_HOP = 2048, 512


def _magnitude(audio: np.ndarray, n_fft: int) -> np.ndarray:
    """|STFT| with librosa's defaults (hop n_fft // 4), float64: (..., 1 + n_fft // 2, frames)."""
    return np.abs(librosa.stft(np.asarray(audio, dtype=np.float32), n_fft=n_fft)).astype(np.float64)


@lru_cache(maxsize=8)
def _mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa's (Slaney) mel filter bank: (n_mels, 1 + n_fft // 2) float64."""
    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels).astype(np.float64)


class AudioFeatures:
    """The spectra the audio metrics use, each computed on first use and kept.

    Args:
        audio: (n,) or (batch, n) mono float.
        sample_rate: in Hz.
    """

    def __init__(self, audio: np.ndarray, sample_rate: int = 44100):
        self.audio = np.asarray(audio, dtype=np.float32)
        self.sample_rate = int(sample_rate)
        self._cache: dict = {}

    def _cached(self, key, compute):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def magnitude(self, n_fft: int) -> np.ndarray:
        """|STFT|, hop n_fft // 4: (..., 1 + n_fft // 2, frames) float64."""
        return self._cached(("magnitude", n_fft), lambda: _magnitude(self.audio, n_fft))

    def mel_db(self) -> np.ndarray:
        """dB mel power spectrogram (128 mels, n_fft 2048, hop 512, ref 1.0, amin 1e-10), cut 80 dB
        below each item's own maximum (librosa's ``power_to_db`` cuts below a whole batch's):
        (..., 128, frames)."""

        def compute():
            power = _mel_filters(self.sample_rate, MEL_FFT, MEL_BANDS) @ self.magnitude(MEL_FFT) ** 2
            db = librosa.power_to_db(power, ref=1.0, top_db=None)
            return np.maximum(db, db.max(axis=(-2, -1), keepdims=True) - TOP_DB)

        return self._cached("mel_db", compute)

    def log_mel(self, n_fft: int) -> np.ndarray:
        """log(64-band mel of the magnitude + 1e-5), hop n_fft // 4: (..., 64, frames)."""
        filters = _mel_filters(self.sample_rate, n_fft, LOG_MEL_BANDS)  # cached
        return self._cached(("log_mel", n_fft), lambda: np.log(filters @ self.magnitude(n_fft) + LOG_MEL_EPS))

    def mfcc(self) -> np.ndarray:
        """MFCCs c1..c19 of librosa's 20 (DCT-II, ortho) over ``mel_db``, c0 dropped: (..., 19, frames)."""
        return self._cached("mfcc", lambda: librosa.feature.mfcc(S=self.mel_db(), n_mfcc=N_MFCC)[..., 1:, :])

    def rms(self) -> np.ndarray:
        """Linear RMS envelope (librosa.feature.rms, frame 2048, hop 512, centered): (..., frames) float64."""

        def compute():
            rms = librosa.feature.rms(y=self.audio, frame_length=RMS_FRAME, hop_length=RMS_HOP)
            return rms[..., 0, :].astype(np.float64)

        return self._cached("rms", compute)


Audio = np.ndarray | AudioFeatures


def _features(audio: Audio, sample_rate: int = 44100) -> AudioFeatures:
    return audio if isinstance(audio, AudioFeatures) else AudioFeatures(audio, sample_rate)


def log_spectral_distance(target: Audio, predicted: Audio) -> np.ndarray:
    """The paper's LSD: mean over bins and frames of (log10 |X|^2 - log10 |Y|^2)^2, n_fft 2048.

    Powers are floored at 1e-10. Returns (batch,) or a scalar array for (n,) inputs.
    """
    x = np.maximum(_features(target).magnitude(2048) ** 2, POWER_FLOOR)
    y = np.maximum(_features(predicted).magnitude(2048) ** 2, POWER_FLOOR)
    return np.mean((np.log10(x) - np.log10(y)) ** 2, axis=(-2, -1))


def multi_resolution_spectral_distance(target: Audio, predicted: Audio) -> np.ndarray:
    """Sum over n_fft in {64, 512, 2048} of mean |X - Y| + mean |log X - log Y| (magnitudes)."""
    t, p = _features(target), _features(predicted)
    floor = np.sqrt(POWER_FLOOR)
    total = 0.0
    for n_fft in MRSD_FFTS:
        x, y = t.magnitude(n_fft), p.magnitude(n_fft)
        total = total + np.mean(np.abs(x - y), axis=(-2, -1))
        total = total + np.mean(np.abs(np.log(np.maximum(x, floor)) - np.log(np.maximum(y, floor))), axis=(-2, -1))
    return np.asarray(total)


def mel_db(audio: np.ndarray, sample_rate: int = 44100) -> np.ndarray:
    """dB mel spectrogram (128 mels, n_fft 2048, hop 512, ref 1.0, top 80 dB): (..., 128, frames)."""
    return AudioFeatures(audio, sample_rate).mel_db()


def mel_frobenius(target: Audio, predicted: Audio, sample_rate: int = 44100) -> np.ndarray:
    """Frobenius norm of the difference of the two dB mel spectrograms: (batch,)."""
    diff = _features(target, sample_rate).mel_db() - _features(predicted, sample_rate).mel_db()
    return np.sqrt(np.sum(diff**2, axis=(-2, -1)))


def multi_scale_log_mel_distance(target: Audio, predicted: Audio, sample_rate: int = 44100) -> np.ndarray:
    """Mean over n_fft in {512, 1024, 2048} (hop n_fft // 4) of the mean absolute difference of
    log(mel + 1e-5), mel = 64 mel bands of the STFT magnitude.

    A gain g on audio well above the floor scores |ln g|. Returns (batch,) or a scalar array.
    """
    t, p = _features(target, sample_rate), _features(predicted, sample_rate)
    total = sum(np.mean(np.abs(t.log_mel(n) - p.log_mel(n)), axis=(-2, -1)) for n in LOG_MEL_FFTS)
    return np.asarray(total / len(LOG_MEL_FFTS))


def mfcc_distance(target: Audio, predicted: Audio, sample_rate: int = 44100) -> np.ndarray:
    """Mean over frames of the Euclidean distance between MFCC frames c1..c19 (c0 dropped).

    Without c0 a pure gain change scores 0 (a level shift only moves c0): level is left to the
    other metrics. Returns (batch,) or a scalar array.
    """
    diff = _features(target, sample_rate).mfcc() - _features(predicted, sample_rate).mfcc()
    return np.mean(np.sqrt(np.sum(diff**2, axis=-2)), axis=-1)


def rms_envelope_similarity(target: Audio, predicted: Audio) -> np.ndarray:
    """Pearson correlation of the two linear RMS envelopes, in [-1, 1]; 1 = the same shape.

    It ignores overall level (a gain change scores 1). Identical envelopes score exactly 1; an
    envelope without variation (silence, a constant level) scores 0 against any other. Returns
    (batch,) or a scalar array.
    """
    x, y = np.broadcast_arrays(_features(target).rms(), _features(predicted).rms())
    dx, dy = x - x.mean(axis=-1, keepdims=True), y - y.mean(axis=-1, keepdims=True)
    sx, sy = np.sqrt(np.sum(dx**2, axis=-1)), np.sqrt(np.sum(dy**2, axis=-1))
    scale = 1e-9 * np.sqrt(x.shape[-1])
    flat = (sx <= scale * np.max(x, axis=-1)) | (sy <= scale * np.max(y, axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.sum(dx * dy, axis=-1) / (sx * sy)
    same = np.all(np.isclose(x, y, rtol=1e-6, atol=1e-9), axis=-1)
    return np.where(same, 1.0, np.where(flat, 0.0, np.clip(r, -1.0, 1.0)))


AUDIO_METRICS = (
    "lsd",
    "mrsd",
    "mel_frobenius",
    "multi_scale_log_mel_distance",
    "mfcc_distance",
    "rms_envelope_similarity",
)


def audio_metrics(target: Audio, predicted: Audio, sample_rate: int = 44100) -> dict[str, np.ndarray]:
    """Every audio metric, keyed as in the evaluation CSVs (``AUDIO_METRICS``): (batch,) or scalars.

    The paper's ``lsd``, ``mrsd`` (multi-resolution spectral distance) and ``mel_frobenius``, then
    ``multi_scale_log_mel_distance``, ``mfcc_distance`` and ``rms_envelope_similarity`` (higher is
    better). Pass ``AudioFeatures`` to reuse a target's spectra across predictions.
    """
    t, p = _features(target, sample_rate), _features(predicted, sample_rate)
    return {
        "lsd": log_spectral_distance(t, p),
        "mrsd": multi_resolution_spectral_distance(t, p),
        "mel_frobenius": mel_frobenius(t, p),
        "multi_scale_log_mel_distance": multi_scale_log_mel_distance(t, p),
        "mfcc_distance": mfcc_distance(t, p),
        "rms_envelope_similarity": rms_envelope_similarity(t, p),
    }


def parameter_mse(target: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Mean squared error over the whole encoded vector (continuous values and one-hot blocks alike).

    Args:
        target, predicted: (batch, encoded size) or (encoded size,) vectors of one synth.

    Returns:
        (batch,) float64.
    """
    diff = np.atleast_2d(np.asarray(target, np.float64)) - np.atleast_2d(np.asarray(predicted, np.float64))
    return np.mean(diff**2, axis=-1)


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
    errors[:, cont] = (t[:, codec.starts[cont]] - p[:, codec.starts[cont]]) ** 2
    for n, (params, offsets) in codec.blocks.items():
        index = offsets[:, None] + np.arange(n)[None, :]
        errors[:, params] = (t[:, index].argmax(-1) != p[:, index].argmax(-1)).astype(float)
    groups = np.array([q.group for q in spec.learned])
    return {g: errors[:, groups == g].mean(axis=1) for g in sorted(set(groups))}
