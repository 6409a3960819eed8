"""Folder locks: a run holds its folder, and a second run on it fails at once, naming the first."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from asp.errors import ASPError

LOCK_FILE = ".lock"


def _lock_holder(path: Path) -> str:
    """Who holds a lock file, from what its holder wrote into it (retried briefly: the holder
    writes just after taking the lock)."""
    for _ in range(10):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            info = None
        if isinstance(info, dict) and "pid" in info:
            started = info.get("started")
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, float) else "?"
            command = f": {info['command']}" if info.get("command") else ""
            return f"pid {info['pid']}, started {when}{command}"
        time.sleep(0.05)
    return "a process that did not say who it is"


@contextmanager
def folder_lock(
    folder: str | Path, *, what: str = "another run", fix: str = "choose another folder", remove: bool = False
) -> Iterator[Path]:
    """Holds ``folder`` for this run: an exclusive ``flock`` on ``<folder>/.lock`` until the
    block ends (or the process dies: the kernel releases it, so a killed run never leaves a
    stale lock). The file records who holds it and stays afterwards; it is ours.

    Args:
        folder: an existing folder.
        what: what the holder is, for the message ("another generate.py run").
        fix: what to do instead of waiting, for the message.
        remove: remove the lock file when the block ends (a folder that must hold only its
            outputs), instead of keeping it.

    Raises:
        ASPError: another process holds the folder; the message names its pid, start time and
            command line.
    """
    with _hold(Path(folder) / LOCK_FILE, folder, what, fix, remove=remove) as path:
        yield path


@contextmanager
def output_lock(out: str | Path, *, what: str = "another run", fix: str = "choose another --out") -> Iterator[Path]:
    """Holds the output path ``out`` (a folder the run will write or replace whole, or may not exist
    yet) for this run, as ``folder_lock`` does a folder, through ``.<name>.lock`` beside it: a lock
    inside would be swapped out with the folder. The lock file, and the folders above ``out`` made
    for it that are still empty, are removed when the block ends: nothing is left of a failed run.

    Raises:
        ASPError: another process holds ``out``, naming it.
    """
    out = Path(out)
    if out.name in ("", ".", ".."):
        out = out.resolve()
    made = [p for p in out.parents if not p.exists()]  # deepest first
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _hold(out.parent / f".{out.name}.lock", out, what, fix, remove=True) as path:
            yield path
    finally:
        for folder in made:
            try:
                folder.rmdir()
            except OSError:
                break


@contextmanager
def _hold(path: Path, shown: str | Path, what: str, fix: str, *, remove: bool = False) -> Iterator[Path]:
    """An exclusive ``flock`` on the file ``path`` for the block; ``shown`` names what it guards.
    With ``remove`` the file is deleted before the lock is released; a process that opened it just
    before finds, once it holds the lock, that the path is no longer its file, and opens it again."""
    folder = shown
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by worker processes
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            break  # said below, with the lock held by another or not supported
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # removed by the holder that just ended: lock the new file
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ASPError(
                f"{folder} is in use by {what} ({_lock_holder(path)}); wait for it to finish, or {fix}"
            ) from None
        except OSError as err:
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            yield path  # a file system without locks (some network ones): run unguarded, as before
            return
        info = {"pid": os.getpid(), "started": time.time(), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        try:
            yield path
        finally:
            if remove:
                path.unlink(missing_ok=True)  # while still held
    finally:
        os.close(fd)  # releases the lock
