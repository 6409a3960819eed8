"""What a search may spend (``Budget``) and what it moves (``SearchSpace``): continuous
coordinates for CMA-ES, categorical parameters as classes, rate parameters by their Hz."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from asp.errors import ASPError
from data.encoding import Codec
from data_generation.spec import SynthSpec

# the most a search may be given per synth: a million renders already take hours on a few cores
# (a render and its score take ~20-40 ms per worker), a day of seconds is more than any use
MAX_RENDERS = 1_000_000
MAX_SECONDS = 86_400.0


@dataclass(frozen=True)
class Budget:
    """How much a search may spend per synth: renders (reproducible) and/or seconds.

    The search stops at whichever comes first; at least one must be given, and neither may
    exceed ``MAX_RENDERS`` or ``MAX_SECONDS``.
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
        if self.renders is not None and self.renders > MAX_RENDERS:
            raise ASPError(
                f"the search budget must be at most {MAX_RENDERS} renders per synth (a million renders already take "
                f"hours), got {self.renders}"
            )
        if self.seconds is not None and self.seconds > MAX_SECONDS:
            raise ASPError(
                f"the search budget must be at most {MAX_SECONDS:g} seconds (a day) per synth, got {self.seconds:g}"
            )

    def describe(self) -> str:
        parts = ([f"{self.renders} renders"] if self.renders is not None else []) + (
            [f"{self.seconds:g} s"] if self.seconds is not None else []
        )
        return " or ".join(parts)


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
