"""Presets <-> the paper's parameter vectors, vectorized.

A preset is a (n_params,) array of normalized values (see ``data_generation.spec``). Its encoding
keeps the learned parameters in plugin order: a continuous parameter is one value in [0, 1], a
categorical one with n classes is a one-hot block of n values, in place. Decoding takes the argmax
of each block. Every loop below runs over distinct class counts, never over parameters.
"""

from __future__ import annotations

import numpy as np

from asp.errors import ASPError
from data_generation.spec import SynthSpec


class Codec:
    """Encodes and decodes the presets of one synth.

    Attributes:
        spec: the synth.
        size: length of an encoded vector (e.g. 480 for Serum).
        continuous_mask: (size,) bool, True at the positions of continuous parameters.
        blocks: {n: (params, offsets)} for categorical parameters with n classes: their positions
            among the learned parameters and the first position of their one-hot block.
        starts: (learned params,) the first encoded position of each learned parameter.
        segments: (size,) the learned parameter each encoded position belongs to.

    This is the one definition of the encoded layout: the models (``models.Layout``) and the
    metrics (``asp.metrics``) read it from here.
    """

    def __init__(self, spec: SynthSpec):
        self.spec = spec
        classes = spec.classes
        widths = np.maximum(classes, 1)
        starts = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
        self.size = int(widths.sum())
        self.starts = starts
        self.segments = np.repeat(np.arange(len(widths)), widths).astype(np.int64)
        cont = np.flatnonzero(classes == 0)
        self._cont_params = cont
        self._cont_pos = starts[cont]
        self.continuous_mask = np.zeros(self.size, dtype=bool)
        self.continuous_mask[self._cont_pos] = True
        self.blocks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for n in np.unique(classes[classes >= 2]):
            params = np.flatnonzero(classes == n)
            self.blocks[int(n)] = (params, starts[params])

    def _check(self, array: np.ndarray, width: int, what: str) -> np.ndarray:
        array = np.asarray(array, dtype=np.float64)
        if array.ndim not in (1, 2) or array.shape[-1] != width:
            raise ASPError(f"{what} for synth {self.spec.name!r} must have shape (..., {width}), got {array.shape}")
        return array

    def encode(self, presets: np.ndarray) -> np.ndarray:
        """Presets -> encoded vectors.

        Args:
            presets: (n_params,) or (batch, n_params) normalized values.

        Returns:
            (size,) or (batch, size) float32: continuous values and one-hot blocks.
        """
        presets = self._check(presets, self.spec.n_params, "presets")
        single = presets.ndim == 1
        learned = self.spec.snap(np.atleast_2d(presets))[:, self.spec.learned_index]
        out = np.zeros((learned.shape[0], self.size), dtype=np.float32)
        out[:, self._cont_pos] = learned[:, self._cont_params]
        rows = np.arange(learned.shape[0])[:, None]
        for n, (params, offsets) in self.blocks.items():
            k = np.rint(learned[:, params] * (n - 1)).astype(np.int64)
            out[rows, offsets[None, :] + k] = 1.0
        return out[0] if single else out

    def decode(self, vectors: np.ndarray) -> np.ndarray:
        """Encoded (or predicted) vectors -> presets; fixed parameters take their default.

        Args:
            vectors: (size,) or (batch, size); categorical blocks may hold any scores.

        Returns:
            (n_params,) or (batch, n_params) float64 normalized presets.
        """
        vectors = self._check(vectors, self.size, "encoded vectors")
        single = vectors.ndim == 1
        vectors = np.atleast_2d(vectors)
        learned = np.empty((vectors.shape[0], len(self.spec.learned)), dtype=np.float64)
        learned[:, self._cont_params] = np.clip(vectors[:, self._cont_pos], 0.0, 1.0)
        for n, (params, offsets) in self.blocks.items():
            block = vectors[:, offsets[:, None] + np.arange(n)[None, :]]  # (batch, params, n)
            learned[:, params] = block.argmax(axis=-1) / (n - 1)
        out = np.repeat(self.spec.defaults[None, :], vectors.shape[0], axis=0)
        out[:, self.spec.learned_index] = learned
        return out[0] if single else out

    def group_of_position(self) -> np.ndarray:
        """Group label of every encoded position: (size,) str."""
        return np.array([p.group for p in self.spec.learned])[self.segments]
