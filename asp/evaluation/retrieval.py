"""Audio-to-preset retrieval: rank a gallery of presets by the model's prediction, report recall@k.

The protocol (docs/paper.md, "The DX7 benchmark"): the queries are the sounds of one synth in a
test split; the gallery holds every distinct preset of those sounds and fresh random presets of
the synth (a seed of its own) up to ``gallery`` presets. For each query the model predicts an
encoded preset from the sound's mel; the gallery is ranked by the mean squared distance of each
gallery preset's encoded vector (``data.encoding.Codec``) to the prediction, and recall@k is the
share of queries whose true preset is among the first k. A query's rank counts the gallery
presets strictly closer than its own (ties go to the true preset). Chance is k / gallery.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asp.errors import ASPError
from asp.files import read_json, write_json
from data.dataset import load_split
from data.encoding import Codec
from data_generation.presets import random_presets
from data_generation.spec import SynthSpec

GALLERY = 4096  # SynAPSE's gallery size
RECALL_AT = (1, 5, 10)


@dataclass(frozen=True)
class Gallery:
    """Presets to rank: (size, encoded size) float32 vectors; ``truth[i]``: query i's row in it."""

    vectors: np.ndarray
    truth: np.ndarray
    distinct_queries: int


def build_gallery(spec: SynthSpec, query_vectors: np.ndarray, *, size: int = GALLERY, seed: int = 0) -> Gallery:
    """The distinct presets of the queries, then fresh random presets of ``spec`` up to ``size``.

    Args:
        query_vectors: (n, encoded size) the queries' true encoded presets (a preset at several
            notes appears once in the gallery).
        size: presets in the gallery, at least the distinct queries'.
        seed: the random presets' seed (mixed with the synth's name and "gallery").
    """
    query_vectors = np.asarray(query_vectors, dtype=np.float32)
    distinct, truth = np.unique(query_vectors, axis=0, return_inverse=True)
    if size < len(distinct):
        raise ASPError(f"a gallery of {size} presets cannot hold the {len(distinct)} distinct presets of the queries")
    rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode()), zlib.crc32(b"gallery")])
    fill = Codec(spec).encode(random_presets(spec, size - len(distinct), rng)).astype(np.float32)
    return Gallery(np.concatenate([distinct, fill]), np.asarray(truth).ravel(), len(distinct))


def ranks(predicted: np.ndarray, gallery: Gallery, chunk: int = 256) -> np.ndarray:
    """Each query's rank (0 = first) of its true preset in the gallery ordered by distance to its
    prediction: (n,) int64.

    Args:
        predicted: (n, encoded size) the model's predictions, one per query, in query order.
    """
    predicted = np.asarray(predicted, dtype=np.float32)
    if predicted.shape != (len(gallery.truth), gallery.vectors.shape[1]):
        raise ASPError(
            f"retrieval needs one prediction of width {gallery.vectors.shape[1]} per query "
            f"({len(gallery.truth)}), got shape {predicted.shape}"
        )
    out = np.empty(len(predicted), dtype=np.int64)
    for start in range(0, len(predicted), chunk):
        block = predicted[start : start + chunk]
        distance = ((block[:, None, :] - gallery.vectors[None, :, :]) ** 2).mean(axis=-1)
        own = distance[np.arange(len(block)), gallery.truth[start : start + chunk]]
        out[start : start + chunk] = (distance < own[:, None]).sum(axis=1)
    return out


def recall_at(rank: np.ndarray, ks: tuple[int, ...] = RECALL_AT) -> dict[int, float]:
    """{k: share of queries ranked below k}."""
    rank = np.asarray(rank)
    return {k: float(np.mean(rank < k)) for k in ks}


def run_retrieval(
    run_dir: str | Path,
    test_dir: str | Path,
    out: str | Path,
    *,
    synth: str = "dx7",
    split: str = "test",
    size: int = GALLERY,
    seed: int = 0,
) -> dict:
    """Scores a trained model's retrieval of ``synth``'s sounds of ``test_dir``'s split and writes
    ``out`` (JSON): recall@1/5/10, chance, the gallery and query counts, and the same split by the
    source of the query's preset (its name: ``random_*`` presets, the others human-made).

    Raises:
        ASPError: a model without a ``synth`` head, a split without its sounds, or an ``out``
            that is not an earlier retrieval result (never overwritten).
    """
    from models import config_specs, load_model

    out = Path(out)
    if out.exists():
        earlier = read_json(out, "retrieval result") if out.is_file() else None
        if not isinstance(earlier, dict) or "recall_at" not in earlier:
            raise ASPError(f"{out} exists and is no retrieval result; choose another --out, nothing was changed")
    split_data = load_split(test_dir, split)
    model, config = load_model(run_dir)
    specs = {s.name: s for s in config_specs(config)}
    if synth not in specs:
        raise ASPError(f"the model {run_dir} predicts {', '.join(specs)}, not {synth!r}; train one with it")
    rows = np.flatnonzero(split_data.synth == synth)
    if not len(rows) or synth not in split_data.params:
        raise ASPError(f"the {split} split of {test_dir} holds no {synth} sounds")
    spec = specs[synth]
    truth = np.asarray(split_data.params[synth])[rows]
    gallery = build_gallery(spec, truth, size=size, seed=seed)
    mels = np.stack([split_data.mels[r] for r in rows])
    predicted = model.predict_vectors(mels, notes=split_data.note[rows])[synth]
    rank = ranks(predicted, gallery)
    human = np.array([not str(n).startswith("random") for n in split_data.names[rows]])
    result = {
        "model": str(run_dir),
        "test_dir": str(test_dir),
        "synth": synth,
        "queries": len(rows),
        "gallery": size,
        "distinct_query_presets": gallery.distinct_queries,
        "seed": seed,
        "recall_at": recall_at(rank),
        "chance": {k: k / size for k in RECALL_AT},
        "median_rank": float(np.median(rank)),
        "by_source": {
            source: {"queries": int(mask.sum()), "recall_at": recall_at(rank[mask])}
            for source, mask in (("human", human), ("random", ~human))
            if mask.any()
        },
    }
    write_json(out, result)
    return result
