"""The npy_data layout of the paper's published dataset: writing it, and reading it memory-mapped.

Per split (train, valid, test), N samples:
    {split}_mels.npy            (N, 128, 431) float32 in [0, 1]
    {split}_{synth}_params.npy  (N, encoded size of synth) float32, zeros for other synths' samples
    {split}_{synth}_mask.npy    (N, encoded size of synth) float32, ones for the synth's own samples
    {split}_params_single.npy   (N, largest encoded size) float32, zero-padded (joint decoder)
    {split}_mask_single.npy     (N, largest encoded size) float32, ones over the sample's own size
    {split}_synth.npy           (N,) unicode synth name
    {split}_name.npy            (N,) unicode preset name
    {split}_hpss.npy            (N,) int16 harmonic-percentage bin 20..100 (0: not computed)
plus two extensions of ours: {split}_note.npy (N,) int16 MIDI note, and manifest.json (synths and
their spec hashes, encoding sizes, counts, seed, generator version, layout, mel dtype). The paper's
own dataset has neither; reading it works without them (notes default to 60, synths come from the
file names).

Two storage options of ours, recorded in the manifest and read transparently (``load_split``'s
``mels`` always index as float32 rows; see ``data.mels``):
    "mel_dtype": "float16"   {split}_mels.npy (or the shards) hold float16: half the disk
    "layout": "sharded"      no {split}_mels.npy: the mels stay in the renderers' shard files,
                             shards/shard_<n>.npz, and {split}_mel_shard.npy (N,) int32 and
                             {split}_mel_offset.npy (N,) int64 say where each sample's mel is;
                             train_lookup*.npy hold the nearest-mel lookup's index (data.lookup)
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asp.errors import ASPError
from asp.files import path_problem, read_json
from data import lookup
from data.encoding import Codec
from data.mels import SHARD_FOLDER, MappedMels, ShardMels, read_rows
from data_generation.spec import SynthSpec

SPLITS = ("train", "valid", "test")
MANIFEST = "manifest.json"
GENERATOR_VERSION = "2"  # 2: splits by group (mutations with their parent, amsynth by bank file)
LAYOUTS = ("assembled", "sharded")  # the manifest's "layout" (absent: assembled)


def split_files(split: str, synths: list[str], layout: str = "assembled") -> list[str]:
    """Every file name of one split, for the given synths, in a layout (not the lookup index)."""
    mels = [f"{split}_mels.npy"] if layout == "assembled" else [f"{split}_mel_shard.npy", f"{split}_mel_offset.npy"]
    names = [
        *mels,
        f"{split}_params_single.npy",
        f"{split}_mask_single.npy",
        f"{split}_synth.npy",
        f"{split}_name.npy",
        f"{split}_hpss.npy",
        f"{split}_note.npy",
    ]
    for s in synths:
        names += [f"{split}_{s}_params.npy", f"{split}_{s}_mask.npy"]
    return names


def encode_split(
    specs: list[SynthSpec],
    synth: np.ndarray,
    presets: list[np.ndarray],
) -> dict[str, np.ndarray]:
    """Encodes the parameter arrays of one split.

    Args:
        specs: the dataset's synths, in manifest order.
        synth: (N,) synth name of each sample.
        presets: N normalized presets, each (n_params of its synth,).

    Returns:
        {file stem suffix: array}: ``{s}_params``/``{s}_mask`` per synth, ``params_single``,
        ``mask_single``; all float32.
    """
    n = len(synth)
    single = max(s.encoded_size for s in specs)
    out = {"params_single": np.zeros((n, single), np.float32), "mask_single": np.zeros((n, single), np.float32)}
    for spec in specs:
        rows = np.flatnonzero(synth == spec.name)
        size = spec.encoded_size
        params = np.zeros((n, size), np.float32)
        mask = np.zeros((n, size), np.float32)
        if len(rows):
            encoded = Codec(spec).encode(np.stack([presets[i] for i in rows]))
            params[rows] = encoded
            mask[rows] = 1.0
            out["params_single"][rows, :size] = encoded
            out["mask_single"][rows, :size] = 1.0
        out[f"{spec.name}_params"] = params
        out[f"{spec.name}_mask"] = mask
    return out


@dataclass
class Split:
    """One split of an npy_data folder, memory-mapped (nothing is read until indexed).

    Attributes:
        mels: (N, 128, 431) float32.
        params, masks: {synth: (N, encoded size)}.
        params_single, mask_single: (N, largest encoded size).
        synth, name: (N,) str. hpss, note: (N,) int.
        lookup_index: the nearest-mel lookup's index (``data.lookup``), when the dataset has one.

    ``mels`` is a ``np.memmap`` for float32 mels in ``{split}_mels.npy`` (the published layout),
    else a ``data.mels`` reader of the same shape that returns float32 rows when indexed.
    """

    name: str
    mels: np.ndarray
    params: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    params_single: np.ndarray | None
    mask_single: np.ndarray | None
    synth: np.ndarray
    names: np.ndarray
    hpss: np.ndarray
    note: np.ndarray
    synths: list[str] = field(default_factory=list)
    lookup_index: lookup.LookupIndex | None = None

    def __len__(self) -> int:
        return int(self.mels.shape[0])


def _load(path: Path) -> np.ndarray:
    """One .npy file, memory-mapped; a damaged, truncated or pickled one is an ``ASPError``."""
    fix = "regenerate the dataset (or copy it again)"
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError) as err:
        what = "empty" if size == 0 else f"not a readable .npy file ({' '.join(str(err).split())})"
        raise ASPError(f"{path} is {what}; {fix}") from None
    if dtype.hasobject:
        raise ASPError(f"{path} holds Python objects, which need pickle to read; store names as unicode arrays")
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size < expected:
        raise ASPError(f"{path} is truncated ({size} of {expected} bytes); {fix}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ASPError(f"{path} is not a readable .npy file ({' '.join(str(err).split())}); {fix}") from None


def check_finite(split: Split, rows: np.ndarray | None = None, *, data_dir: str | Path = "", chunk: int = 256) -> None:
    """Refuses NaN or infinite values in a split's mels and parameter vectors (they would turn a
    training run's weights into NaN).

    Reads the mels of ``rows`` (default: all) once, ``chunk`` samples at a time, dropping the
    pages read from this process's memory as it goes (like training's batch stream).

    Raises:
        ASPError: naming the first file holding a non-finite value, and the sample.
    """
    rows = np.arange(len(split)) if rows is None else np.sort(np.asarray(rows))
    arrays = {mel_file(split): split.mels}
    arrays.update({f"{split.name}_{s}_params.npy": split.params[s] for s in split.synths})
    if split.params_single is not None:
        arrays[f"{split.name}_params_single.npy"] = split.params_single
    for file, array in arrays.items():
        if not np.issubdtype(array.dtype, np.floating):
            continue
        for start in range(0, len(rows), chunk):
            block = read_rows(array, rows[start : start + chunk], dtype=array.dtype)
            finite = np.isfinite(block.reshape(len(block), -1)).all(axis=1)
            if not finite.all():
                sample = int(rows[start + int(np.argmin(finite))])
                raise ASPError(
                    f"{Path(data_dir) / file} holds NaN or infinite values (sample {sample}); "
                    "regenerate the dataset, or fix or drop that sample"
                )


def check_not_blank(split: Split, rows: np.ndarray, *, data_dir: str | Path = "", chunk: int = 256) -> None:
    """Refuses a split whose spectrograms (of ``rows``) are all zeros: silent renders, or a damaged
    file; a model would learn nothing from it. Stops reading at the first chunk with a non-zero value.

    Raises:
        ASPError: naming the split and its file.
    """
    rows = np.sort(np.asarray(rows))
    for start in range(0, len(rows), chunk):
        if np.any(split.mels[rows[start : start + chunk]]):
            return
    if len(rows):
        raise ASPError(
            f"every spectrogram of the {split.name} split ({Path(data_dir) / mel_file(split)}) is all "
            "zeros: its sounds are silent or the file is damaged; regenerate the dataset"
        )


def mel_file(split: Split) -> str:
    """Where a split's mels are, relative to its folder (for messages): ``{split}_mels.npy`` or,
    in the sharded layout, ``shards/``."""
    return f"{SHARD_FOLDER}/" if isinstance(split.mels, ShardMels) else f"{split.name}_mels.npy"


def _plain_name(name: object) -> bool:
    """A synth name that can be part of a file name (no folder, not empty)."""
    return isinstance(name, str) and bool(name) and "/" not in name and "\0" not in name and name not in (".", "..")


def read_manifest(data_dir: str | Path) -> dict | None:
    """The manifest of a generated dataset, or None for a folder without one (the paper's data)."""
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        return None
    data = read_json(path, "dataset manifest", "regenerate the dataset")
    synths = data.get("synths") if isinstance(data, dict) else None
    entries_ok = isinstance(synths, list) and all(
        isinstance(s, dict) and _plain_name(s.get("name")) and isinstance(s.get("hash"), str) for s in synths
    )
    if entries_ok and len({s["name"] for s in synths}) != len(synths):
        entries_ok = False  # a synth listed twice
    if not (entries_ok and synths and isinstance(data.get("fingerprint"), str)):
        raise ASPError(
            f"dataset manifest {path} is damaged: it needs 'fingerprint' (text) and 'synths' (a list of "
            "{name, hash, ...}, each name once); regenerate the dataset, or delete the manifest to read the files "
            "without it"
        )
    return data


def data_fingerprint(data_dir: str | Path) -> str:
    """The manifest's fingerprint, or a hash of the files' shapes for a dataset without one."""
    manifest = read_manifest(data_dir)
    if manifest is not None:
        return manifest["fingerprint"]
    shapes = sorted((p.name, p.stat().st_size) for p in Path(data_dir).glob("*.npy"))
    return hashlib.sha256(json.dumps(shapes).encode()).hexdigest()[:24]


def dataset_synths(data_dir: str | Path, split: str = "train") -> list[str]:
    """Synth names of a dataset: from its manifest, else from ``{split}_{synth}_params.npy`` names."""
    manifest = read_manifest(data_dir)
    if manifest is not None:
        return [s["name"] for s in manifest["synths"]]
    pattern = re.compile(rf"^{split}_(.+)_params\.npy$")
    found = [
        m.group(1)
        for p in sorted(Path(data_dir).glob(f"{split}_*_params.npy"))
        if (m := pattern.match(p.name)) and m.group(1) != "params"
    ]
    return sorted(found)


def dataset_layout(manifest: dict | None) -> tuple[str, str]:
    """(layout, mel dtype) a manifest records: ("assembled", "float32") for one without them and
    for a folder without a manifest (the paper's data).

    Raises:
        ASPError: a layout or dtype this version does not know.
    """
    layout = (manifest or {}).get("layout", "assembled")
    dtype = (manifest or {}).get("mel_dtype", "float32")
    if layout not in LAYOUTS or dtype not in ("float32", "float16"):
        raise ASPError(
            f"the dataset manifest records layout {layout!r} and mel dtype {dtype!r}; this version reads "
            f"layouts {', '.join(LAYOUTS)} of float32 or float16 mels: update the toolkit or regenerate the dataset"
        )
    return layout, dtype


def has_split(data_dir: str | Path, split: str) -> bool:
    """Whether ``data_dir`` holds the mels of ``split`` (in either layout)."""
    return any((Path(data_dir) / f"{split}_{stem}.npy").is_file() for stem in ("mels", "mel_shard"))


def load_split(data_dir: str | Path, split: str) -> Split:
    """Opens one split memory-mapped and checks that its files agree.

    Either layout (``LAYOUTS``, recorded in the manifest), float32 or float16 mels: the split's
    ``mels`` index as float32 rows, read on demand (see ``Split``).

    Raises:
        ASPError: for a missing folder or file, or files whose sample counts disagree.
    """
    data_dir = Path(data_dir)
    if split not in SPLITS:
        raise ASPError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    problem = None if data_dir.is_dir() else (path_problem(data_dir) or f"{data_dir} is a file, not a folder")
    if problem is not None and "does not exist" not in problem:  # a file, a symbolic link loop
        raise ASPError(f"data folder {problem}; pass the dataset's folder with -d/--data-dir")
    if problem is not None:
        raise ASPError(
            f"data folder {data_dir} does not exist; generate a dataset with "
            "`make data` (or data_generation/generate.py) or pass -d/--data-dir"
        )
    manifest = read_manifest(data_dir)
    layout, mel_dtype = dataset_layout(manifest)
    mel_path = data_dir / (f"{split}_mels.npy" if layout == "assembled" else f"{split}_mel_shard.npy")
    if not mel_path.is_file():
        if manifest is None and (data_dir / f"{split}_mel_shard.npy").is_file():  # sharded: only the manifest says
            raise ASPError(f"{data_dir / MANIFEST} is missing (a sharded dataset needs it); restore it or regenerate")
        raise ASPError(f"{mel_path} is missing; is {data_dir} an npy_data folder?")
    synths = dataset_synths(data_dir, split)
    if not synths:
        raise ASPError(f"{data_dir} has no {split}_<synth>_params.npy files")
    mels = _open_mels(mel_path) if layout == "assembled" else _shard_mels(data_dir, split, manifest, mel_dtype)
    n = mels.shape[0]

    def need(file: str) -> np.ndarray:
        path = data_dir / file
        if not path.is_file():
            raise ASPError(f"{path} is missing; the dataset is incomplete (regenerate it)")
        array = _load(path)
        if array.shape[0] != n:
            raise ASPError(
                f"{path} has {array.shape[0]} samples but {mel_path.name} has {n}; "
                "the files are from different datasets"
            )
        return array

    def optional(file: str, default: np.ndarray) -> np.ndarray:
        return need(file) if (data_dir / file).is_file() else default

    params = {s: need(f"{split}_{s}_params.npy") for s in synths}
    for s, array in params.items():
        if array.ndim != 2:
            raise ASPError(
                f"{data_dir / f'{split}_{s}_params.npy'} has shape {array.shape}; expected (N, encoded size)"
            )
    masks = {}
    for s in synths:
        mask = need(f"{split}_{s}_mask.npy")
        if mask.ndim == 1:  # a per-sample mask: widen it to the parameter vector
            mask = np.broadcast_to(np.asarray(mask, np.float32)[:, None], params[s].shape)
        masks[s] = mask
    synth = np.asarray(need(f"{split}_synth.npy")).astype(str)
    return Split(
        name=split,
        mels=mels,
        params=params,
        masks=masks,
        params_single=optional(f"{split}_params_single.npy", None),
        mask_single=optional(f"{split}_mask_single.npy", None),
        synth=synth,
        names=np.asarray(optional(f"{split}_name.npy", np.array([""] * n))).astype(str),
        hpss=np.asarray(optional(f"{split}_hpss.npy", np.zeros(n, np.int16))),
        note=np.asarray(optional(f"{split}_note.npy", np.full(n, 60, np.int16))),
        synths=synths,
        lookup_index=lookup.LookupIndex.find(data_dir, split, n),
    )


def _open_mels(mel_path: Path) -> np.ndarray | MappedMels:
    """An assembled split's ``{split}_mels.npy``: the memory map itself (float32) or read as float32
    rows (float16)."""
    mels = _load(mel_path)
    if mels.ndim != 3:
        raise ASPError(f"{mel_path} has shape {mels.shape}; expected (N, 128, 431)")
    if mels.dtype != np.float32:
        if mels.dtype != np.float16:
            raise ASPError(f"{mel_path} holds {mels.dtype} values; expected float32 or float16 mels")
        mels = MappedMels(mels)
    return mels


def _shard_mels(data_dir: Path, split: str, manifest: dict, mel_dtype: str) -> ShardMels:
    """The mels of a sharded split: where each is (``{split}_mel_shard/offset.npy``), checked
    against the shard files."""
    shard = _load(data_dir / f"{split}_mel_shard.npy")
    offset_path = data_dir / f"{split}_mel_offset.npy"
    if not offset_path.is_file():
        raise ASPError(f"{offset_path} is missing; the dataset is incomplete (regenerate it)")
    offset = _load(offset_path)
    if shard.ndim != 1 or offset.shape != shard.shape:
        raise ASPError(
            f"{offset_path} has shape {offset.shape} and {split}_mel_shard.npy {shard.shape}; they must be (N,) "
            "alike: regenerate the dataset"
        )
    mel = manifest.get("mel", {})
    shape = (int(mel.get("n_mels", 128)), int(mel.get("frames", 431)))
    mels = ShardMels(data_dir / SHARD_FOLDER, shard, offset, shape, mel_dtype, f"the {split} split of {data_dir}")
    mels.check(manifest.get("shard_tasks"))  # swapped shards, a changed dtype (datasets made since the check)
    return mels


def mean_vector(split: Split, synth: str, rows: np.ndarray | None = None) -> np.ndarray | None:
    """The mean encoded vector of a synth's samples (the training-mean predictor): (encoded size,)
    float64, or None when there are none.

    Continuous positions hold the mean value; a categorical block holds the class frequencies, so
    ``Codec.decode`` turns it into the most frequent class.

    Args:
        split: a loaded split.
        synth: one of its synths.
        rows: restrict to these sample indices (default: all).
    """
    candidates = np.arange(len(split.synth)) if rows is None else np.asarray(rows)
    own = candidates[split.synth[candidates] == synth]
    if not len(own):
        return None
    return np.asarray(split.params[synth][np.sort(own)], dtype=np.float64).mean(axis=0)


def pick_test_index(data_dir: str | Path, sample: int, *, synth: str | None, hpss: int | None, seed: int | None) -> int:
    """``-s`` / ``--synth`` / ``--hpss`` -> an index into the test split (-1: random among matches)."""
    split = load_split(data_dir, "test")
    n = len(split)
    if n == 0:
        raise ASPError(f"the test split of {data_dir} is empty; use a dataset with test samples")
    if sample >= 0:
        if sample >= n:
            raise ASPError(
                f"test sample {sample} is out of range: the test split of {data_dir} has {n} samples (0..{n - 1})"
            )
        return sample
    match = np.ones(n, dtype=bool)
    if synth is not None:
        match &= split.synth == synth
    if hpss is not None:
        if not split.hpss.any():
            raise ASPError(
                f"the test split of {data_dir} has no HPSS labels (generated with --no-hpss); drop --hpss, "
                "or pick a sample with -s or --synth"
            )
        match &= split.hpss == hpss
    candidates = np.flatnonzero(match)
    if len(candidates) == 0:
        have = f"synths {', '.join(sorted(set(split.synth)))}; hpss bins {sorted(set(split.hpss.tolist()))}"
        raise ASPError(f"no test sample matches --synth {synth} --hpss {hpss} ({have})")
    return int(np.random.default_rng(seed).choice(candidates))


def training_rows(split: Split, synths: list[str], limit: int | None, seed: int) -> np.ndarray:
    """The rows of a training split that a run trains on: the samples of its synths, at most
    ``limit`` of them (a seeded choice: how ``--max-samples`` takes them), ascending."""
    idx = np.flatnonzero(np.isin(split.synth, synths))
    if limit is not None and len(idx) > limit:
        idx = np.sort(np.random.default_rng(seed).permutation(idx)[:limit])
    return idx
