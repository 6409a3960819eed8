"""How a split's mels are read: float32 rows, whatever their storage.

A split of the published layout keeps its mels in one ``{split}_mels.npy``, memory-mapped; when
that file holds float32 the memory map itself is the split's ``mels``. Two other storages read
through the classes here, which index like that array and always return float32:

    MappedMels    a float16 ``{split}_mels.npy`` (``generate.py --mel-dtype float16``): each read
                  converted to float32, and the pages read dropped from this process's memory
    ShardMels     the sharded layout (``generate.py --layout sharded``): the mels stay in the shard
                  files the renderers wrote (``shards/shard_<n>.npz``, uncompressed), each sample
                  read in place at its byte offset with ``os.pread``: nothing is memory-mapped, so
                  what a process holds is the rows it asked for, however large the dataset

``read_rows`` reads rows of any of these (or of a plain memory map) as a float32 copy and drops
the pages read from this process's memory (``drop_pages``: ``madvise`` on the ``mmap.mmap`` that
a memory map's ``base`` is), the one way every reader of a split's arrays does it: training's
batches, the checks, the lookup. ``npz_member`` finds where an uncompressed ``.npz`` member's
array starts in its file (the builder records every sample's offset with it).
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from asp.errors import ASPError

SHARD_FOLDER = "shards"  # the sharded layout's shard files, inside the dataset folder
MEL_DTYPES = ("float32", "float16")
OPEN_FILES = 64  # shard files a ShardMels keeps open at once (least recently read closed first)


def shard_file(index: int) -> str:
    """The name of shard ``index``'s file (the builder's and the reader's one definition)."""
    return f"shard_{index:06d}.npz"


def npz_member(path: str | Path, member: str) -> tuple[int, np.dtype, tuple[int, ...]]:
    """Where the array ``member`` of an uncompressed ``.npz`` (``np.savez``) starts in the file.

    Returns:
        (byte offset of the array's first element, its dtype, its shape); C order.

    Raises:
        ValueError: the member is compressed, missing, or not a plain .npy array.
    """
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member + ".npy")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"{member} is compressed in {path}")
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if local[:4] != b"PK\x03\x04":
            raise ValueError(f"{path}: no local zip header for {member}")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        if fortran or dtype.hasobject:
            raise ValueError(f"{member} in {path} is not a C-order array of numbers")
        return f.tell(), dtype, tuple(shape)


def mapping(array) -> mmap.mmap | None:
    """The memory map behind an array (``np.load(..., mmap_mode="r")`` or a view of one: the
    ``mmap.mmap`` its ``base`` chain ends in), None for an array in memory or a reader here."""
    while array is not None and not isinstance(array, mmap.mmap):
        array = getattr(array, "base", None)
    return array


def drop_pages(*arrays) -> None:
    """Drops the pages of the memory maps behind ``arrays`` from this process's memory
    (``MADV_DONTNEED``: the file is untouched, a later read maps them again), so that reading a
    large file block by block holds one block, not the file."""
    for m in {id(m): m for a in arrays if (m := mapping(a)) is not None}.values():
        m.madvise(mmap.MADV_DONTNEED)


def read_rows(array, rows: np.ndarray, dtype=np.float32) -> np.ndarray:
    """A copy of some rows of an array of any storage (a memory map, ``MappedMels``,
    ``ShardMels``, an array in memory) as ``dtype``, with the pages read dropped.

    Args:
        array: (N, ...) rows. rows: (n,) ascending row numbers; a run of consecutive ones is read
            as one slice.

    Returns:
        (n, ...) ``dtype``.
    """
    rows = np.asarray(rows)
    contiguous = len(rows) > 0 and bool((np.diff(rows) == 1).all())
    out = np.array(array[rows[0] : rows[-1] + 1] if contiguous else array[rows], dtype=dtype)
    drop_pages(array)
    return out


def _rows(key, n: int) -> np.ndarray:
    """The row indices an index of the first axis selects (int, slice, ints, booleans)."""
    if isinstance(key, slice):
        return np.arange(n)[key]
    rows = np.asarray(key)
    if rows.dtype == bool:
        if rows.shape != (n,):
            raise IndexError(f"boolean index of shape {rows.shape} for {n} rows")
        return np.flatnonzero(rows)
    if not np.issubdtype(rows.dtype, np.integer):
        raise IndexError(f"mels are indexed by row numbers, not {rows.dtype}")
    if rows.size and (rows.min() < -n or rows.max() >= n):
        raise IndexError(f"row {int(rows.max() if rows.max() >= n else rows.min())} is out of range for {n} rows")
    return np.where(rows < 0, rows + n, rows)


class _Rows:
    """What the readers share: numpy-like indexing of the first axis, float32 out."""

    shape: tuple[int, int, int]
    dtype = np.dtype(np.float32)
    ndim = 3
    stored_dtype: np.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        extra = ()
        if isinstance(key, tuple):
            key, extra = key[0], key[1:]
        scalar = isinstance(key, (int, np.integer))
        rows = _rows(np.array([key]) if scalar else key, self.shape[0])
        out = self.read(rows.reshape(-1)).reshape(*rows.shape, *self.shape[1:])
        out = out[0] if scalar else out
        return out[(slice(None),) * (0 if scalar else 1) + extra] if extra else out

    def __array__(self, dtype=None, copy=None):
        out = self.read(np.arange(self.shape[0]))
        return out if dtype is None else out.astype(dtype, copy=False)

    def read(self, rows: np.ndarray) -> np.ndarray:  # pragma: no cover (each reader defines it)
        raise NotImplementedError


class MappedMels(_Rows):
    """A ``{split}_mels.npy`` of another dtype (float16), memory-mapped, read as float32 rows.

    Attributes:
        shape: (N, 128, frames). dtype: float32 (what reads return). stored_dtype: the file's.
    """

    def __init__(self, array: np.memmap):
        self.array, self.shape, self.stored_dtype = array, tuple(array.shape), array.dtype

    def read(self, rows: np.ndarray) -> np.ndarray:
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), *self.shape[1:]), np.float32)
        out[order] = self.array[rows[order]]
        drop_pages(self.array)
        return out


class ShardMels(_Rows):
    """A split's mels left in the shard files, read in place.

    Args:
        folder: the folder of the shard files.
        shard: (N,) the shard number holding each sample's mel.
        offset: (N,) the byte offset of that mel in its shard file.
        shape: (n_mels, frames) of one mel. stored_dtype: float32 or float16.
        name: how errors name the split (e.g. ``npy_big/train``).
    """

    def __init__(
        self,
        folder: Path,
        shard: np.ndarray,
        offset: np.ndarray,
        shape: tuple[int, int],
        stored_dtype: str,
        name: str,
    ):
        self.folder, self.name = Path(folder), name
        self.shard, self.offset = np.asarray(shard, np.int64), np.asarray(offset, np.int64)
        self.shape = (len(self.shard), *shape)
        self.stored_dtype = np.dtype(stored_dtype)
        self.row_bytes = int(np.prod(shape)) * self.stored_dtype.itemsize
        self._files: OrderedDict[int, int] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, tasks: list | None = None) -> None:
        """Refuses a missing or truncated shard file (one ``stat`` per shard), one whose mels are not
        of the dtype and shape the manifest says (one read of each shard's headers) and, given the
        manifest's ``tasks`` (each shard's task id, by number), one that is not the shard its
        number names (swapped, or from another dataset).

        Raises:
            ASPError: naming the first such file.
        """
        if not len(self.shard):
            return
        for number in np.unique(self.shard):
            self._check_shard(int(number), tasks)
        order = np.argsort(self.shard, kind="stable")
        shards, first = np.unique(self.shard[order], return_index=True)
        ends = np.maximum.reduceat(self.offset[order], first) + self.row_bytes
        for number, end in zip(shards, ends):
            path = self.folder / shard_file(int(number))
            try:
                size = path.stat().st_size
            except OSError:
                raise ASPError(
                    f"{path} is missing ({self.name} reads its mels from it); the dataset is incomplete: "
                    "regenerate it (or copy its shards/ folder again)"
                ) from None
            if size < end:
                raise ASPError(f"{path} is truncated ({size} of at least {end} bytes); regenerate the dataset")

    def _check_shard(self, number: int, tasks: list | None) -> None:
        path = self.folder / shard_file(number)
        if not path.is_file():
            return  # the size check below names it
        expected = tasks[number] if tasks is not None and 0 <= number < len(tasks) else None
        try:
            _, dtype, shape = npz_member(path, "mels")
            if tasks is not None:
                with np.load(path, allow_pickle=False) as z:
                    task = bytes(z["task"]).decode(errors="replace")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return  # a cut file: the size check names it; the reads need no zip directory
        if dtype != self.stored_dtype or tuple(shape[1:]) != tuple(self.shape[1:]):
            raise ASPError(
                f"{path} holds {dtype} mels of shape {tuple(shape[1:])}, but the dataset's manifest says "
                f"{self.stored_dtype} of shape {tuple(self.shape[1:])}: the manifest was changed; restore it or "
                "regenerate the dataset"
            )
        if tasks is not None and task != expected:
            raise ASPError(
                f"{path} is not shard {number} of this dataset (its task id is {task!r}, the manifest's "
                f"{expected!r}): shard files were swapped or copied from another dataset; copy the dataset's "
                "shards/ folder again, or regenerate it"
            )

    def _fd(self, number: int) -> int:
        fd = self._files.pop(number, None)
        if fd is None:
            path = self.folder / shard_file(number)
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError as err:
                raise ASPError(f"cannot read {path} ({err.strerror}); regenerate the dataset") from None
            while len(self._files) >= OPEN_FILES:
                os.close(self._files.popitem(last=False)[1])
        self._files[number] = fd
        return fd

    def read(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), n_mels, frames) float32: the rows, read in file order, returned in ``rows``' order."""
        rows = np.asarray(rows, np.int64)
        stored = np.empty((len(rows), *self.shape[1:]), self.stored_dtype)
        flat = stored.reshape(len(rows), -1)
        order = np.lexsort((self.offset[rows], self.shard[rows]))
        with self._lock:
            for i in order:
                number, offset = int(self.shard[rows[i]]), int(self.offset[rows[i]])
                got = os.preadv(self._fd(number), [memoryview(flat[i]).cast("B")], offset)
                if got != self.row_bytes:
                    raise ASPError(
                        f"{self.folder / shard_file(number)} is truncated (sample at byte {offset}); "
                        "regenerate the dataset"
                    )
        return stored if stored.dtype == np.float32 else stored.astype(np.float32)

    def close(self) -> None:
        with self._lock:
            while self._files:
                os.close(self._files.popitem()[1])

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: os may be gone
            pass

    def __getstate__(self):  # worker processes open their own files
        state = self.__dict__.copy()
        state["_files"], state["_lock"] = OrderedDict(), None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
