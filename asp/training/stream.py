"""The data a run trains on, streamed: batches of the memory-mapped npy_data arrays (the mels
read in place from the shard files in the sharded layout, float16 ones converted per batch; see
``data.dataset``) through ``tf.data`` (a Keras PyDataset of the same batches under another
backend; never the whole dataset in memory), and the checks that the files match the specs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import numpy as np

from asp.backend import tensorflow
from asp.errors import ASPError
from data.dataset import Split, mel_file, read_manifest
from data.mels import read_rows
from data_generation.spec import SynthSpec, load_spec
from models import check_mel_shape

tf = tensorflow()


def dataset_specs(data_dir: str | Path, split: Split) -> list[SynthSpec]:
    """The synth specs of a dataset, checked against its files (and manifest when it has one)."""
    manifest = read_manifest(data_dir)
    specs = []
    for name in split.synths:
        spec = load_spec(name)
        if manifest is not None:
            entry = next(s for s in manifest["synths"] if s["name"] == name)
            if entry["hash"] != spec.hash:
                raise ASPError(
                    f"the spec of {name!r} changed since {data_dir} was generated; "
                    "regenerate the dataset (or restore the spec)"
                )
        width = split.params[name].shape[1]
        if width != spec.encoded_size:
            raise ASPError(
                f"{data_dir}/{split.name}_{name}_params.npy has {width} values per sample but the "
                f"{name} spec encodes {spec.encoded_size}; the files do not match the spec"
            )
        specs.append(spec)
    check_mel_shape(split.mels, f"{data_dir}/{mel_file(split)}")
    if split.params_single is not None:
        single = max(s.encoded_size for s in specs)
        if split.params_single.shape[1] != single:
            raise ASPError(
                f"{data_dir}/{split.name}_params_single.npy has width {split.params_single.shape[1]}, "
                f"expected {single} (the largest encoded size)"
            )
    return specs


def batch_keys(approach: str, synths: list[str], note_input: bool = False) -> list[str]:
    keys = ["mel", "note"] if note_input else ["mel"]
    for s in synths:
        keys += [f"params_{s}", f"mask_{s}"]
    if approach == "single":
        keys += ["params_single", "mask_single"]
    return keys


def stream_arrays(split: Split, keys: list[str]) -> dict[str, np.ndarray]:
    """The split's arrays by batch key (memory-mapped; ``params_single``/``mask_single`` cut to
    the widest synth of the run).

    Raises:
        ASPError: a key the split lacks (the single approach's padded files).
    """
    arrays = {"mel": split.mels, "note": split.note}
    for s in split.synths:
        arrays[f"params_{s}"] = split.params[s]
        arrays[f"mask_{s}"] = split.masks[s]
    single = max((split.params[s].shape[1] for s in split.synths if f"params_{s}" in keys), default=0)
    for key in ("params_single", "mask_single"):  # padded to the largest synth of this run
        arrays[key] = None if getattr(split, key) is None else getattr(split, key)[:, :single]
    missing = [k for k in keys if arrays.get(k) is None]
    if missing:
        raise ASPError(f"the {split.name} split lacks {missing}; the single approach needs params_single/mask_single")
    return {k: arrays[k] for k in keys}


def make_stream(
    split: Split,
    indices: np.ndarray,
    keys: list[str],
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    epoch: Callable[[], int] | None = None,
) -> tf.data.Dataset | keras.utils.PyDataset:
    """Batches of the memory-mapped arrays as a ``tf.data.Dataset`` (reshuffled every epoch), or
    a ``keras.utils.PyDataset`` of the same batches in the same order under another backend.

    Only one batch of rows is read at a time, so memory does not grow with the dataset.

    Args:
        epoch: the epoch the run is in, asked when an epoch's batches start (the shuffle's seed is
            ``[seed, epoch]``, so a resumed run continues the uninterrupted run's order); default:
            the epochs this stream has served.
    """
    batches = replica_batches(split, indices, keys, batch_size=batch_size, shuffle=shuffle, seed=seed, epoch=epoch)
    if tf is None:
        return BatchSequence(batches, int(np.ceil(len(indices) / batch_size)))
    arrays = stream_arrays(split, keys)
    signature = {k: tf.TensorSpec((None, *arrays[k].shape[1:]), tf.float32) for k in keys}
    n_batches = int(np.ceil(len(indices) / batch_size))
    stream = tf.data.Dataset.from_generator(batches, output_signature=signature)
    return stream.apply(tf.data.experimental.assert_cardinality(n_batches)).prefetch(2)


def replica_batches(
    split: Split,
    indices: np.ndarray,
    keys: list[str],
    *,
    batch_size: int,
    replicas: int = 1,
    mine: range = range(1),
    shuffle: bool,
    seed: int,
    epoch: Callable[[], int] | None = None,
) -> Callable[[], Iterator[dict]]:
    """A generator function (one call per epoch) of the batches of the replicas ``mine``: each
    global batch of ``batch_size`` rows, in ``make_stream``'s order (the same seeded permutation
    per epoch), is cut into ``replicas`` equal contiguous parts, and the parts of ``mine`` are
    yielded in turn. ``make_stream`` streams the batches of one replica; the rows of each are read
    alone and their pages dropped, so memory does not grow with the dataset.

    Args:
        epoch: the epoch the stream is in, asked at each call (default: the calls so far, as
            ``make_stream`` counts).

    Yields:
        {key: (rows, ...) float32} per replica and global batch; the last global batch is cut to
        a multiple of ``replicas`` rows (``asp.training.distributed.epoch_steps``).
    """
    arrays = stream_arrays(split, keys)
    calls = {"n": 0}

    def batches():
        order = indices
        if shuffle:
            order = np.random.default_rng([seed, calls["n"] if epoch is None else epoch()]).permutation(indices)
        calls["n"] += 1
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            chunk = chunk[: len(chunk) - len(chunk) % replicas]
            if not len(chunk):
                break
            parts = np.split(chunk, replicas)
            for r in mine:
                rows = np.sort(parts[r])
                yield {k: read_rows(arrays[k], rows) for k in keys}  # only these rows stay in memory

    return batches


class BatchSequence(keras.utils.PyDataset):
    """One generator of ``batches()`` per epoch as a Keras PyDataset (for backends other than
    TensorFlow), read in order: the batches and their order are the tf.data stream's."""

    def __init__(self, batches, n_batches: int):
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=4)
        self.batches, self.n_batches, self.it, self.next = batches, n_batches, None, 0

    def __len__(self) -> int:
        return self.n_batches

    def __getitem__(self, index: int) -> dict:
        if self.it is None or index != self.next:  # a new epoch (or out of order: start over there)
            self.it = self.batches()
            for _ in range(index):
                next(self.it)
        self.next = index + 1
        batch = next(self.it)
        if self.next == self.n_batches:
            self.it = None
        return batch
