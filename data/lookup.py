"""The nearest-neighbour lookup, written once: its distance, the exact scan and the index for large
training splits.

The distance between two mels is the Euclidean distance of their flattened float32 values
(``squared_distances``); ``nearest`` ranks a split's training sounds by it, for the nearest
baseline and the search's starts (``nearest_rows``: one synth's sounds) and for the real-sound
experiment (``asp.evaluation.real.nearest_any``: any synth's); ``nearest_vectors`` ranks the
shipped model's index of training latents. The exact scan reads the candidates' mels a block at a
time, dropping the pages read (``data.mels.read_rows``). Over a large split that scan reads every
candidate mel (220 KB each) per lookup; the index avoids that:

- a PCA basis of the mels (``DIMS`` components), fitted on a seeded sample of ``FIT_SAMPLES``
  training mels when the dataset is generated, and every training mel's coordinates in it
  (``{split}_lookup.npy``, (N, DIMS) float32: 256 bytes a sound);
- a lookup projects the query, scans the coordinates in chunks for the ``RERANK`` closest, reads
  those mels and re-ranks them by the exact distance: the answer is exact whenever the true
  nearest is among those candidates (recall measured by ``bench/lookup.py``, docs/datasets.md).

The projection is orthonormal, so a coordinate distance never exceeds the exact one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from asp.errors import ASPError
from data.mels import read_rows

if TYPE_CHECKING:
    from data.dataset import Split

DIMS = 64  # PCA components of the index
FIT_SAMPLES = 1024  # training mels the basis is fitted on (seeded choice)
RERANK = 64  # candidates per query re-ranked by the exact distance
EXACT_MAX = 10_000  # at most this many candidates: the exact scan, index or not
CHUNK = 65_536  # index rows scanned at once


def squared_distances(queries: np.ndarray, block: np.ndarray) -> np.ndarray:
    """The lookup's distance: squared Euclidean between flattened mels.

    Args:
        queries: (q, D) float32. block: (n, D) float32.

    Returns:
        (q, n) float32.
    """
    return (queries**2).sum(1)[:, None] + (block**2).sum(1)[None, :] - 2.0 * queries @ block.T


def fit_basis(sample: np.ndarray, dims: int = DIMS) -> tuple[np.ndarray, np.ndarray]:
    """A PCA basis of mels.

    Args:
        sample: (n, D) float32 flattened mels.
        dims: components wanted (fewer when the sample spans fewer).

    Returns:
        mean (D,) float32 and components (d, D) float32, orthonormal rows, largest variance first.
    """
    sample = np.asarray(sample, np.float32)
    mean = sample.mean(axis=0)
    centred = sample - mean
    gram = (centred @ centred.T).astype(np.float64)  # (n, n): cheaper than an SVD of (n, D)
    values, vectors = np.linalg.eigh(gram)
    order = np.argsort(values)[::-1]
    # directions of variance above float32 rounding (relative to the largest)
    keep = order[values[order] > values.max() * 1e-6][:dims] if len(values) else order[:0]
    components = centred.T @ vectors[:, keep].astype(np.float32)  # (D, d), orthogonal up to rounding
    components = np.linalg.qr(components.astype(np.float64))[0].T  # orthonormal, same order
    return mean.astype(np.float32), components.astype(np.float32)


def project(mels: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """(b, ...) mels -> (b, d) float32 coordinates in the basis."""
    flat = np.asarray(mels, np.float32).reshape(len(mels), -1)
    return (flat - mean) @ components.T


class LookupIndex:
    """A split's index files, opened lazily: ``{split}_lookup.npy`` (N, d) coordinates,
    ``{split}_lookup_mean.npy`` (D,) and ``{split}_lookup_components.npy`` (d, D)."""

    def __init__(self, folder: str | Path, split: str):
        self.paths = {key: Path(folder) / f"{split}_lookup{key}.npy" for key in ("", "_mean", "_components")}
        self._arrays: dict[str, np.ndarray] | None = None

    @classmethod
    def find(cls, folder: str | Path, split: str, n: int) -> LookupIndex | None:
        """The split's index when its files are there and cover its ``n`` rows, else None."""
        index = cls(folder, split)
        if not all(p.is_file() for p in index.paths.values()):
            return None
        try:
            coords = np.load(index.paths[""], mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return None
        return index if coords.ndim == 2 and coords.shape[0] == n else None

    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = {
                key: np.load(path, mmap_mode="r" if key == "" else None, allow_pickle=False)
                for key, path in self.paths.items()
            }
        return self._arrays

    def candidates(self, queries: np.ndarray, rows: np.ndarray, k: int, chunk: int = CHUNK) -> np.ndarray:
        """The ``k`` rows among ``rows`` whose coordinates are closest to each query's.

        Args:
            queries: (q, ...) mels. rows: (n,) ascending candidate rows.

        Returns:
            (q, min(k, n)) rows, ascending within each query (ties: the lower row).
        """
        a = self.arrays()
        coords = a[""]
        q = project(queries, a["_mean"], a["_components"])
        k = min(k, len(rows))
        best = np.full((len(q), 0), np.inf, np.float32)
        best_rows = np.zeros((len(q), 0), np.int64)
        for start in range(0, len(rows), chunk):
            idx = rows[start : start + chunk]
            dist = squared_distances(q, np.asarray(coords[idx], np.float32))
            merged = np.concatenate([best, dist], axis=1)
            merged_rows = np.concatenate([best_rows, np.broadcast_to(idx, dist.shape)], axis=1)
            keep = np.argsort(merged, axis=1, kind="stable")[:, :k]
            best = np.take_along_axis(merged, keep, axis=1)
            best_rows = np.take_along_axis(merged_rows, keep, axis=1)
        return np.sort(best_rows, axis=1)


def nearest_vectors(vectors: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` rows of ``vectors`` (n, d) nearest the (d,) float32 ``query`` by squared Euclidean
    distance, nearest first (ties: the lower row): e.g. the shipped model's index of training
    latents (``asp.inference.Matcher.nearest_starts``)."""
    distance = np.sum((np.asarray(vectors, dtype=np.float32) - query) ** 2, axis=1)
    return np.argsort(distance, kind="stable")[:k]


def nearest(
    split, mels: np.ndarray, candidates: np.ndarray, k: int = 1, *, chunk: int = 256, index: bool = True
) -> np.ndarray:
    """The ``k`` candidate rows of a split whose mels are closest to each query mel.

    Over more than ``EXACT_MAX`` candidates of a split with a lookup index (``index``), the index
    shortlists ``RERANK`` rows per query, re-ranked by the exact distance; otherwise every
    candidate's mel is read, ``chunk`` at a time, and compared (``scan``).

    Args:
        split: a ``data.dataset.Split`` (its ``mels`` and ``lookup_index``).
        mels: (q, 128, frames) query mels.
        candidates: (n,) ascending rows of the split, n >= 1.
        k: rows per query, closest first.
        index: False: the exact scan, whatever the size (``bench/lookup.py`` compares the two).

    Returns:
        (q, min(k, n)) int64 rows, closest first (ties: the lower row).
    """
    queries = np.asarray(mels, dtype=np.float32).reshape(len(mels), -1)
    if index and split.lookup_index is not None and len(candidates) > EXACT_MAX:
        shortlist = split.lookup_index.candidates(queries, candidates, max(k, RERANK))
        return np.concatenate([scan(split.mels, q[None], rows, k, chunk) for q, rows in zip(queries, shortlist)])
    return scan(split.mels, queries, candidates, k, chunk)


def scan(
    mels, queries: np.ndarray, candidates: np.ndarray, k: int, chunk: int, *, progress: bool = False
) -> np.ndarray:
    """The exact scan: the (q, min(k, n)) rows among ``candidates`` (ascending) whose mels are
    closest to each of the (q, D) float32 ``queries`` (``squared_distances``; ties: the lower row).
    ``mels``: the split's (N, 128, frames), read ``chunk`` rows at a time; ``progress``: a bar."""
    k = min(k, len(candidates))
    best = np.full((len(queries), 0), np.inf)
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    starts = range(0, len(candidates), chunk)
    for start in tqdm(starts, desc="lookup", unit="block", leave=False) if progress else starts:
        idx = candidates[start : start + chunk]
        dist = squared_distances(queries, read_rows(mels, idx).reshape(len(idx), -1))
        merged = np.concatenate([best, dist], axis=1)
        merged_rows = np.concatenate([best_rows, np.broadcast_to(idx, dist.shape)], axis=1)
        keep = np.argsort(merged, axis=1, kind="stable")[:, :k]
        best = np.take_along_axis(merged, keep, axis=1)
        best_rows = np.take_along_axis(merged_rows, keep, axis=1)
    return best_rows


def nearest_rows(
    train: Split,
    mels: np.ndarray,
    synth: str,
    k: int = 1,
    chunk: int = 256,
    *,
    within: np.ndarray | None = None,
    index: bool = True,
) -> np.ndarray:
    """The training rows of ``synth`` whose mels are closest (Euclidean) to each query mel.

    Over more than ``EXACT_MAX`` candidates of a split with a lookup index, the
    index shortlists ``RERANK`` rows per query, re-ranked by the exact distance;
    otherwise every candidate's mel is read (in chunks) and compared.

    Args:
        train: the split searched (its mels are read in chunks).
        mels: (batch, 128, 431) query mels.
        synth: only rows of this synth are candidates.
        k: how many rows per query, closest first.
        within: only these rows are candidates (default: all; e.g. the rows a run trained on).
        index: False: the exact scan, whatever the size (``bench/lookup.py`` compares the two).

    Returns:
        (batch, min(k, candidates)) int64 row indices into ``train``.

    Raises:
        ASPError: the split has no sample of ``synth``.
    """
    candidates = np.flatnonzero(train.synth == synth)
    if within is not None:
        candidates = np.intersect1d(candidates, within)
    if len(candidates) == 0:
        raise ASPError(f"the training split has no {synth} samples to look up the nearest sounds in")
    return nearest(train, mels, candidates, k, chunk=chunk, index=index)
