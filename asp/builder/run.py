"""A dataset run and its folder's state: held by one run at a time, resumed shard by shard,
refused when it holds another dataset (unless forced), assembled when every shard is done."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from asp.builder.assemble import Summary, assemble
from asp.builder.plan import WORK_DIR, Plan, Settings, Shard, make_plan
from asp.builder.shards import _warm_up, read_shard, render_shard
from asp.cluster import run_tasks
from asp.errors import ASPError
from asp.files import read_json, remove_stale_temps, write_json
from asp.locks import folder_lock
from data.dataset import MANIFEST, SPLITS, dataset_layout, split_files
from data.mels import SHARD_FOLDER


def _check_writable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ASPError(f"output folder {out} is a file, not a folder; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write_test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ASPError(f"cannot write to output folder {out} ({err.strerror}); choose another --out") from None


def _fingerprint(plan_file: Path) -> str | None:
    """The fingerprint of the plan an unfinished run left, or None (none, or unreadable)."""
    try:
        data = read_json(plan_file, "plan")
    except ASPError:
        return None
    return data.get("fingerprint") if isinstance(data, dict) else None


def _read_manifest(path: Path) -> dict | None:
    """A finished dataset's manifest, or None when it is damaged (not JSON, or keys missing)."""
    try:
        data = read_json(path, "dataset manifest")
    except ASPError:
        return None
    if not (isinstance(data, dict) and isinstance(data.get("fingerprint"), str)):
        return None
    return data if all(isinstance(data.get(k), dict) for k in ("kept", "dropped", "counts")) else None


def _dataset_files(out: Path, synths: tuple[str, ...] = ()) -> list[Path]:
    """The npy files of ``out`` that a dataset of this toolkit writes: each split's arrays in either
    layout (``data.dataset.split_files``) for the synths its manifest, its unfinished plan or
    ``synths`` name, and the lookup index; a user's ``train_my_labels.npy`` is none of them."""
    names = set(synths)
    for path, key in ((out / MANIFEST, "synths"), (out / WORK_DIR / "plan.json", "settings")):
        try:
            data = read_json(path, "dataset manifest")
        except ASPError:
            continue
        entries = data.get(key) if isinstance(data, dict) else None
        if key == "settings":
            entries = entries.get("synths") if isinstance(entries, dict) else None
        names |= {e.get("name") if isinstance(e, dict) else e for e in entries or []} - {None}
    names = {Path(str(n)).stem if str(n).endswith(".json") else str(n) for n in names}  # a spec path: its name
    files = {f for split in SPLITS for layout in ("assembled", "sharded") for f in split_files(split, names, layout)}
    return sorted({out / f for f in files if (out / f).is_file()} | set(out.glob("train_lookup*.npy")))


def _remove_dataset(out: Path, synths: tuple[str, ...] = ()) -> None:
    """Removes a dataset's own files (``_dataset_files``, the manifest, the work folder, the shard
    files and plan of ``shards/``), nothing else."""
    for p in _dataset_files(out, synths):
        p.unlink()
    (out / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)
    shards = out / SHARD_FOLDER
    if shards.is_dir():
        for p in [*shards.glob("shard_*.npz"), shards / "plan.json"]:
            p.unlink(missing_ok=True)
        remove_stale_temps(shards)
        try:
            shards.rmdir()
        except OSError:  # it holds files the toolkit did not write: left as they are
            pass


def _iter_results(plan: Plan, todo: list[Shard], work: Path, workers: int) -> Iterator[dict]:
    paths = {s.name: str(s.path) for s in plan.specs}
    # absolute: a worker on another node (asp.cluster) does not start in this process's folder
    tasks = [(shard, paths[shard.synth], plan.settings.hpss, str(work.absolute())) for shard in todo]
    yield from run_tasks(render_shard, tasks, workers=workers, initializer=_warm_up)


def generate(
    settings: Settings,
    out: str | Path,
    *,
    layout: str = "auto",
    workers: int | None = None,
    force: bool = False,
    max_shards: int | None = None,
    progress: bool = True,
) -> Summary:
    """Generates (or resumes) a dataset in ``out``.

    Args:
        settings: what to generate.
        out: output folder (the npy_data layout).
        layout: assembled (one mel file per split, the published layout), sharded (the mels left
            in the shard files, read in place; with a lookup index) or auto (sharded above
            ``SHARDED_ABOVE`` bytes of mels). A finished dataset is kept in the layout it has
            unless ``layout`` names another.
        workers: worker processes (default: all cores); 1 renders in this process.
        force: replace a dataset (finished or in progress) made with other settings.
        max_shards: stop after rendering this many shards (the run resumes later).
        progress: show a progress bar.

    Raises:
        ASPError: for bad settings, an unwritable folder, another dataset in the way, or another
            run generating into the same folder (it holds ``out/.lock`` while it runs).
    """
    start = time.perf_counter()
    out = Path(out)
    plan = make_plan(settings)
    plan.layout(layout)  # checks the name
    _check_writable(out)
    with folder_lock(out, what="another generate.py run", fix="choose another --out"):
        return _generate(
            plan, out, start, layout=layout, workers=workers, force=force, max_shards=max_shards, progress=progress
        )


def _generate(
    plan: Plan,
    out: Path,
    start: float,
    *,
    layout: str,
    workers: int | None,
    force: bool,
    max_shards: int | None,
    progress: bool,
) -> Summary:
    """``generate``'s work, once the folder is held."""
    work = out / WORK_DIR
    done = _take_over(plan, out, force, layout)
    if done is not None:
        return done
    todo = [s for s in plan.shards if read_shard(work / s.file, s) is None]
    if max_shards is not None:
        todo = todo[:max_shards]
    done_samples = plan.total - sum(len(s.notes) for s in todo)
    times = {"render": 0.0, "mel": 0.0, "hpss": 0.0, "write": 0.0}
    rendered = 0
    workers = workers or os.cpu_count() or 1
    bar = tqdm(
        total=plan.total, initial=done_samples, unit="sample", desc="generate", disable=not progress, smoothing=0.1
    )
    loop_start = time.perf_counter()
    with bar:
        for result in _iter_results(plan, todo, work, workers):
            bar.update(result["samples"])
            rendered += result["samples"]
            for k, v in result["times"].items():
                times[k] += v
    loop_seconds = time.perf_counter() - loop_start
    remaining = [s for s in plan.shards if not (work / s.file).is_file()]
    if remaining:
        return Summary(out, {}, {}, {}, time.perf_counter() - start, False, times, rendered, loop_seconds=loop_seconds)
    summary = assemble(plan, out, plan.layout(layout))
    summary.seconds = time.perf_counter() - start
    summary.times, summary.rendered, summary.loop_seconds = times, rendered, loop_seconds
    return summary


def _take_over(plan: Plan, out: Path, force: bool, layout: str = "auto") -> Summary | None:
    """Readies ``out`` for this plan: the Summary of the finished dataset when it already holds
    it, else None with the work folder holding this plan (what another dataset left removed, with
    ``force``).

    Raises:
        ASPError: ``out`` holds another dataset, finished or not, and ``force`` is off; or this
            one in another layout than an explicit ``layout``.
    """
    work = out / WORK_DIR
    manifest_path = out / MANIFEST
    plan_file = work / "plan.json"
    shards = out / SHARD_FOLDER
    if not manifest_path.is_file() and not work.exists() and (shards / "plan.json").is_file():
        os.replace(shards, work)  # a sharded assembly was stopped before its manifest: finish it again
    previous = _fingerprint(plan_file)
    remove_stale_temps(out, "*.npy", MANIFEST)  # left by a run killed while assembling (only those)
    if manifest_path.is_file():
        manifest = _read_manifest(manifest_path)
        if manifest is not None and manifest.get("fingerprint") == plan.fingerprint:
            has = dataset_layout(manifest)[0]
            if layout not in ("auto", has):
                if not force:
                    raise ASPError(
                        f"{out} holds this dataset in the {has} layout; pass --force to generate it again in the "
                        f"{layout} layout, or choose another --out"
                    )
                _remove_dataset(out, tuple(s.name for s in plan.specs))
                return _take_over(plan, out, force, layout)
            shutil.rmtree(work, ignore_errors=True)
            summary = Summary(out, manifest["kept"], manifest["dropped"], manifest["counts"], 0.0, True, already=True)
            summary.layout = has
            return summary
        if not force:
            _refuse_finished(plan, out, manifest)
        _remove_dataset(out, tuple(s.name for s in plan.specs))
    elif any(out.glob("*_mel*.npy")) and not force and previous != plan.fingerprint:
        # (with this run's plan in the work folder they are this run's, from an interrupted assembly)
        raise ASPError(
            f"{out} holds npy files of another dataset; pass --force to replace them, or choose another --out"
        )
    work.mkdir(exist_ok=True)
    if plan_file.is_file():
        if previous != plan.fingerprint:
            if not force:
                raise ASPError(
                    f"{out} holds an unfinished dataset made with other arguments; rerun that "
                    "command to finish it, or pass --force to start this one instead"
                )
            _remove_dataset(out, tuple(s.name for s in plan.specs))
            work.mkdir()
    write_json(plan_file, {"fingerprint": plan.fingerprint, "settings": plan.settings.to_json()})
    remove_stale_temps(work)  # shards of killed workers
    return None


def _refuse_finished(plan: Plan, out: Path, manifest: dict | None) -> None:
    """Raises the error for a finished dataset of other settings (or a damaged manifest) in ``out``."""
    hashes = {s.name: s.hash for s in plan.specs}
    made = {e.get("name"): e.get("hash") for e in (manifest or {}).get("synths", [])}
    changed = [name for name, h in made.items() if h != hashes.get(name)]
    if changed and set(made) <= set(hashes):
        raise ASPError(
            f"{out} holds a dataset made with an earlier version of {', '.join(changed)} (a spec or "
            "DSP code changed since); pass --force to regenerate it, or choose another --out"
        )
    what = "a finished dataset made with other arguments" if manifest else "a damaged manifest.json"
    raise ASPError(f"{out} holds {what}; pass --force to replace it, or choose another --out")
