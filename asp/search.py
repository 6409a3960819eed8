"""Search with the synth in the loop: from a network's guess (and other starts) to the closest
preset the synth can make.

Continuous and categorical parameters are searched apart, each in its own terms. Separable
CMA-ES (the ``cma`` library) moves the continuous ones, one coordinate in [0, 1] each, with the
categorical ones held at the classes of the point the run starts from. Categorical parameters
move as classes, never as a rounded number: before each CMA-ES run the search tries every other
class of every categorical parameter of the best preset so far (one batch: 19 renders for va, 51
for fm), then all the changes that helped together; a wrong waveform or operator ratio is the
error a network makes most. Sweeps also run every ``SWEEP_EVERY`` CMA-ES generations: when one
helps, CMA-ES starts again from the new best point with the step size it had reached. (A budget
of 1,100 renders is one CMA-ES run on va; with a sweep only before it, a class that pays only
once the continuous parameters have moved was never found: mean LSD 1.22 against 1.11 with the
periodic sweeps, 17 held-out va sounds. Searching each class as a CMA-ES coordinate, one score
per class, gave CMA-ES 85 coordinates instead of 29 on fm, and worse matches for the same
renders: mean LSD 1.93 against 1.83 on fm, 0.83 against 0.80 on va, 8 held-out sounds each at
1,100 renders.) Fixed parameters (the spec's ``fixed``) and the ones a caller holds stay as they
are.

Every candidate is rendered with the real synth and scored by ``SearchObjective``: L1 distances of
log mel spectra at three resolutions plus the log magnitude spectrum, loudness kept (no
normalization), frames weighted towards the note's start. It is none of the evaluation metrics,
so an evaluation of the result is not scored by what was optimized. Candidates are rendered on
worker processes (one engine per worker), each batch at once. A search with a budget in renders
is reproducible for a seed, whatever the number of workers; a budget in seconds stops at the
first batch past it.

A fast LFO's rate is a needle: from the true va preset of a 3.3 Hz LFO, 0.002 off in
``lfo_rate`` (1.2% in Hz) took the search distance from 0 to 0.25, and no step size finds it. So
for a parameter whose spec declares ``rate_hz``, the search reads the target's modulation rates
(``modulation_rates``), tries each on the best starts (one batch) and runs CMA-ES first from the
best of those with that coordinate's step size 30x smaller, so the other parameters fit around
the rate before it moves. (17 held-out va sounds at 1,100 renders, CMA-ES seeds 0 / 1: mean LSD
0.951 -> 0.906 / 1.035 -> 0.969, search distance 0.474 -> 0.443 / 0.506 -> 0.483; the 3.3 Hz
sound 1.62 -> 0.78 / 1.51 -> 0.78.)

The result is never worse than the best start: the starts are scored first and the best of
everything rendered wins. Candidates render fast, not bit-exactly (Faust synths compiled
vectorized, 25-35% faster; plugins with one reused instance), so the winner and the best start
are then re-rendered exactly and the better of the two is returned, with its exact distance.
"""

from __future__ import annotations

from asp import backend  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import math
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import cma
import librosa
import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view
from tqdm import tqdm

from asp.errors import ASPError
from asp.parallel import WorkerPool
from data.encoding import Codec
from data_generation.render import Renderer
from data_generation.spec import SynthSpec

OBJECTIVE_SCALES = ((256, 32), (1024, 64), (4096, 128), (2048, 0))  # (n_fft, mel bands or 0: linear), hop n_fft // 2
SILENT_SAMPLE = 1e-20  # |sample| below this scores as 0 (far below the floor; keeps floats normal)
OBJECTIVE_FLOOR_DB = 120.0  # mel energy below the target's peak minus this counts as silence
# half of each frame's weight decays with this time constant (s) from the note's start: see SearchObjective
OBJECTIVE_EARLY_SECONDS = 1.0
SIGMA0 = 0.1  # CMA-ES step size in the [0, 1] coordinates (0.05-0.1 best from a network start, 0.2 worse)
DEFAULT_STARTS_KEPT = 3
# nearest training presets a search starts from besides the network's (5 renders more than 3; with 8,
# 17 held-out va sounds at 30 s each: mean LSD 1.10 -> 1.05, search distance 0.508 -> 0.499)
NEAREST_STARTS = 8
SWEEP_EVERY = 10  # CMA-ES generations between class sweeps during a run
RATE_STEP = 0.03  # step size of a rate coordinate, relative to the others, in a run from a rate hypothesis
RATE_HYPOTHESIS_STARTS = 3  # best starts each estimated modulation rate is tried on
# Hz: the band modulation rates are read in (slower ones show too few cycles in a note and are no
# needle; the frame rate allows up to 86 Hz)
MODULATION_RATES = (0.6, 26.0)
# s: rates are read from this long after the note starts to this long after its release (the held note)
MODULATION_WINDOW = (0.05, 0.55)


@dataclass(frozen=True)
class Budget:
    """How much a search may spend per synth: renders (reproducible) and/or seconds.

    The search stops at whichever comes first; at least one must be given.
    """

    renders: int | None = None
    seconds: float | None = None

    def __post_init__(self):
        if self.renders is None and self.seconds is None:
            raise ASPError("a search budget needs renders or seconds")
        if self.renders is not None and (isinstance(self.renders, bool) or int(self.renders) != self.renders):
            raise ASPError(f"the search budget in renders must be a whole number, got {self.renders}")
        if self.renders is not None and self.renders < 1:
            raise ASPError(f"the search budget must be at least 1 render, got {self.renders}")
        if self.seconds is not None and not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ASPError(f"the search budget must be a positive number of seconds, got {self.seconds}")

    def describe(self) -> str:
        parts = ([f"{self.renders} renders"] if self.renders is not None else []) + (
            [f"{self.seconds:g} s"] if self.seconds is not None else []
        )
        return " or ".join(parts)


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

    On the 17 held-out va sounds of the README's table, the first or the second is within 0.3%
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


class SearchSpace:
    """What a search moves: the continuous coordinates of a synth's encoded vector (CMA-ES) and
    the categorical parameters (class sweeps), minus held and fixed parameters.

    Args:
        spec: the synth.
        hold: names of parameters to keep at their start value (fixed ones always are).
    """

    def __init__(self, spec: SynthSpec, hold: Iterable[str] = ()):
        self.spec = spec
        self.codec = Codec(spec)
        hold = set(hold)
        unknown = sorted(hold - set(spec.names))
        if unknown:
            raise ASPError(
                f"{spec.name} has no parameter {', '.join(unknown)}; its parameters: {', '.join(spec.names)}"
            )
        self.free = np.array(  # CMA-ES coordinates: one per continuous parameter searched
            [s for p, s in zip(spec.learned, self.codec.starts) if not p.categorical and p.name not in hold],
            dtype=int,
        )
        self.class_params = [  # (position in a preset, classes) of each categorical parameter searched
            (int(i), p.classes)
            for i, p in zip(spec.learned_index, spec.learned)
            if p.categorical and p.name not in hold
        ]
        coordinate = {int(s): k for k, s in enumerate(self.free)}
        self.rates = [  # (position in a preset, CMA-ES coordinate, name, (low, high) Hz) of each rate searched
            (int(i), coordinate[int(s)], p.name, p.rate_hz)
            for i, p, s in zip(spec.learned_index, spec.learned, self.codec.starts)
            if p.rate_hz is not None and int(s) in coordinate
        ]
        if len(self.free) == 0 and not self.class_params:
            raise ASPError(f"every parameter of {spec.name} is held or fixed: there is nothing to search")

    @property
    def popsize(self) -> int:
        """CMA-ES's default population for the continuous coordinates: 4 + 3 ln(n)."""
        return 4 + int(3 * math.log(max(len(self.free), 1)))

    def class_changes(self, preset: np.ndarray) -> tuple[np.ndarray, list[tuple[int, float]]]:
        """Every preset that differs from ``preset`` in the class of one categorical parameter:
        (candidates (m, n_params), [(position, value)] of each change)."""
        candidates, changes = [], []
        for index, n in self.class_params:
            current = int(round(preset[index] * (n - 1)))
            for k in range(n):
                if k != current:
                    candidate = preset.copy()
                    candidate[index] = k / (n - 1)
                    candidates.append(candidate)
                    changes.append((index, k / (n - 1)))
        return np.asarray(candidates).reshape(len(candidates), len(preset)), changes

    def rate_changes(self, presets: np.ndarray, heard: Iterable[float]) -> tuple[np.ndarray, list[tuple]]:
        """Every preset with one rate parameter set to one heard rate (Hz) in its ``rate_hz``
        range: (candidates (m, n_params), [(CMA-ES coordinate, name, Hz)] of each)."""
        candidates, moves = [], []
        for index, coordinate, name, (low, high) in self.rates:
            for hz in heard:
                if low <= hz <= high:
                    for preset in presets:
                        candidate = np.array(preset, dtype=np.float64)
                        candidate[index] = math.log(hz / low) / math.log(high / low)
                        candidates.append(candidate)
                        moves.append((coordinate, name, float(hz)))
        return np.asarray(candidates).reshape(len(candidates), self.spec.n_params), moves

    def embed(self, vector: np.ndarray) -> np.ndarray:
        """An encoded vector (one-hot or class probabilities) -> the full coordinate vector a
        search starts from: (size,) in [0, 1] (a class block plays its highest score)."""
        return np.clip(np.asarray(vector, dtype=np.float64), 0.0, 1.0).copy()

    def presets(self, base: np.ndarray, coordinates: np.ndarray) -> np.ndarray:
        """Candidates' free coordinates (batch, len(free)) put into ``base`` (an embedded vector)
        -> presets (batch, n_params)."""
        full = np.repeat(base[None], len(coordinates), axis=0)
        full[:, self.free] = coordinates
        return self.codec.decode(full)


@dataclass
class SearchResult:
    """What a search found for one synth.

    Attributes:
        preset: (n_params,) the best preset (normalized).
        distance: its ``SearchObjective`` distance, rendered exactly (``history`` holds the
            distances of the fast renders the search made).
        start: the label of the best start, and ``start_distance`` its distance.
        starts: {label: distance} of every start.
        renders: renders used, starts included (not the two exact re-renders at the end);
            ``seconds`` the wall time.
        history: (renders so far, best distance so far) after each batch.
        runs: each CMA-ES run: its start, population size, generations and why it stopped
            (empty: the budget ended it; "classes changed": a sweep found a better point).
        snapshots: {render count: the best preset once that many renders were spent} for the
            counts asked for (taken after the batch that crossed the count).
    """

    preset: np.ndarray
    distance: float
    start: str
    start_distance: float
    start_preset: np.ndarray
    starts: dict[str, float]
    renders: int
    seconds: float
    history: list[tuple[int, float]] = field(default_factory=list)
    snapshots: dict[int, np.ndarray] = field(default_factory=dict)
    runs: list[dict] = field(default_factory=list)


# -- workers -------------------------------------------------------------------------------------
_WORKER: dict = {}


def _warm_up() -> None:
    """Compiles librosa's filter code once per process (see ``asp.parallel``)."""
    SearchObjective(np.random.default_rng(0).normal(0, 0.1, 8192).astype(np.float32))


def _score(spec: SynthSpec, plugin_paths: tuple, note: int, key: tuple, target: np.ndarray, presets) -> list:
    """Worker task: render each preset and score it against the target ``key`` (sent once per
    worker chunk; the last one is kept)."""
    if "renderer" not in _WORKER or _WORKER["plugins"] != plugin_paths:
        _WORKER["renderer"] = Renderer(exact=False, plugin_paths=dict(plugin_paths))
        _WORKER["plugins"] = plugin_paths
    if _WORKER.get("key") != key:
        _WORKER["objective"] = SearchObjective(target, key[1])
        _WORKER["key"] = key
    renderer, objective = _WORKER["renderer"], _WORKER["objective"]
    return [objective(renderer.render(spec, preset, note=note)) for preset in presets]


class Searcher:
    """Scores presets against targets on worker processes and runs searches.

    Args:
        workers: render processes (1: in this process).
        plugin_paths: {synth: plugin path} overriding specs' sources.
    """

    def __init__(self, *, workers: int = 1, plugin_paths: dict[str, str] | None = None):
        if workers < 1:
            raise ASPError(f"search workers must be at least 1, got {workers}")
        self.workers = workers
        self.plugin_paths = tuple(sorted((plugin_paths or {}).items()))
        self.pool = WorkerPool(workers, initializer=_warm_up)
        self._exact: Renderer | None = None  # the final, exact re-renders (made on first use)

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def score(self, spec: SynthSpec, target: np.ndarray, note: int, presets: np.ndarray) -> np.ndarray:
        """Renders presets (batch, n_params) at ``note`` and scores them: (batch,) distances."""
        target = np.asarray(target, dtype=np.float32)
        key = (zlib.crc32(target.tobytes()), spec.render.sample_rate)
        chunks = np.array_split(np.asarray(presets, dtype=np.float64), min(self.workers, len(presets)))
        tasks = [(spec, self.plugin_paths, int(note), key, target, chunk) for chunk in chunks]
        return np.concatenate([np.asarray(s, dtype=np.float64) for s in self.pool.map(_score, tasks)])

    def exact_distances(self, spec: SynthSpec, target: np.ndarray, note: int, presets: np.ndarray) -> np.ndarray:
        """Renders presets exactly (a fresh plugin instance, Faust compiled scalar, as every output
        is rendered) in this process and scores them: (batch,) distances."""
        if self._exact is None:
            self._exact = Renderer(plugin_paths=dict(self.plugin_paths))
        objective = SearchObjective(target, spec.render.sample_rate)
        return np.array([objective(self._exact.render(spec, p, note=note)) for p in presets])

    def search(
        self,
        spec: SynthSpec,
        target: np.ndarray,
        note: int,
        starts: dict[str, np.ndarray],
        budget: Budget,
        *,
        seed: int = 0,
        hold: Iterable[str] = (),
        keep: int = DEFAULT_STARTS_KEPT,
        snapshot_at: Iterable[int] = (),
        progress: bool = True,
    ) -> SearchResult:
        """Finds the preset of ``spec`` whose render at ``note`` is closest to ``target``.

        Scores every start, sweeps the classes of the best one, then runs CMA-ES from it; every
        ``SWEEP_EVERY`` generations a class sweep of the best point may restart the run from a
        better one. When a run converges, it restarts from the next of the ``keep`` best starts,
        then from the best point found with a doubled population (IPOP), until the budget is spent.

        Args:
            spec: the synth.
            target: (n,) mono audio at the spec's sample rate and length.
            note: MIDI note to render at.
            starts: {label: encoded vector (one-hot or class probabilities)}, at least one.
            budget: renders and/or seconds for this search, starts included.
            seed: seeds CMA-ES (a render budget then gives the same result every time).
            hold: parameter names kept at each start's value.
            keep: how many of the best starts CMA-ES runs from.
            snapshot_at: render counts at which to keep the best preset (quality-vs-budget curves).
            progress: a progress bar with the best distance so far.

        Returns:
            The ``SearchResult``.
        """
        if not starts:
            raise ASPError("a search needs at least one start")
        begin = time.perf_counter()
        space = SearchSpace(spec, hold)
        labels = list(starts)
        embedded = np.stack([space.embed(starts[k]) for k in labels])
        start_presets = space.codec.decode(embedded)
        if budget.renders is not None and budget.renders < len(labels):
            raise ASPError(
                f"a search budget of {budget.renders} renders cannot score its {len(labels)} starts; give it at "
                f"least {len(labels)} renders, or fewer starts (--refine-starts)"
            )
        bar = tqdm(
            total=budget.renders,
            desc=f"search {spec.name}",
            unit="render",
            disable=not progress,
            leave=False,
        )
        distances = self.score(spec, target, note, start_presets)
        renders = len(labels)
        bar.update(renders)
        order = np.argsort(distances, kind="stable")
        best_i = int(order[0])
        best = {"distance": float(distances[best_i]), "preset": start_presets[best_i]}
        history = [(renders, best["distance"])]
        marks = sorted(set(int(m) for m in snapshot_at))
        snapshots: dict[int, np.ndarray] = {}

        def snapshot() -> None:
            while marks and marks[0] <= renders:
                snapshots[marks.pop(0)] = np.asarray(best["preset"], dtype=np.float64)

        snapshot()
        bar.set_postfix(best=f"{best['distance']:.3f}")
        rng = np.random.default_rng(seed)

        def spent() -> bool:
            return budget.seconds is not None and time.perf_counter() - begin >= budget.seconds

        def improve(presets: np.ndarray) -> np.ndarray:
            nonlocal best, renders
            scores = self.score(spec, target, note, presets)
            renders += len(presets)
            bar.update(len(presets))
            i = int(np.argmin(scores))
            if scores[i] < best["distance"]:
                best = {"distance": float(scores[i]), "preset": presets[i]}
                bar.set_postfix(best=f"{best['distance']:.3f}")
            history.append((renders, best["distance"]))
            snapshot()
            return scores

        def sweep_classes() -> bool:
            """Tries every other class of every categorical parameter of the best preset (one
            batch), then all the changes that helped together. Returns whether it ran."""
            before = best
            candidates, changes = space.class_changes(before["preset"])
            if not len(candidates) or spent():
                return False
            if budget.renders is not None and budget.renders - renders < len(candidates) + 1:
                return False
            scores = improve(candidates)
            helped: dict[int, tuple[float, float]] = {}
            for (index, value), score in zip(changes, scores):
                if score < before["distance"] and score < helped.get(index, (math.inf, 0.0))[0]:
                    helped[index] = (score, value)
            if len(helped) > 1:
                combined = before["preset"].copy()
                for index, (_, value) in helped.items():
                    combined[index] = value
                improve(combined[None])
            return True

        def rate_hypothesis() -> tuple | None:
            """The first CMA-ES run when the synth has rate parameters (spec ``rate_hz``): each of
            the target's ``modulation_rates`` set on each of the best starts, scored in one
            batch; the run starts from the best of them, with the rate's step size ``RATE_STEP``
            times the others'. None when there is nothing to try or no budget for it."""
            if not space.rates or spent():
                return None
            r = spec.render
            after_start, after_release = MODULATION_WINDOW
            heard = modulation_rates(
                target, r.sample_rate, r.note_start + after_start, r.note_start + r.note_duration + after_release
            )
            candidates, moves = space.rate_changes(start_presets[order[:RATE_HYPOTHESIS_STARTS]], heard)
            if not len(candidates) or (budget.renders is not None and budget.renders - renders < len(candidates) + 4):
                return None
            j = int(np.argmin(improve(candidates)))
            coordinate, name, hz = moves[j]
            stds = np.ones(len(space.free))
            stds[coordinate] = RATE_STEP
            return f"{name} at {hz:.2f} Hz", space.embed(space.codec.encode(candidates[j])), SIGMA0, stds

        initial = best
        sweep_classes()
        if len(space.free) == 0:  # categorical parameters alone: sweep until a sweep finds nothing
            while best is not initial:
                initial = best
                if not sweep_classes():
                    break
        # CMA-ES runs to make: (label, base vector or None for the best point so far, step size,
        # per-coordinate step sizes relative to it or None)
        queue = [(labels[best_i] if best is initial else f"{labels[best_i]}, classes swept", None, SIGMA0, None)]
        queue += [(labels[i], embedded[i], SIGMA0, None) for i in order[1:keep]]
        hypothesis = rate_hypothesis()
        if hypothesis is not None:
            queue.insert(0, hypothesis)
        runs: list[dict] = []
        popsize = space.popsize
        while len(space.free) and not spent():
            if queue:
                label, base, sigma, stds = queue.pop(0)
                if base is None:  # the best point so far (the best start, its classes swept)
                    base = space.embed(space.codec.encode(best["preset"]))
            else:  # every start has been run: restart from the best point with a larger population
                label, base, sigma, stds = "best so far", space.embed(space.codec.encode(best["preset"])), SIGMA0, None
                popsize *= 2
            size = popsize if budget.renders is None else min(popsize, budget.renders - renders)
            if size < 4:  # too few renders left for a generation
                break
            options = {
                "bounds": [0.0, 1.0],
                "popsize": size,
                "seed": np.nan,  # we sample with our own generator
                "randn": lambda *shape: rng.standard_normal(shape),
                "verbose": -9,
                "verb_log": 0,
                "verb_disp": 0,
                "tolfun": 1e-4,
                "tolx": 1e-4,
                "CMA_diagonal": True,  # separable CMA-ES: learns scales in fewer renders than a full covariance
            }
            if len(space.free) == 1:  # cma's step-size cap fails in one dimension (ValueError in tell)
                options["maxstd"] = math.inf
            if stds is not None:
                options["CMA_stds"] = list(stds)
            es = cma.CMAEvolutionStrategy(base[space.free], sigma, options)
            generations = 0
            exhausted = switched = False
            while not es.stop() and not spent():
                if budget.renders is not None and budget.renders - renders < size:
                    exhausted = True  # the rest of the budget cannot pay for a generation
                    break
                generations += 1
                candidates = np.asarray(es.ask())
                scores = improve(space.presets(base, candidates))
                es.tell(list(candidates), [s if math.isfinite(s) else 1e9 for s in scores])
                if space.class_params and generations % SWEEP_EVERY == 0:
                    before = best
                    sweep_classes()
                    switched = best is not before
                    if switched:  # other classes helped: go on from there
                        break
            stop = ["classes changed"] if switched else sorted(es.stop())
            runs.append({"start": label, "popsize": size, "generations": generations, "stop": stop})
            if generations == 0 or exhausted:
                break
            if switched:  # from the new best point, at the step size this run had reached
                step = float(np.median(es.stds))  # a rate hypothesis's run keeps its rate's small step
                queue.insert(0, ("classes changed", None, step, None if stds is None else np.asarray(es.stds) / step))
                continue
            sweep_classes()  # a converged run: its best point's classes, before the next run
        bar.close()
        # the candidates rendered fast: the winner and the best start exactly, and the better one wins
        pair = np.stack([best["preset"], start_presets[best_i]])
        same = np.array_equal(pair[0], pair[1])  # nothing beat the best start: one render is enough
        exact = self.exact_distances(spec, target, note, pair[:1] if same else pair)
        found, start_distance = exact[0], exact[-1]
        preset = pair[0] if found < start_distance else pair[1]
        return SearchResult(
            preset=np.asarray(preset, dtype=np.float64),
            distance=float(min(found, start_distance)),
            start=labels[best_i],
            start_distance=float(start_distance),
            start_preset=start_presets[best_i],
            starts={k: float(d) for k, d in zip(labels, distances)},
            renders=renders,
            seconds=time.perf_counter() - begin,
            history=history,
            snapshots=snapshots,
            runs=runs,
        )
