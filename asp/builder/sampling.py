"""Which presets a dataset takes (human, mutated, random) and how they split: by group, so that
no test preset is a near-copy of a training one (a human preset and its mutations form one group,
amsynth bank files one each when a synth has at least ``MIN_BANK_GROUPS``)."""

from __future__ import annotations

import glob
import zlib
from dataclasses import replace

import numpy as np

from asp.errors import ASPError
from data_generation.presets import human_presets, mutate_presets, random_presets, resolve_path
from data_generation.spec import SynthSpec

SOURCES = ("human", "mutate", "random")  # the default; "holdout" only when asked for
ALL_SOURCES = (*SOURCES, "holdout")  # holdout: the spec's held-out human presets (a test set's, never trained on)
SPLIT_SHARES = (0.8, 0.1, 0.1)
MIN_BANK_GROUPS = 3  # fewer amsynth bank files than this: their presets are grouped one by one


def _rng(seed: int, *keys: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def _human_groups(spec: SynthSpec) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The spec's human presets and the split group of each.

    Presets of amsynth bank files are grouped by bank file when the synth has at least
    ``MIN_BANK_GROUPS`` bank files; every other human preset is a group of its own.

    Returns:
        names: h preset names, in ``human_presets`` order.
        presets: (h, n_params) normalized presets, equal to ``human_presets(spec)``.
        groups: (h,) int64 group ids, numbered from 0 in order of first appearance.
    """
    names: list[str] = []
    rows: list[np.ndarray] = [np.zeros((0, spec.n_params))]
    banks: list[str | None] = []  # the bank file of each preset, None outside banks
    for source in spec.presets:
        files: list[str] = []
        if source.get("kind") == "amsynth_bank" and source.get("path"):
            files = sorted(glob.glob(str(resolve_path(spec, source["path"]))))
        # one bank file at a time (read_banks reads them in this sorted order); a pattern that
        # matches nothing goes through whole, so that human_presets reports it
        parts = [{**source, "path": glob.escape(f)} for f in files] or [source]
        for part, bank in zip(parts, files or [None]):
            part_names, part_rows = human_presets(replace(spec, presets=(part,)))
            names += part_names
            rows.append(part_rows)
            banks += [bank] * len(part_names)
    by_bank = len({b for b in banks if b is not None}) >= MIN_BANK_GROUPS
    keys = [(b,) if by_bank and b is not None else i for i, b in enumerate(banks)]
    ids = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    return names, np.concatenate(rows), np.array([ids[k] for k in keys], dtype=np.int64)


def _synth_presets(
    spec: SynthSpec, sources: tuple[str, ...], n: int, seed: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The presets of one synth and their split groups.

    Returns:
        names: k preset names (k <= n: all human presets when fewer than n are asked for).
        presets: (k, n_params) normalized presets.
        groups: (k,) int64 split group of each preset: a mutation has its parent's group (even
            when the parent itself is not taken), a random preset a group of its own.
    """
    rng = _rng(seed, spec.name, "presets")
    names: list[str] = []
    rows: list[np.ndarray] = []
    groups: list[np.ndarray] = []
    if "human" in sources or "mutate" in sources:
        human_names, human, human_group = _human_groups(spec)
    else:
        human_names, human, human_group = [], None, np.zeros(0, np.int64)
    next_group = int(human_group.max()) + 1 if len(human_group) else 0

    def own_groups(count: int) -> np.ndarray:
        nonlocal next_group
        next_group += count
        return np.arange(next_group - count, next_group, dtype=np.int64)

    if "human" in sources and len(human_names):
        take = np.arange(len(human_names))
        if len(take) > n:
            take = np.sort(rng.choice(len(human_names), n, replace=False))
        names += [human_names[i] for i in take]
        rows.append(human[take])
        groups.append(human_group[take])
    if "holdout" in sources:  # each its own group (a test set takes them all: --split-all test)
        held_names, held = human_presets(spec, holdout=True)
        take = np.arange(len(held_names))
        if len(take) > n - len(names):
            take = np.sort(rng.choice(len(held_names), max(n - len(names), 0), replace=False))
        names += [held_names[i] for i in take]
        rows.append(held[take])
        groups.append(own_groups(len(take)))
    others = [s for s in sources if s not in ("human", "holdout")]
    remaining = n - len(names)
    for k, source in enumerate(others):
        count = remaining // len(others) + (1 if k < remaining % len(others) else 0)
        if count == 0:
            continue
        if source == "mutate" and human is not None and len(human_names):
            parents = rng.integers(0, len(human_names), count)
            rows.append(mutate_presets(spec, human[parents], rng))
            names += [f"{human_names[p]}~m{i}" for i, p in enumerate(parents)]
            groups.append(human_group[parents])
        elif source == "mutate":  # nothing human to mutate: mutate random presets
            rows.append(mutate_presets(spec, random_presets(spec, count, rng), rng))
            names += [f"random~m{i}" for i in range(count)]
            groups.append(own_groups(count))
        else:
            rows.append(random_presets(spec, count, rng))
            names += [f"random_{i:05d}" for i in range(count)]
            groups.append(own_groups(count))
    if not names:
        raise ASPError(
            f"synth {spec.name!r} has no presets from sources {','.join(sources)}; "
            "add 'random' or 'mutate' to --presets"
        )
    return names, np.concatenate(rows), np.concatenate(groups)


def _split_groups(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Splits presets 80/10/10 by group: every preset of a group lands in the same split.

    The groups, shuffled, go one by one to the split that is least full (relative to its share of
    the presets) once it holds the group, so the shares are met exactly when every group is one
    preset and approximately otherwise. With at least 3 groups, valid and test hold at least one
    (moved, when needed, as the smallest group of the split holding the most groups).

    Args:
        groups: (n,) int group id of each preset.
        rng: the split's random generator.

    Returns:
        (n,) int8 split of each preset: 0/1/2 = train/valid/test.
    """
    n = len(groups)
    ids, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    n_valid = round(n * SPLIT_SHARES[1])
    n_test = round(n * SPLIT_SHARES[2])
    if len(ids) >= 3:
        n_valid, n_test = max(1, n_valid), max(1, n_test)
    targets = np.array([n - n_valid - n_test, n_valid, n_test], dtype=np.float64)
    filled = np.zeros(3)
    label = np.zeros(len(ids), dtype=np.int8)
    order = rng.permutation(len(ids))
    for g in order:
        fullness = np.full(3, np.inf)
        np.divide(filled + sizes[g], targets, out=fullness, where=targets > 0)
        label[g] = np.argmin(fullness)
        filled[label[g]] += sizes[g]
    if len(ids) >= 3:
        rank = np.empty(len(ids), dtype=np.int64)
        rank[order] = np.arange(len(ids))
        for split in (1, 2):
            if (label == split).any():
                continue
            donor = int(np.argmax(np.bincount(label, minlength=3)))
            members = np.flatnonzero(label == donor)
            label[members[np.lexsort((rank[members], sizes[members]))[0]]] = split
    return label[inverse.ravel()]
